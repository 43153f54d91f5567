#pragma once

#include "analysis/compressionestimate.h"
#include "analysis/importance.h"
#include "engine/calibration.h"

#include <nlohmann/json.hpp>

#include <QWidget>

class QCheckBox;
class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QPushButton;
class QSlider;
class QSpinBox;

namespace lathe {

// The compression settings the views and the summary follow: method (the registered methods whose masks follow an
// importance score), sparsity ratio, pattern,
// low-rank ratio rho, calibration text and size. Values persist in QSettings. changed() fires on every edit
// (slider drags included); collectRequested() when the user asks for calibration activations.
class ParameterPanel : public QWidget {
    Q_OBJECT
public:
    explicit ParameterPanel(QWidget *parent = nullptr);

    QString methodName() const;   // a registered method with a preview score (magnitude, wanda)
    // The score the views preview: the method's, or Taylor's gradient importance when "Score" says so.
    ImportanceKind method() const;
    CompressionPlan plan() const;
    QString patternText() const;
    double rankRatio() const;
    QString calibrationPath() const;
    CalibrationParams calibrationParams() const;

    void setSparsity(double ratio); // as if the user moved the slider
    void setSummary(const QString &html);
    void setRankInfo(const QString &text);
    void setCalibrationStatus(const QString &text);
    QString summaryText() const;
    // Every setting as JSON (a saved session) and back; unknown or missing keys keep their current values.
    nlohmann::json state() const;
    void setState(const nlohmann::json &state);

signals:
    void changed();
    void collectRequested();

private:
    void save() const;

    QComboBox *m_method = nullptr;
    QComboBox *m_score = nullptr;
    QCheckBox *m_gradients = nullptr;
    QSlider *m_sparsity = nullptr;
    QDoubleSpinBox *m_sparsitySpin = nullptr;
    QComboBox *m_pattern = nullptr;
    QSlider *m_rank = nullptr;
    QLabel *m_rankLabel = nullptr;
    QLineEdit *m_calibFile = nullptr;
    QSpinBox *m_samples = nullptr;
    QSpinBox *m_seqLen = nullptr;
    QPushButton *m_collect = nullptr;
    QLabel *m_calibStatus = nullptr;
    QLabel *m_summary = nullptr;
};

} // namespace lathe
