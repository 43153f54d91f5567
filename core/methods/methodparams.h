#pragma once

#include "base/error.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <type_traits>
#include <string>
#include <variant>
#include <vector>

namespace lathe {

// Per-block overrides of a method's ratio as the user gave them: one value per block (`perBlock`), or ranges of
// blocks. JSON: an array (one value per block) or an object whose keys are "i" or "i-j" (inclusive).
struct LayerRatios {
    struct Range {
        int first = 0, last = 0;
        double ratio = 0;
        bool operator==(const Range &) const = default;
    };
    std::vector<Range> ranges; // in the order given
    bool perBlock = false;     // written as an array of one value per block (ranges are then 0-0, 1-1, ...)

    bool empty() const { return ranges.empty(); }
    // Block -> ratio for a model with `layers` blocks; LatheError for an array of another length or a block the
    // model does not have.
    std::map<int, double> resolve(int layers) const;
    // LatheError naming the bad key or value; null gives no overrides.
    static LayerRatios fromJson(const nlohmann::json &j);
    nlohmann::json toJson() const; // null when empty
    bool operator==(const LayerRatios &) const = default;
};

// A method parameter's type: what JSON holds for it, how the GUI edits it and how the CLI lists it.
enum class ParamType { Bool, Integer, Real, Choice, Text, LayerRatios };
// "bool", "integer", "real", "choice", "text", "layer-ratios"
const char *paramTypeName(ParamType t);

using ParamValue = std::variant<bool, int64_t, double, std::string, LayerRatios>;

// One parameter of a method, declared once in the method's file and used for JSON reading and writing,
// validation, `lathe-cli methods` and the GUI's widgets.
struct ParamSpec {
    std::string key;   // the job spec's path: "pattern" (top level) or "slicegpt.damping" (in an object)
    std::string label; // short, for a form
    ParamType type = ParamType::Real;
    ParamValue defaultValue;
    double min = 0, max = 0; // Integer and Real: the inclusive range
    std::string unit;        // "fraction", "blocks", ...; may be empty
    std::string help;        // one line
    // Choice: the values offered; with `openChoice`, other text is accepted when `check` passes (N:M patterns).
    std::vector<std::string> choices;
    bool openChoice = false;
    // Further checks of a value that type and range do not express (a pattern that parses, a regular expression
    // that compiles); LatheError with a hint.
    std::function<void(const ParamValue &)> check;
};

// A declaration in one call (Integer and Real: the inclusive range [min, max]; other types ignore it).
ParamSpec declareParam(const std::string &key, const std::string &label, ParamType type, ParamValue value,
                       const std::string &help, double min = 0, double max = 0, const std::string &unit = {});

// A Choice among `choices`, defaulting to the first.
ParamSpec declareChoice(const std::string &key, const std::string &label, std::vector<std::string> choices,
                        const std::string &help);

// A method's parameter values by key: every parameter of the method, typed as declared. Built from the
// declarations (defaults) and edited with set(), which checks type, range and `check`.
class MethodParams {
public:
    MethodParams() = default;
    explicit MethodParams(const std::vector<ParamSpec> &specs); // the defaults

    // Sets one value; LatheError (naming the key) for an unknown key, a wrong type or a bad value. An integer is
    // accepted for a real.
    void set(const std::string &key, const ParamValue &value);
    bool has(const std::string &key) const { return m_values.count(key) != 0; }
    const ParamValue &value(const std::string &key) const; // asserts the key exists
    template <class T> const T &get(const std::string &key) const { return std::get<T>(value(key)); }
    const std::vector<ParamSpec> &specs() const { return m_specs; }
    bool operator==(const MethodParams &o) const { return m_values == o.m_values; }

    // The values present in `j` at the parameters' keys (other keys are the caller's to check); LatheError naming
    // the key for wrong types or values.
    void readJson(const nlohmann::json &j);
    // Adds every parameter to `j` at its key.
    void writeJson(nlohmann::json &j) const;

private:
    const ParamSpec &spec(const std::string &key) const;
    std::vector<ParamSpec> m_specs;
    std::map<std::string, ParamValue> m_values;
};

// The value at a dotted path ("slicegpt.damping") of a JSON object, or null when absent or null; LatheError when
// something on the way is not an object. jsonMakePath creates the objects on the way.
const nlohmann::json *jsonAtPath(const nlohmann::json &j, const std::string &path);
nlohmann::json &jsonMakePath(nlohmann::json &j, const std::string &path);

// Reads a job spec value of type T (bool, text, whole numbers: an integer in range, never 128.9 or 1e28; double:
// any number) into `out`; LatheError naming `path` when the JSON type does not fit.
template <class T> void readJsonValue(const nlohmann::json &v, const std::string &path, T &out) {
    if constexpr (std::is_same_v<T, bool>) {
        if (!v.is_boolean())
            throw LatheError("job spec: '" + path + "' must be true or false (" + v.dump() + ")");
    } else if constexpr (std::is_same_v<T, std::string>) {
        if (!v.is_string())
            throw LatheError("job spec: '" + path + "' must be text (" + v.dump() + ")");
    } else if constexpr (std::is_floating_point_v<T>) {
        if (!v.is_number())
            throw LatheError("job spec: '" + path + "' must be a number (" + v.dump() + ")");
    } else {
        const bool fits = std::is_signed_v<T> ? v.is_number_integer() && !(v.is_number_unsigned() &&
                                                                          v.get<uint64_t>() > uint64_t(INT64_MAX))
                                              : v.is_number_unsigned();
        if (!fits)
            throw LatheError("job spec: '" + path + "' must be a " + (std::is_signed_v<T> ? "" : "non-negative ") +
                             "whole number (" + v.dump() + ")");
    }
    out = v.get<T>();
}

// A parameter's value as JSON (LayerRatios in their JSON form) and the JSON description of a declaration (for
// `lathe-cli methods --json`).
nlohmann::json paramValueToJson(const ParamValue &v);
nlohmann::json paramSpecToJson(const ParamSpec &p);
// The value as a person reads it: "true", "0.01", "2:4", "{\"0-3\": 0.3}".
std::string paramValueText(const ParamValue &v);

} // namespace lathe
