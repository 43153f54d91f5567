#include "analysis/modelspectra.h"

#include "numeric/backend.h"

#include "base/parallel.h"
#include "model/model.h"
#include "numeric/blas.h"
#include "numeric/linalg.h"
#include "numeric/randomizedsvd.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <numeric>
#include <thread>

namespace lathe {

namespace {

bool isSpectrumRole(TensorRole role) { return role != TensorRole::Buffer && role != TensorRole::Unknown; }

double costOf(const Model &model, const SpectrumTarget &t) {
    const TensorInfo *info = model.find(t.tensor);
    if (!info || info->shape.size() != 2)
        return 0;
    double rows = double(info->shape[0]), cols = double(info->shape[1]);
    if (t.stackedQkv)
        rows *= 3;
    return rows * cols * std::min(rows, cols);
}

} // namespace

std::vector<SpectrumTarget> weightTargets(const Model &model) {
    std::vector<SpectrumTarget> out;
    for (const TensorInfo &t : model.tensors())
        if (t.shape.size() == 2 && !t.isBias && isSpectrumRole(t.role) && t.shape[0] > 1 && t.shape[1] > 1)
            out.push_back({t.name, t.name, t.layer, -1, false});
    return out;
}

std::vector<SpectrumTarget> stackedQkvTargets(const Model &model) {
    std::vector<SpectrumTarget> out;
    for (int l = 0; l < int(model.config.numLayers); ++l) {
        const TensorInfo *q = model.find(TensorRole::AttnQ, l);
        const TensorInfo *qkv = model.find(TensorRole::AttnQkv, l);
        if (q && model.find(TensorRole::AttnK, l) && model.find(TensorRole::AttnV, l))
            out.push_back({"model.layers." + std::to_string(l) + ".qkv_stacked", q->name, l, -1, true});
        else if (qkv)
            out.push_back({qkv->name, qkv->name, l, -1, false});
    }
    return out;
}

std::vector<SpectrumTarget> headTargets(const Model &model, const std::string &tensor) {
    const TensorInfo *t = model.find(tensor);
    if (!t || t->shape.size() != 2)
        return {};
    int heads = 0;
    switch (t->role) {
    case TensorRole::AttnQ:
    case TensorRole::AttnO: heads = int(model.config.numHeads); break;
    case TensorRole::AttnK:
    case TensorRole::AttnV: heads = int(model.config.numKvHeads ? model.config.numKvHeads : model.config.numHeads); break;
    default: return {};
    }
    std::vector<SpectrumTarget> out;
    for (int h = 0; h < heads; ++h)
        out.push_back({tensor + "#head" + std::to_string(h), tensor, t->layer, h, false});
    return out;
}

Mat loadTarget(const Model &model, const SpectrumTarget &target) {
    const TensorInfo *t = model.find(target.tensor);
    if (!t || t->shape.size() != 2)
        throw LatheError("no matrix named " + target.tensor + " in the model");
    auto load = [&model](const TensorInfo &info) {
        std::vector<float> data = model.loadFloat(info);
        return Mat(Eigen::Map<Mat>(data.data(), info.shape[0], info.shape[1]));
    };
    if (target.stackedQkv) {
        const TensorInfo *k = model.find(TensorRole::AttnK, target.layer);
        const TensorInfo *v = model.find(TensorRole::AttnV, target.layer);
        if (!k || !v)
            throw LatheError("layer " + std::to_string(target.layer) + " has no separate k and v to stack");
        const Mat mq = load(*t), mk = load(*k), mv = load(*v);
        Mat s(mq.rows() + mk.rows() + mv.rows(), mq.cols());
        s << mq, mk, mv;
        return s;
    }
    Mat m = load(*t);
    if (target.head < 0)
        return m;
    const int64_t headDim = model.config.headDim;
    if (t->role == TensorRole::AttnO)
        return m.middleCols(int64_t(target.head) * headDim, headDim);
    return m.middleRows(int64_t(target.head) * headDim, headDim);
}

MatrixSpectrum computeSpectrum(const Mat &m, const std::string &key, const SpectraParams &params,
                               const std::atomic<bool> *cancelled) {
    MatrixSpectrum r;
    r.key = key;
    r.rows = m.rows();
    r.cols = m.cols();
    const auto start = std::chrono::steady_clock::now();
    if (params.topK > 0 && params.topK < std::min(m.rows(), m.cols())) {
        RandomizedSvdParams rp;
        rp.rank = params.topK;
        rp.powerIterations = params.powerIterations;
        RandomizedSvdResult rs = randomizedSvd(m, rp);
        r.values = std::move(rs.values);
        r.truncated = true;
        r.errorBound = rs.errorBound;
        r.errorEstimate = rs.errorEstimate;
        r.method = "randomized";
    } else if (params.device) {
        r.values = params.device->singularValues(m.data(), m.rows(), m.cols());
        r.method = params.device->name() == "cpu" ? "gesdd" : "gesvd-" + params.device->name();
    } else if (params.gramAspect > 0 && double(std::max(m.rows(), m.cols())) >=
                                            params.gramAspect * double(std::min(m.rows(), m.cols()))) {
        r.values = singularValuesViaGram(m.data(), m.rows(), m.cols(), cancelled);
        if (cancelled && cancelled->load())
            throw CancelledError();
        r.method = "gram-syevd";
    } else {
        r.values = singularValues(m.data(), m.rows(), m.cols());
        r.method = "gesdd";
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    r.stats = spectrumStats(r.values);
    return r;
}

std::vector<MatrixSpectrum> computeSpectra(const Model &model, const std::vector<SpectrumTarget> &targets,
                                           const SpectraParams &params, const ProgressCallback &progress) {
    std::vector<MatrixSpectrum> results(targets.size());
    std::vector<size_t> order(targets.size());
    std::iota(order.begin(), order.end(), 0);
    std::vector<double> cost(targets.size());
    for (size_t i = 0; i < targets.size(); ++i)
        cost[i] = costOf(model, targets[i]);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return cost[a] > cost[b]; });
    const double totalCost = std::max(1.0, std::accumulate(cost.begin(), cost.end(), 0.0));

