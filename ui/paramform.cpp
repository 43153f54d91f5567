#include "paramform.h"

#include "methods/method.h"

#include "base/error.h"

#include <QCheckBox>
#include <QComboBox>
#include <QStackedWidget>
#include <QFormLayout>
#include <QLineEdit>
#include <QLocale>
#include <QSpinBox>

#include <limits>

namespace lathe {

ParamForm::ParamForm(const std::vector<ParamSpec> &specs, QWidget *parent) : QWidget(parent), m_specs(specs) {
    auto *form = new QFormLayout(this);
    form->setContentsMargins(0, 0, 0, 0);
    for (const ParamSpec &p : m_specs) {
        QWidget *w = nullptr;
        switch (p.type) {
        case ParamType::Bool: {
            auto *c = new QCheckBox(this);
            connect(c, &QCheckBox::toggled, this, &ParamForm::changed);
            w = c;
            break;
        }
        case ParamType::Integer: {
            auto *s = new QSpinBox(this);
            s->setRange(int(std::max<double>(p.min, std::numeric_limits<int>::min())),
                        int(std::min<double>(p.max, std::numeric_limits<int>::max())));
            connect(s, &QSpinBox::valueChanged, this, &ParamForm::changed);
            w = s;
            break;
        }
        case ParamType::Real: {
            // Text, not a spin box: a value read from a spec file must come back to the digit.
            auto *e = new QLineEdit(this);
            e->setPlaceholderText(tr("%1 to %2").arg(p.min).arg(p.max));
            connect(e, &QLineEdit::textChanged, this, &ParamForm::changed);
            w = e;
            break;
        }
        case ParamType::Choice: {
            auto *c = new QComboBox(this);
            for (const std::string &v : p.choices)
                c->addItem(QString::fromStdString(v));
            c->setEditable(p.openChoice);
            connect(c, &QComboBox::currentTextChanged, this, &ParamForm::changed);
            w = c;
            break;
        }
        case ParamType::Text:
        case ParamType::LayerRatios: {
            auto *e = new QLineEdit(this);
            if (p.type == ParamType::LayerRatios)
                e->setPlaceholderText(tr("none (e.g. {\"0-3\": 0.3})"));
            connect(e, &QLineEdit::textChanged, this, &ParamForm::changed);
            w = e;
            break;
        }
        }
        // Object names are the keys with '.' as '_' (Qt's findChild by name in tests and style sheets).
        w->setObjectName(QString::fromStdString(p.key).replace('.', '_'));
        w->setToolTip(QString::fromStdString(p.help + (p.unit.empty() ? "" : " (" + p.unit + ")")));
        form->addRow(QString::fromStdString(p.label), w);
        m_editors.push_back(w);
    }
    setParams(MethodParams(m_specs));
}

QWidget *ParamForm::editor(const std::string &key) const {
    for (size_t i = 0; i < m_specs.size(); ++i)
        if (m_specs[i].key == key)
            return m_editors[i];
    return nullptr;
}

void ParamForm::setParams(const MethodParams &params) {
    for (size_t i = 0; i < m_specs.size(); ++i) {
        const ParamSpec &p = m_specs[i];
        if (!params.has(p.key))
            continue;
        const ParamValue &v = params.value(p.key);
        QWidget *w = m_editors[i];
        switch (p.type) {
        case ParamType::Bool: static_cast<QCheckBox *>(w)->setChecked(std::get<bool>(v)); break;
        case ParamType::Integer: static_cast<QSpinBox *>(w)->setValue(int(std::get<int64_t>(v))); break;
        case ParamType::Real:
            static_cast<QLineEdit *>(w)->setText(QString::number(std::get<double>(v), 'g', QLocale::FloatingPointShortest));
            break;
        case ParamType::Choice: {
            auto *c = static_cast<QComboBox *>(w);
            const QString text = QString::fromStdString(std::get<std::string>(v));
            if (c->findText(text) < 0)
                c->addItem(text); // a value given in a spec file (an N:M pattern, "bfloat16")
            c->setCurrentText(text);
            break;
        }
        case ParamType::Text:
        case ParamType::LayerRatios:
            static_cast<QLineEdit *>(w)->setText(QString::fromStdString(paramValueText(v)));
            break;
        }
    }
}

MethodParams ParamForm::params() const {
    MethodParams out(m_specs);
    for (size_t i = 0; i < m_specs.size(); ++i) {
        const ParamSpec &p = m_specs[i];
        QWidget *w = m_editors[i];
        switch (p.type) {
        case ParamType::Bool: out.set(p.key, static_cast<QCheckBox *>(w)->isChecked()); break;
        case ParamType::Integer: out.set(p.key, int64_t(static_cast<QSpinBox *>(w)->value())); break;
        case ParamType::Real: {
            const QString text = static_cast<QLineEdit *>(w)->text().trimmed();
            bool ok = false;
            const double x = text.toDouble(&ok);
            if (!ok)
                throw LatheError(p.label + ": '" + text.toStdString() + "' is not a number", p.help);
            out.set(p.key, x);
            break;
        }
        case ParamType::Choice: out.set(p.key, static_cast<QComboBox *>(w)->currentText().trimmed().toStdString()); break;
        case ParamType::Text: out.set(p.key, static_cast<QLineEdit *>(w)->text().toStdString()); break;
        case ParamType::LayerRatios: {
            const std::string text = static_cast<QLineEdit *>(w)->text().trimmed().toStdString();
            const nlohmann::json j = text.empty() ? nlohmann::json() : nlohmann::json::parse(text, nullptr, false);
            if (j.is_discarded())
                throw LatheError(p.label + ": '" + text + "' is not an array or an object",
                                 "one value per block [0.3, 0.5, ...] or ranges {\"0-3\": 0.3, \"7\": 0.6}");
            try {
                out.set(p.key, LayerRatios::fromJson(j));
            } catch (const LatheError &e) {
                throw LatheError(p.label + ": " + e.what(), e.hint());
            }
            break;
        }
        }
    }
    return out;
}

ParamForm *addMethodPage(QComboBox *combo, QStackedWidget *pages, const MethodInfo &info) {
    combo->addItem(QString::fromStdString(info.title), QString::fromStdString(info.name));
    combo->setItemData(combo->count() - 1, QString::fromStdString(info.summary), Qt::ToolTipRole);
    auto *f = new ParamForm(info.params, pages);
    f->setObjectName("params_" + QString::fromStdString(info.name));
    pages->addWidget(f);
    return f;
}

} // namespace lathe
