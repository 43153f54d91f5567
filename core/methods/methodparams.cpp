#include "methods/methodparams.h"

#include "base/error.h"

#include <cassert>
#include <charconv>
#include <cmath>
#include <sstream>

using nlohmann::json;

namespace lathe {

namespace {

std::string numberText(double v) {
    std::ostringstream s;
    s.precision(10);
    s << v;
    return s.str();
}

} // namespace

std::map<int, double> LayerRatios::resolve(int layers) const {
    std::map<int, double> out;
    if (perBlock && int(ranges.size()) != layers)
        throw LatheError("per-layer ratios: " + std::to_string(ranges.size()) + " values for " + std::to_string(layers) +
                             " blocks",
                         "give one value per block, or an object like {\"0-3\": 0.3}");
    for (const Range &r : ranges) {
        if (r.last >= layers)
            throw LatheError("per-layer ratios: '" + std::to_string(r.first) + "-" + std::to_string(r.last) +
                             "' names block " + std::to_string(r.last) + " but the model has " +
                             std::to_string(layers) + " blocks (0-" + std::to_string(layers - 1) + ")");
        for (int i = r.first; i <= r.last; ++i)
            out[i] = r.ratio;
    }
    return out;
}

LayerRatios LayerRatios::fromJson(const json &j) {
    LayerRatios out;
    if (j.is_null())
        return out;
    auto ratio = [](const json &v, const std::string &where) {
        if (!v.is_number())
            throw LatheError("per-layer ratios: the value of " + where + " must be a number (" + v.dump() + ")");
        const double r = v.get<double>();
        if (!(r >= 0.0 && r < 1.0))
            throw LatheError("per-layer ratios: the value of " + where + " (" + v.dump() + ") is outside [0, 1)");
        return r;
    };
    if (j.is_array()) {
        out.perBlock = true;
        for (size_t i = 0; i < j.size(); ++i)
            out.ranges.push_back({int(i), int(i), ratio(j[i], "block " + std::to_string(i))});
        return out;
    }
    if (!j.is_object())
        throw LatheError("per-layer ratios must be an array or an object");
    for (const auto &item : j.items()) {
        const std::string &key = item.key();
        // Strict: "3" or "0-11", decimal block numbers.
        auto block = [&](std::string_view t) {
            int v = -1;
            const auto [end, err] = std::from_chars(t.data(), t.data() + t.size(), v);
            if (t.empty() || err != std::errc() || end != t.data() + t.size() || v < 0)
                throw LatheError("per-layer ratios: '" + key + "' is not a block number \"i\" or a range \"i-j\"");
            return v;
        };
        const auto dash = key.find('-');
        const std::string_view k(key);
        const int from = block(k.substr(0, dash));
        const int to = dash == std::string::npos ? from : block(k.substr(dash + 1));
        if (from > to)
            throw LatheError("per-layer ratios: range '" + key + "' is empty");
        out.ranges.push_back({from, to, ratio(item.value(), "'" + key + "'")});
    }
    return out;
}

json LayerRatios::toJson() const {
    if (ranges.empty())
        return nullptr;
    if (perBlock) {
        json a = json::array();
        for (const Range &r : ranges)
            a.push_back(r.ratio);
        return a;
    }
    json o = json::object();
    for (const Range &r : ranges)
        o[r.first == r.last ? std::to_string(r.first) : std::to_string(r.first) + "-" + std::to_string(r.last)] = r.ratio;
    return o;
}

const char *paramTypeName(ParamType t) {
    switch (t) {
    case ParamType::Bool: return "bool";
    case ParamType::Integer: return "integer";
    case ParamType::Real: return "real";
    case ParamType::Choice: return "choice";
    case ParamType::Text: return "text";
    case ParamType::LayerRatios: return "layer-ratios";
    }
    return "?";
}

MethodParams::MethodParams(const std::vector<ParamSpec> &specs) : m_specs(specs) {
    for (const ParamSpec &p : m_specs)
        m_values[p.key] = p.defaultValue;
}

const ParamSpec &MethodParams::spec(const std::string &key) const {
    for (const ParamSpec &p : m_specs)
        if (p.key == key)
            return p;
    std::string known;
    for (const ParamSpec &p : m_specs)
        known += (known.empty() ? "" : ", ") + p.key;
    throw LatheError("unknown parameter '" + key + "'", known.empty() ? "this method has no parameters"
                                                                      : "this method's parameters: " + known);
}

const ParamValue &MethodParams::value(const std::string &key) const {
    auto it = m_values.find(key);
    assert(it != m_values.end() && "a method reads a parameter it did not declare");
    return it->second;
}

void MethodParams::set(const std::string &key, const ParamValue &given) {
    const ParamSpec &p = spec(key);
    ParamValue v = given;
    const std::string where = "'" + key + "'";
    auto wrongType = [&] {
        return LatheError("job spec: " + where + " must be " +
                          (p.type == ParamType::Bool      ? "true or false"
                           : p.type == ParamType::Integer ? "a whole number"
                           : p.type == ParamType::Real    ? "a number"
                           : p.type == ParamType::Choice || p.type == ParamType::Text ? "text"
                                                          : "per-layer ratios") +
                          " (" + paramValueText(given) + ")");
    };
    switch (p.type) {
    case ParamType::Bool:
        if (!std::holds_alternative<bool>(v))
            throw wrongType();
        break;
    case ParamType::Integer: {
        if (!std::holds_alternative<int64_t>(v))
            throw wrongType();
        const int64_t x = std::get<int64_t>(v);
        if (double(x) < p.min || double(x) > p.max)
            throw LatheError("job spec: " + where + " " + std::to_string(x) + " is outside " + numberText(p.min) + "-" +
                                 numberText(p.max),
                             p.help);
        break;
    }
    case ParamType::Real: {
        if (std::holds_alternative<int64_t>(v))
            v = double(std::get<int64_t>(v));
        if (!std::holds_alternative<double>(v))
            throw wrongType();
        const double x = std::get<double>(v);
        if (!(x >= p.min && x <= p.max))
            throw LatheError("job spec: " + where + " " + numberText(x) + " is outside [" + numberText(p.min) + ", " +
                                 numberText(p.max) + "]",
                             p.help);
        break;
    }
    case ParamType::Choice: {
        if (!std::holds_alternative<std::string>(v))
            throw wrongType();
        const std::string &x = std::get<std::string>(v);
        bool listed = false;
        for (const std::string &c : p.choices)
            listed |= c == x;
        if (!listed && !p.openChoice) {
            std::string list;
            for (const std::string &c : p.choices)
                list += (list.empty() ? "" : ", ") + c;
            throw LatheError("job spec: " + where + " '" + x + "' is not one of " + list);
        }
        break;
    }
    case ParamType::Text:
        if (!std::holds_alternative<std::string>(v))
            throw wrongType();
        break;
    case ParamType::LayerRatios:
        if (!std::holds_alternative<LayerRatios>(v))
            throw wrongType();
        break;
    }
    if (p.check) {
        try {
            p.check(v);
        } catch (const LatheError &e) {
            throw LatheError("job spec: " + where + ": " + e.what(), e.hint());
        }
    }
    m_values[key] = std::move(v);
}

namespace {

template <class T> T take(const json &v, const std::string &key) {
    T out{};
    readJsonValue(v, key, out);
    return out;
}

} // namespace

void MethodParams::readJson(const json &j) {
    for (const ParamSpec &p : m_specs) {
        const json *v = jsonAtPath(j, p.key);
        if (!v)
            continue;
        switch (p.type) {
        case ParamType::Bool: set(p.key, take<bool>(*v, p.key)); break;
        case ParamType::Integer: set(p.key, take<int64_t>(*v, p.key)); break;
        case ParamType::Real: set(p.key, take<double>(*v, p.key)); break;
        case ParamType::Choice:
        case ParamType::Text: set(p.key, take<std::string>(*v, p.key)); break;
        case ParamType::LayerRatios:
            try {
                set(p.key, LayerRatios::fromJson(*v));
            } catch (const LatheError &e) {
                throw LatheError("job spec: '" + p.key + "': " + e.what(), e.hint());
            }
            break;
        }
    }
}

void MethodParams::writeJson(json &j) const {
    for (const ParamSpec &p : m_specs) {
        const json v = paramValueToJson(value(p.key));
        if (!v.is_null())
            jsonMakePath(j, p.key) = v;
    }
}

const json *jsonAtPath(const json &j, const std::string &path) {
    const json *at = &j;
    size_t from = 0;
    while (true) {
        const size_t dot = path.find('.', from);
        const std::string part = path.substr(from, dot == std::string::npos ? std::string::npos : dot - from);
        if (!at->is_object())
            throw LatheError("job spec: '" + path.substr(0, from ? from - 1 : 0) + "' must be an object");
        auto it = at->find(part);
        if (it == at->end() || it->is_null())
            return nullptr;
        at = &*it;
        if (dot == std::string::npos)
            return at;
        from = dot + 1;
    }
}

json &jsonMakePath(json &j, const std::string &path) {
    json *at = &j;
    size_t from = 0;
    while (true) {
        const size_t dot = path.find('.', from);
        at = &(*at)[path.substr(from, dot == std::string::npos ? std::string::npos : dot - from)];
        if (dot == std::string::npos)
            return *at;
        from = dot + 1;
    }
}

json paramValueToJson(const ParamValue &v) {
    return std::visit(
        [](const auto &x) -> json {
            if constexpr (std::is_same_v<std::decay_t<decltype(x)>, LayerRatios>)
                return x.toJson();
            else
                return x;
        },
        v);
}

std::string paramValueText(const ParamValue &v) {
    if (const auto *s = std::get_if<std::string>(&v))
        return *s;
    if (const auto *d = std::get_if<double>(&v))
        return numberText(*d);
    const json j = paramValueToJson(v);
    return j.is_null() ? std::string() : j.dump();
}

json paramSpecToJson(const ParamSpec &p) {
    json j = {{"key", p.key}, {"label", p.label}, {"type", paramTypeName(p.type)},
              {"default", paramValueToJson(p.defaultValue)}, {"help", p.help}};
    if (p.type == ParamType::Integer || p.type == ParamType::Real) {
        j["min"] = p.min;
        j["max"] = p.max;
    }
    if (!p.unit.empty())
        j["unit"] = p.unit;
    if (p.type == ParamType::Choice) {
        j["choices"] = p.choices;
        j["other_values"] = p.openChoice;
    }
    return j;
}

ParamSpec declareParam(const std::string &key, const std::string &label, ParamType type, ParamValue value,
                       const std::string &help, double min, double max, const std::string &unit) {
    ParamSpec p;
    p.key = key;
    p.label = label;
    p.type = type;
    p.defaultValue = std::move(value);
    p.help = help;
    p.min = min;
    p.max = max;
    p.unit = unit;
    return p;
}

ParamSpec declareChoice(const std::string &key, const std::string &label, std::vector<std::string> choices,
                        const std::string &help) {
    assert(!choices.empty());
    ParamSpec p = declareParam(key, label, ParamType::Choice, choices.front(), help);
    p.choices = std::move(choices);
    return p;
}

} // namespace lathe
