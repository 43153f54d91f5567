#include "compareview.h"

#include "formhelpers.h"

#include "workbenchdocument.h"

#include "model/model.h"

#include <qcustomplot.h>

#include <QComboBox>
#include <QDir>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QLabel>
#include <QVBoxLayout>

#include <cmath>

namespace lathe {

CompareView::CompareView(const WorkbenchDocument *document, QWidget *parent)
    : PlotView("compare", parent), m_doc(document) {
    auto *row = new QHBoxLayout;
    m_mode = new QComboBox(this);
    allowNarrow(m_mode);
    m_mode->setObjectName("compareMode");
    m_mode->addItems({tr("Spectrum of the selected matrix"), tr("Per block: mean effective rank"),
                      tr("Per block: mean power-law alpha"), tr("Per block: sparsity of the linears"),
                      tr("Per block: non-zero parameters")});
    row->addWidget(new QLabel(tr("Show"), this));
    row->addWidget(m_mode, 1); // as wide as there is room for; narrower (elided) on a small screen
    static_cast<QVBoxLayout *>(layout())->addLayout(row);
    legendBelow();
    connect(m_mode, &QComboBox::currentIndexChanged, this, [this] { redraw(); });
    connect(m_doc, &WorkbenchDocument::analysisChanged, this, [this] { redraw(); });
    showPlaceholder(tr("Nothing to compare yet: Analysis > Compare With Model... (the original and its export, or two "
                       "models)"));
}

void CompareView::setComparison(std::shared_ptr<const ModelComparison> comparison) {
    m_comparison = std::move(comparison);
    redraw();
}

void CompareView::setMode(Mode mode) { m_mode->setCurrentIndex(int(mode)); }

void CompareView::setSelectedTensor(const QString &name) {
    m_tensor = name;
    if (m_mode->currentIndex() == Spectrum)
        redraw();
}

void CompareView::redraw() {
    if (!m_comparison)
        return;
    // A run's export is a folder called "model": name it by its run folder too.
    const auto shortName = [](const QString &path) {
        const QFileInfo f(path);
        return f.fileName().startsWith("model") && f.isDir() ? f.dir().dirName() + "/" + f.fileName() : f.fileName();
    };
    const QString names[2] = {shortName(m_comparison->paths[0]), shortName(m_comparison->paths[1])};
    const QColor colors[2] = {QColor(31, 119, 180), QColor(214, 39, 40)};
    m_plot->clearPlottables();
    m_plot->clearItems();
    m_plot->legend->setVisible(true);
    m_plot->yAxis2->setVisible(false);
    m_plot->xAxis->setScaleType(QCPAxis::stLinear);
    m_plot->yAxis->setScaleType(QCPAxis::stLinear);
    m_plot->xAxis->setTicker(QSharedPointer<QCPAxisTicker>::create());
    m_plot->yAxis->setTicker(QSharedPointer<QCPAxisTicker>::create());
    const Mode mode = Mode(m_mode->currentIndex());
    if (mode == Spectrum) {
        const AnalyzeResult *analyses[2] = {m_doc->analysis().get(), m_comparison->otherAnalysis.get()};
        if (m_tensor.isEmpty()) {
            showPlaceholder(tr("Select a matrix in the tree: its singular values in both models are overlaid"));
            return;
        }
        int drawn = 0;
        for (int side = 0; side < 2; ++side) {
            if (!analyses[side])
                continue;
            const auto it = analyses[side]->data.spectra.find(m_tensor.toStdString());
            if (it == analyses[side]->data.spectra.end())
                continue;
            QVector<double> x, y;
            for (size_t i = 0; i < it->second.values.size(); ++i)
                if (it->second.values[i] > 0) {
                    x << double(i + 1);
                    y << it->second.values[i];
                }
            QCPGraph *g = m_plot->addGraph();
            g->setName(QStringLiteral("%1: %2 (effective rank %3)")
                           .arg(side == 0 ? "A" : "B", names[side])
                           .arg(it->second.stats.effectiveRank, 0, 'f', 1));
            g->setData(x, y, true);
            g->setPen(QPen(colors[side], 1.6, side == 0 ? Qt::SolidLine : Qt::DashLine));
            ++drawn;
        }
        if (drawn == 0) {
            showPlaceholder(tr("%1 has no spectrum in either model").arg(m_tensor));
            return;
        }
        m_plot->xAxis->setScaleType(QCPAxis::stLogarithmic);
        m_plot->yAxis->setScaleType(QCPAxis::stLogarithmic);
        m_plot->xAxis->setTicker(QSharedPointer<QCPAxisTickerLog>::create());
        m_plot->yAxis->setTicker(QSharedPointer<QCPAxisTickerLog>::create());
        m_plot->xAxis->setLabel(tr("index i"));
        m_plot->yAxis->setLabel(tr("singular value"));
        m_plot->rescaleAxes();
        showResult(tr("Singular values of %1").arg(m_tensor), tr("A: %1, B: %2").arg(names[0], names[1]));
        return;
    }
    QVector<double> x, a, b, diff;
    for (const BlockComparison &bc : m_comparison->blocks) {
        x << double(bc.layer);
        double v[2];
        for (int side = 0; side < 2; ++side)
            v[side] = mode == EffectiveRank ? bc.effectiveRank[side]
                      : mode == Alpha       ? bc.alpha[side]
                      : mode == Sparsity    ? 100.0 * (1.0 - double(bc.nonZero[side]) / double(std::max<int64_t>(bc.parameters[side], 1)))
                                            : double(bc.nonZero[side]) / 1e6;
        a << v[0];
        b << v[1];
        diff << v[1] - v[0];
    }
    auto *bars = new QCPBars(m_plot->xAxis, m_plot->yAxis);
    bars->setName(tr("B - A"));
    bars->setData(x, diff, true);
    bars->setWidth(0.6);
    bars->setBrush(QColor(150, 150, 150, 120));
    bars->setPen(Qt::NoPen);
    for (int side = 0; side < 2; ++side) {
        QCPGraph *g = m_plot->addGraph();
        g->setName(QStringLiteral("%1: %2").arg(side == 0 ? "A" : "B", names[side]));
        g->setData(x, side == 0 ? a : b, true);
        g->setPen(QPen(colors[side], 1.8, side == 0 ? Qt::SolidLine : Qt::DashLine));
        g->setScatterStyle(QCPScatterStyle(side == 0 ? QCPScatterStyle::ssCircle : QCPScatterStyle::ssSquare, 5));
    }
    const QString what = mode == EffectiveRank ? tr("mean effective rank of the block's matrices")
                         : mode == Alpha       ? tr("mean power-law alpha of the block's matrices")
                         : mode == Sparsity    ? tr("zeros in the block's linears (%)")
                                               : tr("non-zero weights of the block's linears (millions)");
    m_plot->xAxis->setLabel(tr("block"));
    m_plot->yAxis->setLabel(what);
    m_plot->rescaleAxes();
    m_plot->xAxis->setRange(-0.7, double(m_comparison->blocks.size()) - 0.3);
    showResult(tr("Per block: %1").arg(what), tr("A: %1, B: %2; bars: B - A").arg(names[0], names[1]));
}

} // namespace lathe
