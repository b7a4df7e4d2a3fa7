"""Issue 13.4: exports and imports are queued jobs that never block the window, importing over
existing handles asks (replace / add / cancel), and one Import dialog takes every kind of source."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from bas_desktop.model.importing import inspect_source
from bas_desktop.widgets.job_status import JobsLabel
from bas_desktop.model.project_data import ProjectData
from bas_desktop.widgets.studio import StudioWindow, pack_handles
from tests.bas_desktop.studio_helpers import TINY, shapes_document

TIMEOUT = 60_000


def _embedding_pack(tmp_path: Path, name: str, tokens: list[str], dest: Path | None = None) -> Path:
    """A handles-only pack for the tiny model (32-wide embeddings), built without training."""
    import torch
    from safetensors.torch import save_file

    from engine.packs.interop import import_embeddings

    files = []
    for i, tok in enumerate(tokens):
        f = tmp_path / f"{name}-{i}.safetensors"
        save_file({tok: torch.full((32,), float(i + 1))}, str(f))
        files.append(f)
    return import_embeddings(files, TINY, dest or tmp_path / name)


@pytest.fixture
def studio_win(qtbot, tmp_path: Path):  # type: ignore[no-untyped-def]
    win = StudioWindow()
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    data = ProjectData(tmp_path / "project.basproj.data")
    data.ensure()
    _embedding_pack(tmp_path, "trained", ["<asset0>", "<asset1>", "<asset2>"], data.pack_dir)
    win.open_project(shapes_document(), data, TINY)
    yield win
    win.runner.wait_idle(TIMEOUT)


def _click_message_box(button_text: str) -> None:
    def click() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(20, click)
            return
        for b in box.buttons():
            if b.text().replace("&", "") == button_text:
                b.click()
                return

    QTimer.singleShot(0, click)


def test_import_over_existing_handles_asks_and_cancel_keeps_them(qtbot, studio_win, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    studio = studio_win.studio
    incoming = _embedding_pack(tmp_path, "incoming", ["<asset0>", "<asset1>"])
    _click_message_box("Cancel")
    assert studio.import_pack([incoming]) is False
    assert [h.token for h in pack_handles(studio.data)] == ["<asset0>", "<asset1>", "<asset2>"]
    assert "cancelled" in studio_win.statusBar().currentMessage()

    _click_message_box("Add as new handles")
    with qtbot.waitSignal(studio.handlesChanged, timeout=TIMEOUT) as got:
        assert studio.import_pack([incoming])
    assert [h.token for h in got.args[0]] == ["<asset0>", "<asset1>", "<asset2>", "<asset3>", "<asset4>"]
    assert studio.last_import.added == ["<asset3>", "<asset4>"]
    assert "Imported 2 handle(s): <asset3>, <asset4>; the project now has 5" in studio_win.statusBar().currentMessage()


def test_one_import_dialog_replaces_or_adds_from_a_folder_an_archive_or_embeddings(qtbot, studio_win, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from engine.packs.archive import archive_pack

    studio = studio_win.studio
    incoming = _embedding_pack(tmp_path, "incoming", ["<asset0>", "<asset1>"])
    dlg = studio.import_dialog(studio_win)
    qtbot.waitExposed(dlg)
    assert not dlg.isModal() and QApplication.activeModalWidget() is None
    assert dlg.replace_radio.isVisible() and "3 handles" in dlg.replace_radio.text()
    assert dlg.add_radio.isChecked()  # the safe choice is the default

    assert dlg.set_paths([incoming]) and "2 handles" in dlg.summary.text()
    dlg.replace_radio.setChecked(True)
    with qtbot.waitSignal(studio.handlesChanged, timeout=TIMEOUT) as got:
        qtbot.mouseClick(dlg.import_button, Qt.MouseButton.LeftButton)
    assert [h.token for h in got.args[0]] == ["<asset0>", "<asset1>"]
    qtbot.waitUntil(lambda: "Imported 2 handle(s)" in dlg.state.text(), timeout=TIMEOUT)

    archive = archive_pack(incoming, tmp_path / "incoming.zip")
    assert dlg.set_paths([archive]) and "archive" in dlg.summary.text()
    dlg.add_radio.setChecked(True)
    with qtbot.waitSignal(studio.handlesChanged, timeout=TIMEOUT) as got:
        qtbot.mouseClick(dlg.import_button, Qt.MouseButton.LeftButton)
    assert len(got.args[0]) == 4

    files = sorted(tmp_path.glob("incoming-*.safetensors"))
    assert dlg.set_paths(files) and "textual-inversion" in dlg.summary.text()
    (tmp_path / "empty").mkdir()
    assert not dlg.set_paths([tmp_path / "empty"]) and not dlg.import_button.isEnabled()
    assert "no pack.json" in dlg.summary.text()
    dlg.close()


def test_export_waits_visibly_behind_a_running_job_without_blocking_and_imports_back(qtbot, studio_win, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    studio, runner = studio_win.studio, studio_win.runner
    release = threading.Event()
    runner.submit("generate", lambda _i, _r, cancel: release.wait(TIMEOUT / 1000), None)
    label = studio_win.findChild(JobsLabel)
    qtbot.waitUntil(lambda: "Running: Generate" in label.text(), timeout=TIMEOUT)

    dlg = studio.export_dialog(studio_win)
    qtbot.waitExposed(dlg)
    dlg.folder.setText(str(tmp_path / "export"))
    qtbot.mouseClick(dlg.export_button, Qt.MouseButton.LeftButton)
    assert not dlg.isModal() and QApplication.activeModalWidget() is None  # the Gallery's Cancel stays reachable
    assert "waiting for Generate to finish" in dlg.state.text()
    assert "Waiting: Export (for Generate)" in label.text()
    assert studio.gallery.isEnabled()
    release.set()
    with qtbot.waitSignal(dlg.exported, timeout=TIMEOUT):
        pass
    assert "done" in dlg.state.text() and "Export done" in label.text()

    # the exported folder (our pack + the diffusers folder) imports back; so does diffusers/ alone
    plan = inspect_source([tmp_path / "export"])
    assert plan.kind == "pack" and plan.paths == [tmp_path / "export" / "pack"]
    interop = inspect_source([tmp_path / "export" / "diffusers"])
    assert interop.kind == "embeddings" and len(interop.paths) == 3
    _click_message_box("Replace them")
    with qtbot.waitSignal(studio.handlesChanged, timeout=TIMEOUT) as got:
        studio.import_pack([tmp_path / "export" / "diffusers"])
    assert len(got.args[0]) == 3
