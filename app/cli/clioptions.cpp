#include "clioptions.h"

#include "error.h"

#include <algorithm>

namespace lathe::cli {

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

int64_t CliOptions::integer(const std::string &name, int64_t fallback) const {
    auto v = value(name);
    if (!v)
        return fallback;
    try {
        size_t used = 0;
        const long long x = std::stoll(*v, &used);
        if (used == v->size())
            return x;
    } catch (const std::exception &) {
    }
    throw LatheError("--" + name + " must be an integer, not '" + *v + "'");
}

} // namespace lathe::cli
