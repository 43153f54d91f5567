#include "clioptions.h"

#include "base/error.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace lathe::cli {

namespace {
std::string fmtNumber(double x) {
    char b[32];
    std::snprintf(b, sizeof b, "%g", x);
    return b;
}
} // namespace

CliOptions::CliOptions(int argc, char **argv, int first, const std::vector<std::string> &valued,
                       const std::vector<std::string> &flags) {
    auto has = [](const std::vector<std::string> &v, const std::string &s) {
        return std::find(v.begin(), v.end(), s) != v.end();
    };
    for (int i = first; i < argc; ++i) {
        std::string a = argv[i];
        if (a.rfind("--", 0) != 0 || a == "--") {
            m_positional.push_back(a);
            continue;
        }
        std::string key = a.substr(2), val;
        const auto eq = key.find('=');
        const bool inlineValue = eq != std::string::npos;
        if (inlineValue) {
            val = key.substr(eq + 1);
            key = key.substr(0, eq);
        }
        if (has(flags, key) && !inlineValue) {
            m_flags[key] = true;
        } else if (has(valued, key)) {
            if (!inlineValue) {
                if (i + 1 >= argc) {
                    m_error = "option --" + key + " needs a value";
                    return;
                }
                val = argv[++i];
            }
            m_values[key] = val;
        } else {
            m_error = "unknown option --" + key;
            return;
        }
    }
}

std::optional<std::string> CliOptions::value(const std::string &name) const {
    auto it = m_values.find(name);
    if (it == m_values.end())
        return std::nullopt;
    return it->second;
}

int64_t CliOptions::integer(const std::string &name, int64_t fallback, int64_t min, int64_t max) const {
    auto v = value(name);
    if (!v)
        return fallback;
    int64_t x = 0;
    const auto [end, err] = std::from_chars(v->data(), v->data() + v->size(), x);
    const std::string range = min == INT64_MIN && max == INT64_MAX ? std::string()
                              : max == INT64_MAX ? " of at least " + std::to_string(min)
                                                 : " from " + std::to_string(min) + " to " + std::to_string(max);
    if (v->empty() || err != std::errc() || end != v->data() + v->size() || x < min || x > max)
        throw LatheError("--" + name + " must be a whole number" + range + ", not '" + *v + "'");
    return x;
}

double CliOptions::number(const std::string &name, double fallback, double min, double max) const {
    auto v = value(name);
    if (!v)
        return fallback;
    double x = 0;
    const auto [end, err] = std::from_chars(v->data(), v->data() + v->size(), x);
    if (v->empty() || err != std::errc() || end != v->data() + v->size() || !std::isfinite(x) || x < min || x > max)
        throw LatheError("--" + name + " must be a number from " + fmtNumber(min) + " to " + fmtNumber(max) + ", not '" +
                         *v + "'");
    return x;
}

} // namespace lathe::cli
