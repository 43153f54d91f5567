#include "parameterpanel.h"

#include "formhelpers.h"

#include "methods/registry.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSettings>
#include <QSignalBlocker>
#include <QSlider>
#include <QSpinBox>
#include <QToolButton>
#include <QVBoxLayout>

#include <cmath>

namespace lathe {

namespace {
// Pattern combo entries: (label, n, m, perRow)
struct PatternChoice {
    const char *label;
    int n, m;
    bool perRow;
};
const PatternChoice kPatterns[] = {{"unstructured, per matrix", 0, 0, false},
                                   {"unstructured, per row", 0, 0, true},
                                   {"2:4", 2, 4, false},
                                   {"4:8", 4, 8, false}};
} // namespace

ParameterPanel::ParameterPanel(QWidget *parent) : QWidget(parent) {
    QSettings s;
    auto *outer = new QVBoxLayout(this);

    auto *prune = new QGroupBox(tr("Pruning"), this);
    auto *pf = new QFormLayout(prune);
    m_method = new QComboBox(prune);
    allowNarrow(m_method);
    m_method->setObjectName("method");
    // The registered methods whose masks follow an importance score the views can preview.
    for (const CompressionMethod *method : compressionMethods()) {
        const MethodInfo &info = method->info();
        if (!info.previewScore)
            continue;
        m_method->addItem(QString::fromStdString(info.title), QString::fromStdString(info.name));
        m_method->setItemData(m_method->count() - 1, QString::fromStdString(info.summary), Qt::ToolTipRole);
    }
    m_method->setCurrentIndex(std::max(0, m_method->findData(s.value("params/methodName", "magnitude").toString())));
    pf->addRow(tr("Method"), m_method);
    m_score = new QComboBox(prune);
    allowNarrow(m_score);
    m_score->setObjectName("score");
    m_score->addItem(tr("The method's"), QString());
    m_score->addItem(tr("Taylor |W ⊙ ∇W| (gradients)"), QString("taylor"));
    m_score->addItem(tr("LoSparse rows of |S ⊙ ∇S|, S = W − LR (gradients)"), QString("losparse"));
    m_score->setToolTip(tr("The importance the Importance and Sparsity views rank by; Taylor and LoSparse need "
                           "gradients collected with the calibration (tick 'with gradients'); LoSparse's low-rank "
                           "part L R has the rank of ρ below, and whole rows of S rank by their mean"));
    m_score->setCurrentIndex(std::max(0, m_score->findData(s.value("params/score", QString()).toString())));
    pf->addRow(tr("Score"), m_score);

    m_sparsity = new QSlider(Qt::Horizontal, prune);
    m_sparsity->setObjectName("sparsitySlider");
    m_sparsity->setRange(0, 95);
    m_sparsitySpin = new QDoubleSpinBox(prune);
    m_sparsitySpin->setObjectName("sparsitySpin");
    m_sparsitySpin->setRange(0, 95);
    m_sparsitySpin->setSuffix(" %");
    m_sparsitySpin->setDecimals(0);
    const int sp = s.value("params/sparsity", 50).toInt();
    m_sparsity->setValue(sp);
    m_sparsitySpin->setValue(sp);
    auto *spRow = new QHBoxLayout;
    spRow->addWidget(m_sparsity, 1);
    spRow->addWidget(m_sparsitySpin);
    pf->addRow(tr("Sparsity"), spRow);

    m_pattern = new QComboBox(prune);

    allowNarrow(m_pattern);
    m_pattern->setObjectName("pattern");
    for (const auto &p : kPatterns)
        m_pattern->addItem(tr(p.label));
    m_pattern->setCurrentIndex(std::clamp(s.value("params/pattern", 0).toInt(), 0, int(std::size(kPatterns)) - 1));
    pf->addRow(tr("Pattern"), m_pattern);
    outer->addWidget(prune);

    auto *lowRank = new QGroupBox(tr("Low rank (LoSparse)"), this);
    auto *lf = new QFormLayout(lowRank);
    m_rank = new QSlider(Qt::Horizontal, lowRank);
    m_rank->setObjectName("rankSlider");
    m_rank->setRange(0, 50);
    m_rank->setValue(s.value("params/rankRatio", 5).toInt());
    m_rankLabel = new QLabel(lowRank);
    m_rankLabel->setObjectName("rankLabel");
    m_rankLabel->setWordWrap(true);
    // The slider and a number field show the same ρ (in hundredths: the slider's steps).
    auto *rankSpin = new QDoubleSpinBox(lowRank);
    rankSpin->setObjectName("rankSpin");
    rankSpin->setRange(0.0, 0.5);
    rankSpin->setSingleStep(0.01);
    rankSpin->setDecimals(2);
    rankSpin->setValue(m_rank->value() / 100.0);
    connect(m_rank, &QSlider::valueChanged, rankSpin, [rankSpin](int v) {
        const QSignalBlocker block(rankSpin);
        rankSpin->setValue(v / 100.0);
    });
    connect(rankSpin, &QDoubleSpinBox::valueChanged, m_rank, [this](double v) { m_rank->setValue(int(std::lround(v * 100))); });
    auto *rankRow = new QHBoxLayout;
    rankRow->addWidget(m_rank, 1);
    rankRow->addWidget(rankSpin);
    lf->addRow(tr("Rank ratio ρ"), rankRow);
    lf->addRow(m_rankLabel);
    outer->addWidget(lowRank);

    auto *calib = new QGroupBox(tr("Calibration (Wanda)"), this);
    auto *cf = new QFormLayout(calib);
    m_calibFile = new QLineEdit(s.value("params/calibration").toString(), calib);
    m_calibFile->setObjectName("calibrationFile");
    m_calibFile->setPlaceholderText(tr("text file"));
    auto *browse = new QToolButton(calib);
    browse->setText("...");
    auto *fileRow = new QHBoxLayout;
    fileRow->addWidget(m_calibFile, 1);
    fileRow->addWidget(browse);
    cf->addRow(tr("Text"), fileRow);
    m_samples = new QSpinBox(calib);
    m_samples->setObjectName("samples");
    m_samples->setRange(1, 4096);
    m_samples->setValue(s.value("params/samples", 32).toInt());
    m_seqLen = new QSpinBox(calib);
    m_seqLen->setObjectName("seqLen");
    m_seqLen->setRange(16, 32768);
    m_seqLen->setValue(s.value("params/seqLen", 256).toInt());
    auto *sizeRow = new QHBoxLayout;
    sizeRow->addWidget(m_samples);
    sizeRow->addWidget(new QLabel(QStringLiteral("×"), calib));
    sizeRow->addWidget(m_seqLen);
    sizeRow->addWidget(new QLabel(tr("tokens"), calib));
    cf->addRow(tr("Samples"), sizeRow);
    m_collect = new QPushButton(tr("Collect activations"), calib);
    m_collect->setObjectName("collect");
    m_calibStatus = new QLabel(tr("not collected"), calib);
    m_calibStatus->setWordWrap(true);
    m_gradients = new QCheckBox(tr("with gradients (Taylor, LoSparse scores)"), calib);
    m_gradients->setObjectName("gradients");
    m_gradients->setToolTip(tr("Also a forward and backward pass per sample for |W ⊙ ∇W| (about 3x the time)"));
    m_gradients->setChecked(s.value("params/gradients", false).toBool());
    cf->addRow(m_gradients);
    cf->addRow(m_collect);
    cf->addRow(m_calibStatus);
    outer->addWidget(calib);

    auto *sum = new QGroupBox(tr("After compression"), this);
    auto *sl = new QVBoxLayout(sum);
    m_summary = new QLabel(sum);
    m_summary->setObjectName("summary");
    m_summary->setWordWrap(true);
    m_summary->setTextInteractionFlags(Qt::TextSelectableByMouse);
    sl->addWidget(m_summary);
    outer->addWidget(sum);
    outer->addStretch();

    auto emitChanged = [this] {
        save();
        emit changed();
    };
    connect(m_sparsity, &QSlider::valueChanged, this, [this, emitChanged](int v) {
        const QSignalBlocker b(m_sparsitySpin);
        m_sparsitySpin->setValue(v);
        emitChanged();
    });
    connect(m_sparsitySpin, &QDoubleSpinBox::valueChanged, this, [this](double v) { m_sparsity->setValue(int(v)); });
    connect(m_pattern, &QComboBox::currentIndexChanged, this, [this, emitChanged](int i) {
        const bool nm = kPatterns[i].m > 0;
        m_sparsity->setEnabled(!nm);
        m_sparsitySpin->setEnabled(!nm);
        emitChanged();
    });
    m_sparsity->setEnabled(kPatterns[m_pattern->currentIndex()].m == 0);
    m_sparsitySpin->setEnabled(m_sparsity->isEnabled());
    connect(m_method, &QComboBox::currentIndexChanged, this, emitChanged);
    connect(m_score, &QComboBox::currentIndexChanged, this, emitChanged);
    connect(m_gradients, &QCheckBox::toggled, this, [this] { save(); });
    connect(m_rank, &QSlider::valueChanged, this, emitChanged);
    connect(m_samples, &QSpinBox::valueChanged, this, [this] { save(); });
    connect(m_seqLen, &QSpinBox::valueChanged, this, [this] { save(); });
    connect(m_calibFile, &QLineEdit::editingFinished, this, [this] { save(); });
    connect(browse, &QToolButton::clicked, this, [this] {
        const QString f = QFileDialog::getOpenFileName(this, tr("Calibration text"), m_calibFile->text(),
                                                       tr("Text (*.txt *.tokens *.raw);;All files (*)"));
        if (!f.isEmpty()) {
            m_calibFile->setText(f);
            save();
        }
    });
    connect(m_collect, &QPushButton::clicked, this, &ParameterPanel::collectRequested);
}

QString ParameterPanel::methodName() const { return m_method->currentData().toString(); }

ImportanceKind ParameterPanel::method() const {
    ImportanceKind kind;
    if (parseImportance(m_score->currentData().toString().toStdString(), kind))
        return kind;
    const CompressionMethod *m = findMethod(methodName().toStdString());
    return m && m->info().previewScore ? *m->info().previewScore : ImportanceKind::Magnitude;
}

CompressionPlan ParameterPanel::plan() const {
    CompressionPlan p;
    const PatternChoice &c = kPatterns[m_pattern->currentIndex()];
    p.pattern.ratio = c.m ? 0.0 : m_sparsity->value() / 100.0;
    p.pattern.n = c.n;
    p.pattern.m = c.m;
    p.pattern.perRow = c.perRow;
    p.rankRatio = rankRatio();
    return p;
}

QString ParameterPanel::patternText() const { return QString::fromStdString(plan().pattern.describe()); }

double ParameterPanel::rankRatio() const { return m_rank->value() / 100.0; }

QString ParameterPanel::calibrationPath() const { return m_calibFile->text().trimmed(); }

CalibrationParams ParameterPanel::calibrationParams() const {
    CalibrationParams p;
    p.samples = m_samples->value();
    p.seqLen = m_seqLen->value();
    p.gradients = m_gradients->isChecked();
    return p;
}

void ParameterPanel::setSparsity(double ratio) { m_sparsity->setValue(int(ratio * 100 + 0.5)); }

void ParameterPanel::setSummary(const QString &html) { m_summary->setText(html); }

QString ParameterPanel::summaryText() const { return m_summary->text(); }

void ParameterPanel::setRankInfo(const QString &text) { m_rankLabel->setText(text); }

void ParameterPanel::setCalibrationStatus(const QString &text) { m_calibStatus->setText(text); }

nlohmann::json ParameterPanel::state() const {
    return {{"method", methodName().toStdString()},
            {"score", m_score->currentData().toString().toStdString()},
            {"gradients", m_gradients->isChecked()},
            {"sparsity_percent", m_sparsity->value()},
            {"pattern", m_pattern->currentText().toStdString()},
            {"rank_percent", m_rank->value()},
            {"calibration", m_calibFile->text().toStdString()},
            {"samples", m_samples->value()},
            {"seq_len", m_seqLen->value()}};
}

void ParameterPanel::setState(const nlohmann::json &j) {
    if (!j.is_object())
        return;
    const auto text = [&](const char *k) -> std::optional<QString> {
        if (j.contains(k) && j[k].is_string())
            return QString::fromStdString(j[k].get<std::string>());
        return std::nullopt;
    };
    const auto number = [&](const char *k) -> std::optional<int> {
        if (j.contains(k) && j[k].is_number_integer())
            return j[k].get<int>();
        return std::nullopt;
    };
    if (auto v = text("method"); v && m_method->findData(*v) >= 0)
        m_method->setCurrentIndex(m_method->findData(*v));
    if (auto v = text("score"); v && m_score->findData(*v) >= 0)
        m_score->setCurrentIndex(m_score->findData(*v));
    if (j.contains("gradients") && j["gradients"].is_boolean())
        m_gradients->setChecked(j["gradients"].get<bool>());
    if (auto v = number("sparsity_percent"))
        m_sparsity->setValue(*v);
    if (auto v = text("pattern"); v && m_pattern->findText(*v) >= 0)
        m_pattern->setCurrentIndex(m_pattern->findText(*v));
    if (auto v = number("rank_percent"))
        m_rank->setValue(*v);
    if (auto v = text("calibration"))
        m_calibFile->setText(*v);
    if (auto v = number("samples"))
        m_samples->setValue(*v);
    if (auto v = number("seq_len"))
        m_seqLen->setValue(*v);
}

void ParameterPanel::save() const {
    QSettings s;
    s.setValue("params/methodName", methodName());
    s.setValue("params/score", m_score->currentData());
    s.setValue("params/gradients", m_gradients->isChecked());
    s.setValue("params/sparsity", m_sparsity->value());
    s.setValue("params/pattern", m_pattern->currentIndex());
    s.setValue("params/rankRatio", m_rank->value());
    s.setValue("params/calibration", m_calibFile->text());
    s.setValue("params/samples", m_samples->value());
    s.setValue("params/seqLen", m_seqLen->value());
}

} // namespace lathe
