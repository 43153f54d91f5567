#include "sensitivityview.h"

#include "formhelpers.h"

#include "base/error.h"

#include <qcustomplot.h>

#include <QComboBox>
#include <QDoubleSpinBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QPushButton>
#include <QTableWidget>
#include <QVBoxLayout>

#include <algorithm>
#include <cmath>

namespace lathe {

namespace {

enum Column { BlockColumn, ChangeColumn, OutlierColumn, SparsityColumn, ColumnCount };

double changePercent(const SensitivityUnit &u, double dense) { return (u.perplexity / dense - 1) * 100; }

} // namespace

SensitivityView::SensitivityView(QWidget *parent) : PlotView("sensitivity", parent) {
    auto *controls = new QHBoxLayout;
    m_source = new QComboBox(this);
    allowNarrow(m_source);
    m_source->setObjectName("budgetSource");
    m_source->addItem(tr("sensitivity (perplexity change)"));
    m_source->addItem(tr("OWL outlier ratios"));
    m_source->setToolTip(tr("What spreads the per-block sparsities: blocks that hurt more when pruned, or that hold "
                            "more outlier weights (Yin et al. 2024), are pruned less"));
    m_target = new QDoubleSpinBox(this);
    m_target->setObjectName("budgetTarget");
    m_target->setRange(0, 0.99);
    m_target->setDecimals(3);
    m_target->setSingleStep(0.05);
    m_target->setValue(0.5);
    m_target->setToolTip(tr("Mean sparsity over the blocks"));
    m_lambda = new QDoubleSpinBox(this);
    m_lambda->setObjectName("budgetLambda");
    m_lambda->setRange(0, 0.3);
    m_lambda->setDecimals(3);
    m_lambda->setSingleStep(0.01);
    m_lambda->setValue(0.08);
    m_lambda->setToolTip(tr("Spread: the sparsities span target - lambda .. target + lambda (OWL's lambda)"));
    m_compress = new QPushButton(tr("Compress with These Budgets..."), this);
    m_compress->setObjectName("compressWithBudgets");
    // Two rows, so that the tab fits beside the docks on a 1280 x 720 screen.
    controls->addWidget(new QLabel(tr("Budget from"), this));
    controls->addWidget(m_source, 1);
    auto *numbers = new QHBoxLayout;
    numbers->addWidget(new QLabel(tr("mean sparsity"), this));
    numbers->addWidget(m_target);
    numbers->addWidget(new QLabel(tr("lambda"), this));
    numbers->addWidget(m_lambda);
    numbers->addStretch();
    numbers->addWidget(m_compress);
    legendBelow();
    auto *box = static_cast<QVBoxLayout *>(layout());
    box->setStretchFactor(m_plot, 1);
    box->addLayout(controls);
    box->addLayout(numbers);
    m_table = new QTableWidget(0, ColumnCount, this);
    m_table->setObjectName("budgetTable");
    m_table->setHorizontalHeaderLabels(
        {tr("Block"), tr("Perplexity change"), tr("Outlier share"), tr("Sparsity (editable)")});
    m_table->horizontalHeader()->setSectionResizeMode(QHeaderView::Stretch);
    m_table->verticalHeader()->setVisible(false);
    // The plot and the table share what height there is (2 : 1, the table at most 220 px, at least 3 rows),
    // so that on a 720-pixel screen neither is squeezed to nothing.
    m_table->setMaximumHeight(220);
    m_table->setMinimumHeight(100);
    m_table->setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Ignored);
    m_plot->setMinimumHeight(160);
    box->addWidget(m_table, 1);
    box->setStretchFactor(m_plot, 2);
    m_kinds = new QLabel(this);
    m_kinds->setObjectName("kindRanking");
    m_kinds->setWordWrap(true);
    box->addWidget(m_kinds, 0);

