#pragma once

namespace lathe {

// Has the allocator keep the memory the engine frees for reuse, instead of handing each large temporary back to
// the kernel. glibc's default adapts its thresholds to the allocation pattern and, for the training step's
// temporaries (tens of megabytes per layer, allocated and freed every step), kept returning them: every step then
// paid page faults, the zeroing of fresh pages and TLB shoot-downs to the other threads (SAT's gathered step at
// omission 0.1 spent 17% of its time in the kernel; docs/benchmarks.md). Blocks below 32 MiB come from the heap
// and up to 128 MiB of free memory at its top is kept; larger blocks are mapped and unmapped as before. Call first
// thing in main(), before any thread starts. Does nothing where the C library is not glibc.
void keepFreedMemory();

// Returns the free memory kept by keepFreedMemory() to the kernel where it can: after a job, so that an idle GUI
// does not hold on to a finished job's peak.
void releaseFreedMemory();

} // namespace lathe
