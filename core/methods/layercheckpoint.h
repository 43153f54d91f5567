#pragma once

#include "io/safetensorsfile.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace lathe {

class Model;

// Checkpoints of a layer-by-layer method (Wanda, SliceGPT), so that a killed run continues from its last saved
// block instead of the first (`lathe-cli compress --resume`). A checkpoint is a folder of safetensors files:
//   block-NNNN.safetensors  block N's tensors as the method left them (every tensor of the model with layer N, fp32,
//                           under "tensor.NAME") and what the method recorded for the block (its masks, say, and a
//                           JSON report), written once, by the first save after the block finished;
//   state.safetensors       the number of finished blocks, the method's state (JSON, and blobs such as SliceGPT's
//                           basis), the tensors outside the blocks the method changed (the rotated embeddings), and
//                           the calibration signals at the boundary after the last finished block (rows x width,
//                           fp32). Written last and atomically, so it only ever names blocks whose files are complete.
// Restoring puts the saved tensors into a freshly prepared model and hands back the state and the signals; the
// method then continues as the uninterrupted run would, with the same bits (the signals are saved, not recomputed).
// Cost per save: the signals (rows x width x 4 bytes) and the blocks finished since the last save. Saves come when
// `intervalSeconds` have passed since the start or the last save, and never more often than every ten times the
// last save's duration (so they take at most ~10% of the run); 0 saves after every block. A save that would leave
// less free space than `keepFree` (what the run's exports need) is not made, and one that fails (a full disk) is
// undone; either is said in the log and switches checkpoints off (the folder removed), and the run goes on.
class LayerCheckpoint {
public:
    using Log = std::function<void(const std::string &)>;
    // `identity` must be equal for a checkpoint to be restored (method, ratio, model, calibration windows): a folder
    // holding another one is removed, and said.
    LayerCheckpoint(std::filesystem::path dir, double intervalSeconds, nlohmann::json identity, Log log = {},
                    uint64_t keepFree = 0);
    ~LayerCheckpoint();

    const std::filesystem::path &dir() const { return m_dir; }

    // What a method records for one block besides its tensors: a report (JSON) and blobs.
    struct BlockRecord {
        nlohmann::json info = nlohmann::json::object();
        std::vector<SafetensorsBlob> blobs;
    };
    struct State {
        int finishedBlocks = 0;
        nlohmann::json info = nlohmann::json::object();   // the method's state
        std::vector<SafetensorsBlob> blobs;                // the method's larger state (names must not start "tensor.")
        std::vector<std::string> outerTensors;             // tensors outside the blocks to save (layer -1)
        SafetensorsBlob signals;                           // shape {rows, width}, F32
    };

    // Whether a save is due after the block just finished (see the class comment).
    bool due() const;
    // Saves: the files of blocks not yet written up to `state.finishedBlocks`, with `record(l)` for each, then the
    // state. Never throws (a failure is logged and turns checkpoints off), except CancelledError never arises here.
    void save(const Model &model, const State &state, const std::function<BlockRecord(int)> &record);

    // A restored checkpoint: the saved tensors are already in the model.
    class Restored {
    public:
        int finishedBlocks() const { return m_finished; }
        const nlohmann::json &info() const { return m_info; }
        const nlohmann::json &blockInfo(int layer) const { return m_blockInfo[size_t(layer)]; }
        // A blob of the state or of block `layer`, checked to be of that type (and shape, when given).
        const uint8_t *blob(const std::string &name, DType dtype, const std::vector<int64_t> &shape = {}) const;
        const uint8_t *blockBlob(int layer, const std::string &name, DType dtype,
                                 const std::vector<int64_t> &shape = {}) const;
        // The signals: rows x width fp32, row-major.
        const float *signals(int64_t rows, int64_t width) const;
        int64_t signalWidth() const;

    private:
        friend class LayerCheckpoint;
        int m_finished = 0;
        nlohmann::json m_info;
        std::vector<nlohmann::json> m_blockInfo;
        std::unique_ptr<SafetensorsFile> m_state;
        std::vector<std::unique_ptr<SafetensorsFile>> m_blocks;
    };
    // Restores the checkpoint in the folder into `model` (prepared as the method prepares it before its first
    // block: opened, norms fused), or nullopt when there is none (or it is of another identity, or damaged: then
    // it is removed and the run starts from the first block, which the log says).
    std::optional<Restored> restore(Model &model);

    // Removes the folder (the point it belongs to has finished).
    void remove();

private:
    std::filesystem::path m_dir;
    double m_interval;
    nlohmann::json m_identity;
    Log m_log;
    uint64_t m_keepFree;
    double m_lastSave;
    double m_lastSaveSeconds = 0;
    int m_blocksWritten = 0;
    bool m_disabled = false;
};

} // namespace lathe
