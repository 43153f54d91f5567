#pragma once

#include "base/progress.h"
#include "methods/pruningtargets.h"

namespace lathe {

class LayerCheckpoint;
class Model;
struct CalibrationSet;

struct WandaParams {
    PruningSelection selection; // unstructured patterns are applied per output row, as Wanda does
    int64_t rowsPerChunk = 8192;
    bool measureError = true;   // keep the dense block outputs to report each block's output error (one more copy
                                // of the signals in memory)
    // Saves after finished blocks and continues from the last saved one (layercheckpoint.h); null: none. Not owned.
    LayerCheckpoint *checkpoint = nullptr;
};

// Wanda in place on `model`, layer by layer on the calibration set. Checks the selection before any work.
PruningResult wandaPrune(Model &model, const CalibrationSet &calibration, const WandaParams &params,
                         const ProgressCallback &progress = {});

} // namespace lathe
