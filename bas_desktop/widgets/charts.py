"""Small painted widgets for training: the loss chart and a heat-map-next-to-mask tile."""

from __future__ import annotations

import html
import math

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPainterPath, QPen, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

SERIES_COLORS = {"diffusion": QColor(40, 110, 220), "attention": QColor(230, 120, 20),
                 "prior": QColor(60, 160, 60), "total": QColor(120, 120, 120)}


def rgb_to_pixmap(rgb: np.ndarray, side: int | None = None) -> QPixmap:
    """An ``HxWx3`` uint8 array (or ``HxW`` grey) as a pixmap, optionally scaled to ``side`` px."""
    a = np.ascontiguousarray(rgb if rgb.ndim == 3 else np.repeat(rgb[..., None], 3, 2), dtype=np.uint8)
    h, w = a.shape[:2]
    img = QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    pm = QPixmap.fromImage(img)
    if side:
        pm = pm.scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation)
    return pm


def heat_colormap(m: np.ndarray) -> np.ndarray:
    """A [0, 1] map as an RGB "inferno-like" heat map (black - purple - orange - yellow)."""
    x = np.clip(m, 0, 1)[..., None]
    stops = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], np.float32)
    pos = x * (len(stops) - 1)
    i = np.clip(np.floor(pos).astype(int), 0, len(stops) - 2)[..., 0]
    f = pos[..., 0] - i
    out = stops[i] * (1 - f[..., None]) + stops[i + 1] * f[..., None]
    return out.astype(np.uint8)


class LossChart(QWidget):
    """Loss curves against the global step (log scale), with a phase boundary line."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.series: dict[str, list[tuple[int, float]]] = {}
        self.phase_boundary: int | None = None
        self.total = 1
        self.setMinimumSize(240, 140)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def clear(self, total: int = 1, phase_boundary: int | None = None) -> None:
        """Forget all points."""
        self.series, self.total, self.phase_boundary = {}, max(1, total), phase_boundary
        self.update()

    def add(self, step: int, losses: dict[str, float]) -> None:
        """Append one step's losses (``diffusion``, ``attention``, ``prior``)."""
        for k, v in losses.items():
            if k != "total" and math.isfinite(v) and v > 0:
                self.series.setdefault(k, []).append((step, v))
        self.update()

    def paintEvent(self, event: object) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), QColor(255, 255, 255))
        plot = QRectF(44, 8, self.width() - 52, self.height() - 34)
        p.setPen(QPen(QColor(200, 200, 200)))
        p.drawRect(plot)
        vals = [v for s in self.series.values() for _, v in s]
        p.setPen(QColor(60, 60, 60))
        if not vals:
            p.drawText(plot, Qt.AlignmentFlag.AlignCenter, "losses appear here while training")
            p.end()
            return
        lo, hi = math.log10(min(vals)), math.log10(max(vals))
        if hi - lo < 1e-6:
            lo, hi = lo - 0.5, hi + 0.5

        def pt(step: int, v: float) -> QPointF:
            x = plot.left() + plot.width() * step / self.total
            y = plot.bottom() - plot.height() * (math.log10(v) - lo) / (hi - lo)
            return QPointF(x, y)

        p.drawText(QRectF(0, plot.top() - 6, 42, 14), Qt.AlignmentFlag.AlignRight, f"{10 ** hi:.2g}")
        p.drawText(QRectF(0, plot.bottom() - 8, 42, 14), Qt.AlignmentFlag.AlignRight, f"{10 ** lo:.2g}")
        p.drawText(QRectF(plot.left(), plot.bottom() + 2, plot.width(), 14), Qt.AlignmentFlag.AlignRight,
                   f"step {self.total}")
        if self.phase_boundary:
            x = plot.left() + plot.width() * self.phase_boundary / self.total
            p.setPen(QPen(QColor(150, 150, 150), 1, Qt.PenStyle.DashLine))
            p.drawLine(QPointF(x, plot.top()), QPointF(x, plot.bottom()))
        legend_x = plot.left()
        for name, pts in self.series.items():
            color = SERIES_COLORS.get(name, QColor(0, 0, 0))
            path = QPainterPath(pt(*pts[0]))
            for s, v in pts[1:]:
                path.lineTo(pt(s, v))
            p.setPen(QPen(color, 1.5))
            p.drawPath(path)
            p.drawText(QPointF(legend_x, self.height() - 4), f"{name} {pts[-1][1]:.3g}")
            legend_x += 110
        p.end()


class AttentionTile(QWidget):
    """One handle: its mask, its current cross-attention heat map, the overlap score, its preview."""

    SIDE = 72

    def __init__(self, token: str, color: tuple[int, int, int], mask: np.ndarray,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.token = token
        self.overlap: float | None = None
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        self.title = QLabel(f"<b style='color:rgb{tuple(color)}'>{html.escape(token)}</b>")
        row = QHBoxLayout()
        self.mask_label, self.heat_label, self.preview_label = QLabel(), QLabel(), QLabel()
        for lbl, tip in ((self.mask_label, "mask"), (self.heat_label, "attention"), (self.preview_label, "preview")):
            lbl.setFixedSize(self.SIDE, self.SIDE)
            lbl.setToolTip(tip)
            lbl.setStyleSheet("background:#222; color:#aaa")
            lbl.setAlignment(Qt.AlignmentFlag.AlignCenter)
            row.addWidget(lbl)
        m = (np.clip(mask, 0, 1) * 255).astype(np.uint8) if mask.dtype != np.uint8 else mask
        tint = (m[..., None].astype(np.float32) / 255 * np.array(color, np.float32)).astype(np.uint8)
        self.mask_label.setPixmap(rgb_to_pixmap(tint, self.SIDE))
        self.heat_label.setText("attn")
        self.preview_label.setText("preview")
        self.score = QLabel("overlap: -")
        lay.addWidget(self.title)
        lay.addLayout(row)
        lay.addWidget(self.score)

    def set_attention(self, heat: np.ndarray, overlap: float) -> None:
        """Show a new [0, 1] map and its soft IoU with the mask."""
        self.overlap = overlap
        self.heat_label.setPixmap(rgb_to_pixmap(heat_colormap(heat), self.SIDE))
        colour = "#2a2" if overlap >= 0.3 else ("#c80" if overlap >= 0.15 else "#c22")
        self.score.setText(f"overlap: <b style='color:{colour}'>{overlap:.2f}</b>")

    def set_preview(self, rgb: np.ndarray) -> None:
        """Show the handle's preview image."""
        self.preview_label.setPixmap(rgb_to_pixmap(rgb, self.SIDE))
