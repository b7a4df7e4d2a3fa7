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


def test_a_malformed_object_is_refused_by_name(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["readme_demo.py", "--objects", "star,red", "circle,blue,dotted"])
    with pytest.raises(SystemExit) as exit_:
        readme_demo.main()
    assert exit_.value.code == 2
    assert "--objects: each is SHAPE,COLOUR,PATTERN" in capsys.readouterr().err
