"""Break-A-Scene scenes rendered from ShapesWorld, for the README example and the benchmark."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from engine.scene import PALETTE, Concept, Scene, token_name, validate_scene
from engine.shapesworld.world import CONTEXTS, HELD_OUT, PATTERNS, ShapeSpec, WorldImage, _place, render


@dataclass
class WorldScene:
    """A scene plus the ground truth the judges compare generations with."""

    scene: Scene
    objects: tuple[ShapeSpec, ...]
    context: str

    def object_keys(self) -> list[tuple[str, str, str]]:
        """(shape, colour, pattern) of each concept, in handle order."""
        return [(o.shape, o.color, o.pattern) for o in self.objects]


def _mask(cov: np.ndarray, loose_px: int) -> np.ndarray:
    m = (cov >= 0.5).astype(np.uint8) * 255
    if loose_px > 0:
        m = np.asarray(Image.fromarray(m).filter(ImageFilter.MaxFilter(2 * loose_px + 1)))
    return (m > 127).astype(np.float32)


def world_scene(desc: WorldImage, size: int = 64, loose_px: int = 0, seed: int = 0) -> WorldScene:
    """Render ``desc`` as a scene with one concept per object (masks tight, or dilated by ``loose_px``)."""
    img, covers = render(desc, size, seed=seed)
    concepts = [Concept(mask=_mask(c, loose_px), token=token_name(i), init_word=None, color=PALETTE[i])
                for i, c in enumerate(covers)]
    scene = Scene(image=img, concepts=concepts)
    validate_scene(scene)
    return WorldScene(scene, desc.objects, desc.context)


def example_desc() -> WorldImage:
    """The README's example: a red striped star and a blue dotted circle on a green background."""
    return WorldImage((ShapeSpec("star", "red", "striped", 0.3, 0.5, 0.22),
                       ShapeSpec("circle", "blue", "dotted", 0.72, 0.48, 0.2)), "green")


def benchmark_scenes(n: int = 8, seed: int = 0, size: int = 64, loose_px: int = 0) -> list[WorldScene]:
    """``n`` scenes of 2-3 objects whose (shape, colour) pairs were held out of pretraining.

    Fixed by ``seed``; the same descriptions are rendered with tight (``loose_px=0``) or dilated
    masks.
    """
    rng = np.random.default_rng(seed)
    held = sorted(HELD_OUT)
    out = []
    for i in range(n):
        k = 2 if i % 2 == 0 else 3
        picks = rng.choice(len(held), size=k, replace=False)
        places = _place(rng, k)
        objs = tuple(ShapeSpec(held[p][0], held[p][1], str(rng.choice(PATTERNS)), cx, cy, max(r, 0.17))
                     for p, (cx, cy, r) in zip(picks, places))
        ctx = str(rng.choice(["gray", "wood"]))  # no green ground: green objects would vanish
        out.append(world_scene(WorldImage(objs, ctx), size, loose_px, seed=seed * 1000 + i))
    return out


EVAL_CONTEXTS = ("beach", "snow", "night")
assert all(c in CONTEXTS for c in EVAL_CONTEXTS)
