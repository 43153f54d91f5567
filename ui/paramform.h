#pragma once

#include "methods/methodparams.h"

#include <QWidget>

#include <vector>

class QComboBox;
class QFormLayout;
class QStackedWidget;

namespace lathe {

// Edits a method's parameters with one widget per declared parameter (methods/methodparams.h): a check box for a
// bool, spin boxes with the declared range for numbers, a combo box for a choice (editable when other values are
// allowed), a line edit for text and for per-block ratios (their JSON form: [..] or {"0-3": 0.3}). Labels and tool
// tips come from the declarations. changed() fires on every edit.
class ParamForm : public QWidget {
    Q_OBJECT
public:
    explicit ParamForm(const std::vector<ParamSpec> &specs, QWidget *parent = nullptr);

    void setParams(const MethodParams &params);
    // The values as edited; LatheError naming the parameter when one does not parse or is out of range.
    MethodParams params() const;
    // The editor of one parameter (tests); null for an unknown key.
    QWidget *editor(const std::string &key) const;

signals:
    void changed();

private:
    std::vector<ParamSpec> m_specs;
    std::vector<QWidget *> m_editors; // parallel to m_specs
};

struct MethodInfo;

// Adds a method to a dialog's method picker: an entry in `combo` (title, the name as data, the summary as tool tip)
// and its ParamForm as the matching page of `pages`.
ParamForm *addMethodPage(QComboBox *combo, QStackedWidget *pages, const MethodInfo &info);

} // namespace lathe
