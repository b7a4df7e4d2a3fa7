"""The concepts panel: one row per layer (colour, name = initializer word, visibility), buttons to
add/delete/reorder/recolour, the background toggle, and live warnings about the masks.

The list shows the top layer first, like image editors; row ``r`` is layer ``n - 1 - r``.
"""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QModelIndex, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QColorDialog, QHBoxLayout, QLabel, QListWidget,
                               QListWidgetItem, QToolButton, QVBoxLayout, QWidget)

from bas_desktop.model.document import Change, Document
from bas_desktop.widgets.layout import reserved_box
from engine.scene import MAX_HANDLES, token_name

UID_ROLE = Qt.ItemDataRole.UserRole
SHOWN_ROLE = Qt.ItemDataRole.UserRole + 1


def swatch(color: tuple[int, int, int], size: int = 18) -> QIcon:
    """A rounded colour square for list rows and buttons."""
    pm = QPixmap(size, size)
    pm.fill(Qt.GlobalColor.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setBrush(QColor(*color))
    p.setPen(QColor(255, 255, 255, 140))
    p.drawRoundedRect(1, 1, size - 2, size - 2, 4, 4)
    p.end()
    return QIcon(pm)


class LayersPanel(QWidget):
    """Edits the document's concepts; every change goes through the document (undoable)."""

    message = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.doc: Document | None = None
        self.list = QListWidget()
        self.list.setIconSize(QSize(18, 18))
        self.list.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        self.list.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked | QAbstractItemView.EditTrigger.EditKeyPressed)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.currentRowChanged.connect(self._row_changed)
        self.list.itemChanged.connect(self._item_changed)
        self.list.model().rowsMoved.connect(self._rows_moved)

        def button(text: str, tip: str, slot: Callable[[], object]) -> QToolButton:
            b = QToolButton()
            b.setText(text)
            b.setToolTip(tip)
            b.clicked.connect(slot)
            return b

        self.add_btn = button("+", "Add a concept (Ctrl+Shift+N)", lambda: self.add_layer())
        self.del_btn = button("−", "Delete the selected concept", lambda: self.delete_layer())
        self.up_btn = button("▲", "Move up", lambda: self.move(+1))
        self.down_btn = button("▼", "Move down", lambda: self.move(-1))
        self.color_btn = button("Colour…", "Change the overlay colour", self.pick_color)
        row = QHBoxLayout()
        for b in (self.add_btn, self.del_btn, self.up_btn, self.down_btn, self.color_btn):
            row.addWidget(b)
        row.addStretch(1)

        self.background = QCheckBox("Background concept (everything else)")
        self.background.setToolTip("Adds a handle for the background: the complement of all concepts")
        self.background.toggled.connect(lambda on: self.doc and self.doc.set_show_background(on))
        self.warnings = QLabel()
        self.warnings.setWordWrap(True)
        self.warnings.setTextFormat(Qt.TextFormat.PlainText)
        self.warnings.setStyleSheet("color: #e8a23a;")
        self.warnings.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        # The warnings come and go while painting: their box keeps one height (three lines, then it
        # scrolls), so the buttons above never move under the cursor.
        self.warnings_box = reserved_box(self.warnings, lines=3)
        hint = QLabel("Double-click a name to rename it: the name is the concept's initializer word.")
        hint.setWordWrap(True)
        hint.setStyleSheet("color: gray; font-size: 11px;")

        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(self.list, 1)
        lay.addLayout(row)
        lay.addWidget(self.background)
        lay.addWidget(hint)
        lay.addWidget(self.warnings_box)
        self._check_timer = QTimer(self)
        self._check_timer.setSingleShot(True)
        self._check_timer.setInterval(300)
        self._check_timer.timeout.connect(self.update_warnings)
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(0)
        self._refresh_timer.timeout.connect(self.refresh)
        self._updating = False
        self.set_document(None)

    # ----- document ------------------------------------------------------------------------------
    def set_document(self, doc: Document | None) -> None:
        """Show ``doc``'s layers."""
        if self.doc is not None:
            self.doc.unsubscribe(self._on_change)
        self.doc = doc
        if doc is not None:
            doc.subscribe(self._on_change)
        self.refresh()
        self.update_warnings()

    def _on_change(self, change: Change) -> None:
        if change.kind in ("layers", "props", "active", "history"):
            self._refresh_timer.start()  # coalesced, and never inside the list's own signal handlers
        if change.kind in ("pixels", "layers", "history"):
            self._check_timer.start()

    def refresh(self) -> None:
        """Rebuild the rows from the document."""
        self._updating = True
        self.list.clear()
        doc = self.doc
        for b in (self.add_btn, self.del_btn, self.up_btn, self.down_btn, self.color_btn, self.background):
            b.setEnabled(doc is not None)
        if doc is not None:
            n = len(doc.layers)
            for i in reversed(range(n)):
                layer = doc.layers[i]
                item = QListWidgetItem(swatch(layer.color), layer.display_name(i))
                if not layer.name:
                    item.setForeground(QColor(150, 150, 150))
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Checked if layer.visible else Qt.CheckState.Unchecked)
                item.setToolTip(f"{token_name(i)} — initializer word “{layer.name}”. Checkbox: show/hide.")
                item.setData(UID_ROLE, layer.uid)  # rows may be stale for a moment: find layers by uid
                item.setData(SHOWN_ROLE, layer.display_name(i))
                self.list.addItem(item)
            if 0 <= doc.active < n:
                self.list.setCurrentRow(n - 1 - doc.active)
            self.add_btn.setEnabled(n < MAX_HANDLES)
            self.del_btn.setEnabled(n > 0)
            self.background.blockSignals(True)
            self.background.setChecked(doc.show_background)
            self.background.blockSignals(False)
        self._updating = False

    def update_warnings(self) -> None:
        """Show the document's mask problems (empty, whole image, overlaps)."""
        problems = self.doc.problems() if self.doc is not None else []
        self.warnings.setText("\n".join(f"⚠ {p}" for p in problems))
        self.warnings.setToolTip(self.warnings.text())

    # ----- actions -------------------------------------------------------------------------------
    def _index(self, row: int) -> int:
        return len(self.doc.layers) - 1 - row if self.doc else -1

    def add_layer(self, name: str | None = None) -> None:
        """Add a concept above the active one."""
        if self.doc is None:
            return
        try:
            self.doc.add_layer(name)
        except ValueError as e:
            self.message.emit(str(e))

    def delete_layer(self, index: int | None = None) -> None:
        """Delete a concept (the selected one by default); undo brings it back."""
        if self.doc is not None:
            self.doc.remove_layer(self.doc.active if index is None else index)

    def rename(self, index: int, name: str) -> None:
        """Rename a concept (its initializer word)."""
        name = name.strip()
        if self.doc is not None and name:
            self.doc.set_layer_prop(index, "name", name)

    def move(self, delta: int) -> None:
        """Move the active concept up (+1) or down (-1) in the stack."""
        if self.doc is not None and self.doc.active >= 0:
            self.doc.move_layer(self.doc.active, self.doc.active + delta)

    def pick_color(self) -> None:
        """Ask for a new overlay colour for the active concept."""
        doc = self.doc
        if doc is None or doc.active_layer is None:
            return
        c = self.ask_color(QColor(*doc.active_layer.color))
        if c is not None and c.isValid():
            doc.set_layer_prop(doc.active, "color", (c.red(), c.green(), c.blue()))

    def ask_color(self, current: QColor) -> QColor | None:
        """The colour dialog (tests replace it); None or an invalid colour when cancelled."""
        return QColorDialog.getColor(current, self, "Concept colour")

    def _row_changed(self, row: int) -> None:
        if not self._updating and self.doc is not None and row >= 0:
            self.doc.set_active(self._index(row))

    def _item_changed(self, item: QListWidgetItem) -> None:
        if self._updating or self.doc is None:
            return
        uid = item.data(UID_ROLE)
        index = next((i for i, layer in enumerate(self.doc.layers) if layer.uid == uid), -1)
        if index < 0:
            return
        layer = self.doc.layers[index]
        visible = item.checkState() == Qt.CheckState.Checked
        if visible != layer.visible:
            self.doc.set_visible(index, visible)
        text = item.text().strip()
        if text and text != item.data(SHOWN_ROLE):  # edited by the user (never the placeholder)
            item.setData(SHOWN_ROLE, text)
            self.rename(index, text)
        elif not text:
            self._refresh_timer.start()

    def _rows_moved(self, _parent: QModelIndex, start: int, _end: int, _dest: QModelIndex, row: int) -> None:
        if self._updating or self.doc is None:
            return
        to_row = row - 1 if row > start else row
        # refresh after the view finished its own move bookkeeping
        QTimer.singleShot(0, lambda: self.doc and self.doc.move_layer(self._index(start), self._index(to_row)))
