#include "train/taylor.h"

#include "engine/calibration.h"
#include "engine/transformer.h"
#include "io/tokenizerloader.h"
#include "model/model.h"
#include "train/causallm.h"
#include "train/linearkinds.h"

#include <algorithm>
#include <cmath>

namespace lathe::train {

std::map<std::string, std::vector<float>> collectGradientMagnitudes(const Model &model, const CalibrationSet &set,
                                                                    const ProgressCallback &progress) {
    CausalLm<float> lm(model);
    if (lm.maskedLm()) // BERT: the gradient of the masked-LM loss, sequence s masked with seed s
        lm.setMasking(mlmMaskingFor(model.config, *loadTokenizer(model)));
    // Only the block linears' weights need a gradient: the rest is frozen (no buffers, no weight-gradient GEMMs).
    std::vector<Parameter<float> *> weights;
    for (const auto &slot : lm.linears())
        weights.push_back(static_cast<DenseLinear<float> *>(slot.kind)->weight());
    for (Parameter<float> &p : lm.parameters())
        if (std::find(weights.begin(), weights.end(), &p) == weights.end())
            lm.parameters().setTrainable(p.name, false);
    std::vector<std::vector<double>> sums(weights.size());
    for (size_t i = 0; i < weights.size(); ++i)
        sums[i].assign(size_t(weights[i]->value.size()), 0.0);
    for (size_t s = 0; s < set.sequences.size(); ++s) {
        reportProgress(progress, double(s) / double(set.sequences.size()),
                       "gradients of sequence " + std::to_string(s + 1) + " of " + std::to_string(set.sequences.size()));
        TokenBatch batch;
        batch.batch = 1;
        batch.seq = int64_t(set.sequences[s].size());
        batch.tokens = set.sequences[s];
        lm.parameters().zeroGrad();
        lm.forward(batch, uint64_t(s));
        lm.backward();
        for (size_t i = 0; i < weights.size(); ++i) {
            const float *g = weights[i]->grad.data();
            double *acc = sums[i].data();
            for (int64_t j = 0; j < weights[i]->value.size(); ++j)
                acc[j] += std::fabs(double(g[j]));
        }
    }
    std::map<std::string, std::vector<float>> out;
    const double n = double(std::max<size_t>(1, set.sequences.size()));
    for (size_t i = 0; i < weights.size(); ++i) {
        std::vector<float> &v = out[weights[i]->name];
        v.resize(sums[i].size());
        for (size_t j = 0; j < v.size(); ++j)
            v[j] = float(sums[i][j] / n);
    }
    reportProgress(progress, 1.0, "gradient scores done");
    return out;
}

} // namespace lathe::train
