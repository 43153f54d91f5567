#include "methods/registry.h"

#include "base/error.h"

namespace lathe {

// One line per method: X(the function its file defines that returns its CompressionMethod).
#define LATHE_METHODS(X)                                                                                             \
    X(wandaMethod)                                                                                                   \
    X(magnitudeMethod)                                                                                               \
    X(sliceGptMethod)                                                                                                \
    X(loSparseMethod)                                                                                                \
    X(pstMethod)                                                                                                     \
    X(satMethod)                                                                                                     \
    X(recoveryMethod)

#define LATHE_DECLARE_METHOD(fn) const CompressionMethod &fn();
LATHE_METHODS(LATHE_DECLARE_METHOD)
#undef LATHE_DECLARE_METHOD

const std::vector<const CompressionMethod *> &compressionMethods() {
#define LATHE_LIST_METHOD(fn) &fn(),
    static const std::vector<const CompressionMethod *> all = {LATHE_METHODS(LATHE_LIST_METHOD)};
#undef LATHE_LIST_METHOD
    return all;
}

std::set<std::string> otherMethodsKeys(const std::set<std::string> &known) {
    std::set<std::string> out;
    for (const CompressionMethod *m : compressionMethods())
        for (const ParamSpec &p : m->info().params)
            if (!known.count(p.key))
                out.insert(p.key);
    return out;
}

std::vector<const CompressionMethod *> methodsOfKind(MethodKind kind) {
    std::vector<const CompressionMethod *> out;
    for (const CompressionMethod *m : compressionMethods())
        if (m->info().kind == kind)
            out.push_back(m);
    return out;
}

const CompressionMethod *findMethod(const std::string &name) {
    for (const CompressionMethod *m : compressionMethods())
        if (m->info().name == name)
            return m;
    return nullptr;
}

const CompressionMethod &methodNamed(const std::string &name) {
    if (const CompressionMethod *m = findMethod(name))
        return *m;
    std::string known;
    for (const CompressionMethod *m : compressionMethods())
        known += (known.empty() ? "" : ", ") + m->info().name;
    throw LatheError("unknown method '" + name + "'", "use " + known + " (lathe-cli methods lists them)");
}

const char *methodKindName(MethodKind k) { return k == MethodKind::PostTraining ? "post-training" : "fine-tuning"; }

const char *exportKindName(ExportKind k) { return k == ExportKind::PrunedDense ? "pruned-dense" : "sliced"; }

nlohmann::json methodsJson() {
    nlohmann::json out = nlohmann::json::array();
    for (const CompressionMethod *m : compressionMethods()) {
        const MethodInfo &i = m->info();
        nlohmann::json params = nlohmann::json::array();
        for (const ParamSpec &p : i.params)
            params.push_back(paramSpecToJson(p));
        out.push_back({{"name", i.name},
                       {"title", i.title},
                       {"summary", i.summary},
                       {"kind", methodKindName(i.kind)},
                       {"needs_calibration", i.needsCalibration},
                       {"needs_gradients", i.needsGradients},
                       {"ratio", i.ratioMeaning},
                       {"nm_patterns", i.nmPatterns},
                       {"export", exportKindName(i.exportKind)},
                       {"parameters", params}});
    }
    return out;
}

} // namespace lathe
