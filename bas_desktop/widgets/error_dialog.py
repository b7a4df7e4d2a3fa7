"""How the app tells the user that something failed: one non-blocking dialog with "Copy details".

Worker jobs report an error as a :class:`~bas_desktop.workers.JobMessage` whose ``text`` is the
short message and ``details`` the traceback; exceptions that escape a slot on the UI thread, or a
plain Python thread, reach :func:`install_exception_hooks`, which shows the same dialog instead of
letting the app die. The app keeps running in every case: the dialog is opened with ``open()``,
never ``exec()``, so training and autosave go on behind it.
"""

from __future__ import annotations

import sys
import threading
import traceback
from types import TracebackType

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (QApplication, QDialog, QDialogButtonBox, QHBoxLayout, QLabel, QPlainTextEdit,
                               QPushButton, QStyle, QVBoxLayout, QWidget)


class ErrorDialog(QDialog):
    """The message in words, the technical details folded away, and a button that copies both."""

    def __init__(self, title: str, message: str, details: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.message, self.details = message, details
        icon = QLabel()
        icon.setPixmap(self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxCritical).pixmap(40, 40))
        text = QLabel(message)
        text.setWordWrap(True)
        text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        text.setMinimumWidth(360)
        top = QHBoxLayout()
        top.addWidget(icon, 0, Qt.AlignmentFlag.AlignTop)
        top.addWidget(text, 1)
        self.details_view = QPlainTextEdit(details)
        self.details_view.setReadOnly(True)
        self.details_view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.details_view.setVisible(False)
        self.details_view.setMinimumHeight(160)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok)
        self.copy_button = QPushButton("Copy details")
        self.copy_button.setToolTip("Copy the message and the technical details, e.g. for a bug report")
        self.copy_button.clicked.connect(self.copy_details)
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.toggle_button = QPushButton("Show details")
        self.toggle_button.setEnabled(bool(details))
        self.toggle_button.clicked.connect(self._toggle)
        buttons.addButton(self.toggle_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.accepted.connect(self.accept)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.details_view)
        lay.addWidget(buttons)

    def report_text(self) -> str:
        """What "Copy details" puts on the clipboard."""
        return f"{self.windowTitle()}: {self.message}" + (f"\n\n{self.details}" if self.details else "")

    def copy_details(self) -> None:
        """Put the message and details on the clipboard (the dialog stays open)."""
        QGuiApplication.clipboard().setText(self.report_text())
        self.copy_button.setText("Copied")

    def _toggle(self) -> None:
        show = not self.details_view.isVisible()
        self.details_view.setVisible(show)
        self.toggle_button.setText("Hide details" if show else "Show details")
        self.adjustSize()


_parentless: set[ErrorDialog] = set()  # a dialog without a parent lives as long as a Python reference


def show_error(parent: QWidget | None, title: str, text: str, details: str = "") -> ErrorDialog:
    """Open a non-blocking :class:`ErrorDialog` (the event loop, and training, keep running)."""
    dlg = ErrorDialog(title, text, details, parent)
    if parent is None:
        _parentless.add(dlg)
        dlg.finished.connect(lambda _r: _parentless.discard(dlg))
    dlg.open()
    return dlg


def format_exception(exc: BaseException) -> str:
    """The traceback of ``exc`` as text (the "details" of a dialog)."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


class _Relay(QObject):
    """Carries a report from any thread to the UI thread (a queued signal), where widgets may be made."""

    report = Signal(str, str, str)


_relays: list[_Relay] = []  # kept alive for the life of the app


def install_exception_hooks(parent: QWidget | None = None) -> None:
    """Show unexpected exceptions (UI-thread slots, plain threads) in a dialog; the app keeps running.

    Without this, PySide6 prints an exception escaping a slot to stderr and the user sees nothing.
    The traceback still goes to stderr for logs.
    """
    def ui_hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, exc, tb)
            return
        details = "".join(traceback.format_exception(kind, exc, tb))
        sys.stderr.write(details)
        if QApplication.instance() is not None:
            show_error(parent, "Unexpected error", f"{kind.__name__}: {exc}", details)

    relay = _Relay()  # made on the UI thread, so its slot runs there
    relay.report.connect(lambda title, text, details: show_error(parent, title, text, details))
    _relays.append(relay)

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None:
            return
        details = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
        sys.stderr.write(details)
        relay.report.emit("Unexpected error in a background task", f"{args.exc_type.__name__}: {args.exc_value}",
                          details)

    sys.excepthook = ui_hook
    threading.excepthook = thread_hook
