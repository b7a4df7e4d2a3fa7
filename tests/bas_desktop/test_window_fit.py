"""Issue 13.1: the default layout fits 1366x768 and 1920x1080, and View brings back every dock."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QDockWidget, QScrollArea

from bas_desktop.widgets.layout import MAX_MIN_SIZE
from tests.bas_desktop.studio_helpers import shapes_document


@pytest.fixture
def window(qtbot, monkeypatch):  # type: ignore[no-untyped-def]
    from bas_desktop.app import MainWindow

    monkeypatch.setenv("BAS_MODEL", "tiny-random")
    win = MainWindow()
    win.ask_save_changes = lambda: "discard"
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    win.set_document(shapes_document(), None, dirty=True)
    yield win
    win.shutdown()


def test_minimum_size_hint_fits_a_1280x720_screen(window) -> None:  # type: ignore[no-untyped-def]
    hint = window.minimumSizeHint()
    assert hint.width() <= MAX_MIN_SIZE[0] and hint.height() <= MAX_MIN_SIZE[1], hint
    assert hint.height() <= 720 and hint.width() <= 1280


@pytest.mark.parametrize("size", [(1366, 768), (1920, 1080)])
def test_every_dock_fits_inside_the_window_at_common_screen_sizes(qtbot, window, size) -> None:  # type: ignore[no-untyped-def]
    window.resize(*size)
    qtbot.waitUntil(lambda: window.size().width() == size[0] and window.size().height() == size[1], timeout=2000)
    status = window.statusBar().geometry()
    assert status.bottom() < size[1]
    for dock in window.findChildren(QDockWidget):
        assert isinstance(dock.widget(), QScrollArea), dock.objectName()  # content scrolls, never stretches the window
        if dock.isVisible() and not dock.visibleRegion().isEmpty():
            g = dock.geometry()
            assert g.bottom() < status.top() and g.right() < size[0], (dock.objectName(), g)


def test_view_menu_brings_back_a_closed_studio_dock(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    entries = {a.text(): a for a in window.view_menu.actions()}
    for title in ("Concepts", "Tool options", "Suggested regions", "Break scene", "Gallery", "Local edit"):
        assert title in entries
    dock = window.studio.docks["gallery"]
    dock.close()
    assert not dock.isVisible()
    entries["Gallery"].trigger()
    qtbot.waitUntil(dock.isVisible, timeout=2000)
