#include "plotview.h"

#include <qcustomplot.h>

#include <QFileInfo>
#include <QSvgGenerator>
#include <QVBoxLayout>

namespace lathe {

PlotView::PlotView(const QString &name, QWidget *parent) : QWidget(parent), m_name(name) {
    auto *layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    m_plot = new QCustomPlot(this);
    m_plot->setObjectName(name + "Plot");
    m_plot->plotLayout()->insertRow(0);
    m_title = new QCPTextElement(m_plot, QString(), QFont("Sans", 11, QFont::Bold));
    m_plot->plotLayout()->addElement(0, 0, m_title);
    m_plot->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
    layout->addWidget(m_plot);
}

QString PlotView::title() const { return m_title->text(); }

void PlotView::setTitle(const QString &title) { m_title->setText(title); }

void PlotView::legendBelow() {
    m_plot->axisRect()->insetLayout()->take(m_plot->legend);
    m_plot->plotLayout()->addElement(m_plot->plotLayout()->rowCount(), 0, m_plot->legend);
    m_plot->plotLayout()->setRowStretchFactor(m_plot->plotLayout()->rowCount() - 1, 0.001);
    m_plot->legend->setFillOrder(QCPLayoutGrid::foColumnsFirst);
}

void PlotView::showResult(const QString &title, const QString &note) {
    setTitle(note.isEmpty() ? title : title + "\n" + note);
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

bool PlotView::exportFigure(const QString &path, QString *error, QSize size, double scale) {
    const QString suffix = QFileInfo(path).suffix().toLower();
    bool ok = false;
    if (suffix == "png") {
        ok = m_plot->savePng(path, size.width(), size.height(), scale, -1, int(150 * scale), QCP::ruDotsPerInch);
    } else if (suffix == "pdf") {
        ok = m_plot->savePdf(path, size.width(), size.height(), QCP::epNoCosmetic, "Lathe", title());
    } else if (suffix == "svg") {
        QSvgGenerator gen;
        gen.setFileName(path);
        gen.setSize(size);
        gen.setViewBox(QRect(QPoint(0, 0), size));
        gen.setTitle(title());
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
