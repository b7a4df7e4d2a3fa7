"""bench/readme_demo.py's variant mode: it breaks the example's layout with other objects in this
process and reports per training seed (a few steps on the shipped model, no files written)."""

from __future__ import annotations

import re
import sys

import pytest

from bench import readme_demo


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
