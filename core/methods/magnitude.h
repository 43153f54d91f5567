#pragma once

#include "base/progress.h"
#include "methods/pruningtargets.h"

namespace lathe {

class Model;

// Magnitude pruning in place on `model`: every selected block linear loses the entries of smallest |W|, per matrix
// (unstructured), per row, or in every group of M consecutive inputs (N:M). selectTargets() has checked the
// selection before any weight is touched.
PruningResult magnitudePrune(Model &model, const PruningSelection &selection, const ProgressCallback &progress = {});

} // namespace lathe
