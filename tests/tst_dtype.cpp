// Storage types: fp16/bf16 conversion and every GGUF block format against gguf-py's dequantization.

#include "base/halfconv.h"
#include "base/mappedfile.h"
#include "io/ggufparser.h"
#include "numeric/dequantize.h"
#include "testsupport.h"

#include <QTest>

#include <cmath>
#include <cstring>

using namespace lathe;

class TestDType : public QObject {
    Q_OBJECT
private slots:
    void f16AllValuesRoundTrip() {
        // Every finite fp16 value converts to fp32 and back unchanged; NaN stays NaN.
        for (uint32_t h = 0; h < 65536; ++h) {
            const float f = f16ToFloat(uint16_t(h));
            if (std::isnan(f)) {
                QVERIFY(std::isnan(f16ToFloat(floatToF16(f))));
                continue;
            }
            QCOMPARE(floatToF16(f), uint16_t(h));
        }
        QCOMPARE(f16ToFloat(0x3c00), 1.0f);
        QCOMPARE(f16ToFloat(0x0001), std::ldexp(1.0f, -24)); // smallest subnormal
        QCOMPARE(f16ToFloat(0x7bff), 65504.0f);
        QCOMPARE(floatToF16(65520.0f), uint16_t(0x7c00)); // rounds to Inf
        QCOMPARE(floatToF16(1.0f + std::ldexp(1.0f, -11)), uint16_t(0x3c00)); // tie to even
    }
    void bf16Rounding() {
        QCOMPARE(bf16ToFloat(floatToBf16(1.0f)), 1.0f);
        QCOMPARE(floatToBf16(1.0f + std::ldexp(1.0f, -8)), uint16_t(0x3f80)); // tie rounds to even (down)
        QCOMPARE(floatToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), uint16_t(0x3f82)); // tie rounds to even (up)
        QVERIFY(std::isnan(bf16ToFloat(floatToBf16(std::nanf("")))));
    }
    void byteCounts() {
        QCOMPARE(*dtypeBytes(DType::Q4_K, 512), uint64_t(288));
        QCOMPARE(*dtypeBytes(DType::Q8_0, 64), uint64_t(68));
        QVERIFY(!dtypeBytes(DType::Q4_0, 33).has_value());             // not whole blocks
        QVERIFY(!dtypeBytes(DType::F64, uint64_t(1) << 62).has_value()); // overflow
        QCOMPARE(*dtypeFromGgmlType(14), DType::Q6_K);
        QCOMPARE(*dtypeFromSafetensors("BF16"), DType::BF16);
        QVERIFY(!dtypeFromSafetensors("Q4_0").has_value());
    }
    void blockFormatsMatchGgufPy() {
        // quants.gguf holds each type and "<type>.ref", gguf-py's dequantization of it (make_fixtures.py).
        const std::string path = test::fixturesDir() + "/quants.gguf";
        auto file = MappedFile::open(path);
        const GgufFile g = parseGguf(file->data(), file->size(), path);
        int checked = 0;
        for (const auto &t : g.tensors) {
            if (t.name.ends_with(".ref"))
                continue;
            const GgufTensor *ref = nullptr;
            for (const auto &r : g.tensors)
                if (r.name == t.name + ".ref")
                    ref = &r;
            QVERIFY2(ref, t.name.c_str());
            QCOMPARE(ref->dtype, DType::F32);
            uint64_t n = 1;
            for (auto d : t.dims)
                n *= d;
            std::vector<float> got(n), want(n);
            dequantizeCpu(t.dtype, file->data() + t.offset, n, got.data());
            std::memcpy(want.data(), file->data() + ref->offset, n * 4);
            for (uint64_t i = 0; i < n; ++i)
                if (std::memcmp(&got[i], &want[i], 4) != 0)
                    QFAIL(qPrintable(QString("%1 element %2: %3 != %4").arg(t.name.c_str()).arg(i).arg(got[i]).arg(want[i])));
            ++checked;
        }
        QCOMPARE(checked, 10); // Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K F16 BF16
    }
    void writerConversions() {
        const std::vector<float> v = {0.0f, -1.5f, 3.14159f, 1e-8f, 70000.0f};
        std::vector<uint8_t> buf(v.size() * 2);
        std::vector<float> back(v.size());
        quantizeFloatCpu(DType::BF16, v.data(), v.size(), buf.data());
        dequantizeCpu(DType::BF16, buf.data(), v.size(), back.data());
        for (size_t i = 0; i < v.size(); ++i)
            QCOMPARE(back[i], bf16ToFloat(floatToBf16(v[i])));
        quantizeFloatCpu(DType::F16, v.data(), v.size(), buf.data());
        dequantizeCpu(DType::F16, buf.data(), v.size(), back.data());
        QCOMPARE(back[1], -1.5f);
        QVERIFY(std::isinf(back[4])); // beyond fp16 range
    }
};

QTEST_GUILESS_MAIN(TestDType)
#include "tst_dtype.moc"
