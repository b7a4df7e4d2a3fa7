"""bench/readme_demo.py's variant mode: it breaks the example's layout with other objects in this
process and reports per training seed (a few steps on the shipped model, no files written)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import readme_demo

ROOT = Path(__file__).resolve().parents[1]


def test_a_variant_breaks_and_reports_each_training_seed(capsys: pytest.CaptureFixture[str]) -> None:
    objs = [("square", "yellow", "striped"), ("triangle", "red", "dotted")]
    fast = {"phase1_steps": 2, "phase2_steps": 2, "num_class_images": 1, "class_inference_steps": 1}
    readme_demo.variant(objs, "gray", 0, False, fast, [0, 1], 2)  # type: ignore[arg-type]
    lines = capsys.readouterr().out.strip().splitlines()
    seeds = [re.match(r"training seed (\d): (\d) of 2 composed correctly, first four (\d) \(yellow square (\d), "
                      r"red triangle (\d); break \d+ s\)", line) for line in lines[:2]]
    assert all(seeds), lines
    assert [int(m.group(1)) for m in seeds if m] == [0, 1]
    assert all(int(m.group(k)) <= 2 for m in seeds if m for k in (2, 3, 4, 5))
    total = sum(int(m.group(2)) for m in seeds if m)
    assert lines[2] == f"in all: {total} of 4"


def test_a_malformed_object_is_refused_by_name() -> None:
    out = subprocess.run([sys.executable, "bench/readme_demo.py", "--objects", "star,red", "circle,blue,dotted"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2
    assert "--objects: each is SHAPE,COLOUR,PATTERN" in out.stderr
