"""Dock panels besides the layers: tool options and SAM's suggested regions."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (QCheckBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QListWidget, QListWidgetItem,
                               QPushButton, QSlider, QSpinBox, QVBoxLayout, QWidget)

from bas_desktop.model.document import Document
from bas_desktop.model.tool_settings import ToolSettings


class ToolOptions(QWidget):
    """Brush size/hardness, fill mode and tolerance, lasso mode, and the SAM buttons."""

    changed = Signal()
    samAccept = Signal()
    samClear = Signal()
    samSuggest = Signal()
    samModels = Signal()

    def __init__(self, settings: ToolSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.size = QSpinBox()
        self.size.setRange(1, 2000)
        self.size.setSuffix(" px")
        self.size.setToolTip("Brush diameter in photo pixels ( [ and ] )")
        self.hardness = QSlider(Qt.Orientation.Horizontal)
        self.hardness.setRange(0, 100)
        self.from_photo = QCheckBox("Fill similar colours of the photo")
        self.tolerance = QSlider(Qt.Orientation.Horizontal)
        self.tolerance.setRange(0, 128)
        self.subtract = QCheckBox("Lasso removes (or hold Alt)")
        self.hint = QLabel()
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: gray; font-size: 11px;")

        paint = QGroupBox("Brush / eraser")
        f = QFormLayout(paint)
        f.addRow("Size", self.size)
        f.addRow("Hardness", self.hardness)
        fill = QGroupBox("Fill / lasso")
        f2 = QFormLayout(fill)
        f2.addRow(self.from_photo)
        f2.addRow("Tolerance", self.tolerance)
        f2.addRow(self.subtract)

        sam = QGroupBox("Segment Anything")
        v = QVBoxLayout(sam)
        self.sam_status = QLabel("Press S and click an object.")
        self.sam_status.setWordWrap(True)
        self.sam_status.setMinimumHeight(2 * self.sam_status.fontMetrics().lineSpacing() + 10)  # two lines, never clipped
        row = QHBoxLayout()
        self.accept_btn = QPushButton("Accept (Enter)")
        self.clear_btn = QPushButton("Clear (Esc)")
        row.addWidget(self.accept_btn)
        row.addWidget(self.clear_btn)
        self.suggest_btn = QPushButton("Suggest concepts")
        self.suggest_btn.setToolTip("Let SAM find candidate regions; assign them to concepts with one click")
        self.models_btn = QPushButton("Models…")
        v.addWidget(self.sam_status)
        v.addLayout(row)
        row2 = QHBoxLayout()
        row2.addWidget(self.suggest_btn)
        row2.addWidget(self.models_btn)
        v.addLayout(row2)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        for w in (self.hint, paint, fill, sam):
            lay.addWidget(w)
        lay.addStretch(1)
        self.sync_from_settings()
        self.size.valueChanged.connect(self._to_settings)
        self.hardness.valueChanged.connect(self._to_settings)
        self.from_photo.toggled.connect(self._to_settings)
        self.tolerance.valueChanged.connect(self._to_settings)
        self.subtract.toggled.connect(self._to_settings)
        self.accept_btn.clicked.connect(self.samAccept)
        self.clear_btn.clicked.connect(self.samClear)
        self.suggest_btn.clicked.connect(self.samSuggest)
        self.models_btn.clicked.connect(self.samModels)

    def sync_from_settings(self) -> None:
        """Show the current settings (after [ ] changed the size)."""
        s = self.settings
        for w, v in ((self.size, round(s.brush_size)), (self.hardness, round(s.hardness * 100)),
                     (self.tolerance, s.tolerance)):
            w.blockSignals(True)
            w.setValue(v)
            w.blockSignals(False)
        for w, v in ((self.from_photo, s.fill_from_photo), (self.subtract, s.lasso_subtract)):
            w.blockSignals(True)
            w.setChecked(v)
            w.blockSignals(False)

    def _to_settings(self) -> None:
        s = self.settings
        s.brush_size = float(self.size.value())
        s.hardness = self.hardness.value() / 100
        s.fill_from_photo = self.from_photo.isChecked()
        s.tolerance = self.tolerance.value()
        s.lasso_subtract = self.subtract.isChecked()
        self.changed.emit()


def thumbnail(image: np.ndarray, mask: np.ndarray, bbox: tuple[int, int, int, int], side: int = 72) -> QPixmap:
    """The region's crop of the photo with everything outside the mask dimmed."""
    x0, y0, x1, y1 = bbox
    pad = max(4, (x1 - x0 + y1 - y0) // 16)
    h, w = mask.shape
    x0, y0, x1, y1 = max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad)
    step = max(1, max(x1 - x0, y1 - y0) // (side * 2))
    crop = image[y0:y1:step, x0:x1:step].astype(np.float32)
    m = mask[y0:y1:step, x0:x1:step, None]
    crop = np.where(m, crop, crop * 0.25 + 20).clip(0, 255).astype(np.uint8)
    crop = np.ascontiguousarray(crop)
    qimg = QImage(crop.data, crop.shape[1], crop.shape[0], 3 * crop.shape[1], QImage.Format.Format_RGB888).copy()
    return QPixmap.fromImage(qimg).scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio,
                                          Qt.TransformationMode.SmoothTransformation)


