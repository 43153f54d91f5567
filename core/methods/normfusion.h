#pragma once

#include "base/progress.h"

namespace lathe {

class Model;

// SliceGPT's first two steps (Ashkboos et al., ICLR 2024, section 3.2), in place on `model`:
//  1. the LM head is untied from the token embedding (copied), so rotating one does not rotate the other;
//  2. every norm's scale alpha and shift beta are folded into the linears that read it (W <- W diag(alpha),
//     b <- b + W beta, in fp64), and every norm becomes a weight-less RMSNorm dividing by the hidden size D.
// RMSNorm models (Llama) need nothing else. LayerNorm models (OPT, GPT-2, Phi-2) subtract the mean before
// normalising; that becomes a no-op once the residual stream is kept mean-free, so the embeddings are centred
// row-wise and the outputs of every linear that writes into the residual stream (o, down) are centred over their
// output rows (W <- W - 1 mean(W)^T, b <- b - mean(b)). After this the model computes the same function (to fp32
// rounding; tst_methods checks the logits) and RMSNorm(xQ) = RMSNorm(x) Q for any orthogonal Q, which is what lets
// SliceGPT rotate the residual stream.
// The result is marked in config.slicing (widths all D, no shortcuts); the engine runs it natively.
// LatheError for BERT (post-norm) and for a model that is already fused or sliced.
void fuseNorms(Model &model, const ProgressCallback &progress = {});

// Whether fuseNorms / SliceGPT support this model; empty when they do, else the reason.
std::string slicingUnsupportedReason(const Model &model);

} // namespace lathe
