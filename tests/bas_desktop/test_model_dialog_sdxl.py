"""The first-run dialog and the app's model names offer SDXL next to SD 2.1, each with its size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bas_desktop.model import model_setup
from bas_desktop.model.model_info import describe_model, recommended_preset
from engine.formats import names


@pytest.fixture
def runner():  # type: ignore[no-untyped-def]
    from bas_desktop.workers import JobRunner

    r = JobRunner()
    yield r
    r.shutdown()


def test_the_dialog_offers_sd21_and_sdxl_with_sizes_and_downloads_the_one_asked(qtbot, monkeypatch, runner) -> None:  # type: ignore[no-untyped-def]
    from bas_desktop.widgets.model_dialog import ModelDialog

    def offline(*_: Any) -> list:
        raise OSError("no network")

    asked: list[str] = []

    def fake_download(inputs: model_setup.DownloadInputs, _report: Any, _stop: Any) -> Path:
        asked.append(inputs.hub_id)
        return Path("/nowhere")

    monkeypatch.setattr(model_setup, "remote_files", offline)
    monkeypatch.setattr(model_setup, "download_job", fake_download)
    dlg = ModelDialog(runner, first_run=True)
    qtbot.addWidget(dlg)
    assert list(dlg.download_buttons) == [names.DEFAULT_HUB_MODEL, names.SDXL_HUB_MODEL]
    qtbot.waitUntil(lambda: all("checking" not in lb.text() for lb in dlg.size_labels.values()), timeout=30_000)
    assert "about 5.2 GB" in dlg.size_labels[names.DEFAULT_HUB_MODEL].text()
    assert "about 6.9 GB" in dlg.size_labels[names.SDXL_HUB_MODEL].text()
    assert not any(b.autoDefault() for b in dlg.download_buttons.values())
    with qtbot.waitSignal(dlg.modelChosen, timeout=30_000) as got:
        dlg.download_buttons[names.SDXL_HUB_MODEL].click()
    assert asked == [names.SDXL_HUB_MODEL] and got.args == [names.SDXL_HUB_MODEL]


def test_the_app_names_sdxl_and_recommends_its_preset() -> None:
    assert describe_model(names.SDXL_HUB_MODEL) == "Stable Diffusion XL base 1.0"
    assert recommended_preset(names.TINY_SDXL_MODEL) == "sdxl"
    assert names.download_patterns(names.SDXL_HUB_MODEL) == names.DIFFUSERS_FP16
    assert names.model_alias("sdxl") == names.SDXL_HUB_MODEL and names.model_alias("x/y") == "x/y"
