#pragma once
// Stands in for the CUDA toolkit's header in the emulated GPU trainer test (cudaemulation.h).
#include "cudaemulation.h"
