"""The scene editor driven through its real widgets: mouse strokes, keys, panels, files, drops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent, QWheelEvent
from PySide6.QtWidgets import QApplication

from bas_desktop.model.project import read_project
from engine.scene import load_scene

from tests.bas_desktop.conftest import scene_dir


def mask_at(doc, index: int, x: int, y: int) -> int:
    return int(doc.layers[index].mask[y, x])


def assert_masks_close(a: np.ndarray, b: np.ndarray, tol: float = 1.5 / 255) -> None:
    assert a.shape == b.shape
    assert float(np.abs(a.astype(np.float32) - b.astype(np.float32)).max()) <= tol


def open_chicken_photo(h):
    assert h.win.open_path(scene_dir("chicken") / "img.jpg"), h.errors
    assert h.doc is not None and len(h.doc.layers) == 1
    return h.doc


def test_brush_stroke_paints_the_active_mask_and_undo_redo_by_keys(harness):
    h = harness
    doc = open_chicken_photo(h)
    h.win.tool_settings.brush_size = 20
    h.key(Qt.Key.Key_E)
    assert h.win.current_tool() == "eraser"
    h.key(Qt.Key.Key_B)
    assert h.win.current_tool() == "brush"
    h.drag([(100, 200), (150, 200), (200, 200), (300, 210)])
    assert doc.layers[0].mask[200, 100:200].min() == 255  # the stroke's centre line, all painted
    assert mask_at(doc, 0, 250, 205) == 255 and mask_at(doc, 0, 299, 210) == 255  # the slanted last segment
    assert mask_at(doc, 0, 200, 205) == 255
    assert mask_at(doc, 0, 200, 240) == 0  # 30 px off a 20 px brush
    assert mask_at(doc, 0, 50, 50) == 0
    assert len(doc.history.done) == 1  # one stroke = one undo step
    painted = doc.layers[0].mask.copy()

    h.key(Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert doc.layers[0].mask.max() == 0
    h.key(Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert np.array_equal(doc.layers[0].mask, painted)
    assert h.win.modified and h.win.windowTitle().startswith("img.jpg*")


def test_eraser_and_bracket_keys(harness):
    h = harness
    doc = open_chicken_photo(h)
    h.win.tool_settings.brush_size = 30
    h.drag([(100, 100), (300, 100)])
    h.key(Qt.Key.Key_E)
    assert h.win.current_tool() == "eraser"
    h.key(Qt.Key.Key_BracketLeft)
    assert h.win.tool_settings.brush_size < 30
    h.drag([(200, 60), (200, 140)])
    assert mask_at(doc, 0, 200, 100) == 0
    assert mask_at(doc, 0, 120, 100) == 255
    h.key(Qt.Key.Key_BracketRight)
    h.key(Qt.Key.Key_BracketRight)
    assert h.win.tool_settings.brush_size > 27
    assert h.win.options.size.value() == round(h.win.tool_settings.brush_size)


def test_bucket_fill_inside_an_outline_is_one_undo_step(harness):
    h = harness
    doc = open_chicken_photo(h)
    h.win.tool_settings.brush_size = 6
    h.win.tool_settings.hardness = 1.0
    corners = [(100, 100), (300, 100), (300, 250), (100, 250), (100, 100)]
    h.drag(corners)  # one closed outline stroke
    assert mask_at(doc, 0, 200, 175) == 0
    h.key(Qt.Key.Key_F)
    assert h.win.current_tool() == "fill"
    steps = len(doc.history.done)
    h.click(200, 175)
    inside = doc.layers[0].mask[110:240, 110:290]
    assert inside.min() == 255
    assert mask_at(doc, 0, 50, 50) == 0 and mask_at(doc, 0, 350, 175) == 0  # outside stays empty
    assert len(doc.history.done) == steps + 1
    h.key(Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert mask_at(doc, 0, 200, 175) == 0 and mask_at(doc, 0, 100, 175) == 255


def test_polygon_tool_by_clicks(harness):
    h = harness
    doc = open_chicken_photo(h)
    h.key(Qt.Key.Key_P)
    for x, y in [(50, 50), (250, 50), (250, 150)]:
        h.click(x, y)
    h.click(50, 50)  # clicking the first point closes the polygon
    m = doc.layers[0].mask
    assert m[60, 200] == 255 and m[140, 240] == 255  # inside the triangle
    assert m[140, 60] == 0  # the other half of the box
    assert len(doc.history.done) == 1


def test_layers_add_rename_recolour_reorder_delete(harness):
    h = harness
    doc = open_chicken_photo(h)
    panel = h.win.layers_panel
    h.win.tool_settings.brush_size = 20
    h.drag([(100, 100), (200, 100)])
    panel.add_btn.click()
    assert len(doc.layers) == 2 and doc.active == 1
    h.drag([(100, 300), (200, 300)])
    assert mask_at(doc, 1, 150, 300) == 255 and mask_at(doc, 0, 150, 300) == 0
    h.qtbot.waitUntil(lambda: panel.list.count() == 2)

    item = panel.list.item(0)  # top row = top layer = index 1
    item.setText("chicken")  # what the inline editor does on commit
    assert doc.layers[1].name == "chicken"
    h.qtbot.waitUntil(lambda: panel.list.item(0).text() == "chicken")

    panel.ask_color = lambda current: QColor(255, 0, 0)
    panel.color_btn.click()
    assert doc.layers[1].color == (255, 0, 0)
    panel.down_btn.click()  # active layer (chicken) moves below
    assert doc.layers[0].name == "chicken" and doc.active == 0
    h.qtbot.waitUntil(lambda: panel.list.item(1).text() == "chicken")  # top row first

    panel.list.item(1).setCheckState(Qt.CheckState.Unchecked)  # the row's checkbox
    assert doc.layers[0].visible is False and doc.layers[1].visible is True
    assert h.canvas._overlay[300, 150, 3] == 0 and h.canvas._overlay[100, 150, 3] > 0  # hidden: no tint

    panel.del_btn.click()
    assert [layer.name for layer in doc.layers] == [""]
    h.key(Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undo the delete: mask comes back
    assert doc.layers[0].name == "chicken" and mask_at(doc, 0, 150, 300) == 255
    for _ in range(3):
        doc.undo()  # reorder, colour, rename
    assert doc.layers[1].name == "" and doc.layers[1].color != (255, 0, 0)
    h.qtbot.waitUntil(lambda: "no initializer word" in panel.warnings.text())


def test_background_toggle_and_overlap_warning(harness):
    h = harness
    doc = open_chicken_photo(h)
    panel = h.win.layers_panel
    h.drag([(100, 100), (200, 100)])
    panel.add_btn.click()
    h.drag([(150, 80), (150, 120)])
    h.qtbot.waitUntil(lambda: "overlap" in panel.warnings.text())
    panel.background.setChecked(True)
    assert doc.show_background
    # the overlay tints unpainted pixels grey where the background shows
    assert h.canvas._overlay[400, 400, 3] > 0 and h.canvas._overlay[100, 150, 3] > 0


def test_zoom_wheel_fit_and_actual_size(harness):
    h = harness
    open_chicken_photo(h)
    c = h.canvas
    fit = c.zoom
    pos = QPointF(c.width() / 2, c.height() / 2)
    under = c.to_image(pos)
    ev = QWheelEvent(pos, c.mapToGlobal(pos), QPoint(0, 0), QPoint(0, 240), Qt.MouseButton.NoButton,
                     Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(c, ev)
    assert c.zoom > fit
    after = c.to_image(pos)
    assert abs(after.x() - under.x()) < 1e-6 and abs(after.y() - under.y()) < 1e-6  # zooms around the cursor
    h.key(Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert c.zoom == 1.0
    h.key(Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier)
    assert abs(c.zoom - fit) < 1e-9


def test_space_drag_pans_without_painting(harness):
    h = harness
    doc = open_chicken_photo(h)
    from PySide6.QtTest import QTest

    before = QPointF(h.canvas.offset)
    QTest.keyPress(h.canvas, Qt.Key.Key_Space)
    h.drag([(100, 100), (150, 120)])
    QTest.keyRelease(h.canvas, Qt.Key.Key_Space)
    assert h.canvas.offset != before
    assert doc.layers[0].mask.max() == 0 and not doc.history.done


def test_import_export_round_trip_of_the_reference_layout(harness, tmp_path):
    h = harness
    folder = scene_dir("chicken")
    with pytest.warns(UserWarning):  # the example masks overlap by a few pixels
        ref = load_scene(folder)
    assert h.win.import_scene(folder), h.errors
    doc = h.doc
    assert len(doc.layers) == 3 and doc.width == 512
    for layer, c in zip(doc.layers, ref.concepts):
        assert_masks_close(layer.mask.astype(np.float32) / 255, c.mask)
    doc.set_layer_prop(0, "name", "chicken")

    out = tmp_path / "exported"
    assert h.win.export_scene(out), h.errors
    with pytest.warns(UserWarning):
        back = load_scene(out)
    assert np.array_equal(back.image, ref.image)
    assert [c.init_word for c in back.concepts] == ["chicken", None, None]
    for a, b in zip(back.concepts, ref.concepts):
        assert_masks_close(a.mask, b.mask)


def test_export_refuses_an_empty_mask_with_a_clear_message(harness, tmp_path):
    h = harness
    open_chicken_photo(h)
    assert not h.win.export_scene(tmp_path / "out")
    assert h.errors and "empty" in h.errors[0]
    assert not (tmp_path / "out" / "mask0.png").exists()


def test_save_and_open_project(harness, tmp_path):
    h = harness
    doc = open_chicken_photo(h)
    h.drag([(100, 100), (300, 300)])
    doc.set_layer_prop(0, "name", "chicken")
    doc.add_layer("stool")
    doc.layers[1].mask[400:450, 10:60] = 128
    path = tmp_path / "scene.basproj"
    assert h.win.save_to(path), h.errors
    assert not h.win.modified and h.win.windowTitle().startswith("scene.basproj —")
    saved = [layer.mask.copy() for layer in doc.layers]

    h.win.set_document(None)
    assert h.win.open_path(path), h.errors
    got = h.doc
    assert [layer.name for layer in got.layers] == ["chicken", "stool"]
    for layer, m in zip(got.layers, saved):
        assert np.array_equal(layer.mask, m)
    assert got.original_bytes == (scene_dir("chicken") / "img.jpg").read_bytes()
    assert str(path) in h.win.settings.recent_files()


def test_open_bad_file_reports_the_file_and_keeps_the_document(harness, tmp_path):
    h = harness
    doc = open_chicken_photo(h)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    assert not h.win.open_path(bad)
    assert h.errors and str(bad) in h.errors[0]
    assert h.doc is doc


def test_autosave_then_recovery_after_a_crash(make_window, tmp_path):
    h = make_window()
    doc = open_chicken_photo(h)
    h.win.autosaver.quiet_s = 0.1
    h.drag([(100, 100), (300, 120)])
    folder = h.win.autosaver.folder
    session = h.win.autosaver.session
    h.qtbot.waitUntil(lambda: (folder / f"{session}.basproj").exists(), timeout=10000)
    saved, _ = read_project(folder / f"{session}.basproj")
    assert np.array_equal(saved.layers[0].mask, doc.layers[0].mask)
    painted = doc.layers[0].mask.copy()

    # "crash": the session dies without a clean exit (its autosave stays behind)
    from bas_desktop.autosave import Autosaver
    Autosaver.live_sessions.discard(session)
    h.win.autosaver._timer.stop()
    h.win.autosaver._lock._file.close()  # what the OS does to a dead process's files: the lock is free
    h.win.autosaver._lock._file = None

    h2 = make_window()
    offered = []
    h2.win.ask_recover = lambda infos: offered.append(infos) or infos[0]
    assert h2.win.check_recovery()
    assert offered and offered[0][0].session == session
    assert np.array_equal(h2.doc.layers[0].mask, painted)
    assert h2.win.modified  # recovered work is unsaved work
    assert not (folder / f"{session}.basproj").exists()  # taken over by the new session


def test_clean_close_removes_the_autosave(make_window):
    h = make_window()
    open_chicken_photo(h)
    h.win.autosaver.quiet_s = 0.1
    h.drag([(100, 100), (300, 120)])
    path = h.win.autosaver.folder / f"{h.win.autosaver.session}.basproj"
    h.qtbot.waitUntil(path.exists, timeout=10000)
    h.win.ask_save_changes = lambda: "discard"
    h.win.close()
    assert not path.exists()


def test_dropping_a_file_opens_it(harness):
    h = harness
    path = scene_dir("bear") / "img.jpg"
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    pos = QPointF(200, 200)
    enter = QDragEnterEvent(pos.toPoint(), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(h.win, enter)
    assert enter.isAccepted()
    drop = QDropEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(h.win, drop)
    h.qtbot.waitUntil(lambda: h.doc is not None and h.doc.source == path)
    assert h.doc.width == 512 and len(h.doc.layers) == 1

    text = QMimeData()
    text.setUrls([QUrl.fromLocalFile("/tmp/notes.txt")])
    enter = QDragEnterEvent(pos.toPoint(), Qt.DropAction.CopyAction, text, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    enter.ignore()
    QApplication.sendEvent(h.win, enter)
    assert not enter.isAccepted()


def test_window_state_and_brush_persist_in_settings(make_window):
    h = make_window()
    h.win.tool_settings.brush_size = 77
    h.win.close()
    h2 = make_window()
    assert h2.win.tool_settings.brush_size == 77
