"""Handle chips: coloured, clickable, draggable tokens (into the prompt, onto the photo)."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from PySide6.QtCore import QMimeData, QPoint, Qt, Signal
from PySide6.QtGui import QDrag, QMouseEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QSizePolicy, QWidget

HANDLE_MIME = "application/x-bas-handle"
TOKEN_RE = re.compile(r"<asset\d+>")


@dataclass(frozen=True)
class Handle:
    """What a chip shows: the token, the concept's name and colour."""

    token: str
    name: str
    color: tuple[int, int, int]


def handle_mime(token: str) -> QMimeData:
    """The drag payload of a chip: our type plus plain text (so any text field accepts it)."""
    mime = QMimeData()
    mime.setData(HANDLE_MIME, token.encode())
    mime.setText(token)
    return mime


def token_from_mime(mime: QMimeData) -> str | None:
    """The token a drag carries (our type, or plain text that is exactly one token)."""
    if mime.hasFormat(HANDLE_MIME):
        return bytes(mime.data(HANDLE_MIME).data()).decode()
    text = mime.text().strip() if mime.hasText() else ""
    return text if TOKEN_RE.fullmatch(text) else None


def _chip_style(color: tuple[int, int, int]) -> str:
    r, g, b = color
    fg = "#000" if (0.299 * r + 0.587 * g + 0.114 * b) > 140 else "#fff"
    return f"background: rgb({r},{g},{b}); color: {fg}; border-radius: 9px; padding: 2px 8px;"


class HandleChip(QLabel):
    """One handle. ``clicked(token)`` on a click; dragging carries the token."""

    clicked = Signal(str)

    def __init__(self, handle: Handle, parent: QWidget | None = None) -> None:
        label = handle.token if handle.name in ("", handle.token) else f"{handle.token} {handle.name}"
        super().__init__(label, parent)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.handle = handle
        self.setStyleSheet(_chip_style(handle.color))
        self.setToolTip(f"{handle.token} ({handle.name}): click to insert into the prompt, "
                        "drag into the prompt or onto the photo")
        self.setCursor(Qt.CursorShape.OpenHandCursor)
        self._press: QPoint | None = None

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if event.button() == Qt.MouseButton.LeftButton:
            self._press = event.position().toPoint()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._press is None or (event.position().toPoint() - self._press).manhattanLength() < 6:
            return
        self._press = None
        drag = QDrag(self)
        drag.setMimeData(handle_mime(self.handle.token))
        drag.setPixmap(self.grab())
        drag.exec(Qt.DropAction.CopyAction)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._press is not None and event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit(self.handle.token)
        self._press = None


class ChipBar(QWidget):
    """A row of chips for the project's handles."""

    clicked = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._lay = QHBoxLayout(self)
        self._lay.setContentsMargins(0, 0, 0, 0)
        self.chips: list[HandleChip] = []
        self.empty = QLabel("No handles yet: break the scene first")
        self._lay.addWidget(self.empty)
        self._lay.addStretch(1)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_handles(self, handles: list[Handle]) -> None:
        """Replace the chips."""
        for c in self.chips:
            c.setParent(None)
        self.chips = []
        for i, h in enumerate(handles):
            chip = HandleChip(h, self)
            chip.clicked.connect(self.clicked)
            self._lay.insertWidget(i, chip)
            self.chips.append(chip)
        self.empty.setVisible(not handles)


class PromptEdit(QLineEdit):
    """The prompt: accepts chip drops (at the drop position) and typed ``<assetN>``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.setPlaceholderText("a photo of <asset0> at the beach  (click or drag a chip)")

    def insert_token(self, token: str) -> None:
        """Insert a token at the cursor with one space between it and the words around it.

        No space is added at the end of the prompt: the user types one before the next word, and
        a space added here made two.
        """
        text, pos = self.text(), self.cursorPosition()
        before = "" if pos == 0 or text[pos - 1] == " " else " "
        after = " " if pos < len(text) and text[pos] != " " else ""
        self.setText(text[:pos] + before + token + after + text[pos:])
        self.setCursorPosition(pos + len(before) + len(token) + len(after))

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt override
        if token_from_mime(event.mimeData()) is not None:
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        if token_from_mime(event.mimeData()) is not None:
            event.acceptProposedAction()
        else:
            super().dragMoveEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802
        token = token_from_mime(event.mimeData())
        if token is None:
            super().dropEvent(event)
            return
        self.setCursorPosition(self.cursorPositionAt(event.position().toPoint()))
        self.insert_token(token)
        event.acceptProposedAction()


def render_prompt(text: str, handles: list[Handle]) -> str:
    """The prompt as rich text with each known token shown as a coloured chip."""
    colors = {h.token: h.color for h in handles}
    out, last = [], 0
    for m in TOKEN_RE.finditer(text):
        out.append(html.escape(text[last:m.start()]))
        tok = m.group(0)
        if tok in colors:
            r, g, b = colors[tok]
            out.append(f"<span style='background:rgb({r},{g},{b});'>&nbsp;{html.escape(tok)}&nbsp;</span>")
        else:
            out.append(f"<span style='color:#c00' title='unknown handle'>{html.escape(tok)}</span>")
        last = m.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def unknown_tokens(text: str, handles: list[Handle]) -> list[str]:
    """Tokens typed in the prompt that the project has no handle for."""
    known = {h.token for h in handles}
    return [t for t in TOKEN_RE.findall(text) if t not in known]
