#include "engine/transformer.h"

#include "base/error.h"
#include "base/parallel.h"
#include "model/model.h"
#include "numeric/blas.h"

#include <spdlog/spdlog.h>

#include <cassert>
#include <cmath>
#include <random>

namespace lathe {

const char *blockSignalName(BlockSignal s) {
    switch (s) {
    case BlockSignal::BlockInput: return "block_input";
    case BlockSignal::AttnInput: return "attn_input";
    case BlockSignal::AttnContext: return "attn_context";
    case BlockSignal::AttnOutput: return "attn_output";
    case BlockSignal::MlpResidual: return "mlp_residual";
    case BlockSignal::MlpInput: return "mlp_input";
    case BlockSignal::MlpHidden: return "mlp_hidden";
    case BlockSignal::MlpOutput: return "mlp_output";
    case BlockSignal::BlockOutput: return "block_output";
    case BlockSignal::Count: break;
    }
    return "?";
}

TokenBatch TokenBatch::single(std::vector<int32_t> ids) {
    TokenBatch b;
    b.batch = 1;
    b.seq = int64_t(ids.size());
    b.tokens = std::move(ids);
    return b;
}

TokenBatch TokenBatch::random(int64_t vocab, int64_t batch, int64_t seq, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> d(0, int32_t(vocab - 1));
    TokenBatch b;
    b.batch = batch;
    b.seq = seq;
    b.tokens.reserve(size_t(batch * seq));
    for (int64_t i = 0; i < batch * seq; ++i)
        b.tokens.push_back(d(rng));
    return b;
}

Transformer::Transformer(const Model &model, TransformerOptions options)
    : m_model(model), m_config(model.config), m_options(options),
      m_activation(cpu::parseActivation(model.config.activation, model.sourcePath)) {
    const ModelConfig &c = m_config;
    checkSupported(model);
    m_embedding = loadEmbeddingWeights(model);
    m_head = loadHeadWeights(model);
    m_blocks.resize(size_t(c.numLayers));
    m_positionOffset = c.family == ArchFamily::Opt ? 2 : 0;
}

cpu::RopeTable ropeTableFor(const ModelConfig &c, int64_t positions, const std::string &source) {
    const int rotary = rotaryDims(c);
    if (rotary == 0)
        return {};
    return cpu::makeRopeTable(std::max<int64_t>(positions, 1), rotary, c.ropeTheta, c.ropeScaling(), source);
}

int rotaryDims(const ModelConfig &c) {
    if (c.family == ArchFamily::Phi)
        return int(double(c.headDim) * c.partialRotaryFactor);
    return c.family == ArchFamily::Llama ? int(c.headDim) : 0;
}

void Transformer::checkSupported(const Model &model) {
    const ModelConfig &c = model.config;
    if (c.family == ArchFamily::Gpt2 && c.hf.value("scale_attn_by_inverse_layer_idx", false))
        throw LatheError(model.sourcePath + ": GPT-2 with scale_attn_by_inverse_layer_idx is not supported");
    if (c.family == ArchFamily::Phi && c.hf.value("qk_layernorm", false))
        throw LatheError(model.sourcePath + ": Phi with qk_layernorm is not supported");
    cpu::parseActivation(c.activation, model.sourcePath);
}

void Transformer::ensureRope(int64_t seq) {
    if (m_config.family != ArchFamily::Llama && m_config.family != ArchFamily::Phi)
        return;
    if (m_rope.cos.rows() >= seq)
        return;
    m_rope = ropeTableFor(m_config, seq, m_model.sourcePath);
}

Mat Transformer::embed(const TokenBatch &batch) const {
    const ModelConfig &c = m_config;
    require(batch.batch > 0 && batch.seq > 0 && int64_t(batch.tokens.size()) == batch.batch * batch.seq,
            m_model.sourcePath, "the token batch is empty or its size does not match batch x seq");
    const int64_t maxSeq = m_embedding.position.size() ? m_embedding.position.rows() - m_positionOffset
                                                       : c.maxPositions;
    if (batch.seq > maxSeq)
        throw LatheError("sequence length " + std::to_string(batch.seq) + " is above the model's maximum of " +
                             std::to_string(maxSeq) + " positions",
                         "use a shorter --seq-len");
    const int64_t rows = batch.batch * batch.seq;
    Mat h(rows, m_embedding.token.cols()); // narrower than hiddenSize in a sliced model
    for (int64_t r = 0; r < rows; ++r) {
        const int32_t id = batch.tokens[size_t(r)];
        if (id < 0 || id >= m_embedding.token.rows())
            throw LatheError("token id " + std::to_string(id) + " is outside the vocabulary (" +
                                 std::to_string(m_embedding.token.rows()) + " tokens)",
                             "the tokenizer does not match this model");
        h.row(r) = m_embedding.token.row(id);
        if (m_embedding.position.size())
            h.row(r) += m_embedding.position.row(r % batch.seq + m_positionOffset);
        if (m_embedding.tokenType.size()) {
            const int32_t type = batch.tokenTypes.empty() ? 0 : batch.tokenTypes[size_t(r)];
            require(type >= 0 && type < m_embedding.tokenType.rows(), m_model.sourcePath,
                    "token type " + std::to_string(type) + " is out of range");
            h.row(r) += m_embedding.tokenType.row(type);
        }
    }
    if (m_embedding.norm.present()) {
        Mat n;
        cpu::layerNormForward(h, m_embedding.norm, float(c.normEps), n);
        return n;
    }
    return h;
}

void Transformer::applyNorm(const Mat &x, const NormWeights &n, Mat &y) const {
    if (m_config.slicing.active())
        cpu::rmsNormWeightless(x, m_config.slicing.normDivisor, float(m_config.normEps), y);
    else if (m_config.family == ArchFamily::Llama)
        cpu::rmsNormForward(x, n, float(m_config.normEps), y);
    else
        cpu::layerNormForward(x, n, float(m_config.normEps), y);
}

Transformer::CpuBlock Transformer::fuse(BlockWeights w) {
    CpuBlock b;
    // A damaged checkpoint must give an error, not a failed Eigen assertion: the stacked matrices need one width.
    const int64_t in = w.q.w.cols();
    if (w.k.w.cols() != in || w.v.w.cols() != in || (w.gate.present() && w.up.w.cols() != w.gate.w.cols()))
        throw LatheError("a block's q/k/v (or gate/up) weights have different input widths",
                         "the checkpoint is damaged or its config does not match its tensors");
    b.qRows = w.q.w.rows();
    b.kRows = w.k.w.rows();
    b.vRows = w.v.w.rows();
    b.qkv.resize(b.qRows + b.kRows + b.vRows, w.q.w.cols());
    b.qkv << w.q.w, w.k.w, w.v.w;
    w.q.w = Mat();
    w.k.w = Mat();
    w.v.w = Mat();
    if (w.gate.present()) {
        b.ffRows = w.gate.w.rows();
        b.gateUp.resize(2 * b.ffRows, w.gate.w.cols());
        b.gateUp << w.gate.w, w.up.w;
        w.gate.w = Mat();
        w.up.w = Mat();
    }
    b.w = std::move(w);
    return b;
}

Transformer::CpuBlock &Transformer::cpuBlock(int layer) {
    assert(layer >= 0 && layer < numLayers());
    auto &slot = m_blocks[size_t(layer)];
    if (!slot)
        slot = fuse(loadBlockWeights(m_model, layer));
    return *slot;
}

BlockWeights Transformer::block(int layer) {
    const CpuBlock &b = cpuBlock(layer);
    BlockWeights w = b.w;
    w.q.w = b.qkv.topRows(b.qRows);
    w.k.w = b.qkv.middleRows(b.qRows, b.kRows);
    w.v.w = b.qkv.bottomRows(b.vRows);
    if (b.ffRows) {
        w.gate.w = b.gateUp.topRows(b.ffRows);
        w.up.w = b.gateUp.bottomRows(b.ffRows);
    }
    return w;
}

void Transformer::setBlock(int layer, BlockWeights weights) { m_blocks[size_t(layer)] = fuse(std::move(weights)); }

void Transformer::releaseBlock(int layer) { m_blocks[size_t(layer)].reset(); }

namespace {

// Columns [col, col + width) of src, plus a bias when there is one, into dst (resized).
void takeColumns(const Mat &src, int64_t col, int64_t width, const Vec &bias, Mat &dst) {
    dst.resize(src.rows(), width);
    const bool hasBias = bias.size() > 0;
    parallelFor(src.rows(), 256, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const float *in = src.data() + r * src.cols() + col;
            float *out = dst.data() + r * width;
            for (int64_t c = 0; c < width; ++c)
                out[c] = hasBias ? in[c] + bias[c] : in[c];
        }
    });
}

