#pragma once

#include "base/error.h"

#include <string>

namespace lathe::test {

// The message of the LatheError `f` throws; empty when it throws none.
template <typename F> std::string errorOf(F &&f) {
    try {
        f();
    } catch (const LatheError &e) {
        return e.what();
    }
    return {};
}

} // namespace lathe::test
