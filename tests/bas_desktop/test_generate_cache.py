"""Issue 13.9: the model stays loaded between Generate requests (until the pack changes)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt

from bas_desktop.model import jobs
from bas_desktop.model.project_data import ProjectData
from bas_desktop.widgets.studio import StudioWindow
from tests.bas_desktop.studio_helpers import TINY, shapes_document
from tests.bas_desktop.test_import_export import _embedding_pack

TIMEOUT = 120_000


def test_second_generate_reuses_the_loaded_model(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    win = StudioWindow()
    qtbot.addWidget(win)
    win.show()
    data = ProjectData(tmp_path / "p.basproj.data")
    data.ensure()
    _embedding_pack(tmp_path, "pack", ["<asset0>", "<asset1>"], data.pack_dir)
    win.open_project(shapes_document(), data, TINY)
    gallery = win.studio.gallery
    gallery.device = "cpu"
    gallery.batch.setValue(1)
    gallery.steps.setValue(2)
    texts: list[str] = []
    win.runner.message.connect(lambda m: texts.append(m.text) if m.job == "generate" else None)
    gallery.prompt.setText("a photo of <asset0>")

    def generate_once() -> None:
        texts.clear()
        qtbot.mouseClick(gallery.generate_button, Qt.MouseButton.LeftButton)
        texts.append(gallery.status.text())  # what the panel says at once
        qtbot.waitUntil(lambda: not gallery.busy, timeout=TIMEOUT)
        assert gallery.status.text() == "Done", gallery.last_error

    generate_once()
    assert any("Loading the model" in t for t in texts)
    first = jobs.pack_model(data.pack_dir, "cpu")

    generate_once()
    assert not any("Loading" in t for t in texts)  # no reload, and the UI does not say so either
    assert jobs.pack_model(data.pack_dir, "cpu") is first
    win.runner.wait_idle(TIMEOUT)
