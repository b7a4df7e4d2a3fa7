"""Issue 13.3: the Break panel offers every engine preset, defaults to the model's, names the model."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import Qt

from bas_desktop.model import jobs
from bas_desktop.model.model_info import read_preset_file, recommended_preset
from bas_desktop.model.project_data import ProjectData
from bas_desktop.widgets.studio import StudioWindow
from engine.training.config import PRESETS
from tests.bas_desktop.studio_helpers import shapes_document


def _model_folder(tmp_path: Path, preset: str | None) -> Path:
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "model_index.json").write_text("{}")
    if preset is not None:
        (folder / "bas_preset.json").write_text(json.dumps({"preset": preset}))
    return folder


def test_preset_file_is_read_and_unknown_presets_are_ignored(tmp_path: Path) -> None:
    folder = _model_folder(tmp_path, "low-vram")
    assert read_preset_file(folder) == "low-vram" and recommended_preset(str(folder)) == "low-vram"
    (folder / "bas_preset.json").write_text('{"preset": "no-such-preset"}')
    assert recommended_preset(str(folder)) is None
    (folder / "bas_preset.json").write_text("not json")
    assert recommended_preset(str(folder)) is None
    assert recommended_preset("shapesworld") == "shapesworld"  # resources/shapesworld/bas_preset.json
    assert recommended_preset("tiny-random") is None


def test_default_preset_is_the_models_recommended_one(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    win = StudioWindow()
    qtbot.addWidget(win)
    win.show()
    panel = win.studio.break_panel
    names = [panel.preset.itemText(i) for i in range(panel.preset.count())]
    assert sorted(jobs.PRESET_NAMES[n] for n in names) == sorted(PRESETS)  # every engine preset, shapesworld too

    data = ProjectData(tmp_path / "data")
    win.open_project(shapes_document(), data, "shapesworld")
    assert panel.preset.currentText() == "ShapesWorld" and panel.config().phase2_lr == PRESETS["shapesworld"]["phase2_lr"]
    assert "ShapesWorld" in panel.model_label.text() and panel.model_label.isVisible()

    folder = _model_folder(tmp_path, "low-vram")
    win.open_project(shapes_document(), data, str(folder))
    assert panel.preset.currentText() == "Low VRAM" and "my-model" in panel.model_label.text()

    # the user's choice stands while the model stays the same ...
    panel.preset.setCurrentText("Paper")
    win.open_project(shapes_document(), data, str(folder))
    assert panel.preset.currentText() == "Paper"
    # ... and a model without a recommendation gets Quick
    win.open_project(shapes_document(), data, "tiny-random")
    assert panel.preset.currentText() == "Quick" and "tiny" in panel.model_label.text()


def _shapesworld_window(qtbot, tmp_path: Path) -> StudioWindow:  # type: ignore[no-untyped-def]
    """A shown main window with the example project on the offline model."""
    win = StudioWindow()
    qtbot.addWidget(win)
    win.show()
    win.open_project(shapes_document(), ProjectData(tmp_path / "data"), "shapesworld")
    return win


def test_base_model_dialog_names_the_current_choice(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    win = _shapesworld_window(qtbot, tmp_path)
    panel = win.studio.break_panel
    qtbot.mouseClick(panel.model_button, Qt.MouseButton.LeftButton)
    dlg = win.studio.last_model_dialog
    qtbot.waitExposed(dlg)
    assert "Current base model" in dlg.intro.text() and "ShapesWorld" in dlg.intro.text()
    assert "None were found" not in dlg.intro.text()
    assert dlg.later_button.isDefault() and not dlg.download_button.isDefault()  # Enter does not download 5 GB
    qtbot.mouseClick(dlg.later_button, Qt.MouseButton.LeftButton)
    assert not dlg.isVisible() and win.studio.model == "shapesworld"
    win.runner.wait_idle(30_000)


def test_views_per_step_reach_the_config_and_the_preset_resets_them(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    win = _shapesworld_window(qtbot, tmp_path)
    panel = win.studio.break_panel
    # the ShapesWorld preset's four views beside one class image
    assert panel.views.value() == 4 == PRESETS["shapesworld"]["views_per_step"] == panel.config().views_per_step
    assert panel.config().class_images_per_step == 1
    panel.views.setValue(2)
    assert panel.config().views_per_step == 2 and panel.estimate is None  # the estimate is measured again
    panel.preset.setCurrentText("Paper")
    assert panel.views.value() == 1 == panel.config().views_per_step  # the paper's one view
    assert panel.config().class_images_per_step is None
    panel.preset.setCurrentText("ShapesWorld")
    assert panel.views.value() == 4
    win.runner.wait_idle(30_000)
