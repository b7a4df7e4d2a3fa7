"""Drag-and-drop local edits: drop a handle chip on the photo, adjust the region, flip through candidates.

:class:`EditPanel` watches a :class:`~bas_desktop.widgets.canvas.Canvas` for chip drops (an event filter, so
the canvas needs no change), proposes the region under the drop point (``proposer``: SAM when the
app has it, else the dropped handle's own mask moved there), lets the user paint/erase it, runs
:func:`bas_desktop.model.jobs.edit_job` and shows the candidates; *Accept* makes the candidate a new
version of the photo as one undoable step (:class:`PhotoVersionEdit`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from PySide6.QtCore import QEvent, QObject, QPointF, Qt, Signal
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPaintEvent
from PySide6.QtWidgets import (QDoubleSpinBox, QGridLayout, QHBoxLayout, QLabel, QProgressBar, QPushButton, QSpinBox,
                               QVBoxLayout, QWidget)

from bas_desktop.model import jobs
from bas_desktop.widgets.error_dialog import show_error
from bas_desktop.widgets.canvas import Canvas
from bas_desktop.widgets.charts import rgb_to_pixmap
from bas_desktop.widgets.chips import ChipBar, Handle, token_from_mime
from bas_desktop.model.document import Document
from bas_desktop.widgets.layout import reserved_box
from bas_desktop.model.local_edit import PhotoVersionEdit, accept_photo_version, moved_mask_proposal, region_warnings
from bas_desktop.model.project_data import ProjectData
from bas_desktop.workers import JobMessage, JobRunner

Proposer = Callable[[np.ndarray, int, int], "np.ndarray | None"]


# ------------------------------------------------------------------------------ region editor
class RegionView(QWidget):
    """The photo with the edit region in cyan; left-drag paints the region, right-drag erases."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.image: np.ndarray | None = None
        self.region: np.ndarray | None = None
        self.brush = 6
        self.setMinimumSize(300, 300)

    def set_content(self, image: np.ndarray | None, region: np.ndarray | None) -> None:
        """Show ``image`` with ``region`` (bool, same size)."""
        self.image, self.region = image, None if region is None else region.copy()
        self.update()

    def _scale(self) -> tuple[float, float, float]:
        assert self.image is not None
        h, w = self.image.shape[:2]
        s = min(self.width() / w, self.height() / h)
        return s, (self.width() - w * s) / 2, (self.height() - h * s) / 2

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(43, 43, 46))
        if self.image is None:
            p.setPen(QColor(170, 170, 175))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                       "Drag a handle chip onto the photo\nto edit that spot")
            return
        s, ox, oy = self._scale()
        h, w = self.image.shape[:2]
        rgb = self.image.astype(np.float32)
        if self.region is not None:
            rgb[self.region] = rgb[self.region] * 0.45 + np.array([0, 220, 255], np.float32) * 0.55
        pm = rgb_to_pixmap(rgb.astype(np.uint8))
        p.drawPixmap(int(ox), int(oy), int(w * s), int(h * s), pm)

    def _paint_at(self, pos: QPointF, value: bool) -> None:
        if self.image is None or self.region is None:
            return
        s, ox, oy = self._scale()
        x, y = (pos.x() - ox) / s, (pos.y() - oy) / s
        h, w = self.region.shape
        yy, xx = np.ogrid[:h, :w]
        self.region[(xx - x) ** 2 + (yy - y) ** 2 <= self.brush ** 2] = value
        self.update()
        self.changed.emit()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self._paint_at(event.position(), event.button() != Qt.MouseButton.RightButton)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if event.buttons() & Qt.MouseButton.LeftButton:
            self._paint_at(event.position(), True)
        elif event.buttons() & Qt.MouseButton.RightButton:
            self._paint_at(event.position(), False)


class _DropFilter(QObject):
    def __init__(self, panel: EditPanel) -> None:
        super().__init__(panel)
        self.panel = panel

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        t = event.type()
        if t in (QEvent.Type.DragEnter, QEvent.Type.DragMove):
            if token_from_mime(event.mimeData()) is not None:  # type: ignore[attr-defined]
                event.acceptProposedAction()  # type: ignore[attr-defined]
                return True
        elif t == QEvent.Type.Drop:
            token = token_from_mime(event.mimeData())  # type: ignore[attr-defined]
            if token is not None and isinstance(obj, Canvas):
                p = obj.to_image(event.position())  # type: ignore[attr-defined]
                event.acceptProposedAction()  # type: ignore[attr-defined]
                self.panel.drop(token, int(p.x()), int(p.y()))
                return True
        return False


