#include "reportwriter.h"

#include "analysis/modelsummary.h"
#include "layerview.h"
#include "mainwindow.h"
#include "parameterpanel.h"
#include "plotview.h"
#include "resultsview.h"
#include "sensitivityview.h"
#include "workbenchdocument.h"

#include "base/error.h"
#include "engine/evaluation.h"
#include "model/model.h"

#include <QDateTime>
#include <QDir>
#include <QFileInfo>
#include <QImage>
#include <QPageSize>
#include <QPrinter>
#include <QSaveFile>
#include <QLineEdit>
#include <QTabWidget>
#include <QTableWidget>
#include <QTextDocument>
#include <QTimer>

namespace lathe {

namespace {

QString esc(const QString &s) { return s.toHtmlEscaped(); }
QString esc(const std::string &s) { return QString::fromStdString(s).toHtmlEscaped(); }

QString num(double v, int decimals) { return QString::number(v, 'f', decimals); }

bool writeText(const QString &path, const QString &text, QString *error) {
    QSaveFile f(path);
    if (!f.open(QIODevice::WriteOnly) || f.write(text.toUtf8()) < 0 || !f.commit()) {
        *error = QObject::tr("%1: %2").arg(path, f.errorString());
        return false;
    }
    return true;
}

} // namespace

ReportWriter::ReportWriter(MainWindow *window, QString folder, QObject *parent)
    : QObject(parent), m_window(window), m_folder(std::move(folder)) {}

void ReportWriter::start() {
    QDir dir(m_folder);
    if (dir.exists() && !dir.isEmpty()) {
        emit finished({}, {}, tr("%1 is not empty: choose a new or empty folder for the report").arg(m_folder));
        return;
    }
    if (!QDir().mkpath(m_folder)) {
        emit finished({}, {}, tr("cannot create %1").arg(m_folder));
        return;
    }
    for (int i = 0; i < m_window->views()->count(); ++i)
        if (auto *v = qobject_cast<PlotView *>(m_window->views()->widget(i)); v && v->hasData())
            m_views.push_back(v);
    QTimer::singleShot(0, this, &ReportWriter::nextFigure);
}

void ReportWriter::nextFigure() {
    if (m_next >= m_views.size()) {
        finish();
        return;
    }
    PlotView *v = m_views[m_next++];
    const QString base = QString("%1-%2").arg(m_next, 2, 10, QChar('0')).arg(v->name());
    QString error;
    const QString png = QDir(m_folder).filePath(base + ".png"), svg = QDir(m_folder).filePath(base + ".svg");
    if (!v->exportFigure(png, &error) || !v->exportFigure(svg, &error)) {
        emit finished({}, {}, tr("figure %1: %2").arg(v->name(), error));
        return;
    }
    m_figureHtml << QString("<figure><img src=\"%1.png\" width=\"640\"><figcaption>%2 (<a href=\"%1.svg\">SVG</a>)"
                            "</figcaption></figure>")
                        .arg(base, esc(v->title()));
    QTimer::singleShot(0, this, &ReportWriter::nextFigure);
}

void ReportWriter::finish() {
    const WorkbenchDocument *doc = m_window->document();
    QString h;
    h += "<html><head><meta charset=\"utf-8\"><title>Lathe session report</title><style>"
         "body{font-family:sans-serif;max-width:60em;margin:auto} table{border-collapse:collapse}"
         "td,th{border:1px solid #999;padding:2px 6px;text-align:right} th{background:#eee}"
         "td.l,th.l{text-align:left} pre{background:#f4f4f4;padding:6px;white-space:pre-wrap}</style></head><body>";
    h += tr("<h1>Lathe session report</h1><p>%1</p>").arg(QDateTime::currentDateTime().toString(Qt::ISODate));
    h += tr("<h2>Machine</h2><p>%1</p>").arg(m_window->aboutText());
    if (const Model *model = m_window->model()) {
        h += tr("<h2>Model</h2><p>%1</p><pre>%2</pre>")
                 .arg(esc(doc->modelPath()), esc(formatSummary(summarizeModel(*model))));
        h += tr("<h2>Plan</h2><p>%1</p>").arg(m_window->parameterPanel()->summaryText());
        const LayerView *layers = m_window->layerView();
        if (!layers->layers().empty()) {
            h += tr("<h3>Per block</h3><p>%1</p><table><tr><th>block</th><th>parameters</th><th>planned sparsity</th>"
                    "<th>mean effective rank</th></tr>")
                     .arg(esc(layers->planText()));
            for (const LayerBar &b : layers->layers())
                h += QString("<tr><td>%1</td><td>%2</td><td>%3%</td><td>%4</td></tr>")
                         .arg(b.layer)
                         .arg(QString::fromStdString(humanCount(int64_t(b.parameters))))
                         .arg(num(b.sparsity * 100, 1))
                         .arg(b.effectiveRank > 0 ? num(b.effectiveRank, 1) : QString("-"));
            h += "</table>";
        }
    }
    if (const SensitivityResult *r = m_window->sensitivityView()->result()) {
        const std::vector<double> budgets = m_window->sensitivityView()->budgets();
        h += tr("<h2>Sensitivity</h2><p>Dense perplexity %1 on %2 tokens; each block pruned alone. Budget: mean "
                "sparsity %3.</p><table><tr><th>block</th><th>perplexity</th><th>change</th><th>outlier share</th>"
                "<th>budget</th></tr>")
                 .arg(num(r->densePerplexity, 3))
                 .arg(r->evalTokens)
                 .arg(num(m_window->sensitivityView()->target(), 3));
        for (size_t i = 0; i < r->blocks.size(); ++i) {
            const SensitivityUnit &u = r->blocks[i];
            h += QString("<tr><td>%1</td><td>%2</td><td>%3%</td><td>%4%</td><td>%5</td></tr>")
                     .arg(u.layer)
                     .arg(num(u.perplexity, 3))
                     .arg(num((u.perplexity / r->densePerplexity - 1) * 100, 2))
                     .arg(num(u.outlierRatio * 100, 3))
                     .arg(i < budgets.size() ? num(budgets[i], 4) : QString("-"));
        }
        h += "</table>";
    }
    if (!m_figureHtml.isEmpty())
        h += tr("<h2>Figures</h2>") + m_figureHtml.join("\n");
    if (const QTableWidget *g = m_window->resultsView()->generations(); g->rowCount() > 0) {
        h += tr("<h2>Sample generations</h2><p>Prompt: <i>%1</i>, greedy.</p><table><tr><th class=l>model</th>"
                "<th class=l>continuation</th></tr>")
                 .arg(esc(m_window->resultsView()->prompt()->text()));
        for (int r = 0; r < g->rowCount(); ++r)
            h += QString("<tr><td class=l>%1</td><td class=l>%2</td></tr>")
                     .arg(esc(g->item(r, 0) ? g->item(r, 0)->text() : QString()),
                          esc(g->item(r, 1) ? g->item(r, 1)->text() : QString()));
        h += "</table>";
    }
    h += tr("<h2>Compression runs</h2>");
    if (doc->runs().isEmpty())
        h += tr("<p>None in this session.</p>");
    else {
        h += tr("<table><tr><th class=l>model</th><th class=l>method</th><th>sparsity</th><th>perplexity</th>"
                "<th>dense perplexity</th><th>parameters</th><th>MB (dense)</th><th>MB (compact)</th>"
                "<th class=l>run folder</th></tr>");
        for (const WorkbenchDocument::Run &run : doc->runs())
            for (const CompressionRunRecord &x : run.result.runs)
                h += QString("<tr><td class=l>%1</td><td class=l>%2</td><td>%3</td><td>%4</td><td>%5</td><td>%6</td>"
                             "<td>%7</td><td>%8</td><td class=l>%9</td></tr>")
                         .arg(esc(QFileInfo(run.model).fileName()), esc(run.label))
                         .arg(num(x.sparsity, 3))
                         .arg(x.perplexity > 0 ? num(x.perplexity, 3) : QString("-"))
                         .arg(run.result.densePerplexity > 0 ? num(run.result.densePerplexity, 3) : QString("-"))
                         .arg(QString::fromStdString(humanCount(x.params)))
                         .arg(num(double(x.bytesDense) / 1e6, 1))
                         .arg(num(double(x.bytesCompact) / 1e6, 1))
                         .arg(esc(run.folder));
        h += "</table>";
        h += tr("<h3>Job specs</h3><p>Each run again: <code>lathe-cli compress SPEC.json</code>.</p>");
        for (const WorkbenchDocument::Run &run : doc->runs()) {
            QString spec;
            try {
                spec = QString::fromStdString(readTextFile(QDir(run.folder).filePath("spec.json").toStdString()));
            } catch (const LatheError &e) {
                spec = tr("(not readable: %1)").arg(QString::fromStdString(e.what()));
            }
            h += QString("<h4>%1 — %2</h4><pre>%3</pre>").arg(esc(run.label), esc(run.folder), esc(spec));
        }
    }
    h += "</body></html>";

    QString error;
    const QString html = QDir(m_folder).filePath("report.html"), pdf = QDir(m_folder).filePath("report.pdf");
    if (!writeText(html, h, &error)) {
        emit finished({}, {}, error);
        return;
    }
    QTextDocument document;
    // The figures as resources of the document, by the names the HTML uses: nothing is left to resolve.
    for (const QString &png : QDir(m_folder).entryList({"*.png"}))
        document.addResource(QTextDocument::ImageResource, QUrl(png), QImage(QDir(m_folder).filePath(png)));
    document.setHtml(h);
    QPrinter printer(QPrinter::HighResolution);
    printer.setOutputFormat(QPrinter::PdfFormat);
    printer.setPageSize(QPageSize(QPageSize::A4));
    printer.setOutputFileName(pdf);
    document.print(&printer);
    if (!QFileInfo(pdf).exists() || QFileInfo(pdf).size() == 0) {
        emit finished(html, {}, tr("%1 could not be written").arg(pdf));
        return;
    }
    emit finished(html, pdf, {});
}

} // namespace lathe
