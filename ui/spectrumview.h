#pragma once

#include "plotview.h"

#include <vector>

namespace lathe {

struct MatrixSpectrum;

// Singular values on log-log axes (index 1..n against sigma), several matrices overlaid; the first one's cumulative
// energy on the right axis; a vertical marker at the chosen rank with the energy it keeps.
class SpectrumView : public PlotView {
    Q_OBJECT
public:
    explicit SpectrumView(QWidget *parent = nullptr);
    // `labels` name the spectra in the legend; `rank` <= 0 hides the marker.
    void setSpectra(const std::vector<const MatrixSpectrum *> &spectra, const QStringList &labels, int64_t rank);
    void clear(const QString &message);
};

} // namespace lathe
