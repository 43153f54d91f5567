// LayerNorm -> RMSNorm fusion and head untying: the computational-invariance preparation of SliceGPT
// (Ashkboos et al., "SliceGPT: Compress Large Language Models by Deleting Rows and Columns", ICLR 2024, sec. 3.2).
// Norm parameters are folded into the adjacent linears in fp64; LayerNorm's mean subtraction is made redundant by
// keeping the residual stream mean-free (centred embeddings and centred residual writers).

#include "methods/normfusion.h"

#include "base/error.h"
#include "model/layerweights.h"
#include "model/model.h"

#include <Eigen/Core>

#include <string>

namespace lathe {

namespace {


// W <- W diag(alpha), b <- b + W beta (beta from the norm's bias, absent for RMSNorm), with the original W.
void foldNormInto(LinearWeights &l, const NormWeights &n) {
    if (!l.present() || !n.present())
        return;
    const MatD w = l.w.cast<double>();
    if (n.bias.size()) {
        Eigen::VectorXd b = w * n.bias.cast<double>();
        if (l.hasBias())
            b += l.b.cast<double>();
        l.b = b.cast<float>();
    }
    l.w = (w * n.weight.cast<double>().asDiagonal()).cast<float>();
}

// Makes every output of a residual writer mean-free over the output dimension.
void centreOutputs(LinearWeights &l) {
    if (!l.present())
        return;
    MatD w = l.w.cast<double>();
    const Eigen::RowVectorXd mean = w.colwise().mean();
    w.rowwise() -= mean;
    l.w = w.cast<float>();
    if (l.hasBias()) {
        Eigen::VectorXd b = l.b.cast<double>();
        b.array() -= b.mean();
        l.b = b.cast<float>();
    }
}

void centreRows(Mat &e) {
    if (!e.size())
        return;
    MatD d = e.cast<double>();
    const Eigen::VectorXd mean = d.rowwise().mean();
    d.colwise() -= mean;
    e = d.cast<float>();
}

} // namespace

std::string slicingUnsupportedReason(const Model &model) {
    const ModelConfig &c = model.config;
    if (c.family == ArchFamily::Bert)
        return "BERT is a post-norm encoder: SliceGPT's rotation invariance needs pre-norm blocks";
    if (c.slicing.active())
        return "the model is already rotated/sliced (it carries lathe_slicing)";
    return {};
}

void fuseNorms(Model &model, const ProgressCallback &progress) {
    const std::string why = slicingUnsupportedReason(model);
    if (!why.empty())
        throw LatheError(model.sourcePath + ": " + why, "SliceGPT supports Llama-family, OPT, GPT-2 and Phi-2 models");
    ModelConfig &c = model.config;
    const bool layerNorm = c.family != ArchFamily::Llama;
    const bool phi = c.family == ArchFamily::Phi;

    EmbeddingWeights emb = loadEmbeddingWeights(model);
    HeadWeights head = loadHeadWeights(model);
    if (!head.lmHead.present())
        head.lmHead.w = emb.token; // untie: the head will be rotated on its input side, the embedding on its output
    if (layerNorm) {
        centreRows(emb.token);
        centreRows(emb.position);
    }
    for (int l = 0; l < c.numLayers; ++l) {
        reportProgress(progress, double(l) / double(c.numLayers + 1),
                       "fusing norms: block " + std::to_string(l + 1) + "/" + std::to_string(c.numLayers));
        BlockWeights b = loadBlockWeights(model, l);
        for (LinearWeights *lin : {&b.q, &b.k, &b.v})
            foldNormInto(*lin, b.attnNorm);
        const NormWeights &mlpNorm = phi ? b.attnNorm : b.mlpNorm;
        for (LinearWeights *lin : {&b.gate, &b.up})
            foldNormInto(*lin, mlpNorm);
        if (layerNorm) {
            centreOutputs(b.o);
            centreOutputs(b.down);
        }
        storeBlockWeights(model, l, b);
    }
    foldNormInto(head.lmHead, head.finalNorm);
    storeEmbeddingWeights(model, emb);
    storeHeadWeights(model, head);
    removeNormWeights(model);
    c.tiedEmbeddings = false;
    c.slicing.normDivisor = c.hiddenSize;
    c.slicing.embeddingWidth = c.hiddenSize;
    c.slicing.midWidths.assign(size_t(c.numLayers), c.hiddenSize);
    c.slicing.outputWidths.assign(size_t(c.numLayers), c.hiddenSize);
    reportProgress(progress, 1.0, "norms fused");
}

} // namespace lathe
