"""Issue 13.2: an accepted local edit is part of the project (the original is kept) and one undo step."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt

from bas_desktop.model.gallery_store import GalleryEntry
from bas_desktop.model.jobs import EditCandidate
from tests.bas_desktop.studio_helpers import shapes_document


def _edited(image: np.ndarray) -> np.ndarray:
    out = image.copy()
    out[8:28, 8:28] = (250, 200, 0)  # the red square turned yellow
    return out


def _accept_in_panel(qtbot, win, image: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    panel = win.studio.edit
    panel.candidates = [EditCandidate(image, GalleryEntry("c0.png", "", 0, 1, 1.0, kind="edit"))]
    panel.token, panel.index = "<asset0>", 0
    panel.show_candidate(0)
    win.studio.docks["edit"].raise_()
    assert panel.accept_button.isEnabled()
    qtbot.mouseClick(panel.accept_button, Qt.MouseButton.LeftButton)


def test_accepted_edit_survives_save_and_reopen_and_the_original_is_kept(harness, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    win, qtbot = harness.win, harness.qtbot
    doc = shapes_document()
    original = doc.image.copy()
    win.set_document(doc, None, dirty=True)
    edited = _edited(original)
    _accept_in_panel(qtbot, win, edited)
    assert np.array_equal(win.doc.image, edited) and win.modified
    assert win.undo_act.isEnabled()

    project = tmp_path / "edited.basproj"
    assert win.save_to(project)
    with zipfile.ZipFile(project) as z:
        assert "photo/original.png" in z.namelist() and "photo/versions/1.png" in z.namelist()
    win.set_document(None)
    assert win.open_path(project)
    assert np.array_equal(win.doc.image, edited)  # pixel for pixel: versions are stored losslessly
    assert np.array_equal(win.canvas.doc.image, edited)
    assert [v.label for v in win.doc.photo_versions] == ["Local edit: <asset0>"]

    # the original came back too: undo in a fresh session cannot reach it, but the file holds it
    with zipfile.ZipFile(project) as z:
        from io import BytesIO

        from PIL import Image

        stored = np.asarray(Image.open(BytesIO(z.read("photo/original.png"))).convert("RGB"))
    assert np.array_equal(stored, original)


def test_undoing_an_accepted_edit_by_key_then_saving_keeps_the_original_photo(harness, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    win, qtbot = harness.win, harness.qtbot
    doc = shapes_document()
    original = doc.image.copy()
    win.set_document(doc, None, dirty=True)
    _accept_in_panel(qtbot, win, _edited(original))
    win.activateWindow()
    win.canvas.setFocus()
    harness.key(Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert np.array_equal(win.doc.image, original) and win.doc.photo_versions == []
    project = tmp_path / "undone.basproj"
    assert win.save_to(project)
    assert win.open_path(project)
    assert np.array_equal(win.doc.image, original) and win.doc.photo_versions == []
    with zipfile.ZipFile(project) as z:
        assert not [n for n in z.namelist() if n.startswith("photo/versions/")]
