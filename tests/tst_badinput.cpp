// Runs every reader over the bad-input corpus (tests/data/bad, made by lathe-make-bad-corpus): each input must
// give a LatheError that names the file and the problem, never a crash, hang, other exception or huge allocation.

#include "base/error.h"
#include "base/mappedfile.h"
#include "io/ggufparser.h"
#include "io/modelloader.h"
#include "io/safetensorsheader.h"
#include "testsupport.h"

#include <QTest>

#include <sys/resource.h>

#include <filesystem>
#include <fstream>
#include <functional>

using namespace lathe;
namespace fs = std::filesystem;

namespace {

// Runs `f`; returns "" on success, the LatheError message on a LatheError; fails the test on anything else.
std::string outcome(const std::function<void()> &f, bool &otherException) {
    try {
        f();
        return {};
    } catch (const LatheError &e) {
        return std::string("error: ") + e.what();
    } catch (const std::exception &e) {
        otherException = true;
        return std::string("unexpected exception: ") + e.what();
    }
}

} // namespace

#ifdef __SANITIZE_ADDRESS__
extern "C" const char *__asan_default_options() { return "max_allocation_size_mb=4096"; }
#endif

class TestBadInput : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        // A reader that tried to allocate what a corrupt header claims would hit this limit and fail the test.
        // AddressSanitizer reserves terabytes of address space for its shadow memory, so under it the same
        // limit is its max_allocation_size_mb (__asan_default_options below): a larger allocation aborts the test.
#ifndef __SANITIZE_ADDRESS__
        rlimit lim{size_t(4) << 30, size_t(4) << 30};
        setrlimit(RLIMIT_AS, &lim);
#endif
    }
    void corpus_data() {
        QTest::addColumn<QString>("path");
        QTest::addColumn<QString>("expect");
        QTest::addColumn<bool>("loads");
        const std::string dir = test::sourceDir() + "/tests/data/bad";
        std::ifstream in(dir + "/MANIFEST.json");
        QVERIFY2(in, "tests/data/bad/MANIFEST.json missing");
        const auto manifest = nlohmann::json::parse(in);
        QVERIFY(manifest.size() >= 20);
        for (const auto &e : manifest) {
            const std::string p = e["path"];
            QTest::newRow(p.c_str()) << QString::fromStdString(dir + "/" + p) << QString::fromStdString(e["expect"])
                                     << e.value("loads", false);
        }
    }
    void corpus() {
        QFETCH(QString, path);
        QFETCH(QString, expect);
        QFETCH(bool, loads);
        const std::string p = path.toStdString();
        QVERIFY2(fs::exists(p), p.c_str());
        bool other = false;

        // The dispatching reader: the expected message, naming the file.
        std::unique_ptr<Model> model;
        const std::string main = outcome([&] { model = openModel(p); }, other);
        QVERIFY2(!other, main.c_str());
        if (loads) {
            QVERIFY2(main.empty(), main.c_str());
            const auto reports = model->scanNonFinite();
            QCOMPARE(reports.size(), size_t(1));
            QCOMPARE(QString::fromStdString(reports[0].tensor), expect);
            QCOMPARE(reports[0].nanCount, int64_t(1));
            QCOMPARE(reports[0].infCount, int64_t(1));
            QVERIFY(model->warnings.back().find(expect.toStdString()) != std::string::npos);
        } else {
            QVERIFY2(!main.empty(), ("no error for " + p).c_str());
            QVERIFY2(main.find(expect.toStdString()) != std::string::npos, main.c_str());
            QVERIFY2(main.find(fs::path(p).filename().string()) != std::string::npos, ("message does not name the file: " + main).c_str());
        }

        // Every other reader over the same input: a clean error or a result, nothing else.
        if (fs::is_regular_file(p)) {
            auto file = MappedFile::open(p);
            std::string r = outcome([&] { parseSafetensorsHeader(file->data(), file->size(), p); }, other);
            QVERIFY2(!other, r.c_str());
            r = outcome([&] { parseGguf(file->data(), file->size(), p); }, other);
            QVERIFY2(!other, r.c_str());
            r = outcome([&] { openLlama2c(p); }, other);
            QVERIFY2(!other, r.c_str());
            r = outcome([&] { openGguf(p); }, other);
            QVERIFY2(!other, r.c_str());
        } else {
            const std::string r = outcome([&] { openHfFolder(p); }, other);
            QVERIFY2(!other, r.c_str());
        }
    }
};

QTEST_GUILESS_MAIN(TestBadInput)
#include "tst_badinput.moc"
