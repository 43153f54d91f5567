// Linked into every test executable: before main, the same OpenBLAS kernel choice as lathe and lathe-cli
// (fixBlasCoreType re-executes with OPENBLAS_CORETYPE=SkylakeX where OpenBLAS picked an older kernel on an AVX-512
// CPU it does not recognise, e.g. Prescott on a "Intel(R) Xeon(R) Processor"). Without it a test that compares its
// own result with lathe-cli's, or two summation orders at 1e-9, meets other kernels' rounding than the programs do.

#include "numeric/blas.h"

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace {

const bool kBlasCoreTypeFixed = [] {
    std::ifstream in("/proc/self/cmdline", std::ios::binary);
    const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::string> args;
    for (size_t start = 0; start < all.size();) {
        const size_t end = all.find('\0', start);
        args.push_back(all.substr(start, end == std::string::npos ? std::string::npos : end - start));
        if (end == std::string::npos)
            break;
        start = end + 1;
    }
    std::vector<char *> argv;
    for (std::string &a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    if (!args.empty())
        lathe::fixBlasCoreType(int(args.size()), argv.data());
    return true;
}();

} // namespace
