#include "methods/layercheckpoint.h"

#include "base/clock.h"
#include "base/error.h"
#include "base/outputfiles.h"
#include "model/model.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <set>

namespace fs = std::filesystem;
using nlohmann::json;

namespace lathe {

namespace {

constexpr const char *kDamaged = "remove the layer-checkpoint folder to run this point from its first block";
constexpr const char *kTensorPrefix = "tensor.";

std::string blockFile(int layer) {
    char name[40];
    std::snprintf(name, sizeof name, "block-%04d.safetensors", layer);
    return name;
}

// The model's tensors as fp32 blobs (the data owned by `keep`) and their roles, to recreate those the method added.
void addTensors(const Model &model, const std::vector<const TensorInfo *> &tensors, std::vector<SafetensorsBlob> &blobs,
                std::vector<std::vector<float>> &keep, json &roles) {
    for (const TensorInfo *t : tensors) {
        keep.push_back(model.loadFloat(*t));
        blobs.push_back({kTensorPrefix + t->name, DType::F32, t->shape, keep.back().data(), {}});
        roles[t->name] = {{"role", int(t->role)}, {"layer", t->layer}, {"bias", t->isBias}};
    }
}

// Puts the tensors of `file` into `model`: replaces those it has, creates those the method added (by role).
void loadTensors(const SafetensorsFile &file, Model &model) {
    const json roles = json::parse(file.metadata("tensors"));
    for (const SafetensorsEntry &e : file.header().entries) {
        if (e.name.rfind(kTensorPrefix, 0) != 0)
            continue;
        const std::string name = e.name.substr(std::string(kTensorPrefix).size());
        std::vector<int64_t> shape;
        std::vector<float> data = file.floats(e.name, &shape);
        if (model.find(name)) {
            model.setFloat(name, std::move(data), shape);
            continue;
        }
        const json &r = roles.at(name);
        model.setFloat(TensorRole(r.at("role").get<int>()), r.at("layer").get<int>(), r.at("bias").get<bool>(),
                       std::move(data), shape);
        require(model.find(name) != nullptr, file.path(), "the tensor " + name + " cannot be recreated", kDamaged);
    }
}

} // namespace

LayerCheckpoint::LayerCheckpoint(fs::path dir, double intervalSeconds, json identity, Log log, uint64_t keepFree)
    : m_dir(std::move(dir)), m_interval(intervalSeconds), m_identity(std::move(identity)), m_log(std::move(log)),
      m_keepFree(keepFree), m_lastSave(steadySeconds()) {}

LayerCheckpoint::~LayerCheckpoint() = default;

bool LayerCheckpoint::due() const {
    if (m_disabled)
        return false;
    const double since = steadySeconds() - m_lastSave;
    return since >= m_interval && since >= 10.0 * m_lastSaveSeconds;
}

void LayerCheckpoint::save(const Model &model, const State &state,
                           const std::function<BlockRecord(int)> &record) {
    if (m_disabled)
        return;
    const double t0 = steadySeconds();
    try {
        fs::create_directories(m_dir);
        // What this save writes: the signals, the new blocks' and the outer tensors in fp32 (the method's own
        // blobs, masks and bases, are small beside them).
        uint64_t bytes = state.signals.bytes();
        for (const TensorInfo &t : model.tensors())
            if ((t.layer >= m_blocksWritten && t.layer < state.finishedBlocks) ||
                std::find(state.outerTensors.begin(), state.outerTensors.end(), t.name) != state.outerTensors.end())
                bytes += uint64_t(t.numel()) * 4;
        std::error_code ec;
        const fs::space_info space = fs::space(m_dir, ec);
        if (!ec && space.available < bytes + m_keepFree)
            throw LatheError(std::to_string(space.available >> 20) + " MiB free, the checkpoint needs up to " +
                             std::to_string(bytes >> 20) + " MiB and the exports " + std::to_string(m_keepFree >> 20) +
                             " MiB");
        for (int l = m_blocksWritten; l < state.finishedBlocks; ++l) {
            BlockRecord r = record(l);
            std::vector<const TensorInfo *> tensors;
            for (const TensorInfo &t : model.tensors())
                if (t.layer == l)
                    tensors.push_back(&t);
            std::vector<std::vector<float>> keep;
            json roles = json::object();
            keep.reserve(tensors.size());
            addTensors(model, tensors, r.blobs, keep, roles);
            writeSafetensorsFile((m_dir / blockFile(l)).string(), r.blobs,
                                 {{"info", r.info.dump()}, {"tensors", roles.dump()}});
            keep.clear();
        }
        m_blocksWritten = std::max(m_blocksWritten, state.finishedBlocks);
        // The signals first: their data then starts 8-byte aligned in the mapped file (signals() hands a pointer).
        std::vector<SafetensorsBlob> blobs{state.signals};
        blobs.back().name = "signals";
        blobs.insert(blobs.end(), state.blobs.begin(), state.blobs.end());
        std::vector<const TensorInfo *> outer;
        for (const std::string &n : state.outerTensors) {
            const TensorInfo *t = model.find(n);
            require(t && t->layer < 0, m_dir.string(), "no tensor outside the blocks named " + n);
            outer.push_back(t);
        }
        std::vector<std::vector<float>> keep;
        keep.reserve(outer.size());
        json roles = json::object();
        addTensors(model, outer, blobs, keep, roles);
        writeSafetensorsFile((m_dir / "state.safetensors").string(), blobs,
                             {{"finished_blocks", std::to_string(state.finishedBlocks)},
                              {"identity", m_identity.dump()},
                              {"info", state.info.dump()},
                              {"tensors", roles.dump()}});
        m_lastSaveSeconds = steadySeconds() - t0;
        m_lastSave = steadySeconds();
        spdlog::info("layer checkpoint after block {} ({:.1f} s)", state.finishedBlocks, m_lastSaveSeconds);
    } catch (const std::exception &e) {
        m_disabled = true;
        remove(); // its space is the exports' now
        const std::string line = std::string("could not write the layer checkpoint, the run goes on without: ") +
                                 e.what();
        spdlog::warn("{}", line);
        if (m_log)
            m_log(line);
    }
}

std::optional<LayerCheckpoint::Restored> LayerCheckpoint::restore(Model &model) {
    std::error_code ec;
    if (!fs::exists(m_dir / "state.safetensors", ec)) {
        if (fs::exists(m_dir, ec))
            remove();
        return std::nullopt;
    }
    cleanStaleTemporaries(m_dir);
    const std::string path = (m_dir / "state.safetensors").string();
    try {
        Restored r;
        r.m_state = std::make_unique<SafetensorsFile>(path, kDamaged);
        if (json::parse(r.m_state->metadata("identity")) != m_identity) {
            if (m_log)
                m_log("the layer checkpoint in " + m_dir.string() + " is of another run: removed");
            remove();
            return std::nullopt;
        }
        r.m_finished = std::stoi(r.m_state->metadata("finished_blocks"));
        require(r.m_finished >= 0 && r.m_finished <= model.config.numLayers, path, "a wrong block count", kDamaged);
        r.m_info = json::parse(r.m_state->metadata("info"));
        for (int l = 0; l < r.m_finished; ++l) {
            r.m_blocks.push_back(std::make_unique<SafetensorsFile>((m_dir / blockFile(l)).string(), kDamaged));
            const SafetensorsFile &f = *r.m_blocks.back();
            r.m_blockInfo.push_back(json::parse(f.metadata("info")));
            // Every tensor of the block the model has must be in the file: a block is restored whole or not at all.
            std::set<std::string> saved;
            for (const SafetensorsEntry &e : f.header().entries)
                saved.insert(e.name);
            for (const TensorInfo &t : model.tensors())
                require(t.layer != l || saved.count(kTensorPrefix + t.name), f.path(), "no tensor " + t.name, kDamaged);
        }
        require(r.m_state->find("signals") != nullptr, path, "no signals", kDamaged);
        // Only now, with every file read and checked, is the model changed.
        for (const auto &f : r.m_blocks)
            loadTensors(*f, model);
        loadTensors(*r.m_state, model);
        m_blocksWritten = r.m_finished;
        m_lastSave = steadySeconds();
        if (m_log)
            m_log("continuing from the layer checkpoint after block " + std::to_string(r.m_finished) + " of " +
                  std::to_string(model.config.numLayers));
        return r;
    } catch (const std::exception &e) {
        // The model may be half-restored only if loading the tensors failed, which the checks above make a bug.
        if (m_log)
            m_log(std::string("the layer checkpoint cannot be used (") + e.what() + "): the run starts from the first block");
        remove();
        return std::nullopt;
    }
}

void LayerCheckpoint::remove() {
    std::error_code ec;
    fs::remove_all(m_dir, ec);
    m_blocksWritten = 0;
}

const uint8_t *LayerCheckpoint::Restored::blob(const std::string &name, DType dtype,
                                               const std::vector<int64_t> &shape) const {
    return m_state->bytes(name, dtype, shape);
}

const uint8_t *LayerCheckpoint::Restored::blockBlob(int layer, const std::string &name, DType dtype,
                                                    const std::vector<int64_t> &shape) const {
    require(layer >= 0 && layer < m_finished, m_state->path(), "no block " + std::to_string(layer), kDamaged);
    return m_blocks[size_t(layer)]->bytes(name, dtype, shape);
}

int64_t LayerCheckpoint::Restored::signalWidth() const {
    const SafetensorsEntry *e = m_state->find("signals");
    require(e->shape.size() == 2, m_state->path(), "signals of the wrong shape", kDamaged);
    return e->shape[1];
}

const float *LayerCheckpoint::Restored::signals(int64_t rows, int64_t width) const {
    return reinterpret_cast<const float *>(m_state->bytes("signals", DType::F32, {rows, width}));
}

} // namespace lathe
