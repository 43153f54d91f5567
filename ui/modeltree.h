#pragma once

#include <QTreeWidget>

namespace lathe {

class Model;
struct TensorInfo;

// The model as a tree: "Embeddings", "Block 0..N-1" and "Output" groups, each listing its tensors by short name
// (the role within the group, as the views' titles say "block 10 mlp_down"), shape, storage type and parameter
// count. Each tensor item carries its full name in Qt::UserRole and shows it, with the name it is stored under and
// its role, as every column's tooltip.
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
    // Shows only tensors whose full or short name contains `text` (case-insensitive) and the groups holding one;
    // empty shows everything. Kept across setModel.
    void setFilter(const QString &text);

    enum Column { NameColumn, ShapeColumn, TypeColumn, ParamsColumn, ColumnCount };

    // The tree's name for a tensor: its role ("attn_q", "attn_q bias"), or for a tensor of no known role its name
    // within its block (nameInBlock).
    static QString shortName(const TensorInfo &t);
    // "model.layers.10.mlp.down_proj.weight" in block 10: "mlp.down_proj.weight"; outside a block (layer < 0), or
    // a name without the block's index: the name.
    static QString nameInBlock(const QString &name, int layer);

private:
    void applyFilter();
    QString m_filter;
};

} // namespace lathe
