"""The Break panel's "Run on: Ray cluster" through a local Ray cluster (2 CPUs, the tiny model):
the same progress events and heat maps, a remote cancel that brings the checkpoint home, a resume
on the cluster, the pack fetched into the project and its previews."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pytestqt")
ray = pytest.importorskip("ray", reason="Ray is not installed (pip install '.[cluster]')")

from PySide6.QtCore import Qt  # noqa: E402

from bas_desktop.model.project_data import ProjectData  # noqa: E402
from bas_desktop.widgets.studio import StudioWindow  # noqa: E402
from engine.packs.pack import load_pack  # noqa: E402
from tests.bas_desktop.studio_helpers import TINY, shapes_document  # noqa: E402

TIMEOUT = 120_000
SLOWER = {"phase1_steps": 12, "phase2_steps": 12, "checkpoint_every": 2, "prior_preservation": False}


def test_a_break_on_the_cluster_shows_progress_cancels_resumes_and_fetches_the_pack(
        qtbot, local_ray, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = ProjectData(tmp_path / "scene.basproj.data")
    win = StudioWindow()
    qtbot.addWidget(win)
    win.show()
    panel = win.studio.break_panel
    panel.set_overrides(**SLOWER)
    panel.device.setCurrentText("cpu")
    panel.every.setValue(2)
    panel.preview_steps = 2
    win.open_project(shapes_document(), data, TINY)
    panel.set_cluster(True, "")  # the Ray instance this test started
    assert panel.address.isVisibleTo(panel) and panel.cluster() == ""

    events = []

    def cancel_after_a_checkpoint(e) -> None:  # type: ignore[no-untyped-def]
        events.append(e)
        if e.kind == "checkpoint" and panel.state == "training":
            panel.cancel()

    panel.event.connect(cancel_after_a_checkpoint)
    qtbot.mouseClick(panel.break_button, Qt.MouseButton.LeftButton)  # no local estimate before a cluster run
    qtbot.waitUntil(lambda: panel.state == "idle" and panel.can_resume(), timeout=TIMEOUT)
    kinds = [e.kind for e in events]
    assert "step" in kinds and "checkpoint" in kinds
    assert any(e.kind == "preview" and e.attention for e in events)  # heat maps come from the worker
    assert data.has_checkpoint() and not data.has_pack()
    stopped_at = max(e.global_step for e in events if e.kind == "checkpoint")

    panel.event.disconnect(cancel_after_a_checkpoint)
    resumed = []
    panel.event.connect(resumed.append)
    qtbot.mouseClick(panel.resume_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.state == "idle" and data.has_pack(), timeout=TIMEOUT)
    steps = [e.global_step for e in resumed if e.kind == "step"]
    assert steps and min(steps) > stopped_at - 2  # it went on from the checkpoint, not from step 0
    assert any("resuming" in e.message for e in resumed if e.kind == "status")
    assert load_pack(data.pack_dir).tokens == ["<asset0>", "<asset1>"]
    assert not data.has_checkpoint()
    qtbot.waitUntil(lambda: all(t.preview_label.pixmap() is not None and not t.preview_label.pixmap().isNull()
                                for t in panel.tiles.values()), timeout=TIMEOUT)
    win.close()
