"""Long undo histories, partial repaints, mask warnings, photos (EXIF, huge), project versions, settings."""

from __future__ import annotations

import hashlib
import json
import zipfile

import numpy as np
from PIL import Image
from PySide6.QtCore import QEvent, QObject, QRect, Qt
from PySide6.QtWidgets import QApplication

from bas_desktop.model.document import PixelEdit
from bas_desktop.model.project import MAX_WORK_SIDE
from tests.bas_desktop.conftest import scene_dir


def masks_digest(doc) -> str:
    h = hashlib.sha1()
    for layer in doc.layers:
        h.update(layer.mask.tobytes())
    return h.hexdigest()


def open_chicken(h):
    assert h.win.open_path(scene_dir("chicken") / "img.jpg"), h.errors
    return h.doc


def test_120_strokes_across_three_layers_undo_and_redo_step_by_step(harness):
    h = harness
    doc = open_chicken(h)
    h.win.tool_settings.brush_size = 9
    for _ in range(2):
        h.win.layers_panel.add_btn.click()
    assert len(doc.layers) == 3
    base = len(doc.history.done)
    states = [masks_digest(doc)]
    rng = np.random.default_rng(0)
    starts: list[tuple[float, float]] = []
    for i in range(120):
        doc.set_active(i % 3)  # strokes alternate between the layers
        if i % 5 == 4:
            h.key(Qt.Key.Key_E)
        elif i % 5 == 0:
            h.key(Qt.Key.Key_B)
        x, y = (float(v) for v in rng.integers(20, 470, 2))
        if i % 5 == 4:  # erase across this layer's previous stroke (erasing nothing records nothing)
            x, y = starts[i - 3][0] + 8, starts[i - 3][1] - 4
        starts.append((x, y))
        h.drag([(x, y), (x + 15, y + 4), (x + 25, y + 12)])
        states.append(masks_digest(doc))
    edits = doc.history.done[base:]
    assert len(edits) == 120  # one undo step per stroke
    for e in edits:  # history is data: a bounding box and the old/new pixels inside it, compressed
        assert isinstance(e, PixelEdit)
        x0, y0, x1, y1 = e.rect
        assert 0 < x1 - x0 < 60 and 0 < y1 - y0 < 60
    assert {e.uid for e in edits} == {layer.uid for layer in doc.layers}
    assert doc.history.nbytes() < 120 * 3000  # small even though each layer is 512x512

    for i in range(120, 0, -1):
        h.key(Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
        assert masks_digest(doc) == states[i - 1], f"undo to step {i - 1}"
    for i in range(1, 121):
        h.key(Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
        assert masks_digest(doc) == states[i], f"redo to step {i}"


class PaintSpy(QObject):
    """Records the rectangles of the real paint events a widget receives."""

    def __init__(self) -> None:
        super().__init__()
        self.rects: list[QRect] = []

    def eventFilter(self, obj, event) -> bool:  # noqa: N802
        if event.type() == QEvent.Type.Paint:
            self.rects.append(event.rect())
        return False


def test_painting_repaints_only_the_strokes_bounding_box(harness):
    h = harness
    doc = open_chicken(h)
    c = h.canvas
    h.win.tool_settings.brush_size = 10
    QApplication.processEvents()
    spy = PaintSpy()
    c.installEventFilter(spy)
    from PySide6.QtTest import QTest

    start = h.widget_point(200, 200)
    QTest.mousePress(c, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, start)
    QApplication.processEvents()
    for x in range(202, 232, 3):
        QTest.mouseMove(c, h.widget_point(x, 205))
        QApplication.processEvents()
    QTest.mouseRelease(c, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, h.widget_point(231, 205))
    QApplication.processEvents()
    c.removeEventFilter(spy)
    assert doc.layers[0].mask[205, 215] == 255
    assert spy.rects, "the stroke repainted nothing"
    stroke = c.transform().mapRect(QRect(200 - 20, 200 - 20, 31 + 40, 5 + 40))  # stroke box + brush + cursor
    whole = c.rect()
    for r in spy.rects:
        assert r != whole and r.width() * r.height() < whole.width() * whole.height() / 10
        assert stroke.contains(r), (r, stroke)


def test_empty_whole_image_and_overlap_warnings_in_the_panel(harness):
    h = harness
    open_chicken(h)
    panel = h.win.layers_panel
    h.qtbot.waitUntil(lambda: "the mask is empty" in panel.warnings.text())
    h.key(Qt.Key.Key_F)
    h.click(10, 10)  # bucket fill on an empty mask floods the whole photo
    h.qtbot.waitUntil(lambda: "covers the whole photo" in panel.warnings.text())
    assert "the mask is empty" not in panel.warnings.text()
    h.key(Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    h.qtbot.waitUntil(lambda: "the mask is empty" in panel.warnings.text())
    h.key(Qt.Key.Key_B)
    h.drag([(100, 100), (200, 100)])
    h.win.layers_panel.add_btn.click()
    h.drag([(150, 90), (150, 110)])
    h.qtbot.waitUntil(lambda: "overlap" in panel.warnings.text())
    assert "empty" not in panel.warnings.text()


def test_background_toggle_shows_the_complement(harness):
    h = harness
    doc = open_chicken(h)
    h.win.tool_settings.brush_size = 20
    h.drag([(100, 100), (200, 100)])
    ov = h.canvas._overlay
    assert ov[300, 300, 3] == 0  # unpainted, no background: untinted
    h.win.layers_panel.background.click()
    assert doc.show_background
    bg = doc.background_mask()
    assert bg[300, 300] and not bg[100, 150]  # the complement of the concepts
    assert ov[300, 300, 3] > 0  # now tinted as the background concept
    h.win.layers_panel.background.click()
    assert not doc.show_background and ov[300, 300, 3] == 0


def test_exif_orientation_is_honoured(harness, tmp_path):
    h = harness
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :20] = (255, 0, 0)  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90° clockwise
    path = tmp_path / "phone.jpg"
    Image.fromarray(img).save(path, quality=95, exif=exif)
    assert h.win.open_path(path), h.errors
    doc = h.doc
    assert (doc.width, doc.height) == (20, 40)  # portrait, as the camera meant it
    assert doc.image[5, 10, 0] > 200 and doc.image[35, 10, 0] < 60  # red half now on top


def test_huge_photo_is_worked_on_smaller_and_the_original_is_kept(harness, tmp_path):
    h = harness
    big = np.zeros((300, 6000, 3), np.uint8)
    big[:, ::2] = 200
    path = tmp_path / "pano.png"
    Image.fromarray(big).save(path, compress_level=1)
    assert h.win.open_path(path), h.errors
    doc = h.doc
    assert max(doc.width, doc.height) == MAX_WORK_SIDE and doc.original_size == (6000, 300)
    assert "working at" in h.win.statusBar().currentMessage()
    assert doc.layers[0].mask.shape == (doc.height, doc.width)
    proj = tmp_path / "pano.basproj"
    assert h.win.save_to(proj), h.errors
    with zipfile.ZipFile(proj) as z:
        assert z.read("photo/original.png") == path.read_bytes()  # never re-encoded
    h.win.set_document(None)
    assert h.win.open_path(proj), h.errors
    assert h.doc.original_size == (6000, 300) and h.doc.width == MAX_WORK_SIDE


def test_project_from_a_newer_version_is_refused_clearly(harness, tmp_path):
    h = harness
    open_chicken(h)
    path = tmp_path / "p.basproj"
    assert h.win.save_to(path)
    with zipfile.ZipFile(path) as z:
        meta = json.loads(z.read("project.json"))
        entries = {n: z.read(n) for n in z.namelist()}
    assert meta["format"] == "bas-desktop-project" and meta["version"] == 1
    meta["version"] = 99
    entries["project.json"] = json.dumps(meta).encode()
    newer = tmp_path / "newer.basproj"
    with zipfile.ZipFile(newer, "w") as z:
        for n, data in entries.items():
            z.writestr(n, data)
    doc = h.doc
    assert not h.win.open_path(newer)
    assert "newer version" in h.errors[-1] and str(newer) in h.errors[-1]
    assert h.doc is doc


def test_settings_are_isolated_and_keep_window_state_and_recent_files(make_window, isolated):
    h = make_window()
    assert h.win.settings.q.fileName().startswith(str(isolated))  # never the user's settings
    assert h.win.open_path(scene_dir("chicken") / "img.jpg")
    h.win.resize(900, 640)
    h.win.layers_dock.hide()
    h.win.close()
    h2 = make_window()
    assert str((scene_dir("chicken") / "img.jpg").resolve()) in h2.win.settings.recent_files()
    assert h2.win.recent_menu.isEnabled() and h2.win.recent_menu.actions()[0].text() == "img.jpg"
    assert not h2.win.layers_dock.isVisible()  # dock layout restored
