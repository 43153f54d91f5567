#pragma once

#include <QSize>
#include <QString>
#include <QWidget>

#include <optional>

class QCustomPlot;
class QCPTextElement;

namespace lathe {

// How a figure is written: its size (logical pixels for PNG, points for PDF and SVG), the PNG scale, one font size
// for every text of the plot (0: as on screen), and a title that replaces the on-screen one (an empty string: no
// title). The paper presets keep every text at 8 pt at the printed size (>= 7 pt) and write PNGs at 300 dpi.
struct FigureStyle {
    QSize size{900, 600};
    double scale = 2.0;
    int fontPointSize = 0;
    std::optional<QString> title;
    static FigureStyle singleColumn(); // 3.5 x 2.625 in (252 x 189 pt)
    static FigureStyle doubleColumn(); // 7 x 3.5 in (504 x 252 pt)
};

// Base of the workbench's views: one QCustomPlot with a title row, a placeholder message when there is nothing to
// show, and figure export. Subclasses fill the plot from plain data (no engine calls on the GUI thread).
class PlotView : public QWidget {
    Q_OBJECT
public:
    explicit PlotView(const QString &name, QWidget *parent = nullptr);

    QCustomPlot *plot() const { return m_plot; }
    QString name() const { return m_name; }     // "spectrum", "sparsity", ... (file names)
    QString title() const;                       // the current title line
    bool hasData() const { return m_hasData; }

    // Writes the figure as PNG, SVG or PDF (by the file's suffix) at `size` logical pixels (points for PDF/SVG);
    // PNG is rendered at `scale` times that (2 = 1800 x 1200 px for the default size, tagged 300 dpi). Returns
    // false and sets `error` when the format is unknown or the file cannot be written.
    bool exportFigure(const QString &path, QString *error = nullptr, QSize size = {900, 600}, double scale = 2.0);
    bool exportFigure(const QString &path, const FigureStyle &style, QString *error = nullptr);

protected:
    void setTitle(const QString &title);
    // Moves the legend out of the axes into its own row under them, so that it never covers data. Its entries then
    // fill as many columns as the plot's width holds (fitLegend), and it sets no minimum width of its own: two long
    // run names side by side would otherwise widen the view and squeeze the docks beside it.
    void legendBelow();
    // Clears the plot and hides its axes, grids and legend until the next showResult.
    void showPlaceholder(const QString &message);
    // Ends a successful update: the title (with `note` on a second line when given), then a replot.
    void showResult(const QString &title, const QString &note = {});

    QCustomPlot *m_plot = nullptr;

    void resizeEvent(QResizeEvent *event) override;

private:
    bool writeFigure(const QString &path, QSize size, double scale, QString *error);
    // Shows m_titleText broken at spaces into lines that fit the plot's width: a long title (a placeholder's
    // message, a result note) neither gets clipped nor sets the view's minimum width.
    void layoutTitle();
    // `text` broken at spaces into lines that fit a plot `plotWidth` pixels wide in the title's font.
    QString wrapped(const QString &text, int plotWidth) const;
    // With the legend below: the most columns (entries filled row by row) whose widths fit `width` pixels, at least
    // one. Returns whether the arrangement changed.
    bool fitLegend(int width);

    QString m_name;
    QString m_titleText; // as set; the element shows it wrapped
    QCPTextElement *m_title = nullptr;
    bool m_hasData = false;
    bool m_legendBelow = false;
};

} // namespace lathe
