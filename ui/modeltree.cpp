#include "modeltree.h"

#include "analysis/modelsummary.h"
#include "model/model.h"

#include <QHeaderView>
#include <QTreeWidgetItemIterator>

#include <map>

namespace lathe {

namespace {
// The group keys besides the block indices: -1 before the blocks (embeddings), this one after them (the output).
constexpr int kOutputGroup = 1 << 30;
} // namespace

QString ModelTree::shortName(const TensorInfo &t) {
    if (t.role == TensorRole::Unknown || t.role == TensorRole::Buffer)
        return nameInBlock(QString::fromStdString(t.name), t.layer);
    const QString role = QString::fromUtf8(roleName(t.role));
    return t.isBias ? tr("%1 bias").arg(role) : role;
}

QString ModelTree::nameInBlock(const QString &name, int layer) {
    if (layer < 0)
        return name;
    // "model.layers.10.mlp.down_proj.weight", "h.3.attn.c_attn.weight": what follows the block's index.
    const QString index = QString::number(layer) + '.';
    for (qsizetype at = name.indexOf(index); at >= 0; at = name.indexOf(index, at + 1))
        if (at == 0 || name[at - 1] == '.')
            return name.mid(at + index.size());
    return name;
}

ModelTree::ModelTree(QWidget *parent) : QTreeWidget(parent) {
    setColumnCount(ColumnCount);
    setHeaderLabels({tr("Name"), tr("Shape"), tr("Type"), tr("Parameters")});
    setUniformRowHeights(true);
    setAlternatingRowColors(true);
    header()->setSectionResizeMode(NameColumn, QHeaderView::Stretch);
    header()->setStretchLastSection(false);
}

void ModelTree::setModel(const Model *model) {
    clear();
    if (!model)
        return;
    // Group items: -1 before the blocks (embeddings), one per block, then the output side.
    std::map<int, QTreeWidgetItem *> groups;
    std::map<QTreeWidgetItem *, int64_t> groupParams;
    auto groupFor = [&](const TensorInfo &t) {
        int key = t.layer;
        if (t.layer < 0)
            key = (t.role == TensorRole::FinalNorm || t.role == TensorRole::LmHead || t.role == TensorRole::Pooler)
                      ? kOutputGroup
                      : -1;
        auto it = groups.find(key);
        if (it != groups.end())
            return it->second;
        auto *g = new QTreeWidgetItem();
        g->setText(NameColumn, key == -1             ? tr("Embeddings")
                               : key == kOutputGroup ? tr("Output")
                                                     : tr("Block %1").arg(key));
        groups[key] = g;
        return g;
    };
    for (const auto &t : model->tensors()) {
        QTreeWidgetItem *g = groupFor(t);
        auto *item = new QTreeWidgetItem(g);
        item->setText(NameColumn, shortName(t));
        item->setText(ShapeColumn, QString::fromStdString(t.shapeString()));
        item->setText(TypeColumn, QString::fromUtf8(dtypeName(t.dtype)));
        item->setText(ParamsColumn, QString::fromStdString(humanCount(t.numel())));
        item->setTextAlignment(ParamsColumn, Qt::AlignRight | Qt::AlignVCenter);
        item->setData(NameColumn, Qt::UserRole, QString::fromStdString(t.name));
        QString tip = QString::fromStdString(t.name);
        if (!t.sourceName.empty() && t.sourceName != t.name)
            tip += tr("\nstored as %1").arg(QString::fromStdString(t.sourceName));
        tip += tr("\nrole %1").arg(QString::fromUtf8(roleName(t.role)));
        for (int c = 0; c < ColumnCount; ++c)
            item->setToolTip(c, tip);
        groupParams[g] += t.numel();
    }
    // A short name that two tensors of a group share (a checkpoint's tensor of no known role, say) says too little:
    // those show their names within the block instead.
    for (auto &[key, g] : groups) {
        std::map<QString, int> count;
        for (int i = 0; i < g->childCount(); ++i)
            ++count[g->child(i)->text(NameColumn)];
        for (int i = 0; i < g->childCount(); ++i)
            if (QTreeWidgetItem *item = g->child(i); count[item->text(NameColumn)] > 1)
                item->setText(NameColumn, nameInBlock(item->data(NameColumn, Qt::UserRole).toString(),
                                                      key == kOutputGroup ? -1 : key));
    }
    for (auto &[key, g] : groups) {
        g->setText(ParamsColumn, QString::fromStdString(humanCount(groupParams[g])));
        g->setTextAlignment(ParamsColumn, Qt::AlignRight | Qt::AlignVCenter);
        addTopLevelItem(g);
    }
    // Show one block open so the columns size to real rows.
    for (auto &[key, g] : groups)
        if (key == 0)
            g->setExpanded(true);
    for (int c = ShapeColumn; c < ColumnCount; ++c)
        resizeColumnToContents(c);
    applyFilter();
}

void ModelTree::setFilter(const QString &text) {
    m_filter = text.trimmed();
    applyFilter();
}

void ModelTree::applyFilter() {
    for (int g = 0; g < topLevelItemCount(); ++g) {
        QTreeWidgetItem *group = topLevelItem(g);
        int shown = 0;
        for (int i = 0; i < group->childCount(); ++i) {
            QTreeWidgetItem *item = group->child(i);
            const bool match = m_filter.isEmpty() || item->text(NameColumn).contains(m_filter, Qt::CaseInsensitive) ||
                               item->data(NameColumn, Qt::UserRole).toString().contains(m_filter, Qt::CaseInsensitive);
            item->setHidden(!match);
            shown += match;
        }
        group->setHidden(shown == 0);
        // A filter opens the groups it keeps, so the matches are visible at once.
        if (!m_filter.isEmpty() && shown > 0)
            group->setExpanded(true);
    }
}

void ModelTree::selectTensors(const QStringList &names) {
    clearSelection();
    expandAll();
    for (QTreeWidgetItemIterator it(this); *it; ++it)
        if (names.contains((*it)->data(NameColumn, Qt::UserRole).toString())) {
            (*it)->setSelected(true);
            scrollToItem(*it);
        }
}

QStringList ModelTree::selectedNames() const {
    QStringList out;
    for (const QTreeWidgetItem *item : selectedItems())
        if (const QString name = item->data(NameColumn, Qt::UserRole).toString(); !name.isEmpty())
            out << name;
    return out;
}

QString ModelTree::selectedTensor() const {
    const auto items = selectedItems();
    return items.isEmpty() ? QString() : items.front()->data(NameColumn, Qt::UserRole).toString();
}

} // namespace lathe
