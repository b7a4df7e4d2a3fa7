"""The studio's parts on their own: gallery store, chips and prompt drops, region proposal, photo
versions, first-run model dialog, device message, project data, self-test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PIL import Image  # noqa: E402
from PySide6.QtCore import QPoint, Qt  # noqa: E402

from bas_desktop.widgets.chips import Handle, PromptEdit, render_prompt, unknown_tokens  # noqa: E402
from bas_desktop.model.local_edit import accept_photo_version, moved_mask_proposal  # noqa: E402
from bas_desktop.model.gallery_store import GalleryEntry, GalleryStore  # noqa: E402
from bas_desktop.model.project_data import ProjectData  # noqa: E402
from tests.bas_desktop.studio_helpers import drop_token, shapes_document  # noqa: E402

HANDLES = [Handle("<asset0>", "cube", (230, 25, 75)), Handle("<asset1>", "ball", (60, 180, 75))]


def _png(folder: Path, name: str, seed: int) -> None:
    from engine.compose.generate import GeneratedImage

    GeneratedImage(Image.new("RGB", (8, 8), (seed, 0, 0)), f"a photo of <asset{seed % 2}>", seed, 5, 6.5).save(
        folder / name)


def test_gallery_store_round_trip_and_rebuild(tmp_path: Path) -> None:
    store = GalleryStore(tmp_path).load()
    assert store.entries == []
    for i in range(3):
        _png(tmp_path, f"{i}.png", i)
        store.add(GalleryEntry(f"{i}.png", f"p{i}", i, 5, 6.5))
    with pytest.raises(FileNotFoundError, match="missing.png"):
        store.add(GalleryEntry("missing.png", "p", 0, 1, 1.0))
    store.delete(store.entries[1])
    assert not (tmp_path / "1.png").exists()
    again = GalleryStore(tmp_path).load()
    assert [e.file for e in again.entries] == ["0.png", "2.png"] and again.problem is None
    # a corrupt index is rebuilt from the PNGs' own metadata; no image is lost
    (tmp_path / "index.json").write_text("{not json", encoding="utf-8")
    rebuilt = GalleryStore(tmp_path).load()
    assert "unreadable gallery index" in rebuilt.problem and str(tmp_path / "index.json") in rebuilt.problem
    assert sorted((e.file, e.seed, e.prompt) for e in rebuilt.entries) == [
        ("0.png", 0, "a photo of <asset0>"), ("2.png", 2, "a photo of <asset0>")]
    assert json.loads((tmp_path / "index.json").read_text())["entries"]  # and written back


def test_prompt_rendering_and_unknown_tokens() -> None:
    html = render_prompt("a <asset0> & <asset7>", HANDLES)
    assert "background:rgb(230,25,75)" in html and "&amp;" in html and "unknown handle" in html
    assert unknown_tokens("<asset1> and <asset7> <asset7>", HANDLES) == ["<asset7>", "<asset7>"]


def test_chip_dropped_into_prompt_lands_at_the_drop_point(qtbot) -> None:  # type: ignore[no-untyped-def]
    edit = PromptEdit()
    qtbot.addWidget(edit)
    edit.resize(400, 30)
    edit.show()
    edit.setText("a photo of at the beach")
    x = edit.cursorRect().center().x()
    edit.setCursorPosition(len("a photo of "))
    x = edit.cursorRect().center().x()
    edit.setCursorPosition(0)
    assert drop_token(edit, QPoint(x, 15), "<asset1>")
    assert edit.text() == "a photo of <asset1> at the beach"
    edit.setText("x")
    edit.setCursorPosition(1)
    edit.insert_token("<asset0>")
    assert edit.text() == "x <asset0>"
    qtbot.keyClicks(edit, " at the beach")  # the user types the space: one, not two
    assert edit.text() == "x <asset0> at the beach"


def test_region_proposal_moves_the_handle_mask_under_the_drop_point() -> None:
    doc = shapes_document()
    region = moved_mask_proposal(doc, "<asset0>", 40, 40)  # the 20x20 square, centred at (40, 40)
    ys, xs = np.nonzero(region)
    assert region.sum() == 400 and (xs.min(), xs.max(), ys.min(), ys.max()) == (30, 49, 30, 49)
    edge = moved_mask_proposal(doc, "<asset0>", 0, 63)  # clipped at the border, never wraps
    assert 0 < edge.sum() < 400 and not edge[:, 40:].any()
    doc.layers[1].mask[:] = 0
    disk = moved_mask_proposal(doc, "<asset1>", 10, 10)  # an empty mask: a disk around the point
    assert disk[10, 10] and disk.sum() > 50


def test_photo_version_is_one_undo_step() -> None:
    doc = shapes_document()
    before, masks = doc.image.copy(), [layer.mask.copy() for layer in doc.layers]
    new = np.zeros_like(before)
    seen: list[str] = []
    doc.subscribe(lambda c: seen.append(c.kind))
    accept_photo_version(doc, new, "Local edit: <asset0>")
    assert np.array_equal(doc.image, new) and "photo" in seen
    assert doc.undo() == "Local edit: <asset0>" and np.array_equal(doc.image, before)
    assert all(np.array_equal(a.mask, b) for a, b in zip(doc.layers, masks))
    doc.redo()
    assert np.array_equal(doc.image, new)
    with pytest.raises(ValueError, match="edited photo"):
        accept_photo_version(doc, np.zeros((8, 8, 3), np.uint8))


def test_project_data_run_and_checkpoint(tmp_path: Path) -> None:
    data = ProjectData.for_project(tmp_path / "toys.basproj")
    assert data.root == tmp_path / "toys.basproj.data" and not data.has_checkpoint()
    data.write_run({"preset": "Quick"})
    (data.work_dir / "checkpoint.pt").write_bytes(b"x")
    assert data.has_checkpoint() and data.read_run() == {"preset": "Quick"}
    (data.work_dir / "run.json").write_text("garbage")
    assert data.read_run() is None
    data.clear_run()
    assert not data.has_checkpoint() and not (data.work_dir / "checkpoint.pt").exists()


def test_model_dialog_offline_choice_and_bad_local_path(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from bas_desktop.model import model_setup
    from engine.formats import names
    from bas_desktop.widgets.model_dialog import ModelDialog
    from bas_desktop.workers import JobRunner

    runner = JobRunner()
    dlg = ModelDialog(runner)
    qtbot.addWidget(dlg)
    qtbot.waitUntil(lambda: "checking" not in dlg.size_label.text(), timeout=30_000)  # sized, or "offline?"
    assert "Size:" in dlg.size_label.text()
    bad = tmp_path / "not-a-model"
    bad.mkdir()
    dlg.use_local(str(bad))
    qtbot.waitUntil(lambda: dlg.last_error is not None, timeout=30_000)
    assert str(bad) in dlg.last_error and "model_index.json" in dlg.last_error and dlg.chosen is None
    with qtbot.waitSignal(dlg.modelChosen) as got:
        qtbot.mouseClick(dlg.offline_button, Qt.MouseButton.LeftButton)
    expected = names.OFFLINE_MODEL if names.offline_model_available() else names.TINY_MODEL
    assert got.args == [expected] and dlg.chosen == expected
    assert model_setup.format_size(5_210_000_000) == "5.2 GB"
    runner.shutdown()


def test_device_message_names_the_cpu_only_case() -> None:
    import torch

    from engine.devices import device_info

    info = device_info()
    assert info.available[-1] == "cpu" and info.auto == info.available[0]
    if not torch.cuda.is_available():
        assert "Only the CPU" in info.message


def test_self_test_runs_a_break(tmp_path: Path) -> None:
    from bas_desktop.selftest import run_self_test

    summary = run_self_test("tiny-random", steps=2, work=tmp_path)
    assert summary["ok"] and summary["generated"] == 1 and summary["previews"] == ["<asset0>", "<asset1>"]
    assert {"status", "step", "done"} <= set(summary["events"])


def test_panels_import_without_torch() -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    code = ("import sys, tempfile, pathlib, bas_desktop.widgets.studio, bas_desktop.selftest, bas_desktop.widgets.model_dialog\n"
            "from PIL import Image\nfrom bas_desktop.model.gallery_store import GalleryStore\n"
            "d = pathlib.Path(tempfile.mkdtemp()); Image.new('RGB', (4, 4)).save(d / 'a.png')\n"
            "assert [e.file for e in GalleryStore(d).load().entries] == ['a.png']  # rebuilt, PIL only\n"
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True,
                         env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"})
    assert out.stdout.strip() == "[]"  # app start stays fast: the engine's heavy imports happen in jobs
