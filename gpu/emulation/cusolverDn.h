#pragma once
// Stands in for the CUDA toolkit's header in the emulated GPU trainer test (cudaruntimeemulation.h).
#include "cudaruntimeemulation.h"
