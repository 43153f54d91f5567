#include "resultsview.h"

#include "workbenchdocument.h"

#include <qcustomplot.h>

#include <QFileInfo>
#include <QHeaderView>
#include <QTableWidget>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSpinBox>
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

ResultsView::ResultsView(const WorkbenchDocument *document, QWidget *parent)
    : PlotView("results", parent), m_doc(document) {
    m_table = new QTableWidget(0, int(kColumns.size()), this);
    m_table->setObjectName("resultsTable");
    m_table->setHorizontalHeaderLabels(kColumns);
    m_table->horizontalHeader()->setStretchLastSection(true);
    m_table->verticalHeader()->hide();
    m_table->setMaximumHeight(220);
    static_cast<QVBoxLayout *>(layout())->addWidget(m_table);
    auto *gen = new QHBoxLayout;
    m_prompt = new QLineEdit(tr("Once upon a time"), this);
    m_prompt->setObjectName("generationPrompt");
    m_maxNew = new QSpinBox(this);
    m_maxNew->setRange(1, 512);
    m_maxNew->setValue(32);
    m_maxNew->setSuffix(tr(" tokens"));
    m_generate = new QPushButton(tr("Generate with Every Model"), this);
    m_generate->setObjectName("generate");
    m_generate->setToolTip(tr("Greedy continuation of the prompt by the open model and by every run's exported model"));
    gen->addWidget(new QLabel(tr("Prompt"), this));
    gen->addWidget(m_prompt, 1);
    gen->addWidget(m_maxNew);
    gen->addWidget(m_generate);
    static_cast<QVBoxLayout *>(layout())->addLayout(gen);
    m_generations = new QTableWidget(0, 2, this);
    m_generations->setObjectName("generations");
    m_generations->setHorizontalHeaderLabels({tr("Model"), tr("Greedy continuation")});
    m_generations->horizontalHeader()->setStretchLastSection(true);
    m_generations->verticalHeader()->hide();
    m_generations->setWordWrap(true);
    m_generations->setMaximumHeight(200);
    static_cast<QVBoxLayout *>(layout())->addWidget(m_generations);
    connect(m_generate, &QPushButton::clicked, this, &ResultsView::requestGeneration);
    connect(m_doc, &WorkbenchDocument::runsChanged, this, [this] {
        rebuildTable();
        redraw();
    });
    connect(m_doc, &WorkbenchDocument::modelChanged, this, &ResultsView::redraw);
    redraw();
}

void ResultsView::requestGeneration() {
    QStringList labels, paths;
    if (!m_doc->modelPath().isEmpty()) {
        labels << tr("%1 (dense)").arg(QFileInfo(m_doc->modelPath()).fileName());
        paths << m_doc->modelPath();
    }
    for (const WorkbenchDocument::Run &run : m_doc->runs())
        for (const CompressionRunRecord &x : run.result.runs)
            if (!x.exportDir.empty()) {
                labels << QStringLiteral("%1 %2").arg(run.label).arg(x.sparsity);
                paths << QString::fromStdString(x.exportDir);
            }
    if (!paths.isEmpty())
        emit generateRequested(labels, paths, m_prompt->text(), m_maxNew->value());
}

void ResultsView::setGenerations(const QStringList &labels, const QStringList &texts) {
    m_generations->setRowCount(int(labels.size()));
    for (int i = 0; i < labels.size(); ++i) {
        m_generations->setItem(i, 0, new QTableWidgetItem(labels[i]));
        m_generations->setItem(i, 1, new QTableWidgetItem(i < texts.size() ? texts[i] : QString()));
    }
    m_generations->resizeColumnToContents(0);
    m_generations->resizeRowsToContents();
}

void ResultsView::rebuildTable() {
    m_table->setRowCount(0);
    for (const WorkbenchDocument::Run &run : m_doc->runs()) {
        const CompressionRunResult &r = run.result;
        const QString modelName = QFileInfo(run.model).fileName();
        auto addRow = [&](const QStringList &values) {
            const int row = m_table->rowCount();
            m_table->insertRow(row);
            m_table->setItem(row, 0, cell(modelName, false));
            m_table->item(row, 0)->setToolTip(run.model);
            for (int c = 0; c < values.size(); ++c)
                m_table->setItem(row, c + 1, cell(values[c], c > 0 && c < 8));
        };
        if (r.densePerplexity > 0) {
            const double mb = double(r.denseBytes) / 1e6;
            addRow({tr("dense"), "0", QString::number(r.densePerplexity, 'f', 3), QString(), QString::number(r.denseParams),
                    QString::number(mb, 'f', 1), QString::number(mb, 'f', 1), QString(), QString()});
        }
        // The change is against this model's dense perplexity: this job's, else an earlier job's.
        double base = r.densePerplexity;
        for (const WorkbenchDocument::Run &other : m_doc->runsOf(run.model))
            if (base <= 0)
                base = other.result.densePerplexity;
        for (const CompressionRunRecord &x : r.runs) {
            const double ppl = x.perplexity;
            const QString change = base > 0 && ppl > 0 ? QStringLiteral("%1%2%").arg(ppl >= base ? "+" : "")
                                                             .arg(100.0 * (ppl / base - 1.0), 0, 'f', 1)
                                                       : QString();
            addRow({run.label, QString::number(x.sparsity), ppl > 0 ? QString::number(ppl, 'f', 3) : tr("not evaluated"),
                    change, QString::number(x.params), QString::number(double(x.bytesDense) / 1e6, 'f', 1),
                    QString::number(double(x.bytesCompact) / 1e6, 'f', 1),
                    QStringLiteral("%1 s").arg(x.methodSeconds, 0, 'f', 1), QString::fromStdString(x.exportDir)});
        }
    }
    m_table->resizeColumnsToContents();
}

void ResultsView::redraw() {
    m_plot->clearPlottables();
    m_plot->clearItems();
    const QString model = m_doc->modelPath();
    struct Point {
        double sparsity, perplexity;
    };
    QMap<QString, QVector<Point>> series;
    double dense = 0;
    for (const WorkbenchDocument::Run &run : m_doc->runsOf(model)) {
        if (run.result.densePerplexity > 0)
            dense = run.result.densePerplexity;
        for (const CompressionRunRecord &x : run.result.runs)
            if (x.perplexity > 0)
                series[run.label].push_back({x.sparsity, x.perplexity});
    }
    if (series.isEmpty()) {
        showPlaceholder(m_doc->runs().isEmpty() ? tr("No compression runs yet: Compress > Run Compression...")
                                                : tr("No evaluated runs of %1 yet (give an evaluation text to plot "
                                                     "perplexity)")
                                                      .arg(QFileInfo(model).fileName()));
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
    showResult(tr("Perplexity against sparsity: %1").arg(QFileInfo(model).fileName()),
               tr("%1 series").arg(series.size()));
}

} // namespace lathe
