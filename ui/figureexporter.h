#pragma once

#include "analysis/matrixscores.h"

#include <QObject>
#include <QStringList>

#include <memory>
#include <vector>

namespace lathe {

class ImportanceView;
class LayerView;
class Model;
class SparsityView;
class SpectrumView;
struct AnalyzeResult;

// "Export all figures": for every matrix of the selection, its spectrum, sparsity and importance figures as PNG
// and PDF, plus the per-block bars, into one folder with index.html (thumbnails, captions, settings) and
// index.json. Scores are computed on a worker thread one matrix at a time and each figure is rendered on the GUI
// thread in its own event-loop turn, so the window stays responsive. Uses its own hidden views.
class FigureExporter : public QObject {
    Q_OBJECT
public:
    struct Item {
        std::string tensor;
        QString label;
    };
    FigureExporter(QString folder, std::shared_ptr<const Model> model, std::shared_ptr<const AnalyzeResult> analysis,
                   std::vector<Item> items, MatrixScoresRequest scoreTemplate, double rankRatio,
                   QString settingsText, QObject *parent = nullptr);
    ~FigureExporter() override;

    // The layer view is rendered first, from the window's own instance (it is cheap and already up to date).
    void start(LayerView *layers);
    void cancel() { m_cancelled = true; }

signals:
    void progress(int done, int total);
    void finished(QStringList files, QString error);

private:
    void next();
    void renderMatrix(const MatrixScores &scores);
    bool save(class PlotView *view, const QString &base, const QString &caption);
    void finish(const QString &error);

    QString m_folder;
    std::shared_ptr<const Model> m_model;
    std::shared_ptr<const AnalyzeResult> m_analysis;
    std::vector<Item> m_items;
    MatrixScoresRequest m_template;
    double m_rankRatio = 0;
    QString m_settings;
    size_t m_index = 0;
    bool m_cancelled = false;
    QStringList m_files;
    QList<QPair<QString, QString>> m_entries; // (png base name, caption)
    std::unique_ptr<SpectrumView> m_spectrum;
    std::unique_ptr<SparsityView> m_sparsity;
    std::unique_ptr<ImportanceView> m_importance;
};

} // namespace lathe
