"""A full session on the tiny model, driven through the widgets (offscreen):

load a scene, estimate, Break, watch progress events in order, cancel, reopen and resume, generate
in the gallery (streaming, survives a restart), variations, drag a chip onto the canvas and accept
an edit (undoable), export the pack and import it back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPointF, Qt  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from bas_desktop.widgets.gallery_panel import GalleryPanel  # noqa: E402
from bas_desktop.model.project_data import ProjectData  # noqa: E402
from bas_desktop.widgets.studio import StudioWindow  # noqa: E402
from bas_desktop.workers import JobRunner  # noqa: E402
from tests.bas_desktop.studio_helpers import FAST, TINY, drop_token, shapes_document  # noqa: E402

TIMEOUT = 60_000


def _window(qtbot, data: ProjectData, doc=None) -> StudioWindow:  # type: ignore[no-untyped-def]
    win = StudioWindow()
    qtbot.addWidget(win)
    win.show()
    doc = doc or shapes_document()
    panel = win.studio.break_panel
    panel.set_overrides(**FAST)
    panel.device.setCurrentText("cpu")
    panel.every.setValue(2)
    panel.preview_steps = 3
    win.open_project(doc, data, TINY)
    return win


def test_full_session(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = ProjectData(tmp_path / "scene.basproj.data")
    win = _window(qtbot, data)
    panel = win.studio.break_panel

    # --- estimate shown before committing; the Break button then names the time
    qtbot.mouseClick(panel.break_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.estimate is not None and panel.state == "idle", timeout=TIMEOUT)
    assert panel.estimate.total_s > 0 and panel.estimate.peak_memory_bytes > 0
    assert "on cpu" in panel.estimate_label.text()
    assert panel.break_button.text().startswith("Start break (")
    qtbot.waitUntil(lambda: "CPU" in panel.device_note.text(), timeout=TIMEOUT)  # no GPU on the test machine

    # --- Break, cancel after the first steps
    def cancel_early(e) -> None:  # type: ignore[no-untyped-def]
        if e.kind == "step" and e.global_step >= 3:
            panel.cancel()

    panel.event.connect(cancel_early)
    qtbot.mouseClick(panel.break_button, Qt.MouseButton.LeftButton)
    assert panel.state == "training" and not panel.break_button.isEnabled()  # the UI did not block
    qtbot.waitUntil(lambda: panel.state == "idle", timeout=TIMEOUT)
    panel.event.disconnect(cancel_early)
    kinds = [e.kind for e in panel.events]
    assert kinds[0] == "status" and "done" not in kinds
    steps = [e.global_step for e in panel.events if e.kind == "step"]
    assert steps == list(range(1, len(steps) + 1)) and 3 <= len(steps) < 12
    previews = [e for e in panel.events if e.kind == "preview"]
    assert previews and set(previews[0].attention) == {"<asset0>", "<asset1>"}
    assert all(0.0 <= v <= 1.0 for v in previews[0].overlap.values())
    assert panel.tiles["<asset0>"].overlap is not None  # the heat map tile was updated
    assert data.has_checkpoint() and not data.has_pack()
    assert "Cancelled" in panel.status.text()
    win.close()

    # --- reopen: the panel offers to resume; resuming continues after the checkpoint
    win2 = _window(qtbot, data)
    panel2 = win2.studio.break_panel
    assert panel2.resume_bar.isVisibleTo(win2) and "unfinished break" in panel2.resume_text.text()
    with qtbot.waitSignal(panel2.finished, timeout=TIMEOUT) as finished:
        qtbot.mouseClick(panel2.resume_button, Qt.MouseButton.LeftButton)
    assert Path(finished.args[0]) == data.pack_dir and data.has_pack() and not data.has_checkpoint()
    resumed = [e.global_step for e in panel2.events if e.kind == "step"]
    assert resumed[0] > 1 and resumed[-1] == 12 and panel2.events[-1].kind == "done"
    charted = [s for s, _ in panel2.chart.series["diffusion"]]
    assert charted == list(range(1, 13))  # the losses before the cancel came back from the project
    qtbot.waitUntil(lambda: panel2.tiles["<asset1>"].preview_label.pixmap() is not None
                    and not panel2.tiles["<asset1>"].preview_label.pixmap().isNull(), timeout=TIMEOUT)

    # --- gallery: chip click composes the prompt; images stream in one by one
    gal = win2.studio.gallery
    assert [c.handle.token for c in gal.chips.chips] == ["<asset0>", "<asset1>"]
    gal.prompt.setText("a photo of")
    gal.prompt.setCursorPosition(len(gal.prompt.text()))
    qtbot.mouseClick(gal.chips.chips[1], Qt.MouseButton.LeftButton)
    assert gal.prompt.text().strip() == "a photo of <asset1>"
    assert "<span" in gal.rendered.text()
    gal.batch.setValue(2)
    gal.steps.setValue(3)
    gal.lock_seed.setChecked(True)
    gal.seed.setValue(11)
    added: list = []
    gal.entryAdded.connect(added.append)
    qtbot.mouseClick(gal.generate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not gal.busy, timeout=TIMEOUT)
    assert [e.seed for e in added] == [11, 12] and all(e.prompt == "a photo of <asset1>" for e in added)
    assert all((data.gallery_dir / e.file).is_file() for e in added)

    # history actions: copy seed, save as PNG with metadata, delete
    gal.copy_seed(added[1])
    assert QApplication.clipboard().text() == "12"
    saved = gal.save_as(added[0], tmp_path / "out")
    from engine.formats.png import read_png_metadata
    assert read_png_metadata(saved)["seed"] == 11

    # variations: each handle alone and the pair, in each template
    gal.steps.setValue(2)
    qtbot.mouseClick(gal.variations_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not gal.busy, timeout=TIMEOUT)
    labels = [e.label for e in added[2:]]
    assert labels == ["<asset0>"] * 2 + ["<asset1>"] * 2 + ["<asset0> + <asset1>"] * 2

    # background extraction on a pack without a background handle: a clear error
    qtbot.mouseClick(gal.background_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not gal.busy, timeout=TIMEOUT)
    assert gal.last_error and "no background handle" in gal.last_error
    gal.delete(added[-1])
    assert not (data.gallery_dir / added[-1].file).exists()

    # the gallery lives in the project: a fresh panel (a restart) shows the same history
    runner = JobRunner()
    fresh = GalleryPanel(runner)
    qtbot.addWidget(fresh)
    fresh.set_project(data, [])
    assert fresh.history.count() == len(added) - 1
    runner.shutdown()

    # --- drag the ball's chip onto the canvas near the top right: a region is proposed there
    edit = win2.studio.edit
    doc = win2.studio.doc
    original = doc.image.copy()
    canvas = win2.canvas
    target = canvas.to_widget(QPointF(44, 16))
    assert drop_token(canvas, target, "<asset1>") and edit.token == "<asset1>"
    ys, xs = np.nonzero(edit.view.region)
    assert abs(xs.mean() - 44) <= 2 and abs(ys.mean() - 16) <= 2  # the disk moved under the drop point
    edit.count.setValue(2)
    edit.steps.setValue(3)
    qtbot.mouseClick(edit.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not edit.busy, timeout=TIMEOUT)
    assert len(edit.candidates) == 2
    qtbot.mouseClick(edit.next_button, Qt.MouseButton.LeftButton)
    assert edit.index == 0 and edit.counter.text() == "candidate 1/2"
    chosen = edit.candidates[0].image
    qtbot.mouseClick(edit.accept_button, Qt.MouseButton.LeftButton)
    assert np.array_equal(doc.image, chosen) and not np.array_equal(doc.image, original)
    assert (canvas._photo[..., 2] == doc.image[..., 0]).all()  # the canvas shows the new version
    assert doc.undo() == "Local edit: <asset1>"
    assert np.array_equal(doc.image, original) and (canvas._photo[..., 2] == original[..., 0]).all()
    assert doc.redo() and np.array_equal(doc.image, chosen)
    assert [e.kind for e in gal.store.entries[-2:]] == ["edit", "edit"]  # the candidates are in the gallery

    # --- export the pack (our format + interop) and import it into another project
    dlg = win2.studio.export_dialog(win2)
    dlg.checks["a1111"].setChecked(True)
    dlg.folder.setText(str(tmp_path / "export"))
    with qtbot.waitSignal(dlg.exported, timeout=TIMEOUT):
        qtbot.mouseClick(dlg.export_button, Qt.MouseButton.LeftButton)
    names = {p.name for p in dlg.written}
    assert {"pack", "asset0.safetensors", "README.txt"} <= names
    other = ProjectData(tmp_path / "other.basproj.data")
    win2.studio.open_project(shapes_document(), other, TINY)
    assert win2.studio.gallery.chips.chips == []
    with qtbot.waitSignal(win2.studio.handlesChanged, timeout=TIMEOUT) as got:
        win2.studio.import_pack([tmp_path / "export" / "pack"])
    assert [h.token for h in got.args[0]] == ["<asset0>", "<asset1>"] and other.has_pack()
    from engine.packs.pack import load_pack
    assert load_pack(other.pack_dir).tokens == ["<asset0>", "<asset1>"]

    # importing something that is not a pack names the file and keeps the imported pack
    bad = tmp_path / "notapack"
    bad.mkdir()
    win2.studio.import_pack([bad])
    qtbot.waitUntil(lambda: win2.studio.last_error is not None, timeout=TIMEOUT)
    assert str(bad) in win2.studio.last_error and other.has_pack()
    win2.close()