// hidden <- hidden * S^T for a shortcut matrix S (out x in) stored like a linear weight; identity when empty.
void applyShortcut(const Mat &s, Mat &hidden, Mat &scratch) {
    if (!s.size())
        return;
    cpu::linearForward(hidden, s, scratch);
    hidden.swap(scratch);
}

} // namespace

void Transformer::runBlock(int layer, Mat &hidden, const TokenBatch &batch, const BlockHooks *hooks, BlockPart part) {
    const ModelConfig &c = m_config;
    const CpuBlock &fused = cpuBlock(layer);
    const BlockWeights &w = fused.w;
    auto emit = [&](BlockSignal s, const Mat &x) {
        if (hooks && hooks->wants(s))
            hooks->observe(layer, s, x);
    };
    const ArchFamily fam = c.family;
    // GEMMs split over the cores here, BLAS single-threaded (see blas.h).
    const BlasSplitScope splitBlas(engineSplitsBlas());
    const bool bert = fam == ArchFamily::Bert, phi = fam == ArchFamily::Phi;
    assert(part == BlockPart::Whole || (!bert && !phi));
    // Work buffers live in m_scratch: same shapes every block, so no allocation (and no page faults) per block.
    Scratch &S = m_scratch;
    Mat &normed = S.normed, &mlpNormed = S.mlpNormed, &attnOut = S.attnOut;
    const Mat *mlpIn = nullptr;

    if (part != BlockPart::Mlp) {
        ensureRope(batch.seq);
        emit(BlockSignal::BlockInput, hidden);
        if (!bert) {
            applyNorm(hidden, w.attnNorm, normed);
            emit(BlockSignal::AttnInput, normed);
        } else {
            emit(BlockSignal::AttnInput, hidden);
        }
        const Mat &attnIn = bert ? hidden : normed;

        Mat &q = S.q, &k = S.k, &v = S.v, &ctx = S.ctx;
        cpu::linearForward(attnIn, fused.qkv, S.qkv);
        takeColumns(S.qkv, 0, fused.qRows, w.q.b, q);
        takeColumns(S.qkv, fused.qRows, fused.kRows, w.k.b, k);
        takeColumns(S.qkv, fused.qRows + fused.kRows, fused.vRows, w.v.b, v);
        if (m_rope.rotaryDim > 0) {
            cpu::ropeForward(q, batch.seq, int(c.numHeads), int(c.headDim), m_rope);
            cpu::ropeForward(k, batch.seq, int(c.numKvHeads), int(c.headDim), m_rope);
        }
        cpu::AttentionShape shape;
        shape.batch = batch.batch;
        shape.seq = batch.seq;
        shape.heads = int(c.numHeads);
        shape.kvHeads = int(c.numKvHeads);
        shape.headDim = int(c.headDim);
        shape.scale = float(1.0 / std::sqrt(double(c.headDim)));
        shape.causal = !bert;
        shape.keyMask = bert && !batch.mask.empty() ? batch.mask.data() : nullptr;
        cpu::attentionForward(q, k, v, shape, ctx);
        emit(BlockSignal::AttnContext, ctx);
        cpu::linearForward(ctx, w.o, attnOut);
        emit(BlockSignal::AttnOutput, attnOut);

        if (phi) {
            emit(BlockSignal::MlpInput, normed);
            mlpIn = &normed;
        } else if (bert) {
            attnOut += hidden;
            applyNorm(attnOut, w.attnNorm, hidden); // hidden now holds the attention sub-layer's output
            emit(BlockSignal::MlpResidual, hidden);
            emit(BlockSignal::MlpInput, hidden);
            mlpIn = &hidden;
        } else {
            applyShortcut(w.attnShortcut, hidden, S.shortcut);
            hidden += attnOut;
            emit(BlockSignal::MlpResidual, hidden);
            if (part == BlockPart::Attention)
                return;
        }
    }
    if (!mlpIn) { // sequential decoders, whole block or its MLP half: the MLP norm of the residual
        applyNorm(hidden, w.mlpNorm, mlpNormed);
        emit(BlockSignal::MlpInput, mlpNormed);
        mlpIn = &mlpNormed;
    }

    Mat &mid = S.mid, &out = S.out;
    if (fused.ffRows) {
        cpu::linearForward(*mlpIn, fused.gateUp, S.gateUp);
        cpu::swigluStacked(S.gateUp, w.gate.b, w.up.b, mid);
    } else {
        cpu::linearForward(*mlpIn, w.up, mid);
        cpu::activationForward(m_activation, mid);
    }
    emit(BlockSignal::MlpHidden, mid);
    cpu::linearForward(mid, w.down, out);
    emit(BlockSignal::MlpOutput, out);

    if (phi) {
        applyShortcut(w.attnShortcut, hidden, S.shortcut);
        hidden += attnOut;
        hidden += out;
    } else if (bert) {
        out += hidden;
        applyNorm(out, w.mlpNorm, hidden);
    } else {
        applyShortcut(w.mlpShortcut, hidden, S.shortcut);
        hidden += out;
    }
    emit(BlockSignal::BlockOutput, hidden);
    if (!m_options.keepBlocksResident)
        releaseBlock(layer);
}

