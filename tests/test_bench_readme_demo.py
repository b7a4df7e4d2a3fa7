"""bench/readme_demo.py's variant mode: it breaks the example's layout with other objects in this
process and reports per training seed (a few steps on the shipped model, no files written)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from bench import readme_demo
from engine.scene import PALETTE


def test_a_variant_breaks_and_reports_its_training_seed(capsys: pytest.CaptureFixture[str]) -> None:
    objs = [("square", "yellow", "striped"), ("triangle", "red", "dotted")]
    fast = {"phase1_steps": 2, "phase2_steps": 2, "num_class_images": 1, "class_inference_steps": 1}
    readme_demo.variant(objs, "gray", 0, False, fast, [3], 2)  # type: ignore[arg-type]
    lines = capsys.readouterr().out.strip().splitlines()
    m = re.match(r"training seed 3: (\d) of 2 composed correctly, first four (\d) \(yellow square (\d), "
                 r"red triangle (\d); break \d+ s\)", lines[0])
    assert m, lines
    assert all(int(m.group(k)) <= 2 for k in (1, 2, 3, 4))
    assert lines[1] == f"in all: {m.group(1)} of 2"


@pytest.mark.parametrize("args, message", [
    (["--objects", "star,red", "circle,blue,dotted"], "--objects: each is SHAPE,COLOUR,PATTERN"),
    (["--objects", "hexagon,red,solid", "circle,blue,dotted"], "--objects hexagon,red,solid: shapes circle"),
    (["--objects", "star,red,solid", "circle,blue,dotted", "--context", "moon"], "--context moon: one of"),
    (["--objects", "star,red,solid", "circle,blue,dotted", "--set", "phase1_lr=x"], "--set phase1_lr=x: KEY=VALUE"),
    (["--objects", "star,red,solid", "circle,blue,dotted", "--set", "lr=1"], "'lr' is not a TrainConfig field"),
])
def test_bad_arguments_are_refused_by_name(args: list[str], message: str, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["readme_demo.py", *args])
    with pytest.raises(SystemExit) as exit_:
        readme_demo.main()
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_the_readme_figure_outlines_each_mask_and_labels_each_output(tmp_path: Path) -> None:

    import numpy as np
    from PIL import Image

    scene = tmp_path / "scene"
    scene.mkdir()
    Image.new("RGB", (64, 64), (40, 120, 40)).save(scene / "img.png")
    for k, box in enumerate([(4, 4, 28, 28), (36, 36, 60, 60)]):
        m = Image.new("L", (64, 64), 0)
        m.paste(255, box)
        m.save(scene / f"mask{k}.png")
    outs = []
    for i in range(2):
        outs.append(tmp_path / f"out-{i}.png")
        Image.new("RGB", (64, 64), (200, 180, 120)).save(outs[-1])
    fig = tmp_path / "fig.png"
    readme_demo.figure(scene, outs, [True, False], fig, cell=96)
    img = np.asarray(Image.open(fig).convert("RGB"))
    assert img.shape == (96 + 18, 96 * 3 + 16, 3)
    photo = img[:96, :96].reshape(-1, 3).tolist()
    assert list(PALETTE[0]) in photo and list(PALETTE[1]) in photo  # each concept's own outline colour
    assert img[96 // 2, 96 // 2].tolist() == [40, 120, 40]  # away from the outlines the photo is as it was
    assert img[:96, 96 + 8 + 10].tolist()[10] == [200, 180, 120]  # the first output, upscaled
    assert (img[96:, :] < 128).any()  # the labels are drawn
    with pytest.raises(SystemExit, match="exists"):
        readme_demo.figure(scene, outs, [True, False], fig, cell=96)
    assert Path(fig).stat().st_size > 0
