"""The canvas: the photo with translucent concept overlays, zoom/pan, and mouse input for tools.

The canvas observes the :class:`~bas_desktop.model.document.Document`; a pixel change recomposites the
overlay and repaints only the changed rectangle, so painting stays fluid on large photos.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (QColor, QImage, QKeyEvent, QMouseEvent, QPainter, QPaintEvent, QPen, QResizeEvent, QTransform,
                           QWheelEvent)
from PySide6.QtWidgets import QWidget

from bas_desktop.model.document import BACKGROUND_COLOR, Change, Document, Rect
from bas_desktop.model.raster import composite_overlay

MIN_ZOOM, MAX_ZOOM = 0.02, 32.0


def _bgra(image: np.ndarray) -> np.ndarray:
    """RGB uint8 -> BGRA (alpha 255), the byte order of ``QImage.Format_RGB32`` on little endian."""
    out = np.empty((*image.shape[:2], 4), np.uint8)
    out[..., 0] = image[..., 2]
    out[..., 1] = image[..., 1]
    out[..., 2] = image[..., 0]
    out[..., 3] = 255
    return out


class Canvas(QWidget):
    """Shows a document and forwards mouse input (in image coordinates) to the current tool.

    Signals: ``zoomChanged(float)``, ``cursorMoved(int, int)`` (image pixel under the mouse).
    """

    zoomChanged = Signal(float)
    cursorMoved = Signal(int, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setMinimumSize(200, 150)
        self.doc: Document | None = None
        self.tool = None  # a tools.Tool
        self.zoom = 1.0
        self.offset = QPointF(0, 0)
        self._photo: np.ndarray | None = None
        self._photo_img: QImage | None = None
        self._overlay: np.ndarray | None = None
        self._overlay_img: QImage | None = None
        self._space = False
        self._pan_from: QPointF | None = None
        self._pan_button: Qt.MouseButton | None = None
        self._fitted = True
        self.hover_pos: QPointF | None = None
        self._edit_region_img: QImage | None = None

    # ----- document ------------------------------------------------------------------------------
    def set_document(self, doc: Document | None) -> None:
        """Show ``doc`` (or nothing) and fit it to the window."""
        if self.doc is not None:
            self.doc.unsubscribe(self._on_change)
        self.doc = doc
        if doc is None:
            self._photo = self._photo_img = self._overlay = self._overlay_img = None
        else:
            doc.subscribe(self._on_change)
            self._photo = _bgra(doc.image)
            h, w = self._photo.shape[:2]
            self._photo_img = QImage(self._photo.data, w, h, 4 * w, QImage.Format.Format_RGB32)
            self._overlay = np.zeros((h, w, 4), np.uint8)
            self._overlay_img = QImage(self._overlay.data, w, h, 4 * w, QImage.Format.Format_ARGB32_Premultiplied)
            self.recomposite(None)
        if self.tool is not None:
            self.tool.cancel(self)
        self.fit()

    def _on_change(self, change: Change) -> None:
        if change.kind == "photo":  # a new version of the photo (same size), e.g. an accepted local edit
            self.reload_photo()
        elif change.kind == "pixels":
            self.recomposite(change.rect)
        elif change.kind in ("layers", "props"):
            self.recomposite(None)

    def reload_photo(self) -> None:
        """Show the document's current photo (after it was replaced by an edit or an undo)."""
        if self.doc is None or self._photo is None:
            return
        self._photo[...] = _bgra(self.doc.image)
        self.update()

    def recomposite(self, rect: Rect | None) -> None:
        """Rebuild the overlay inside ``rect`` (None: everywhere) and repaint that part."""
        doc = self.doc
        if doc is None or self._overlay is None:
            return
        rect = rect or (0, 0, doc.width, doc.height)
        layers = [(layer.mask, layer.color, layer.visible) for layer in doc.layers]
        composite_overlay(layers, doc.show_background, BACKGROUND_COLOR, rect, self._overlay)
        self.update_image_rect(rect)

    # ----- view transform -------------------------------------------------------------------------
    def transform(self) -> QTransform:
        """Image -> widget coordinates."""
        return QTransform(self.zoom, 0, 0, self.zoom, self.offset.x(), self.offset.y())

    def to_image(self, p: QPointF) -> QPointF:
        """Widget -> image coordinates (float, pixel centres at .5)."""
        return QPointF((p.x() - self.offset.x()) / self.zoom, (p.y() - self.offset.y()) / self.zoom)

    def to_widget(self, p: QPointF) -> QPointF:
        """Image -> widget coordinates."""
        return QPointF(p.x() * self.zoom + self.offset.x(), p.y() * self.zoom + self.offset.y())

    def update_image_rect(self, rect: Rect) -> None:
        """Schedule a repaint of the widget area showing image rectangle ``rect``."""
        x0, y0, x1, y1 = rect
        r = self.transform().mapRect(QRectF(x0, y0, x1 - x0, y1 - y0)).toAlignedRect().adjusted(-2, -2, 2, 2)
        self.update(r)

    def fit(self) -> None:
        """Zoom so the whole photo is visible, centred."""
        self._fitted = True
        if self.doc is None:
            self.update()
            return
        margin = 16
        z = min((self.width() - 2 * margin) / self.doc.width, (self.height() - 2 * margin) / self.doc.height)
        self._set_zoom(max(MIN_ZOOM, min(MAX_ZOOM, z)), None, keep_fit=True)
        self.offset = QPointF((self.width() - self.doc.width * self.zoom) / 2,
                              (self.height() - self.doc.height * self.zoom) / 2)
        self.update()

    def actual_size(self) -> None:
        """Zoom to 100% around the centre of the view."""
        self.zoom_to(1.0, QPointF(self.width() / 2, self.height() / 2))

    def zoom_to(self, zoom: float, anchor: QPointF | None = None) -> None:
        """Set the zoom, keeping the image point under ``anchor`` (widget coords) in place."""
        self._set_zoom(zoom, anchor or QPointF(self.width() / 2, self.height() / 2))

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        """Multiply the zoom by ``factor`` around ``anchor``."""
        self.zoom_to(self.zoom * factor, anchor)

    def _set_zoom(self, zoom: float, anchor: QPointF | None, keep_fit: bool = False) -> None:
        zoom = max(MIN_ZOOM, min(MAX_ZOOM, zoom))
        if anchor is not None:
            img = self.to_image(anchor)
            self.offset = QPointF(anchor.x() - img.x() * zoom, anchor.y() - img.y() * zoom)
        self.zoom = zoom
        self._fitted = keep_fit
        self.zoomChanged.emit(zoom)
        self.update()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt override
        if self._fitted:
            self.fit()
        super().resizeEvent(event)

    # ----- painting -------------------------------------------------------------------------------
    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        p = QPainter(self)
        p.fillRect(event.rect(), QColor(43, 43, 46))
        if self.doc is None or self._photo_img is None:
            p.setPen(QColor(170, 170, 175))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter,
                       "Open a photo (Ctrl+O) or drop one here\n\nJPEG, PNG or WebP")
            return
        # only the part of the photo under the exposed rectangle is drawn
        inv, _ = self.transform().inverted()
        src = inv.mapRect(QRectF(event.rect())).adjusted(-1, -1, 1, 1)
        src = src.intersected(QRectF(0, 0, self.doc.width, self.doc.height))
        p.setTransform(self.transform())
        if self.zoom < 1.0:
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        if not src.isEmpty():
            s = src.toAlignedRect()
            p.drawImage(QRectF(s), self._photo_img, QRectF(s))
            p.drawImage(QRectF(s), self._overlay_img, QRectF(s))
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        active = self.doc.active_layer
        pen = QPen(QColor(255, 255, 255, 90), 0)
        p.setPen(pen)
        p.drawRect(QRectF(0, 0, self.doc.width, self.doc.height))
        if self._edit_region_img is not None:
            p.drawImage(QPointF(0, 0), self._edit_region_img)
        if self.tool is not None:
            self.tool.paint(self, p, active)

    def set_edit_region(self, region: np.ndarray | None) -> None:
        """Show a local edit's region (bool, photo size) in translucent cyan over the photo, or hide it."""
        if region is None or self.doc is None or region.shape != (self.doc.height, self.doc.width):
            self._edit_region_img = None
        else:
            bgra = np.zeros(region.shape + (4,), np.uint8)
            bgra[region] = (255, 220, 0, 110)  # cyan, premultiplied-safe alpha
            bgra[region, :3] = (bgra[region, :3].astype(np.uint16) * 110 // 255).astype(np.uint8)
            self._edit_region_buf = np.ascontiguousarray(bgra)
            h, w = region.shape
            self._edit_region_img = QImage(self._edit_region_buf.data, w, h, 4 * w,
                                           QImage.Format.Format_ARGB32_Premultiplied)
        self.update()

    # ----- input ------------------------------------------------------------------------------------
    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        pos = event.position()
        if event.button() == Qt.MouseButton.MiddleButton or (self._space and event.button() == Qt.MouseButton.LeftButton):
            self._pan_from = pos
            self._pan_button = event.button()
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
            return
        if self.doc is not None and self.tool is not None:
            self.tool.press(self, self.to_image(pos), event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        pos = event.position()
        if self._pan_from is not None:
            self.offset += pos - self._pan_from
            self._pan_from = pos
            self._fitted = False
            self.update()
            return
        img = self.to_image(pos)
        old_hover = self.hover_pos
        self.hover_pos = img
        self.cursorMoved.emit(int(np.floor(img.x())), int(np.floor(img.y())))
        if self.doc is not None and self.tool is not None:
            if event.buttons() & (Qt.MouseButton.LeftButton | Qt.MouseButton.RightButton):
                self.tool.move(self, img, event)
            self.tool.hover(self, img, old_hover)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._pan_from is not None and event.button() == self._pan_button:
            self._pan_from = None
            self.setCursor(Qt.CursorShape.OpenHandCursor if self._space else Qt.CursorShape.CrossCursor)
            return
        if self.doc is not None and self.tool is not None:
            self.tool.release(self, self.to_image(event.position()), event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self.doc is not None and self.tool is not None:
            self.tool.double_click(self, self.to_image(event.position()), event)

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        delta = event.angleDelta().y()
        if delta and self.doc is not None:
            self.zoom_by(1.0015 ** delta, event.position())

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = True
            self.setCursor(Qt.CursorShape.OpenHandCursor)
            return
        if self.tool is not None and self.doc is not None and self.tool.key(self, event):
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = False
            self.setCursor(Qt.CursorShape.CrossCursor)
            return
        super().keyReleaseEvent(event)

    def leaveEvent(self, event: QEvent) -> None:  # noqa: N802
        old, self.hover_pos = self.hover_pos, None
        if self.tool is not None and old is not None:
            self.tool.hover(self, None, old)
        super().leaveEvent(event)
