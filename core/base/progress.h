#pragma once

#include "base/error.h"

#include <functional>
#include <string>

namespace lathe {

// Progress of a long operation. `fraction` in [0, 1]; `stage` is a short human-readable phrase ("layer 3/30:
// writing shard 1/2").
struct Progress {
    double fraction = 0.0;
    std::string stage;
};

// Called by core operations from their worker thread. Returning false asks the operation to stop: it throws
// CancelledError at its next check and leaves no partial output behind.
using ProgressCallback = std::function<bool(const Progress &)>;

class CancelledError : public LatheError {
public:
    CancelledError() : LatheError("cancelled by the user") {}
};

inline void reportProgress(const ProgressCallback &cb, double fraction, const std::string &stage) {
    if (cb && !cb(Progress{fraction, stage}))
        throw CancelledError();
}

} // namespace lathe
