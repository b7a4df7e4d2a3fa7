"""Segment Anything in the editor: the click tool, the controller that owns the model, and suggestions.

The engine (``engine.sam``) is imported only inside worker jobs, so torch never loads at app start.
The UI talks to it through the small :class:`SamBackend` protocol (``engine.sam.session.SamSession``
satisfies it), which keeps the tool testable and the engine swappable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

import numpy as np
from PySide6.QtCore import QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QKeyEvent, QMouseEvent, QPainter, QPen
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from bas_desktop.model.document import Document, Layer
from bas_desktop.model.raster import bbox_of
from bas_desktop.model.tool_settings import ToolSettings
from bas_desktop.widgets.tools import Tool
from bas_desktop.workers import JobRunner
from engine.jobs.events import JobMessage, MessageKind, Report, StopCheck

if TYPE_CHECKING:
    from bas_desktop.widgets.canvas import Canvas


class SamBackend(Protocol):
    """What the editor needs from a Segment Anything session."""

    has_image: bool
    image_key: str | None

    def set_image(self, image: np.ndarray, progress_cb: Callable | None = None, cancel_flag: Any = None,
                  source: Any = None) -> str: ...
    def predict(self, points: Sequence[tuple[float, float]] = (), labels: Sequence[int] = (),
                box: tuple[float, float, float, float] | None = None, multimask: bool = True,
                mask_input: np.ndarray | None = None) -> Any: ...
    def suggest(self, **kwargs: Any) -> list: ...


# ----- job inputs (plain dataclasses) and job functions (no Qt) ------------------------------------
@dataclass(frozen=True)
class OpenSamJob:
    """Load a SAM model: ``model`` is a spec name (``vit_b``, ``tiny``...), ``cache_dir`` the model cache."""

    model: str
    cache_dir: Path | None = None
    weights: Path | None = None
    threads: int | None = None


@dataclass(frozen=True)
class EncodeJob:
    """Embed one photo (cached per image content by the engine)."""

    session: Any
    image: np.ndarray


@dataclass(frozen=True)
class SuggestJob:
    """Automatic mask generation on the current image."""

    session: Any
    points_per_side: int = 16
    pred_iou_thresh: float = 0.86
    stability_score_thresh: float = 0.92
    max_masks: int = 24


def _progress(report: Report, job: str) -> Callable:
    return lambda ev: report(JobMessage(job, MessageKind.PROGRESS, text=f"{ev.task} {ev.message}".strip(), fraction=ev.fraction))


def open_sam_job(inputs: OpenSamJob, report: Report, should_stop: StopCheck) -> Any:
    """Build a ``SamSession`` (imports torch; slow for real models: worker thread only)."""
    from engine.sam.models import ModelManager
    from engine.sam.session import SamSession

    report(JobMessage("sam-open", MessageKind.PROGRESS, text=f"loading SAM {inputs.model}"))
    manager = ModelManager(inputs.cache_dir) if inputs.cache_dir else ModelManager()
    return SamSession.open(inputs.model, manager, weights=inputs.weights, threads=inputs.threads,
                           progress_cb=_progress(report, "sam-open"))


def encode_job(inputs: EncodeJob, report: Report, should_stop: StopCheck) -> str:
    """Run the image encoder once for this photo (a cache hit returns at once)."""
    return inputs.session.set_image(inputs.image, progress_cb=_progress(report, "sam-encode"),
                                    cancel_flag=should_stop)


def suggest_job(inputs: SuggestJob, report: Report, should_stop: StopCheck) -> list:
    """SAM's automatic mask generation, best first."""
    return inputs.session.suggest(points_per_side=inputs.points_per_side, pred_iou_thresh=inputs.pred_iou_thresh,
                                  stability_score_thresh=inputs.stability_score_thresh,
                                  max_masks=inputs.max_masks, progress_cb=_progress(report, "sam-suggest"),
                                  cancel_flag=should_stop)


