// The layering of core/ (core/LAYERS): every quoted include in core/ is path-qualified and points to the file's own
// layer or one listed before it; gpu/ includes core headers path-qualified and its own by name; core/ never
// includes gpu/, ui/ or app/. A failure names the file, the line and the edge.

#include "testsupport.h"

#include <QTest>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

std::vector<std::string> declaredLayers(const std::string &path) {
    std::vector<std::string> layers;
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
        line = line.substr(0, line.find('#'));
        std::istringstream words(line);
        std::string name;
        if (words >> name)
            layers.push_back(name);
    }
    return layers;
}

struct Include {
    std::string file; // relative to the source root
    int line;
    std::string target;
};

std::vector<Include> quotedIncludes(const fs::path &root, const fs::path &dir) {
    static const std::regex re(R"re(^\s*#\s*include\s*"([^"]+)")re");
    std::vector<Include> out;
    for (const auto &e : fs::recursive_directory_iterator(dir)) {
        const std::string ext = e.path().extension().string();
        if (!e.is_regular_file() || (ext != ".h" && ext != ".cpp" && ext != ".inc" && ext != ".cu" && ext != ".cuh"))
            continue;
        std::ifstream in(e.path());
        std::string line;
        for (int n = 1; std::getline(in, line); ++n) {
            std::smatch m;
            if (std::regex_search(line, m, re))
                out.push_back({fs::relative(e.path(), root).string(), n, m[1]});
        }
    }
    return out;
}

// The violations of the rules above, one line each.
std::vector<std::string> violations(const fs::path &root) {
    const std::vector<std::string> layers = declaredLayers((root / "core" / "LAYERS").string());
    auto rank = [&](const std::string &layer) {
        for (size_t i = 0; i < layers.size(); ++i)
            if (layers[i] == layer)
                return int(i);
        return -1;
    };
    std::vector<std::string> bad;
    for (const Include &inc : quotedIncludes(root, root / "core")) {
        const std::string layer = fs::path(inc.file).begin()->string() == "core"
                                      ? std::next(fs::path(inc.file).begin())->string()
                                      : std::string();
        const std::string where = inc.file + ":" + std::to_string(inc.line) + ": ";
        if (rank(layer) < 0) {
            bad.push_back(where + "the file is in no layer of core/LAYERS");
            continue;
        }
        if (inc.target == "remotecode.h") // generated into the build folder (export/slicedexport.cpp)
            continue;
        const size_t slash = inc.target.find('/');
        const std::string to = slash == std::string::npos ? std::string() : inc.target.substr(0, slash);
        if (to.empty()) {
            bad.push_back(where + "\"" + inc.target + "\" is not path-qualified (\"layer/file.h\")");
        } else if (rank(to) < 0) {
            bad.push_back(where + layer + " includes \"" + inc.target + "\", which is in no layer of core/");
        } else if (rank(to) > rank(layer)) {
            std::string allowed;
            for (int i = 0; i <= rank(layer); ++i)
                allowed += (i ? ", " : "") + layers[size_t(i)];
            bad.push_back(where + layer + " includes " + inc.target + ": " + layer + " may only include " + allowed);
        } else if (!fs::exists(root / "core" / inc.target)) {
            bad.push_back(where + "\"" + inc.target + "\" does not exist");
        }
    }
    if (fs::exists(root / "gpu"))
        for (const Include &inc : quotedIncludes(root, root / "gpu")) {
            const std::string where = inc.file + ":" + std::to_string(inc.line) + ": ";
            const size_t slash = inc.target.find('/');
            if (slash == std::string::npos) {
                if (!fs::exists(root / "gpu" / inc.target))
                    bad.push_back(where + "\"" + inc.target + "\" is neither a gpu/ header nor path-qualified");
            } else if (rank(inc.target.substr(0, slash)) < 0 || !fs::exists(root / "core" / inc.target)) {
                bad.push_back(where + "\"" + inc.target + "\" is not a header of a core layer");
            }
        }
    return bad;
}

} // namespace

class TestLayering : public QObject {
    Q_OBJECT
private slots:
    void declaredOrder() {
        const auto layers = declaredLayers(lathe::test::sourceDir() + "/core/LAYERS");
        QCOMPARE(int(layers.size()), 11);
        QCOMPARE(QString::fromStdString(layers.front()), QString("base"));
        QCOMPARE(QString::fromStdString(layers.back()), QString("run"));
        for (const std::string &l : layers)
            QVERIFY2(fs::is_directory(lathe::test::sourceDir() + "/core/" + l), l.c_str());
    }
    void everyIncludeFollowsTheOrder() {
        const auto bad = violations(lathe::test::sourceDir());
        std::string all;
        for (const std::string &b : bad)
            all += "\n  " + b;
        QVERIFY2(bad.empty(), ("includes against core/LAYERS:" + all).c_str());
    }
    // The check itself: a copy of core/ with an include against the order, an unqualified one and a gpu/ header
    // included from core must give exactly those three violations, each with its file and line.
    void catchesEdgesAgainstTheOrder() {
        const fs::path root = lathe::test::tempDir("layering");
        fs::copy(lathe::test::sourceDir() + "/core", root / "core", fs::copy_options::recursive);
        {
            std::ofstream f(root / "core" / "model" / "model.h", std::ios::app);
            f << "#include \"engine/transformer.h\"\n#include \"error.h\"\n#include \"cudacheck.h\"\n";
        }
        const auto bad = violations(root);
        QCOMPARE(int(bad.size()), 3);
        QVERIFY2(bad[0].find("core/model/model.h:") == 0, bad[0].c_str());
        QVERIFY2(bad[0].find("model includes engine/transformer.h: model may only include base, numeric, model") !=
                     std::string::npos,
                 bad[0].c_str());
        QVERIFY2(bad[1].find("\"error.h\" is not path-qualified") != std::string::npos, bad[1].c_str());
        QVERIFY2(bad[2].find("\"cudacheck.h\" is not path-qualified") != std::string::npos, bad[2].c_str());
    }
};

QTEST_GUILESS_MAIN(TestLayering)
#include "tst_layering.moc"
