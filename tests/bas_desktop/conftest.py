"""Fixtures for the editor tests: isolated settings/data folders, a main window, the example scenes
(rendered by the project itself, so a fresh clone runs every test)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtWidgets import QApplication

from tests.rendered_scenes import rendered_scene_dir

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

def scene_dir(name: str) -> Path:
    """An example scene folder the project renders itself (``chicken``: three objects; ``bear``)."""
    return rendered_scene_dir(name)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Settings, autosaves and the SAM cache under tmp_path, never the user's."""
    monkeypatch.setenv("BAS_DESKTOP_SETTINGS", str(tmp_path / "settings.ini"))
    monkeypatch.setenv("BAS_DESKTOP_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("BAS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


class Harness:
    """A main window plus helpers that drive it like a user."""

    def __init__(self, qtbot, window) -> None:
        self.qtbot, self.win = qtbot, window
        self.errors: list[str] = []
        window.show_error = lambda title, msg: self.errors.append(f"{title}: {msg}")
        # modal dialogs would block the offscreen test run forever: answer them
        window.ask_save_changes = lambda: "discard"
        window.ask_recover = lambda infos: None

    @property
    def canvas(self):
        return self.win.canvas

    @property
    def doc(self):
        return self.win.doc

    def widget_point(self, x: float, y: float) -> QPoint:
        """Widget position of image pixel centre (x, y)."""
        p = self.canvas.to_widget(QPointF(x + 0.5, y + 0.5))
        return QPoint(round(p.x()), round(p.y()))

    def drag(self, points: list[tuple[float, float]], button=Qt.MouseButton.LeftButton, modifier=Qt.KeyboardModifier.NoModifier) -> None:
        """Press at the first image point, move through the others, release at the last."""
        from PySide6.QtTest import QTest

        first = self.widget_point(*points[0])
        QTest.mousePress(self.canvas, button, modifier, first)
        for p in points[1:]:
            QTest.mouseMove(self.canvas, self.widget_point(*p))
        QTest.mouseRelease(self.canvas, button, modifier, self.widget_point(*points[-1]))

    def click(self, x: float, y: float, button=Qt.MouseButton.LeftButton, modifier=Qt.KeyboardModifier.NoModifier) -> None:
        from PySide6.QtTest import QTest

        QTest.mouseClick(self.canvas, button, modifier, self.widget_point(x, y))

    def key(self, key, modifier=Qt.KeyboardModifier.NoModifier, widget=None) -> None:
        from PySide6.QtTest import QTest

        QTest.keyClick(widget or self.win, key, modifier)


@pytest.fixture
def make_window(qtbot):
    """Factory for main windows; every window's threads are stopped at teardown."""
    from bas_desktop.app import MainWindow

    made = []

    def make(**kwargs) -> Harness:
        win = MainWindow(**kwargs)
        qtbot.addWidget(win)
        win.resize(1100, 760)
        win.show()
        qtbot.waitExposed(win)
        win.activateWindow()
        win.raise_()
        # keys must reach the window's shortcuts: wait until it is the active window with focus on the canvas
        qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=3000)
        win.canvas.setFocus()
        made.append(win)
        return Harness(qtbot, win)

    yield make
    for win in made:
        win.shutdown()


@pytest.fixture
def harness(make_window) -> Harness:
    return make_window()


@pytest.fixture
def scene():
    """``scene(name)``: the folder of an example scene."""
    return scene_dir