class SamController(QObject):
    """Owns the SAM session and the photo's embedding; runs the slow parts on the ``sam`` job lane.

    Signals: ``status(str, object)`` (text, fraction or None) for the status bar; ``ready()`` once the
    current photo is embedded; ``suggestions(list)``; ``failed(str)``.
    """

    status = Signal(str, object)
    ready = Signal()
    suggestions = Signal(list)
    failed = Signal(str)

    def __init__(self, jobs: JobRunner, model: str = "vit_b", cache_dir: Path | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self.model = model
        self.cache_dir = cache_dir
        self.weights: Path | None = None
        self.session: SamBackend | None = None
        self.doc: Document | None = None
        self._image_ready = False
        self.suggest_params = SuggestJob(session=None)
        self.problem: str | None = None  # why clicks cannot be answered (model missing, failed to load)
        jobs.message.connect(self._on_message)

    @property
    def image_ready(self) -> bool:
        """True when clicks can be answered for the current photo."""
        return self._image_ready and self.session is not None

    def set_document(self, doc: Document | None) -> None:
        """A new photo: its embedding is computed the next time SAM is needed."""
        self.doc = doc
        self._image_ready = False
        self.jobs.cancel("sam-encode")

    def set_model(self, model: str, weights: Path | None = None) -> None:
        """Switch model (the next :meth:`prepare` loads it)."""
        if model != self.model or weights != self.weights:
            self.model, self.weights = model, weights
            self.session = None
            self._image_ready = False
            self.problem = None

    def model_available(self) -> bool:
        """True when the chosen model needs no download (weights found, or a test model)."""
        if self.weights is not None:
            return True
        from engine.sam.models import ModelManager
        from engine.sam.specs import get_spec

        spec = get_spec(self.model)
        if not spec.url:
            return True
        manager = ModelManager(self.cache_dir) if self.cache_dir else ModelManager()
        return manager.is_available(spec)

    def prepare(self) -> None:
        """Load the model if needed and embed the current photo, in the background."""
        if self.doc is None or self.image_ready or self.jobs.busy("sam-open") or self.jobs.busy("sam-encode"):
            return
        if self.session is None:
            self.status.emit(f"Loading Segment Anything ({self.model})…", None)
            self.jobs.submit("sam-open", open_sam_job, OpenSamJob(self.model, self.cache_dir, self.weights), lane="sam")
        else:
            self._encode()

    def _encode(self) -> None:
        if self.doc is None or self.session is None:
            return
        self.status.emit("Segment Anything: reading the photo…", 0.0)
        self.jobs.submit("sam-encode", encode_job, EncodeJob(self.session, self.doc.image), lane="sam")

    def suggest(self) -> None:
        """Start "Suggest concepts" (after the embedding, if it is not ready yet)."""
        self._suggest_pending = True
        if self.image_ready:
            self._start_suggest()
        else:
            self.prepare()

    def _start_suggest(self) -> None:
        self._suggest_pending = False
        params = SuggestJob(self.session, self.suggest_params.points_per_side, self.suggest_params.pred_iou_thresh,
                            self.suggest_params.stability_score_thresh, self.suggest_params.max_masks)
        self.status.emit("Finding candidate regions…", 0.0)
        self.jobs.submit("sam-suggest", suggest_job, params, lane="sam")

    def predict(self, points: list[tuple[float, float]], labels: list[int],
                box: tuple[float, float, float, float] | None) -> np.ndarray | None:
        """The mask (bool HxW at the document's size) for these prompts, or None when not ready."""
        if not self.image_ready or (not points and box is None):
            return None
        multimask = len(points) <= 1 and box is None
        pred = self.session.predict(points, labels, box, multimask=multimask)
        return np.asarray(pred.mask, bool)

    def _on_message(self, msg: JobMessage) -> None:
        if not msg.job.startswith("sam-"):
            return
        if msg.kind == "progress":
            label = {"sam-open": "Loading Segment Anything", "sam-encode": "Segment Anything: reading the photo",
                     "sam-suggest": "Finding candidate regions"}[msg.job]
            self.status.emit(f"{label}…", msg.fraction)
        elif msg.kind == "error":
            self.status.emit("", None)
            if msg.job in ("sam-open", "sam-encode"):
                self.problem = msg.text
            self.failed.emit(f"Segment Anything: {msg.text}")
        elif msg.kind == "cancelled":
            self.status.emit("", None)
        elif msg.job == "sam-open":
            self.session = msg.result
            self._encode()
        elif msg.job == "sam-encode":
            self._image_ready = self.doc is not None
            self.problem = None
            self.status.emit("SAM ready: click an object", None)
            self.ready.emit()
            if getattr(self, "_suggest_pending", False):
                self._start_suggest()
        elif msg.job == "sam-suggest":
            self.status.emit(f"{len(msg.result)} candidate regions", None)
            self.suggestions.emit(list(msg.result))


class SamTool(Tool):
    """Click-to-mask: left click adds a positive point, right (or Alt+) click a negative one, drag a box.

    The predicted mask is previewed live; Enter (or the Accept button) adds it to the active concept
    as one undo step, Alt+Enter subtracts it, Esc clears the prompts.
    """

    name, label, shortcut = "sam", "Segment Anything", "S"
    hint = "Click an object (right-click: not this), drag a box. Enter accepts, Esc clears."

    def __init__(self, settings: ToolSettings, controller: SamController) -> None:
        super().__init__(settings)
        self.controller = controller
        self.points: list[tuple[float, float]] = []
        self.labels: list[int] = []
        self.box: tuple[float, float, float, float] | None = None
        self.preview: np.ndarray | None = None
        self._preview_img: QImage | None = None
        self._preview_buf: np.ndarray | None = None
        self._preview_at: tuple[int, int] = (0, 0)
        self._drag_from: tuple[float, float] | None = None
        self._drag_to: tuple[float, float] | None = None
        self._canvas = None
        controller.ready.connect(self._refresh)

    def activate(self, canvas: Canvas) -> None:
        """The tool was selected: make sure SAM is loading / embedding this photo."""
        self._canvas = canvas
        self.controller.prepare()

    def press(self, canvas: Canvas, pos: QPointF, event: QMouseEvent) -> None:
        self._canvas = canvas
        if event.button() in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
            self._drag_from = (pos.x(), pos.y())
            self._drag_to = None
            self._button = event.button()
            self._alt = bool(event.modifiers() & Qt.KeyboardModifier.AltModifier)

    def move(self, canvas: Canvas, pos: QPointF, event: QMouseEvent) -> None:
        if self._drag_from is not None and getattr(self, "_button", None) == Qt.MouseButton.LeftButton:
            p = (pos.x(), pos.y())
            if max(abs(p[0] - self._drag_from[0]), abs(p[1] - self._drag_from[1])) * canvas.zoom > 6:
                self._drag_to = p
                canvas.update()

    def release(self, canvas: Canvas, pos: QPointF, event: QMouseEvent) -> None:
        if self._drag_from is None:
            return
        start, end, self._drag_from, self._drag_to = self._drag_from, self._drag_to, None, None
        if end is not None:
            self.box = (min(start[0], end[0]), min(start[1], end[1]), max(start[0], end[0]), max(start[1], end[1]))
        else:
            negative = event.button() == Qt.MouseButton.RightButton or self._alt
            self.add_point(start, 0 if negative else 1)
            return
        self._refresh()

    def add_point(self, p: tuple[float, float], label: int) -> None:
        """Add a prompt point (1 = object, 0 = not the object) and update the preview."""
        self.points.append(p)
        self.labels.append(label)
        self._refresh()

    def _refresh(self) -> None:
        canvas = self._canvas
        mask = self.controller.predict(self.points, self.labels, self.box)
        self.set_preview(mask)
        if canvas is not None:
            canvas.update()

    def set_preview(self, mask: np.ndarray | None) -> None:
        """Show ``mask`` (bool HxW) as the live preview.

        Only the mask's bounding box is turned into an image (a click must stay fast on big photos).
        """
        self.preview = mask
        self._preview_img = None
        self._preview_at = (0, 0)
        if mask is None:
            return
        rect = bbox_of(mask)
        if rect is None:
            return
        x0, y0, x1, y1 = rect
        crop = np.pad(mask[y0:y1, x0:x1], 1)  # a false border so the outline closes at the box edge
        inner = crop[1:-1, 1:-1]
        h, w = inner.shape
        edge = inner & ~(crop[:-2, 1:-1] & crop[2:, 1:-1] & crop[1:-1, :-2] & crop[1:-1, 2:])
        # premultiplied ARGB32 words (colour <= alpha): translucent white inside, the layer tint shows
        # under it; an opaque cyan outline. Whole words: ~100x faster than assigning BGRA tuples.
        words = np.where(edge, np.uint32(0xFF00C8FF), np.where(inner, np.uint32(0x6E6E6E6E), np.uint32(0)))
        buf = np.ascontiguousarray(words, dtype=np.uint32).view(np.uint8).reshape(h, w, 4)
        self._preview_buf = buf
        self._preview_at = (x0, y0)
        self._preview_img = QImage(buf.data, w, h, 4 * w, QImage.Format.Format_ARGB32_Premultiplied)

    def accept(self, doc: Document, subtract: bool = False) -> bool:
        """Put the previewed mask into the active concept as one undo step; True when it changed pixels."""
        if self.preview is None or doc.active_layer is None:
            return False
        rect = bbox_of(self.preview)
        ok = False
        if rect is not None:
            x0, y0, x1, y1 = rect
            values = self.preview[y0:y1, x0:x1].astype(np.uint8) * 255
            ok = doc.apply_region("SAM subtract" if subtract else "SAM mask", rect, values,
                                  "subtract" if subtract else "add") is not None
        self.clear()
        return ok

    def clear(self) -> None:
        """Drop prompts and preview."""
        self.points, self.labels, self.box = [], [], None
        self.set_preview(None)
        if self._canvas is not None:
            self._canvas.update()

    def key(self, canvas: Canvas, event: QKeyEvent) -> bool:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.preview is not None:
            self.accept(canvas.doc, subtract=bool(event.modifiers() & Qt.KeyboardModifier.AltModifier))
            return True
        if event.key() == Qt.Key.Key_Escape and (self.points or self.box):
            self.clear()
            return True
        if event.key() == Qt.Key.Key_Backspace and self.points:
            self.points.pop()
            self.labels.pop()
            self._refresh()
            return True
        return False

    def cancel(self, canvas: Canvas) -> None:
        self.points, self.labels, self.box = [], [], None
        self.set_preview(None)

    def paint(self, canvas: Canvas, painter: QPainter, active: Layer | None) -> None:
        if self._preview_img is not None:
            painter.drawImage(*self._preview_at, self._preview_img)
        z = canvas.zoom
        if self.box is not None or self._drag_to is not None:
            b = self.box
            if self._drag_to is not None and self._drag_from is not None:
                (ax, ay), (bx, by) = self._drag_from, self._drag_to
                b = (min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.setPen(QPen(QColor(0, 200, 255), 2 / z, Qt.PenStyle.DashLine))
            painter.drawRect(QRectF(b[0], b[1], b[2] - b[0], b[3] - b[1]))
        r = 6 / z
        for (x, y), lab in zip(self.points, self.labels):
            painter.setPen(QPen(QColor(255, 255, 255), 1.5 / z))
            painter.setBrush(QColor(40, 200, 90) if lab else QColor(230, 60, 60))
            painter.drawEllipse(QPointF(x, y), r, r)
        if not self.controller.image_ready and self.controller.problem is None and (self.points or self.box):
            painter.resetTransform()
            painter.setPen(QColor(255, 255, 255))
            painter.drawText(canvas.rect().adjusted(10, 10, -10, -10), Qt.AlignmentFlag.AlignTop,
                             "Segment Anything is still reading the photo — your clicks are kept.")


class SamNotice(QFrame):
    """On the canvas: why Segment Anything cannot answer clicks, and the button that fixes it."""

    getModel = Signal()

    def __init__(self, canvas: QWidget) -> None:
        super().__init__(canvas)
        self.setStyleSheet("SamNotice{background:#fff4d6;border:1px solid #e0c060;border-radius:3px}")
        lay = QHBoxLayout(self)
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.button = QPushButton("Get the Segment Anything model ...")
        self.button.clicked.connect(lambda: self.getModel.emit())
        lay.addWidget(self.text, 1)
        lay.addWidget(self.button)
        self.hide()

    def show_problem(self, text: str) -> None:
        """Show ``text`` at the top of the canvas."""
        self.text.setText(f"Segment Anything cannot answer clicks: {text}")
        width = max(320, min(640, self.parentWidget().width() - 20))
        self.setFixedWidth(width)
        self.adjustSize()
        self.move(10, 10)
        self.show()
        self.raise_()