    connect(m_source, &QComboBox::currentIndexChanged, this, [this] { propose(); });
    connect(m_target, &QDoubleSpinBox::valueChanged, this, [this] { propose(); });
    connect(m_lambda, &QDoubleSpinBox::valueChanged, this, [this] { propose(); });
    connect(m_table, &QTableWidget::itemChanged, this, [this](QTableWidgetItem *item) {
        if (!m_filling && item->column() == SparsityColumn)
            redraw();
    });
    connect(m_compress, &QPushButton::clicked, this, [this] {
        const std::vector<double> b = budgets();
        if (!b.empty())
            emit budgetsRequested(b, target());
    });
    m_compress->setEnabled(false);
    showPlaceholder(tr("No sensitivity sweep yet: Analysis > Sensitivity Sweep (uses the calibration text)"));
}

void SensitivityView::setResult(std::shared_ptr<const SensitivityResult> result, const QString &title,
                                const QString &subtitle) {
    m_result = std::move(result);
    m_title = title;
    m_subtitle = subtitle;
    const bool owl = std::any_of(m_result->blocks.begin(), m_result->blocks.end(),
                                 [](const SensitivityUnit &u) { return u.outlierRatio > 0; });
    // Without Wanda scores there are no outlier ratios to budget from.
    qobject_cast<QStandardItemModel *>(m_source->model())->item(1)->setEnabled(owl);
    if (!owl)
        m_source->setCurrentIndex(0);
    std::vector<std::pair<double, QString>> kinds;
    for (const SensitivityUnit &u : m_result->kinds)
        kinds.emplace_back(changePercent(u, m_result->densePerplexity), QString::fromStdString(u.name));
    std::sort(kinds.rbegin(), kinds.rend());
    QStringList parts;
    for (const auto &[change, name] : kinds)
        parts << QStringLiteral("%1 %2%3%").arg(name, change >= 0 ? "+" : "").arg(change, 0, 'f', 1);
    m_kinds->setText(tr("Each kind of linear pruned in every block, most sensitive first: %1").arg(parts.join(", ")));
    propose();
}

void SensitivityView::propose() {
    if (!m_result)
        return;
    const bool owl = m_source->currentIndex() == 1;
    std::vector<double> proposed;
    try {
        proposed = proposeLayerSparsity(owl ? outlierScores(*m_result) : sensitivityScores(*m_result), target(),
                                        m_lambda->value());
    } catch (const LatheError &) {
        return; // the spin boxes keep the values in range
    }
    m_filling = true;
    m_table->setRowCount(int(m_result->blocks.size()));
    for (size_t i = 0; i < m_result->blocks.size(); ++i) {
        const SensitivityUnit &u = m_result->blocks[i];
        const auto fixed = [](const QString &text) {
            auto *item = new QTableWidgetItem(text);
            item->setFlags(item->flags() & ~Qt::ItemIsEditable);
            return item;
        };
        m_table->setItem(int(i), BlockColumn, fixed(QString::number(u.layer)));
        m_table->setItem(int(i), ChangeColumn,
                         fixed(QStringLiteral("%1%").arg(changePercent(u, m_result->densePerplexity), 0, 'f', 2)));
        m_table->setItem(int(i), OutlierColumn, fixed(QStringLiteral("%1%").arg(u.outlierRatio * 100, 0, 'f', 3)));
        m_table->setItem(int(i), SparsityColumn, new QTableWidgetItem(QString::number(proposed[i], 'f', 4)));
    }
    m_filling = false;
    redraw();
}

std::optional<double> SensitivityView::cellSparsity(int row) const {
    const QTableWidgetItem *item = m_table->item(row, SparsityColumn);
    bool ok = false;
    const double v = item ? item->text().trimmed().toDouble(&ok) : 0;
    if (!ok || !(v >= 0 && v <= 0.99))
        return std::nullopt;
    return v;
}

std::vector<double> SensitivityView::budgets() const {
    std::vector<double> out;
    for (int r = 0; r < m_table->rowCount(); ++r) {
        const std::optional<double> v = cellSparsity(r);
        if (!v)
            return {};
        out.push_back(*v);
    }
    return out;
}

nlohmann::json SensitivityView::state() const {
    if (!m_result)
        return nullptr;
    return {{"result", sensitivityToJson(*m_result)}, {"title", m_title.toStdString()},
            {"subtitle", m_subtitle.toStdString()}, {"from_outliers", m_source->currentIndex() == 1},
            {"target", m_target->value()}, {"lambda", m_lambda->value()}, {"budgets", budgets()}};
}

