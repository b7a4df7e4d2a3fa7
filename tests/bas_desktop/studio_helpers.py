"""Shared helpers of the studio tests: a two-object 64 px scene on the tiny model."""

from __future__ import annotations

import numpy as np

from bas_desktop.model.document import Document, Layer

TINY = "tiny-random"
FAST = {"phase1_steps": 6, "phase2_steps": 6, "checkpoint_every": 2, "prior_preservation": False}


def shapes_document(size: int = 64) -> Document:
    """A red square and a blue disk on grey, one concept each."""
    img = np.full((size, size, 3), 128, np.uint8)
    sq = np.zeros((size, size), np.uint8)
    sq[8:28, 8:28] = 255
    yy, xx = np.ogrid[:size, :size]
    disk = (((xx - 44) ** 2 + (yy - 44) ** 2) <= 12 ** 2).astype(np.uint8) * 255
    img[sq > 0] = (220, 30, 30)
    img[disk > 0] = (30, 60, 220)
    return Document(img, [Layer("cube", (230, 25, 75), sq), Layer("ball", (60, 180, 75), disk)])


def drop_token(widget, pos, token: str) -> bool:  # type: ignore[no-untyped-def]
    """Drag a handle chip's payload onto ``widget`` at ``pos`` (widget coordinates) and drop it.

    The events go to the top-level QWindow, the way a real drag arrives, so Qt's own drag target
    tracking (enter, move, drop) runs. Returns whether the drop was accepted.
    """
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
    from PySide6.QtWidgets import QApplication

    from bas_desktop.widgets.chips import handle_mime

    mime = handle_mime(token)
    top = widget.window()
    p = widget.mapTo(top, QPoint(int(pos.x()), int(pos.y())))
    win = top.windowHandle()
    args = (Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(win, QDragEnterEvent(p, *args))
    QApplication.sendEvent(win, QDragMoveEvent(p, *args))
    drop = QDropEvent(QPointF(p), *args)
    QApplication.sendEvent(win, drop)
    return drop.isAccepted()
