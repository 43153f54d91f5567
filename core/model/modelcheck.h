#pragma once

#include "model/model.h"

namespace lathe {

// Checks that every tensor the engine will read has the shape the config implies and that each block has the
// tensors its family needs. Called by every reader and by the synthetic models; throws LatheError naming the tensor.
void checkModelConsistency(const Model &model);

} // namespace lathe