class SuggestionsPanel(QWidget):
    """SAM's candidate regions; one click assigns a region to the active concept or a new one.

    Signals: ``assign(int, bool)`` (suggestion index, as a new concept), ``preview(int)`` (-1: none).
    """

    assign = Signal(int, bool)
    preview = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.items: list = []
        self.list = QListWidget()
        self.list.setIconSize(QSize(72, 72))
        self.list.setViewMode(QListWidget.ViewMode.IconMode)
        self.list.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.list.setMovement(QListWidget.Movement.Static)
        self.list.setSpacing(4)
        self.list.currentRowChanged.connect(self.preview)
        self.list.currentRowChanged.connect(lambda _r: self._enable())
        self.list.itemDoubleClicked.connect(lambda it: self.assign.emit(self.list.row(it), False))
        self.to_active = QPushButton("Add to active concept")
        self.to_new = QPushButton("New concept")
        self.to_active.clicked.connect(lambda: self._emit(False))
        self.to_new.clicked.connect(lambda: self._emit(True))
        self.info = QLabel("Press “Suggest concepts” to let SAM find objects. Select a region, then add it.")
        self.info.setWordWrap(True)
        self.info.setStyleSheet("color: gray; font-size: 11px;")
        row = QHBoxLayout()
        row.addWidget(self.to_active)
        row.addWidget(self.to_new)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(self.info)
        lay.addWidget(self.list, 1)
        lay.addLayout(row)
        self._enable()

    def _enable(self) -> None:
        on = self.list.currentRow() >= 0
        self.to_active.setEnabled(on)
        self.to_new.setEnabled(on)

    def _emit(self, new: bool) -> None:
        row = self.list.currentRow()
        if row >= 0:
            self.assign.emit(row, new)

    def set_suggestions(self, doc: Document | None, suggestions: list) -> None:
        """Show candidate regions (objects with ``mask``, ``bbox``, ``score``)."""
        self.items = list(suggestions)
        self.list.clear()
        if doc is not None:
            for i, s in enumerate(self.items):
                item = QListWidgetItem(QIcon(thumbnail(doc.image, s.mask, s.bbox)), f"{100 * s.area / s.mask.size:.0f}%")
                item.setToolTip(f"region {i + 1}: SAM score {s.score:.2f}, {s.area} px")
                self.list.addItem(item)
        self.info.setText(f"{len(self.items)} candidate regions, best first. Click one to see it, then add it "
                          "to a concept (double-click: add to the active one)." if self.items
                          else "No candidate regions found.")
        if self.items:
            self.list.setCurrentRow(0)  # the best one is selected: one click on a button assigns it
        self._enable()
