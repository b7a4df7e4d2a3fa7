"""An example scene rendered by the project's own code (the README's first command breaks it)."""

from __future__ import annotations

from engine.scene import Scene
from engine.shapesworld.scenes import example_desc, world_scene


def make_example_scene(size: int = 512, seed: int = 0) -> Scene:
    """A red striped star and a blue dotted circle on a green background, with loose masks.

    Rendered from ShapesWorld (so the offline model knows the world). ``seed`` goes to the
    renderer, but the example's plain green context has no texture, so every seed gives the
    same picture.
    """
    scene = world_scene(example_desc(), size=size, loose_px=max(1, size // 40), seed=seed).scene
    scene.concepts[0].init_word = "star"
    scene.concepts[1].init_word = "circle"
    return scene