Mat Transformer::finalHidden(const Mat &hidden) const {
    if (!m_head.finalNorm.present() && !m_config.slicing.active())
        return hidden;
    Mat y;
    applyNorm(hidden, m_head.finalNorm, y);
    return y;
}

Mat Transformer::logits(const Mat &finalHidden) const {
    Mat y;
    logits(finalHidden, y);
    return y;
}

void Transformer::logits(const Mat &finalHidden, Mat &y) const {
    require(isDecoder(), m_model.sourcePath, "BERT has no language-model head here",
            "use the hidden states or pooled output");
    const BlasSplitScope splitBlas(engineSplitsBlas());
    if (m_head.lmHead.present()) {
        cpu::linearForward(finalHidden, m_head.lmHead, y);
    } else {
        // The tied head is the embedding matrix itself: multiply by it in place rather than copying 100+ MB.
        cpu::linearForward(finalHidden, m_embedding.token, y);
    }
}

Mat Transformer::pooled(const Mat &finalHidden, const TokenBatch &batch) const {
    if (!m_head.pooler.present())
        return Mat();
    Mat cls(batch.batch, finalHidden.cols());
    for (int64_t b = 0; b < batch.batch; ++b)
        cls.row(b) = finalHidden.row(b * batch.seq);
    Mat y;
    cpu::linearForward(cls, m_head.pooler, y);
    y = y.array().tanh();
    return y;
}

