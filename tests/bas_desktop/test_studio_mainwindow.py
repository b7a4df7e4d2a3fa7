"""The Break / Gallery / Local edit docks inside the scene editor's MainWindow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QPointF

from bas_desktop.app import MainWindow
from bas_desktop.model.project_data import ProjectData
from tests.bas_desktop.studio_helpers import drop_token, shapes_document


def test_main_window_hosts_the_studio(qtbot, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("BAS_MODEL", "tiny-random")
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    studio = win.studio
    assert set(studio.docks) == {"break", "gallery", "edit"} and studio.model == "tiny-random"
    assert "&Handles" in [a.text() for a in win.menuBar().actions()]

    # an unsaved document trains into a per-session folder; saving moves that data next to the file
    doc = shapes_document()
    win.set_document(doc, None, dirty=True)
    assert studio.doc is doc and studio.data is not None and studio.break_panel.break_button.isEnabled()
    unsaved = studio.data
    unsaved.write_run({"preset": "Quick", "model": "tiny-random", "config": {"phase1_steps": 6}})
    (unsaved.work_dir / "checkpoint.pt").write_bytes(b"stand-in")
    project = tmp_path / "shapes.basproj"
    assert win.save_to(project)
    moved = ProjectData.for_project(project)
    assert studio.data == moved and moved.has_checkpoint() and not unsaved.root.exists()

    # reopening a project with an unfinished break offers to resume it
    win.set_document(None)
    assert studio.data is None
    win.set_document(doc, project)
    assert studio.break_panel.resume_bar.isVisibleTo(win) and "unfinished break" in win.statusBar().currentMessage()

    # a chip dropped on the editor's canvas proposes a region there (no SAM loaded: the moved mask)
    assert drop_token(win.canvas, win.canvas.to_widget(QPointF(40, 40)), "<asset0>")
    region = studio.edit.view.region
    ys, xs = np.nonzero(region)
    assert studio.edit.token == "<asset0>" and region.sum() == 400  # the 20x20 square ...
    assert abs(xs.mean() - 40) <= 1.5 and abs(ys.mean() - 40) <= 1.5  # ... centred under the drop (zoom rounding)
