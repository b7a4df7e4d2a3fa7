"""Canvas tools: brush, eraser, bucket fill, polygon/lasso. (The SAM tool lives in ``sam_tool.py``.)

A tool receives mouse input in image coordinates from the canvas and edits the document only
through :class:`~bas_desktop.model.document.Document` methods, so each stroke is one undo step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import math

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QKeyEvent, QMouseEvent, QPainter, QPainterPath, QPen, QPolygonF

from bas_desktop.model.tool_settings import ToolSettings
from bas_desktop.model.document import Document, Layer
from bas_desktop.model.raster import bbox_of, colour_candidate, flood_region, polygon_mask, segment_alpha, segment_rect

if TYPE_CHECKING:
    from bas_desktop.widgets.canvas import Canvas


def _pt(p: QPointF) -> tuple[float, float]:
    return (p.x(), p.y())


class Tool:
    """Base class: all handlers are optional. Positions are in image coordinates."""

    name = "tool"
    label = "Tool"
    shortcut = ""
    hint = ""

    def __init__(self, settings: ToolSettings) -> None:
        self.settings = settings

    def press(self, canvas: Canvas, pos: QPointF, event: QMouseEvent) -> None:
        """Mouse button pressed over the canvas."""

    def move(self, canvas: Canvas, pos: QPointF, event: QMouseEvent) -> None:
        """Mouse moved with a button held."""

    def release(self, canvas: Canvas, pos: QPointF, event: QMouseEvent) -> None:
        """Mouse button released."""

    def double_click(self, canvas: Canvas, pos: QPointF, event: QMouseEvent) -> None:
        """Mouse double-clicked."""

    def hover(self, canvas: Canvas, pos: QPointF | None, old: QPointF | None) -> None:
        """Mouse moved (pos None: left the canvas); repaint what the tool draws under the cursor."""

    def key(self, canvas: Canvas, event: QKeyEvent) -> bool:
        """A key press while the canvas has focus; True when handled."""
        return False

    def paint(self, canvas: Canvas, painter: QPainter, active: Layer | None) -> None:
        """Draw the tool's feedback; the painter maps image coordinates."""

    def cancel(self, canvas: Canvas) -> None:
        """Drop any half-done work (tool switched, document changed)."""


