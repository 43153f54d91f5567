#include "base/memory.h"

#include <cstdlib> // defines __GLIBC__ on glibc

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace lathe {

void keepFreedMemory() {
#if defined(__GLIBC__)
    // Setting either threshold turns off glibc's adaptive ones, so both are set. 32 MiB is the largest mmap
    // threshold glibc accepts on 64-bit.
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 128 << 20);
#endif
}

void releaseFreedMemory() {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

} // namespace lathe
