#include "figureexporter.h"

#include "analysis/modelanalysis.h"
#include "importanceview.h"
#include "layerview.h"
#include "numeric/spectrum.h"
#include "sparsityview.h"
#include "spectrumview.h"

#include <QDir>
#include <QFile>
#include <QFutureWatcher>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTimer>
#include <QtConcurrent/QtConcurrentRun>

namespace lathe {

FigureExporter::FigureExporter(QString folder, std::shared_ptr<const Model> model,
                               std::shared_ptr<const AnalyzeResult> analysis, std::vector<Item> items,
                               MatrixScoresRequest scoreTemplate, double rankRatio, QString settingsText,
                               QObject *parent)
    : QObject(parent), m_folder(std::move(folder)), m_model(std::move(model)), m_analysis(std::move(analysis)),
      m_items(std::move(items)), m_template(std::move(scoreTemplate)), m_rankRatio(rankRatio),
      m_settings(std::move(settingsText)), m_spectrum(std::make_unique<SpectrumView>()),
      m_sparsity(std::make_unique<SparsityView>()), m_importance(std::make_unique<ImportanceView>()) {
    for (QWidget *w : {static_cast<QWidget *>(m_spectrum.get()), static_cast<QWidget *>(m_sparsity.get()),
                       static_cast<QWidget *>(m_importance.get())})
        w->resize(900, 600);
}

FigureExporter::~FigureExporter() = default;

void FigureExporter::start(LayerView *layers) {
    if (!QDir().mkpath(m_folder)) {
        finish(tr("cannot create the folder %1").arg(m_folder));
        return;
    }
    if (layers && layers->hasData() && !save(layers, "layers", tr("Per-block parameters, sparsity and effective rank")))
        return;
    QTimer::singleShot(0, this, &FigureExporter::next);
}

bool FigureExporter::save(PlotView *view, const QString &base, const QString &caption) {
    for (const char *ext : {"png", "pdf"}) {
        const QString path = QDir(m_folder).filePath(base + "." + ext);
        QString error;
        if (!view->exportFigure(path, &error)) {
            finish(error);
            return false;
        }
        m_files << path;
    }
    m_entries.append({base, caption});
    return true;
}

void FigureExporter::next() {
    if (m_cancelled) {
        finish(tr("cancelled"));
        return;
    }
    if (m_index >= m_items.size()) {
        finish({});
        return;
    }
    emit progress(int(m_index), int(m_items.size()));
    MatrixScoresRequest req = m_template;
    req.tensor = m_items[m_index].tensor;
    auto *watcher = new QFutureWatcher<MatrixScores>(this);
    connect(watcher, &QFutureWatcher<MatrixScores>::finished, this, [this, watcher] {
        const MatrixScores s = watcher->result();
        watcher->deleteLater();
        renderMatrix(s);
    });
    watcher->setFuture(QtConcurrent::run(computeMatrixScores, req));
}

void FigureExporter::renderMatrix(const MatrixScores &scores) {
    const Item &item = m_items[m_index];
    QString base = QString::fromStdString(item.tensor);
    base.replace(QRegularExpression("[^A-Za-z0-9_.-]"), "_");
    if (m_analysis) {
        auto it = m_analysis->data.spectra.find(item.tensor);
        if (it != m_analysis->data.spectra.end()) {
            m_spectrum->setSpectra({&it->second}, {item.label},
                                   m_rankRatio > 0 ? losparseRank(it->second.rows, it->second.cols, m_rankRatio) : 0);
            if (!save(m_spectrum.get(), base + ".spectrum", tr("Singular values of %1").arg(item.label)))
                return;
        }
    }
    if (scores.error.empty()) {
        const QString pattern = QString::fromStdString(m_template.pattern.describe());
        m_sparsity->setScores(scores, item.label, pattern);
        if (!save(m_sparsity.get(), base + ".sparsity", tr("Pruned fraction per row and column of %1, %2").arg(item.label, pattern)))
            return;
        m_importance->setScores(scores, item.label, m_template.pattern.prunedFraction());
        if (!save(m_importance.get(), base + ".importance", tr("Importance scores of %1").arg(item.label)))
            return;
    }
    ++m_index;
    QTimer::singleShot(0, this, &FigureExporter::next);
}

void FigureExporter::finish(const QString &error) {
    if (error.isEmpty() && !m_entries.isEmpty()) {
        QJsonArray figs;
        QString html = "<!doctype html><html><head><meta charset=\"utf-8\"><title>Lathe figures</title>"
                       "<style>body{font-family:sans-serif} figure{display:inline-block;margin:8px;width:460px}"
                       "img{width:450px;border:1px solid #ccc}</style></head><body>\n";
        html += "<h1>Lathe figures</h1>\n<p>" + m_settings.toHtmlEscaped() + "</p>\n";
        for (const auto &[base, caption] : m_entries) {
            html += QString("<figure><a href=\"%1.pdf\"><img src=\"%1.png\"></a><figcaption>%2 "
                            "(<a href=\"%1.pdf\">PDF</a>)</figcaption></figure>\n")
                        .arg(base, caption.toHtmlEscaped());
            figs.append(QJsonObject{{"png", base + ".png"}, {"pdf", base + ".pdf"}, {"caption", caption}});
        }
        html += "</body></html>\n";
        const QString indexHtml = QDir(m_folder).filePath("index.html");
        const QString indexJson = QDir(m_folder).filePath("index.json");
        QFile h(indexHtml), j(indexJson);
        if (h.open(QIODevice::WriteOnly) && j.open(QIODevice::WriteOnly)) {
            h.write(html.toUtf8());
            j.write(QJsonDocument(QJsonObject{{"settings", m_settings}, {"figures", figs}}).toJson());
            m_files << indexHtml << indexJson;
        } else {
            emit finished(m_files, tr("cannot write the index in %1").arg(m_folder));
            return;
        }
    }
    emit progress(int(m_items.size()), int(m_items.size()));
    emit finished(m_files, error);
}

} // namespace lathe