class BrushTool(Tool):
    """Paints (or, as the eraser, removes) the active concept with a soft round brush.

    Shift+click draws a straight line from the last point.
    """

    name, label, shortcut = "brush", "Brush", "B"
    hint = "Paint the active concept. [ ] size, Shift+click: straight line."
    eraser = False

    def __init__(self, settings: ToolSettings) -> None:
        super().__init__(settings)
        self._last: tuple[float, float] | None = None
        self._line_from: tuple[float, float] | None = None

    def _stamp(self, canvas: Canvas, p0: tuple[float, float], p1: tuple[float, float]) -> None:
        stroke = canvas.doc.stroke
        if stroke is None:
            return
        radius = self.settings.brush_size / 2
        got = stroke.region(segment_rect(p0, p1, radius))
        if got is None:
            return
        rect, view = got
        alpha = segment_alpha(rect, p0, p1, radius, self.settings.hardness)
        if self.eraser:
            np.minimum(view, 255 - alpha, out=view)
        else:
            np.maximum(view, alpha, out=view)
        stroke.changed(rect)

    def press(self, canvas: Canvas, pos: QPointF, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        if canvas.doc.begin_stroke("Erase" if self.eraser else "Brush stroke") is None:
            return
        p = _pt(pos)
        start = self._line_from if (event.modifiers() & Qt.KeyboardModifier.ShiftModifier and self._line_from) else p
        self._stamp(canvas, start, p)
        self._last = p

    def move(self, canvas: Canvas, pos: QPointF, event: QMouseEvent) -> None:
        if self._last is None:
            return
        p = _pt(pos)
        self._stamp(canvas, self._last, p)
        self._last = p

    def release(self, canvas: Canvas, pos: QPointF, event: QMouseEvent) -> None:
        if self._last is None or event.button() != Qt.MouseButton.LeftButton:
            return
        self._line_from = self._last
        self._last = None
        canvas.doc.end_stroke()

    def cancel(self, canvas: Canvas) -> None:
        if self._last is not None and canvas.doc is not None:
            canvas.doc.end_stroke()
        self._last = None

    def _cursor_rect(self, canvas: Canvas, pos: QPointF) -> QRectF:
        r = self.settings.brush_size / 2 * canvas.zoom + 3
        c = canvas.to_widget(pos)
        return QRectF(c.x() - r, c.y() - r, 2 * r, 2 * r)

    def hover(self, canvas: Canvas, pos: QPointF | None, old: QPointF | None) -> None:
        for p in (old, pos):
            if p is not None:
                canvas.update(self._cursor_rect(canvas, p).toAlignedRect())

    def paint(self, canvas: Canvas, painter: QPainter, active: Layer | None) -> None:
        if canvas.hover_pos is None:
            return
        r = self.settings.brush_size / 2
        c = canvas.hover_pos
        painter.setBrush(Qt.BrushStyle.NoBrush)
        for colour, width in ((QColor(0, 0, 0, 160), 3), (QColor(255, 255, 255, 220), 1)):
            painter.setPen(QPen(colour, width / canvas.zoom))
            painter.drawEllipse(c, r, r)
        if self.settings.hardness < 0.95 and r * canvas.zoom > 6:
            painter.setPen(QPen(QColor(255, 255, 255, 110), 1 / canvas.zoom, Qt.PenStyle.DashLine))
            painter.drawEllipse(c, r * self.settings.hardness, r * self.settings.hardness)

    def key(self, canvas: Canvas, event: QKeyEvent) -> bool:
        return False


class EraserTool(BrushTool):
    """The brush in reverse: removes pixels from the active concept."""

    name, label, shortcut = "eraser", "Eraser", "E"
    hint = "Erase from the active concept. [ ] size."
    eraser = True


class FillTool(Tool):
    """Bucket fill into the active concept.

    Default: fills the enclosed unpainted area of the active mask (paint an outline, click inside).
    With "from photo": fills the connected area of similar colour in the photo (tolerance).
    Alt+click removes the area instead.
    """

    name, label, shortcut = "fill", "Fill", "F"
    hint = "Click inside an outline to fill it (or sample the photo's colours). Alt+click removes."

    def press(self, canvas: Canvas, pos: QPointF, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        remove = bool(event.modifiers() & Qt.KeyboardModifier.AltModifier)
        self.fill(canvas.doc, int(math.floor(pos.x())), int(math.floor(pos.y())), remove)

    def fill(self, doc: Document, x: int, y: int, remove: bool = False) -> bool:
        """Fill (or clear) the region at image pixel ``(x, y)``; True when something changed."""
        layer = doc.active_layer
        if layer is None or not (0 <= x < doc.width and 0 <= y < doc.height):
            return False
        if self.settings.fill_from_photo:
            candidate = colour_candidate(doc.image, (x, y), self.settings.tolerance)
        else:
            painted = layer.mask >= 128
            candidate = painted if painted[y, x] else ~painted
        region = flood_region(candidate, (x, y))
        if region is None:
            return False
        rect = bbox_of(region)
        if rect is None:
            return False
        x0, y0, x1, y1 = rect
        values = region[y0:y1, x0:x1].astype(np.uint8) * 255
        edit = doc.apply_region("Erase fill" if remove else "Fill", rect, values, "subtract" if remove else "add")
        return edit is not None


class PolygonTool(Tool):
    """Polygon (click points; double-click, Enter or click the first point to close) or lasso (drag).

    Alt (or the "subtract" option) removes the shape from the concept; Backspace drops the last
    point; Esc cancels.
    """

    name, label, shortcut = "polygon", "Polygon / lasso", "P"
    hint = "Click corners (double-click/Enter closes) or drag a lasso. Alt: subtract. Esc: cancel."

    def __init__(self, settings: ToolSettings) -> None:
        super().__init__(settings)
        self.points: list[tuple[float, float]] = []
        self._dragging = False
        self._press_at: tuple[float, float] | None = None
        self._subtract = False

    def _close_radius(self, canvas: Canvas) -> float:
        return 8 / canvas.zoom

    def press(self, canvas: Canvas, pos: QPointF, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        p = _pt(pos)
        self._subtract = bool(event.modifiers() & Qt.KeyboardModifier.AltModifier) or self.settings.lasso_subtract
        if len(self.points) >= 3 and math.dist(p, self.points[0]) <= self._close_radius(canvas):
            self.commit(canvas)
            return
        self._press_at = p
        self._dragging = not self.points  # a drag from nothing is a lasso
        self.points.append(p)
        canvas.update()

    def move(self, canvas: Canvas, pos: QPointF, event: QMouseEvent) -> None:
        if self._press_at is None:
            return
        p = _pt(pos)
        if self._dragging and math.dist(p, self.points[-1]) >= 1.5 / canvas.zoom:
            self.points.append(p)
            canvas.update()

    def release(self, canvas: Canvas, pos: QPointF, event: QMouseEvent) -> None:
        if self._press_at is None:
            return
        was_lasso = self._dragging and len(self.points) > 3
        self._press_at = None
        self._dragging = False
        if was_lasso:
            self.commit(canvas)

    def double_click(self, canvas: Canvas, pos: QPointF, event: QMouseEvent) -> None:
        if len(self.points) >= 3:
            self.commit(canvas)

    def hover(self, canvas: Canvas, pos: QPointF | None, old: QPointF | None) -> None:
        if self.points:
            canvas.update()

    def key(self, canvas: Canvas, event: QKeyEvent) -> bool:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and len(self.points) >= 3:
            self.commit(canvas)
            return True
        if event.key() == Qt.Key.Key_Escape and self.points:
            self.cancel(canvas)
            return True
        if event.key() == Qt.Key.Key_Backspace and self.points:
            self.points.pop()
            canvas.update()
            return True
        return False

    def commit(self, canvas: Canvas) -> None:
        """Rasterize the closed shape into the active concept as one undo step."""
        doc = canvas.doc
        points, self.points = self.points, []
        got = polygon_mask(points, doc.width, doc.height)
        if got is not None:
            rect, values = got
            doc.apply_region("Lasso subtract" if self._subtract else "Polygon", rect, values,
                             "subtract" if self._subtract else "add")
        canvas.update()

    def cancel(self, canvas: Canvas) -> None:
        self.points = []
        self._press_at = None
        canvas.update()

    def paint(self, canvas: Canvas, painter: QPainter, active: Layer | None) -> None:
        if not self.points:
            return
        poly = QPolygonF([QPointF(*p) for p in self.points])
        if canvas.hover_pos is not None and not self._dragging:
            poly.append(canvas.hover_pos)
        path = QPainterPath()
        path.addPolygon(poly)
        path.closeSubpath()
        colour = QColor(*(active.color if active else (255, 255, 255)))
        colour.setAlpha(70)
        painter.fillPath(path, colour)
        painter.setPen(QPen(QColor(255, 255, 255, 230), 1.5 / canvas.zoom, Qt.PenStyle.DashLine))
        painter.drawPolyline(poly)
        painter.setBrush(QColor(255, 255, 255))
        r = 3 / canvas.zoom
        for p in self.points[:1] if self._dragging else self.points:
            painter.drawEllipse(QPointF(*p), r, r)
