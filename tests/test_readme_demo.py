"""The README's main command, judged (issue 19's target): its pack's "a photo of <asset0> and
<asset1> at the beach" must have both objects, each with its own colour and pattern, on a beach,
in at least 3 of 4 generation seeds.

Met since the ``shapesworld`` preset trains four views beside one class image per step (the
default break composes 3 of 4; with the paper's one view it was 0 of 4, docs/shapesworld.md).
Slow: one break, ~1.5 min on 2 idle cores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.readme_demo import OBJECTS, PROMPT, bas
from engine.shapesworld.evaluate import composed_correctly
from engine.shapesworld.judge import load_judge


@pytest.mark.slow
def test_the_readme_command_draws_both_objects_apart_at_the_beach(tmp_path: Path) -> None:
    bas("example", str(tmp_path / "scene"))
    bas("break", str(tmp_path / "scene"), "-o", str(tmp_path / "pack"))
    bas("generate", str(tmp_path / "pack"), PROMPT, "-o", str(tmp_path / "out.png"), "--n", "4", "--seed", "0")
    files = [tmp_path / f"out-{i}.png" for i in range(1, 5)]
    imgs = np.stack([np.asarray(Image.open(f).convert("RGB").resize((64, 64))) for f in files])
    ok = composed_correctly(load_judge(), imgs, OBJECTS, "beach")
    assert sum(ok) >= 3, f"composed correctly: {ok}"
