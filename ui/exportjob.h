#pragma once

#include "base/dtype.h"
#include "job.h"

#include <QString>

#include <memory>
#include <optional>

namespace lathe {

class Model;

// Writes the open model as a Hugging Face folder or a GGUF file for llama.cpp (export/hfwriter.h,
// export/ggufwriter.h: atomic, never over the model's own files, only over an earlier Lathe export when `overwrite`)
// on a worker thread; the model is shared, read-only, for the job's lifetime. Result: exported(), with the path and
// a one-line summary; errors arrive as Job::failed().
class ExportJob : public Job {
    Q_OBJECT
public:
    enum class Format { HfFolder, Gguf };
    // `dtype`: the weights' type (HF: f32, f16, bf16 or unset for as stored; GGUF: f32, f16 or q8_0).
    ExportJob(std::shared_ptr<const Model> model, QString path, Format format, std::optional<DType> dtype, bool overwrite);

signals:
    void exported(QString path, QString summary);

protected:
    void execute() override;

private:
    std::shared_ptr<const Model> m_model;
    QString m_path;
    Format m_format;
    std::optional<DType> m_dtype;
    bool m_overwrite;
};

} // namespace lathe
