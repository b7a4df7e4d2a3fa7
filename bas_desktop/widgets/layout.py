"""Dock layout that fits a 1366x768 screen: every dock's content scrolls, and View lists every dock.

The main window's minimum size is the sum of its docks' minimum sizes, so a tall panel stacked
above another made the window 1249 px high. Wrapping each panel in a :class:`QScrollArea` makes a
dock's minimum a few lines tall; the panel keeps its natural size and scrolls when squeezed.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QDockWidget, QFrame, QLabel, QMainWindow, QMenu, QScrollArea, QSizePolicy, QWidget

# Bumped whenever the default dock arrangement changes, so a layout saved by an older version (the
# stacked docks that overflowed the screen) is not restored over the new one.
LAYOUT_VERSION = 2
MAX_MIN_SIZE = (1280, 720)


def scrollable(panel: QWidget) -> QScrollArea:
    """``panel`` inside a frameless vertical scroll area that resizes it to the dock's width."""
    area = QScrollArea()
    area.setObjectName(f"{panel.objectName() or type(panel).__name__}-scroll")
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidget(panel)
    area.setMinimumHeight(120)
    area.setMinimumWidth(min(260, max(180, panel.minimumSizeHint().width())))
    return area


def reserved_box(label: QLabel, lines: int) -> QScrollArea:
    """``label`` (word-wrapped) in a box of a fixed height of ``lines`` text lines that scrolls when
    the text is longer, and that never widens its dock: appearing text moves nothing around it."""
    label.setWordWrap(True)
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    box = QScrollArea()
    box.setWidgetResizable(True)
    box.setFrameShape(QFrame.Shape.NoFrame)
    box.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    box.setWidget(label)
    box.setFixedHeight(label.fontMetrics().lineSpacing() * lines + 6)
    box.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
    return box


def add_dock(window: QMainWindow, title: str, name: str, panel: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
    """A dock named ``name`` (saved layouts refer to it) holding ``panel`` in a scroll area."""
    dock = QDockWidget(title, window)
    dock.setObjectName(name)
    dock.setWidget(scrollable(panel))
    window.addDockWidget(area, dock)
    return dock


def panel_of(dock: QDockWidget) -> QWidget:
    """The panel inside a dock made by :func:`add_dock`."""
    inner = dock.widget()
    return inner.widget() if isinstance(inner, QScrollArea) else inner


def list_docks(menu: QMenu, window: QMainWindow, first: tuple[QDockWidget, ...] = ()) -> None:
    """Add a show/hide entry for every dock of ``window`` (so a closed dock can be brought back)."""
    for dock in (*first, *window.findChildren(QDockWidget)):
        if dock.toggleViewAction() not in menu.actions():
            menu.addAction(dock.toggleViewAction())


def fit_to_screen(window: QMainWindow, width: int = 1280, height: int = 820) -> None:
    """Resize to ``width`` x ``height``, or less when the screen's free area is smaller."""
    screen = window.screen() or QGuiApplication.primaryScreen()
    if screen is not None:
        free = screen.availableGeometry()
        width, height = min(width, free.width() - 20), min(height, free.height() - 40)
    window.resize(max(640, width), max(480, height))
