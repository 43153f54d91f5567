#include "plotview.h"

#include <qcustomplot.h>

#include <QFileInfo>
#include <QSvgGenerator>
#include <QVBoxLayout>

#include <algorithm>
#include <vector>

namespace lathe {

PlotView::PlotView(const QString &name, QWidget *parent) : QWidget(parent), m_name(name) {
    auto *layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    m_plot = new QCustomPlot(this);
    m_plot->setObjectName(name + "Plot");
    m_plot->plotLayout()->insertRow(0);
    m_title = new QCPTextElement(m_plot, QString(), QFont("Sans", 11, QFont::Bold));
    m_plot->plotLayout()->addElement(0, 0, m_title);
    m_title->setMinimumSize(160, 0); // width: the wrapped title's business (layoutTitle); height: the text's
    m_plot->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
    layout->addWidget(m_plot);
}

QString PlotView::title() const { return m_titleText; }

void PlotView::setTitle(const QString &title) {
    m_titleText = title;
    layoutTitle();
}

void PlotView::layoutTitle() { m_title->setText(wrapped(m_titleText, this->width())); }

QString PlotView::wrapped(const QString &text, int plotWidth) const {
    const QFontMetrics fm(m_title->font());
    const int width = std::max(160, plotWidth - 24);
    QStringList lines;
    for (const QString &paragraph : text.split('\n')) {
        QString line;
        for (const QString &word : paragraph.split(' ')) {
            const QString longer = line.isEmpty() ? word : line + ' ' + word;
            if (!line.isEmpty() && fm.horizontalAdvance(longer) > width) {
                lines << line;
                line = word;
            } else {
                line = longer;
            }
        }
        lines << line;
    }
    return lines.join('\n');
}

void PlotView::resizeEvent(QResizeEvent *event) {
    QWidget::resizeEvent(event);
    const QString shown = m_title->text();
    layoutTitle();
    const bool legendChanged = fitLegend(m_plot->width());
    if (m_title->text() != shown || legendChanged)
        m_plot->replot();
}

void PlotView::legendBelow() {
    m_plot->axisRect()->insetLayout()->take(m_plot->legend);
    m_plot->plotLayout()->addElement(m_plot->plotLayout()->rowCount(), 0, m_plot->legend);
    m_plot->plotLayout()->setRowStretchFactor(m_plot->plotLayout()->rowCount() - 1, 0.001);
    m_plot->legend->setFillOrder(QCPLayoutGrid::foColumnsFirst);
    // QCustomPlot's minimum size hint is its layout's, the legend's entries side by side included: an explicit
    // minimum width overrides it, so the width is the view's to give and fitLegend wraps the entries into it.
    m_plot->setMinimumWidth(160);
    m_legendBelow = true;
}

bool PlotView::fitLegend(int width) {
    QCPLegend *legend = m_plot->legend;
    if (!m_legendBelow || !legend || legend->itemCount() == 0)
        return false;
    const int n = legend->itemCount();
    std::vector<int> widths(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i)
        widths[size_t(i)] = legend->item(i)->minimumOuterSizeHint().width();
    const QMargins outer = legend->margins() + m_plot->plotLayout()->margins();
    const int available = width - outer.left() - outer.right();
    int columns = n;
    for (; columns > 1; --columns) { // entry i sits in column i % columns
        std::vector<int> column(static_cast<size_t>(columns), 0);
        for (int i = 0; i < n; ++i)
            column[size_t(i % columns)] = std::max(column[size_t(i % columns)], widths[size_t(i)]);
        int total = (columns - 1) * legend->columnSpacing();
        for (int w : column)
            total += w;
        if (total <= available)
            break;
    }
    if (legend->wrap() == columns && legend->columnCount() == std::min(columns, n))
        return false;
    legend->setWrap(columns);
    legend->setFillOrder(QCPLayoutGrid::foColumnsFirst, true); // rearranges the entries at the new wrap
    m_plot->updateGeometry(); // the legend's rows are part of the plot's minimum height
    return true;
}

void PlotView::showResult(const QString &title, const QString &note) {
    setTitle(note.isEmpty() ? title : title + "\n" + note);
    fitLegend(m_plot->width());
    m_hasData = true;
    for (QCPAxisRect *rect : m_plot->axisRects())
        rect->setVisible(true);
    m_plot->replot();
}

void PlotView::showPlaceholder(const QString &message) {
    m_hasData = false;
    m_plot->clearPlottables();
    m_plot->clearItems();
    // Nothing of the previous figure stays on screen: the axis rects (axes, grids, legend insets) are hidden
    // until the next result.
    for (QCPAxisRect *rect : m_plot->axisRects())
        rect->setVisible(false);
    setTitle(message);
    m_plot->replot();
}

FigureStyle FigureStyle::singleColumn() {
    FigureStyle s;
    s.size = {252, 189};
    s.scale = 300.0 / 72.0; // points to pixels at 300 dpi
    s.fontPointSize = 8;
    return s;
}

FigureStyle FigureStyle::doubleColumn() {
    FigureStyle s;
    s.size = {504, 252};
    s.scale = 300.0 / 72.0;
    s.fontPointSize = 8;
    return s;
}

bool PlotView::exportFigure(const QString &path, QString *error, QSize size, double scale) {
    FigureStyle style;
    style.size = size;
    style.scale = scale;
    return exportFigure(path, style, error);
}

bool PlotView::exportFigure(const QString &path, const FigureStyle &style, QString *error) {
    // The style's fonts and title for the export only: every font is put back afterwards.
    std::vector<std::pair<QCPAxis *, std::pair<QFont, QFont>>> axisFonts;
    QCPLegend *legend = m_plot->legend; // null in views that rebuilt their layout (the stacked layer panels)
    const QFont titleFont = m_title->font(), legendFont = legend ? legend->font() : QFont();
    const QString titleText = m_title->text();
    const bool titleVisible = m_title->visible();
    if (style.fontPointSize > 0) {
        for (QCPAxisRect *rect : m_plot->axisRects())
            for (QCPAxis *axis : rect->axes()) {
                axisFonts.push_back({axis, {axis->labelFont(), axis->tickLabelFont()}});
                QFont label = axis->labelFont(), tick = axis->tickLabelFont();
                label.setPointSizeF(style.fontPointSize);
                tick.setPointSizeF(style.fontPointSize);
                axis->setLabelFont(label);
                axis->setTickLabelFont(tick);
            }
        QFont t = titleFont, l = legendFont;
        t.setPointSizeF(style.fontPointSize);
        l.setPointSizeF(style.fontPointSize);
        m_title->setFont(t);
        if (legend)
            legend->setFont(l);
    }
    // The title broken into lines for the figure's width (a single column's is narrower than the view).
    m_title->setText(wrapped(style.title ? *style.title : m_titleText, style.size.width()));
    if (style.title)
        m_title->setVisible(!style.title->isEmpty());
    fitLegend(style.size.width()); // the legend's columns for the figure's width, and back below
    const bool ok = writeFigure(path, style.size, style.scale, error);
    for (auto &[axis, fonts] : axisFonts) {
        axis->setLabelFont(fonts.first);
        axis->setTickLabelFont(fonts.second);
    }
    m_title->setFont(titleFont);
    m_title->setText(titleText);
    m_title->setVisible(titleVisible);
    if (legend)
        legend->setFont(legendFont);
    fitLegend(m_plot->width()); // in the view's own fonts again
    m_plot->replot();
    return ok;
}

bool PlotView::writeFigure(const QString &path, QSize size, double scale, QString *error) {
    const QString suffix = QFileInfo(path).suffix().toLower();
    bool ok = false;
    if (suffix == "png") {
        ok = m_plot->savePng(path, size.width(), size.height(), scale, -1, 300, QCP::ruDotsPerInch);
    } else if (suffix == "pdf") {
        ok = m_plot->savePdf(path, size.width(), size.height(), QCP::epNoCosmetic, "Lathe", m_title->text());
    } else if (suffix == "svg") {
        QSvgGenerator gen;
        gen.setFileName(path);
        gen.setSize(size);
        gen.setViewBox(QRect(QPoint(0, 0), size));
        gen.setTitle(m_title->text());
        gen.setDescription(QStringLiteral("Lathe figure"));
        QCPPainter painter;
        ok = painter.begin(&gen);
        if (ok) {
            m_plot->toPainter(&painter, size.width(), size.height());
            ok = painter.end();
        }
        ok = ok && QFileInfo(path).size() > 0;
    } else {
        if (error)
            *error = tr("unknown figure format '%1': use .png, .svg or .pdf").arg(suffix);
        return false;
    }
    if (!ok && error)
        *error = tr("could not write %1").arg(path);
    return ok;
}

} // namespace lathe
