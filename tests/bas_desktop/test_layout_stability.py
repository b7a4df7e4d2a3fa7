"""Issue 13.7: warnings, long errors and the Resume banner appear without moving or widening anything."""

from __future__ import annotations

from PySide6.QtCore import QPoint

from tests.bas_desktop.studio_helpers import shapes_document


def test_concept_warnings_do_not_move_the_buttons(harness) -> None:  # type: ignore[no-untyped-def]
    win, qtbot = harness.win, harness.qtbot
    win.resize(1920, 1080)  # a tall dock: the panel fills it, so a growing label would squeeze the list
    win.set_document(shapes_document(), None, dirty=True)
    panel = win.layers_panel
    qtbot.waitUntil(lambda: panel.warnings.text() == "", timeout=3000)
    before = panel.add_btn.mapTo(win, QPoint(0, 0))
    panel.add_layer()  # a new, empty concept: warnings appear
    panel.add_layer()
    qtbot.waitUntil(lambda: "empty" in panel.warnings.text(), timeout=3000)
    qtbot.wait(50)
    assert panel.add_btn.mapTo(win, QPoint(0, 0)) == before
    win.doc.undo()
    win.doc.undo()
    qtbot.waitUntil(lambda: panel.warnings.text() == "", timeout=3000)
    assert panel.add_btn.mapTo(win, QPoint(0, 0)) == before


def test_a_long_error_or_the_resume_banner_does_not_widen_the_break_dock(harness) -> None:  # type: ignore[no-untyped-def]
    win, qtbot = harness.win, harness.qtbot
    win.resize(1366, 768)
    win.set_document(shapes_document(), None, dirty=True)
    dock, panel = win.studio.docks["break"], win.studio.break_panel
    dock.raise_()
    qtbot.wait(50)
    width, canvas = dock.width(), win.canvas.width()
    ok_pos = panel.break_button.mapTo(win, QPoint(0, 0))
    panel.status.setText("Error: " + "a very long message naming /some/deep/folder/of/the/model " * 8)
    panel.resume_text.setText("An unfinished break (" + "x" * 300 + ") can be resumed.")
    panel.resume_bar.show()
    qtbot.wait(50)
    assert dock.width() == width and win.canvas.width() == canvas
    scroll = dock.widget()
    assert not scroll.horizontalScrollBar().isVisible() and panel.width() <= scroll.viewport().width()
    panel.resume_bar.hide()
    panel.status.setText("Idle")
    qtbot.wait(50)
    assert panel.break_button.mapTo(win, QPoint(0, 0)) == ok_pos