    // A device solver takes one matrix at a time (the backend is not thread-safe; the GPU serialises anyway).
    const int threads = params.device ? 1
                                      : std::max(1, std::min<int>(params.threads > 0 ? params.threads : hardwareThreads(),
                                                                  int(targets.size())));
    // One matrix per thread, each single-threaded: LAPACK's bidiagonalisation is half BLAS-2 and scales poorly, so
    // factorizing matrices side by side beats threading inside one.
    const BlasSplitScope singleThreadedBlas;

    std::atomic<size_t> next{0};
    std::atomic<bool> cancel{false};
    std::mutex mu;
    std::condition_variable cv;
    double doneCost = 0;
    size_t done = 0, running = size_t(threads);
    std::exception_ptr error;
    std::string lastKey;

    auto worker = [&] {
        for (;;) {
            const size_t i = next.fetch_add(1);
            if (i >= order.size() || cancel.load())
                break;
            const size_t t = order[i];
            try {
                MatrixSpectrum s = computeSpectrum(loadTarget(model, targets[t]), targets[t].key, params, &cancel);
                std::lock_guard lock(mu);
                results[t] = std::move(s);
                doneCost += cost[t];
                ++done;
                lastKey = targets[t].key;
            } catch (const CancelledError &) {
                break;
            } catch (...) {
                std::lock_guard lock(mu);
                if (!error)
                    error = std::current_exception();
                cancel = true;
            }
            cv.notify_all();
        }
        std::lock_guard lock(mu);
        --running;
        cv.notify_all();
    };
    std::vector<std::thread> pool;
    for (int i = 0; i < threads; ++i)
        pool.emplace_back(worker);
    bool userCancelled = false;
    {
        std::unique_lock lock(mu);
        while (running > 0) {
            cv.wait_for(lock, std::chrono::milliseconds(200));
            if (progress && !userCancelled) {
                const Progress p{doneCost / totalCost, "spectra: " + std::to_string(done) + "/" +
                                                           std::to_string(targets.size()) + " matrices" +
                                                           (lastKey.empty() ? "" : " (" + lastKey + ")")};
                lock.unlock();
                const bool goOn = progress(p);
                lock.lock();
                if (!goOn) {
                    userCancelled = true;
                    cancel = true;
                }
            }
        }
    }
    for (auto &t : pool)
        t.join();
    if (error)
        std::rethrow_exception(error);
    if (userCancelled)
        throw CancelledError();
    return results;
}

} // namespace lathe
