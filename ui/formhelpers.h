#pragma once

#include <nlohmann/json.hpp>

#include <QString>

#include <cstdint>
#include <initializer_list>
#include <string>

class QBoxLayout;
class QComboBox;
class QDialog;
class QFormLayout;
class QLabel;
class QLineEdit;
class QPushButton;
class QWidget;

namespace lathe {

class LatheError;

// Pieces the job dialogs (compress, train) build their forms from.

// A line edit with a Browse button for a folder or a file (`what` titles the file dialog), added to `form`.
QLineEdit *withBrowse(QWidget *parent, QFormLayout *form, const QString &label, bool folder, const QString &name,
                      const QString &what = QString());
// The widgets side by side in one row.
QWidget *row(QWidget *parent, std::initializer_list<QWidget *> widgets);
// Lets a combo box narrow to `chars` characters (eliding its text; the list shows every item whole) instead of
// taking its longest item's width as a minimum: the docks and tabs fit a 1280 x 720 screen.
void allowNarrow(QComboBox *box, int chars = 12);
// A whole number >= 0 from a line edit; LatheError naming `what`.
uint64_t wholeNumber(const QLineEdit *e, const std::string &what);
// A finite number from a line edit; LatheError naming `what`.
double realNumber(const QLineEdit *e, const std::string &what);
// The choice of a GGUF file for llama.cpp beside a run's export ("gguf"): none, or its weights' type; the data of
// each item is the job spec's output.gguf value.
QComboBox *ggufChoice(QWidget *parent);
void setGgufChoice(QComboBox *box, const std::string &value);
// The device choice of a job dialog (object name "device", data: the spec's "auto", "cpu", "cuda:N"): every usable
// GPU by name and memory, and without one a "cuda" entry that the spec check refuses with the reason.
QComboBox *deviceChoice(QWidget *parent, const QString &toolTip);
// Selects `device`; a device of the spec this machine lacks is added, kept, and refused by name.
void setDeviceChoice(QComboBox *box, const std::string &device);
// Asks where to save and writes `spec` there atomically (QSaveFile); returns an error message, empty on success
// or when the user cancelled.
QString saveJobSpec(QWidget *parent, const nlohmann::json &spec);

// Shows `problem` on a job dialog's status line, or "Ready." when it is empty; Run is enabled only then.
void showProblem(QLabel *status, QPushButton *run, const QString &problem);
// A LatheError as a status line shows it: the message, then " — " and the hint when there is one.
QString problemText(const LatheError &e);

// The foot of a job dialog, added to `layout`: a status line ("status"), then Cancel, Run ("run": accepts) and
// Save Job Spec... (the caller connects it).
struct JobDialogFooter {
    QLabel *status = nullptr;
    QPushButton *run = nullptr, *save = nullptr;
};
JobDialogFooter addJobDialogFooter(QDialog *dialog, QBoxLayout *layout);

} // namespace lathe
