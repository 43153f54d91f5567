#pragma once

#include <QObject>
#include <QString>
#include <QStringList>

#include <vector>

namespace lathe {

class MainWindow;
class PlotView;

// The session report (issue 19 item 5): report.html and report.pdf in a folder, with the figures beside them.
// Sections: the machine (Lathe, Qt, BLAS, LAPACK, GPU), the model's summary, the plan of the parameter panel and
// its after-compression summary, the per-layer table (parameters, planned sparsity, mean effective rank), every
// view that shows something as a figure (PNG at 300 dpi, and SVG with real text), the sensitivity sweep and its
// budget when one ran, every compression run of the session (its model, method, results, export) with the job
// spec that reproduces it (the run folder's spec.json). Figures are drawn one per event-loop turn so the window
// stays responsive; the PDF is the same HTML laid out for A4. finished() ends it (error empty on success); a
// folder is written only when it is new or empty, and files that exist are never replaced.
class ReportWriter : public QObject {
    Q_OBJECT
public:
    ReportWriter(MainWindow *window, QString folder, QObject *parent = nullptr);
    void start();

signals:
    void finished(QString htmlPath, QString pdfPath, QString error);

private:
    void nextFigure();
    void finish();

    MainWindow *m_window;
    QString m_folder;
    std::vector<PlotView *> m_views;
    size_t m_next = 0;
    QStringList m_figureHtml; // one <figure> per exported view
};

} // namespace lathe
