"""An example scene rendered by the project's own code (the README's first command breaks it)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from engine.scene import PALETTE, Concept, Scene, token_name, validate_scene


def make_example_scene(size: int = 512, seed: int = 0) -> Scene:
    """A red star and a blue striped circle on a green ground, with loose hand-painted-like masks."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), (96, 160, 80))
    draw = ImageDraw.Draw(img)
    s = size / 512
    jitter = rng.integers(-20, 21, size=4) * s
    cx0, cy0, r0 = 150 * s + jitter[0], 260 * s + jitter[1], 95 * s
    cx1, cy1, r1 = 370 * s + jitter[2], 250 * s + jitter[3], 90 * s
    star = [(cx0 + (r0 if k % 2 == 0 else r0 * 0.45) * np.sin(np.pi * k / 5),
             cy0 - (r0 if k % 2 == 0 else r0 * 0.45) * np.cos(np.pi * k / 5)) for k in range(10)]
    draw.polygon(star, fill=(210, 40, 40))
    circle = Image.new("L", (size, size), 0)
    ImageDraw.Draw(circle).ellipse([cx1 - r1, cy1 - r1, cx1 + r1, cy1 + r1], fill=255)
    stripes = np.zeros((size, size, 3), np.uint8) + np.array([40, 90, 220], np.uint8)
    band = (np.arange(size) // max(1, int(18 * s))) % 2 == 0
    stripes[band] = (235, 235, 245)
    img.paste(Image.fromarray(stripes), (0, 0), circle)
    masks = []
    for shape in ("star", "circle"):
        m = Image.new("L", (size, size), 0)
        d = ImageDraw.Draw(m)
        if shape == "star":
            d.polygon(star, fill=255)
        else:
            d.ellipse([cx1 - r1, cy1 - r1, cx1 + r1, cy1 + r1], fill=255)
        m = m.filter(ImageFilter.MaxFilter(int(15 * s) | 1)).filter(ImageFilter.GaussianBlur(3 * s))
        masks.append(np.asarray(m, np.float32) / 255.0)
    words = ["star", "circle"]
    concepts = [Concept(mask=m, token=token_name(i), init_word=words[i], color=PALETTE[i])
                for i, m in enumerate(masks)]
    scene = Scene(image=np.asarray(img, np.uint8).copy(), concepts=concepts)
    validate_scene(scene)
    return scene