Mat Transformer::hiddenStates(const TokenBatch &batch, const BlockHooks *hooks, const ProgressCallback &progress) {
    const BlasSplitScope splitBlas(engineSplitsBlas()); // once for the pass rather than per block
    Mat h = embed(batch);
    for (int l = 0; l < numLayers(); ++l) {
        reportProgress(progress, double(l) / double(numLayers() + 1),
                       "block " + std::to_string(l + 1) + "/" + std::to_string(numLayers()));
        runBlock(l, h, batch, hooks);
    }
    return h;
}

Mat Transformer::forward(const TokenBatch &batch, const BlockHooks *hooks, const ProgressCallback &progress) {
    Mat f = finalHidden(hiddenStates(batch, hooks, progress));
    if (!isDecoder())
        return f;
    reportProgress(progress, double(numLayers()) / double(numLayers() + 1), "language-model head");
    Mat y;
    logits(f, y);
    return y;
}

double forwardFlops(const ModelConfig &c, int64_t seq) {
    const bool decoder = c.family != ArchFamily::Bert;
    const double h = double(c.hiddenSize), qd = double(c.numHeads * c.headDim), kvd = double(c.numKvHeads * c.headDim);
    const double ff = double(c.intermediateSize) * (c.family == ArchFamily::Llama ? 3.0 : 2.0);
    const double linearParams = h * qd * 2 + h * kvd * 2 + h * ff;
    const double T = double(seq);
    const double attn = decoder ? 2.0 * qd * T * (T + 1) : 4.0 * qd * T * T;
    double total = double(c.numLayers) * (2.0 * T * linearParams + attn);
    if (decoder)
        total += 2.0 * T * h * double(c.vocabSize);
    return total;
}

} // namespace lathe
