"""Example scenes the project renders itself (ShapesWorld), in the reference layout the editor reads.

The editor and scene tests once read photos from ``../shared/scenes`` and skipped without it; these
stand-ins have what those tests rely on: ``chicken`` has three objects whose loose masks overlap a
little (loading warns), ``bear`` is a second photo. Rendered once per test session, in about a second.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

_ROOT: Path | None = None


def _descs():  # type: ignore[no-untyped-def]
    from engine.shapesworld.scenes import example_desc
    from engine.shapesworld.world import ShapeSpec, WorldImage

    return {
        "chicken": WorldImage((ShapeSpec("triangle", "yellow", "striped", 0.3, 0.42, 0.2),
                               ShapeSpec("square", "red", "solid", 0.66, 0.42, 0.17),
                               ShapeSpec("circle", "blue", "dotted", 0.5, 0.8, 0.15)), "green"),
        "bear": example_desc(),
    }


def rendered_scene_dir(name: str, size: int = 512) -> Path:
    """``img.jpg`` + ``mask0.png`` ... of scene ``name`` (``chicken`` or ``bear``), rendered on first use."""
    global _ROOT
    from engine.shapesworld.scenes import world_scene

    if _ROOT is None:
        _ROOT = Path(tempfile.mkdtemp(prefix="bas-test-scenes-"))
        atexit.register(shutil.rmtree, _ROOT, True)
    folder = _ROOT / name
    if (folder / "img.jpg").is_file():
        return folder
    scene = world_scene(_descs()[name], size=size, loose_px=size // 24, seed=0).scene
    tmp = _ROOT / f".{name}"
    tmp.mkdir(parents=True, exist_ok=True)
    Image.fromarray(scene.image).save(tmp / "img.jpg", quality=95)
    for i, c in enumerate(scene.object_concepts()):
        Image.fromarray((np.clip(c.mask, 0, 1) * 255).astype(np.uint8), mode="L").save(tmp / f"mask{i}.png")
    tmp.rename(folder)
    return folder