void SensitivityView::restore(const nlohmann::json &j) {
    if (!j.is_object())
        return;
    auto result = std::make_shared<const SensitivityResult>(sensitivityFromJson(j.at("result")));
    m_filling = true; // the controls first, then one proposal from the result
    m_target->setValue(j.value("target", 0.5));
    m_lambda->setValue(j.value("lambda", 0.08));
    m_filling = false;
    setResult(result, QString::fromStdString(j.value("title", "")), QString::fromStdString(j.value("subtitle", "")));
    setBudgetSource(j.value("from_outliers", false));
    if (j.contains("budgets") && j["budgets"].is_array() && int(j["budgets"].size()) == m_table->rowCount())
        for (int r = 0; r < m_table->rowCount(); ++r)
            setCellSparsity(r, j["budgets"][size_t(r)].get<double>());
}

double SensitivityView::target() const { return m_target->value(); }
void SensitivityView::setBudgetSource(bool fromOutliers) { m_source->setCurrentIndex(fromOutliers ? 1 : 0); }
void SensitivityView::setTarget(double t) { m_target->setValue(t); }
void SensitivityView::setLambda(double l) { m_lambda->setValue(l); }

void SensitivityView::setCellSparsity(int block, double sparsity) {
    if (QTableWidgetItem *item = m_table->item(block, SparsityColumn))
        item->setText(QString::number(sparsity, 'f', 4));
}

void SensitivityView::redraw() {
    if (!m_result)
        return;
    const std::vector<double> b = budgets();
    // Mark the cells that do not hold a sparsity.
    m_filling = true;
    for (int r = 0; r < m_table->rowCount(); ++r)
        if (QTableWidgetItem *item = m_table->item(r, SparsityColumn))
            item->setBackground(cellSparsity(r) ? QBrush() : QBrush(QColor(255, 200, 200)));
    m_filling = false;
    m_compress->setEnabled(!b.empty());
    m_plot->clearPlottables();
    QVector<double> x, change, sparsity;
    double mean = 0;
    for (size_t i = 0; i < m_result->blocks.size(); ++i) {
        x << double(m_result->blocks[i].layer);
        change << changePercent(m_result->blocks[i], m_result->densePerplexity);
        if (!b.empty()) {
            sparsity << b[i] * 100;
            mean += b[i] / double(b.size());
        }
    }
    auto *bars = new QCPBars(m_plot->xAxis, m_plot->yAxis);
    bars->setName(tr("perplexity change with only this block pruned"));
    bars->setData(x, change, true);
    bars->setWidth(0.7);
    bars->setBrush(QColor(31, 119, 180, 170));
    bars->setPen(Qt::NoPen);
    if (!sparsity.isEmpty()) {
        QCPGraph *g = m_plot->addGraph(m_plot->xAxis, m_plot->yAxis2);
        g->setName(tr("proposed sparsity"));
        g->setData(x, sparsity, true);
        g->setPen(QPen(QColor(214, 39, 40), 2));
        g->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, 5));
    }
    m_plot->xAxis->setLabel(tr("block"));
    m_plot->yAxis->setLabel(tr("perplexity change (%)"));
    m_plot->yAxis2->setVisible(true);
    m_plot->yAxis2->setLabel(tr("sparsity (%)"));
    m_plot->legend->setVisible(true);
    m_plot->rescaleAxes();
    m_plot->xAxis->setRange(-0.7, double(m_result->blocks.size()) - 0.3);
    m_plot->yAxis->setRangeLower(std::min(0.0, m_plot->yAxis->range().lower));
    m_plot->yAxis2->setRange(0, 100);
    const QString note =
        tr("%1\ndense perplexity %2 on %3 tokens; mean sparsity %4%")
            .arg(m_subtitle)
            .arg(m_result->densePerplexity, 0, 'f', 3)
            .arg(m_result->evalTokens)
            .arg(b.empty() ? QString("-") : QString::number(mean * 100, 'f', 1));
    showResult(m_title, note);
}

} // namespace lathe
