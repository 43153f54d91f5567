#include "resultsview.h"

#include <nlohmann/json.hpp>
#include <qcustomplot.h>

#include <QFileInfo>
#include <QHeaderView>
#include <QTableWidget>
#include <QVBoxLayout>

#include <algorithm>

namespace lathe {

namespace {

const QStringList kColumns = {QObject::tr("Model"), QObject::tr("Run"), QObject::tr("Sparsity"), QObject::tr("Perplexity"),
                              QObject::tr("Change"), QObject::tr("Parameters"), QObject::tr("MB (zeros in place)"),
                              QObject::tr("MB (compact)"), QObject::tr("Method time"), QObject::tr("Export")};

QTableWidgetItem *cell(const QString &text, bool number = true) {
    auto *it = new QTableWidgetItem(text);
    it->setFlags(it->flags() & ~Qt::ItemIsEditable);
    if (number)
        it->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
    return it;
}

} // namespace

ResultsView::ResultsView(QWidget *parent) : PlotView("results", parent) {
    m_table = new QTableWidget(0, int(kColumns.size()), this);
    m_table->setObjectName("resultsTable");
    m_table->setHorizontalHeaderLabels(kColumns);
    m_table->horizontalHeader()->setStretchLastSection(true);
    m_table->verticalHeader()->hide();
    m_table->setMaximumHeight(220);
    static_cast<QVBoxLayout *>(layout())->addWidget(m_table);
    showPlaceholder(tr("No compression runs yet: Compress > Run Compression..."));
}

void ResultsView::clearResults() {
    m_series.clear();
    m_densePerplexity.clear();
    m_table->setRowCount(0);
    showPlaceholder(tr("No compression runs yet: Compress > Run Compression..."));
}

void ResultsView::setCurrentModel(const QString &model) {
    m_model = model;
    redraw();
}

void ResultsView::addResults(const QString &model, const QString &label, const QString &resultsJson) {
    const nlohmann::json j = nlohmann::json::parse(resultsJson.toStdString(), nullptr, false);
    if (!j.is_object())
        return;
    m_model = model;
    const double dense = j["dense"].value("perplexity", 0.0);
    const QString modelName = QFileInfo(model).fileName();
    auto addRow = [&](const QStringList &values) {
        const int r = m_table->rowCount();
        m_table->insertRow(r);
        m_table->setItem(r, 0, cell(modelName, false));
        m_table->item(r, 0)->setToolTip(model);
        for (int c = 0; c < values.size(); ++c)
            m_table->setItem(r, c + 1, cell(values[c], c > 0 && c < 8));
    };
    if (dense > 0) {
        m_densePerplexity[model] = dense;
        const double mb = double(j["dense"].value("bytes", uint64_t(0))) / 1e6;
        addRow({tr("dense"), "0", QString::number(dense, 'f', 3), QString(),
                QString::number(j["dense"].value("params", int64_t(0))), QString::number(mb, 'f', 1),
                QString::number(mb, 'f', 1), QString(), QString()});
    }
    for (const auto &run : j["runs"]) {
        const double s = run.value("sparsity", 0.0), ppl = run.value("perplexity", 0.0);
        const double base = m_densePerplexity.value(model, 0.0);
        const QString change = base > 0 && ppl > 0 ? QStringLiteral("%1%2%").arg(ppl >= base ? "+" : "")
                                                         .arg(100.0 * (ppl / base - 1.0), 0, 'f', 1)
                                                   : QString();
        addRow({label, QString::number(s), ppl > 0 ? QString::number(ppl, 'f', 3) : tr("not evaluated"), change,
                QString::number(run.value("params", int64_t(0))),
                QString::number(double(run.value("bytes_dense", uint64_t(0))) / 1e6, 'f', 1),
                QString::number(double(run.value("bytes_compact", uint64_t(0))) / 1e6, 'f', 1),
                QStringLiteral("%1 s").arg(run.value("method_seconds", 0.0), 0, 'f', 1),
                QString::fromStdString(run.value("export_dir", std::string()))});
        if (ppl > 0)
            m_series[model][label].push_back({s, ppl});
    }
    m_table->resizeColumnsToContents();
    redraw();
}

void ResultsView::redraw() {
    m_plot->clearPlottables();
    m_plot->clearItems();
    const QMap<QString, QVector<Point>> series = m_series.value(m_model);
    if (series.isEmpty()) {
        showPlaceholder(m_table->rowCount() == 0 ? tr("No compression runs yet: Compress > Run Compression...")
                                                 : tr("No evaluated runs of %1 yet (give an evaluation text to plot "
                                                      "perplexity)")
                                                       .arg(QFileInfo(m_model).fileName()));
        return;
    }
    static const QColor colours[] = {QColor(31, 119, 180), QColor(214, 39, 40), QColor(44, 160, 44),
                                     QColor(255, 127, 14), QColor(148, 103, 189), QColor(140, 86, 75)};
    int k = 0;
    double maxS = 0.5;
    for (auto it = series.begin(); it != series.end(); ++it, ++k) {
        QVector<Point> pts = it.value();
        std::sort(pts.begin(), pts.end(), [](const Point &a, const Point &b) { return a.sparsity < b.sparsity; });
        QVector<double> x, y;
        for (const Point &p : pts) {
            x << p.sparsity;
            y << p.perplexity;
            maxS = std::max(maxS, p.sparsity);
        }
        QCPGraph *g = m_plot->addGraph();
        g->setName(it.key());
        g->setData(x, y, true);
        g->setPen(QPen(colours[k % 6], 2));
        g->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, 6));
    }
    const double dense = m_densePerplexity.value(m_model, 0.0);
    if (dense > 0) {
        QCPGraph *d = m_plot->addGraph();
        d->setName(tr("dense"));
        d->setData(QVector<double>{0, maxS * 1.05}, QVector<double>{dense, dense});
        d->setPen(QPen(Qt::gray, 1.5, Qt::DashLine));
    }
    m_plot->xAxis->setLabel(tr("sparsity (fraction removed)"));
    m_plot->yAxis->setLabel(tr("perplexity"));
    m_plot->yAxis->setScaleType(QCPAxis::stLogarithmic);
    m_plot->yAxis->setTicker(QSharedPointer<QCPAxisTickerLog>::create());
    m_plot->legend->setVisible(true);
    m_plot->rescaleAxes();
    m_plot->xAxis->setRange(0, maxS * 1.05);
    m_plot->yAxis->scaleRange(1.2, m_plot->yAxis->range().center());
    showResult(tr("Perplexity against sparsity: %1").arg(QFileInfo(m_model).fileName()),
               tr("%1 series").arg(series.size()));
}

} // namespace lathe