# ------------------------------------------------------------------------------ the panel
class EditPanel(QWidget):
    """Region, parameters, candidates. Signals: ``candidatesReady(int)``, ``accepted()``."""

    candidateAdded = Signal(int)
    accepted = Signal()

    def __init__(self, runner: JobRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.doc: Document | None = None
        self.data: ProjectData | None = None
        self.device = "auto"
        self.proposer: Proposer | None = None
        self.token: str | None = None
        self.proposal: np.ndarray | None = None
        self.candidates: list[jobs.EditCandidate] = []
        self.index = 0
        self.busy = False
        self.last_error: str | None = None
        self._filter = _DropFilter(self)
        self._build()
        runner.message.connect(self._on_message)

    def _build(self) -> None:
        lay = QVBoxLayout(self)
        self.chips = ChipBar()
        lay.addWidget(self.chips)
        self.hint = QLabel("Drag a chip onto the photo. Left-drag here paints the region, right-drag erases.")
        self.hint.setWordWrap(True)
        lay.addWidget(self.hint)
        self.view = RegionView()
        self.view.changed.connect(self._region_changed)
        lay.addWidget(self.view, 1)
        self.warning = QLabel("")
        self.warning.setStyleSheet("color: #e8a23a;")
        lay.addWidget(reserved_box(self.warning, lines=2))
        row = QGridLayout()
        self.count, self.steps = QSpinBox(), QSpinBox()
        self.count.setRange(1, 16)
        self.count.setValue(3)
        self.steps.setRange(1, 200)
        self.steps.setValue(30)
        self.strength = QDoubleSpinBox()
        self.strength.setRange(0.05, 1.0)
        self.strength.setSingleStep(0.05)
        self.strength.setValue(0.8)
        self.brush = QSpinBox()
        self.brush.setRange(1, 200)
        self.brush.setValue(6)
        self.brush.valueChanged.connect(lambda v: setattr(self.view, "brush", v))
        # two rows of two: one row of four made the panel wider than its dock at 1366x768
        for i, (label, w) in enumerate((("Candidates", self.count), ("Steps", self.steps),
                                        ("Strength", self.strength), ("Brush", self.brush))):
            row.addWidget(QLabel(label), i // 2, 2 * (i % 2))
            row.addWidget(w, i // 2, 2 * (i % 2) + 1)
        lay.addLayout(row)
        buttons = QHBoxLayout()
        self.reset_button, self.clear_button = QPushButton("Reset region"), QPushButton("Clear region")
        self.run_button = QPushButton("Generate edits")
        self.reset_button.clicked.connect(self.reset_region)
        self.clear_button.clicked.connect(self.clear_region)
        self.run_button.clicked.connect(self.run)
        for b in (self.reset_button, self.clear_button, self.run_button):
            buttons.addWidget(b)
        lay.addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        lay.addWidget(self.progress)
        flip = QHBoxLayout()
        self.prev_button, self.next_button = QPushButton("◀"), QPushButton("▶")
        self.counter = QLabel("no candidates")
        self.accept_button = QPushButton("Accept as new photo version")
        self.prev_button.clicked.connect(lambda: self.show_candidate(self.index - 1))
        self.next_button.clicked.connect(lambda: self.show_candidate(self.index + 1))
        self.accept_button.clicked.connect(self.accept)
        for w in (self.prev_button, self.counter, self.next_button):
            flip.addWidget(w)
        lay.addLayout(flip)
        lay.addWidget(self.accept_button)
        self._update_buttons()

    # ----- wiring ------------------------------------------------------------------------------
    def attach_canvas(self, canvas: Canvas) -> None:
        """Accept chip drops on ``canvas``."""
        canvas.setAcceptDrops(True)
        canvas.installEventFilter(self._filter)
        self.canvas = canvas

    def set_project(self, doc: Document | None, data: ProjectData | None, handles: list[Handle],
                    device: str = "auto", proposer: Proposer | None = None) -> None:
        """Edit this document with this project's pack."""
        self.doc, self.data, self.device, self.proposer = doc, data, device, proposer
        self.chips.set_handles(handles)
        self.token, self.proposal, self.candidates = None, None, []
        self.view.set_content(None, None)
        self._region_changed()
        self._update_buttons()

    def _region_changed(self) -> None:
        """Mirror the region on the main canvas and warn when it reaches into other concepts."""
        region = self.view.region if not self.candidates else None
        canvas = getattr(self, "canvas", None)
        if canvas is not None:
            canvas.set_edit_region(region)
        warnings = region_warnings(self.doc, self.token, region) if self.doc and self.token and region is not None else []
        self.warning.setText("\n".join(f"⚠ {w}" for w in warnings))

    def _update_buttons(self) -> None:
        has_region = self.view.region is not None
        self.run_button.setEnabled(has_region and not self.busy and self.data is not None and self.data.has_pack())
        self.reset_button.setEnabled(self.proposal is not None)
        self.clear_button.setEnabled(has_region)
        n = len(self.candidates)
        self.prev_button.setEnabled(n > 1)
        self.next_button.setEnabled(n > 1)
        self.accept_button.setEnabled(n > 0 and not self.busy)
        self.counter.setText(f"candidate {self.index + 1}/{n}" if n else "no candidates")

    # ----- region ------------------------------------------------------------------------------
    def drop(self, token: str, x: int, y: int) -> None:
        """A chip was dropped at image pixel (x, y): propose the region there."""
        if self.doc is None:
            return
        x, y = min(max(x, 0), self.doc.width - 1), min(max(y, 0), self.doc.height - 1)
        region = None
        source = "the handle's mask moved here"
        if self.proposer is not None:
            try:
                region = self.proposer(self.doc.image, x, y)
                source = "Segment Anything"
            except Exception as e:  # noqa: BLE001 - SAM trouble must not lose the drop; fall back
                self.hint.setText(f"SAM could not propose a region ({e}); using the handle's mask")
        if region is None or not np.asarray(region).any():
            region = moved_mask_proposal(self.doc, token, x, y)
            source = "the handle's mask moved here"
            idx = int(token.strip("<>").removeprefix("asset")) if token.startswith("<asset") else -1
            if 0 <= idx < len(self.doc.layers) and region.sum() < (self.doc.layers[idx].mask >= 128).sum():
                source += ", clipped to the photo"
        region = np.asarray(region, bool)
        if region.shape != (self.doc.height, self.doc.width):  # a proposer's mask of another size: clip / pad
            fitted = np.zeros((self.doc.height, self.doc.width), bool)
            h, w = min(region.shape[0], self.doc.height), min(region.shape[1], self.doc.width)
            fitted[:h, :w] = region[:h, :w]
            region = fitted
        self.token, self.proposal, self.candidates, self.index = token, region, [], 0
        self.view.set_content(self.doc.image, self.proposal)
        self.hint.setText(f"Put {token} at ({x}, {y}); region from {source}. Paint to adjust, then Generate edits.")
        self._region_changed()
        self._update_buttons()

    def reset_region(self) -> None:
        """Back to the proposed region."""
        if self.doc is not None and self.proposal is not None:
            self.view.set_content(self.doc.image, self.proposal)
            self._region_changed()

    def clear_region(self) -> None:
        """An empty region to paint from scratch."""
        if self.doc is not None:
            self.view.set_content(self.doc.image, np.zeros((self.doc.height, self.doc.width), bool))
            self._region_changed()

    # ----- run and accept ----------------------------------------------------------------------
    def run(self) -> None:
        """Generate the candidates in the worker thread."""
        if self.doc is None or self.data is None or self.token is None or self.view.region is None or self.busy:
            return
        if not self.view.region.any():
            self._error("Empty region", "paint the region to edit first")
            return
        self.candidates, self.index, self.busy = [], 0, True
        self.progress.setValue(0)
        self._update_buttons()
        self.runner.submit("edit", jobs.edit_job, jobs.EditInputs(
            self.data.pack_dir, self.data.gallery_dir, self.doc.image.copy(), self.view.region.copy(), self.token,
            self.count.value(), 0, self.steps.value(), self.strength.value(), device=self.device))

    def show_candidate(self, i: int) -> None:
        """Show candidate ``i`` (wrapping)."""
        if not self.candidates or self.doc is None:
            return
        self.index = i % len(self.candidates)
        self.view.set_content(self.candidates[self.index].image, None)
        self._region_changed()
        self._update_buttons()

    def accept(self) -> PhotoVersionEdit | None:
        """Make the shown candidate the photo (undoable)."""
        if not self.candidates or self.doc is None:
            return None
        edit = accept_photo_version(self.doc, self.candidates[self.index].image, f"Local edit: {self.token}")
        self.candidates, self.proposal = [], None
        self.view.set_content(self.doc.image, None)
        self._region_changed()
        self.hint.setText("Accepted: the photo has a new version (Undo restores the previous one).")
        self._update_buttons()
        self.accepted.emit()
        return edit

    def _on_message(self, msg: JobMessage) -> None:
        if msg.job != "edit":
            return
        if msg.kind == "progress":
            if msg.fraction is not None:
                self.progress.setValue(int(1000 * msg.fraction))
            if isinstance(msg.result, jobs.EditCandidate):
                self.candidates.append(msg.result)
                self.show_candidate(len(self.candidates) - 1)
                self.candidateAdded.emit(len(self.candidates))
            return
        self.busy = False
        self._update_buttons()
        if msg.kind == "error":
            self._error("Edit failed", msg.text, msg.details)

    def _error(self, title: str, text: str, details: str = "") -> None:
        self.last_error = text
        self.hint.setText(f"Error: {text}")
        show_error(self, title, text, details)
