"""Issue 13.10: texts a GUI user meets (no CLI flags, no stale hints)."""

from __future__ import annotations

from pathlib import Path

import pytest

from PySide6.QtCore import Qt

from bas_desktop.widgets.error_dialog import ErrorDialog
from bas_desktop.model.project_data import ProjectData
from bas_desktop.widgets.studio import StudioWindow
from tests.bas_desktop.studio_helpers import TINY, shapes_document
from tests.bas_desktop.test_import_export import _embedding_pack


def test_gallery_hints_follow_the_handles_and_background_names_the_checkbox(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    win = StudioWindow()
    qtbot.addWidget(win)
    win.show()
    data = ProjectData(tmp_path / "p.basproj.data")
    win.open_project(shapes_document(), data, TINY)
    gallery = win.studio.gallery
    assert "Break the scene to get handles" in gallery.status.text()

    data.ensure()
    _embedding_pack(tmp_path, "pack", ["<asset0>", "<asset1>"], data.pack_dir)
    win.studio.refresh_handles()
    assert "Break the scene" not in gallery.status.text() and "Ready" in gallery.status.text()

    qtbot.mouseClick(gallery.background_button, Qt.MouseButton.LeftButton)
    assert "--background" not in (gallery.last_error or "")
    assert "Background concept (everything else)" in gallery.last_error and "break the scene again" in gallery.last_error
    dialogs = [w for w in win.findChildren(ErrorDialog) if w.isVisible()]
    assert dialogs and "Background concept" in dialogs[0].message
    assert not win.runner.busy("generate")  # nothing was queued
    win.runner.wait_idle(60_000)


@pytest.fixture
def runner():  # type: ignore[no-untyped-def]
    from bas_desktop.workers import JobRunner

    r = JobRunner()
    yield r
    r.shutdown()


def test_first_run_model_dialog_has_later_as_default_and_prints_no_traceback(qtbot, capfd, monkeypatch, runner) -> None:  # type: ignore[no-untyped-def]
    from bas_desktop.model import model_setup
    from bas_desktop.widgets.model_dialog import ModelDialog

    def offline() -> list:
        raise OSError("no network")  # what the hub client raises offline

    monkeypatch.setattr(model_setup, "remote_files", offline)
    dlg = ModelDialog(runner, current="shapesworld", first_run=True)
    qtbot.addWidget(dlg)
    dlg.show()
    qtbot.waitUntil(lambda: "checking" not in dlg.size_label.text(), timeout=30_000)
    assert "offline?" in dlg.size_label.text()
    assert "Traceback" not in capfd.readouterr().err
    assert "No Stable Diffusion weights were found" in dlg.intro.text() and "ShapesWorld" in dlg.intro.text()
    assert dlg.later_button.text() == "Later" and dlg.later_button.isDefault()
    assert not dlg.download_button.isDefault() and not dlg.download_button.autoDefault()
    qtbot.keyClick(dlg, Qt.Key.Key_Return)  # Enter closes the dialog, it does not start a 5 GB download
    assert not dlg.isVisible() and not runner.busy("download")
