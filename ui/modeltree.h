#pragma once

#include <QTreeWidget>

namespace lathe {

class Model;

// The model as a tree: "Embeddings", "Block 0..N-1" and "Output" groups, each listing its tensors with role,
// shape, storage type and parameter count. Each tensor item carries its name in Qt::UserRole.
class ModelTree : public QTreeWidget {
    Q_OBJECT
public:
    explicit ModelTree(QWidget *parent = nullptr);
    void setModel(const Model *model);
    QString selectedTensor() const;
    // Selects exactly the items of these tensor names (groups expanded, the last one scrolled to), and the names of
    // what is selected: what a saved session keeps.
    void selectTensors(const QStringList &names);
    QStringList selectedNames() const;
    // Shows only tensors whose name or role contains `text` (case-insensitive) and the groups holding one; empty
    // shows everything. Kept across setModel.
    void setFilter(const QString &text);

    enum Column { NameColumn, RoleColumn, ShapeColumn, TypeColumn, ParamsColumn, ColumnCount };

private:
    void applyFilter();
    QString m_filter;
};

} // namespace lathe
