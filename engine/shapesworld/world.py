"""ShapesWorld: a synthetic image world small enough to train a text-to-image model on 2 CPU cores.

Images hold one to three flat or simply textured shapes on a background "context", with plain
English captions ("a photo of a red striped star and a blue circle on a green background").
Everything is deterministic from a seed, rendered with numpy at any size (anti-aliased by 2x
supersampling), with a mask per object.

Some (shape, colour) pairs are held out of the pretraining sampler (:data:`HELD_OUT`), so a scene
built from them shows objects the model was never told the names of: a handle must learn their
identity rather than reuse a word.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHAPES = ("circle", "square", "triangle", "star", "ring", "diamond")
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "yellow": (240, 210, 40), "green": (40, 170, 60),
    "blue": (40, 80, 220), "purple": (150, 60, 190), "white": (245, 245, 245),
}
PATTERNS = ("solid", "striped", "dotted")
CONTEXTS: dict[str, str] = {
    "green": "on a green background", "gray": "on a gray background", "beach": "at the beach",
    "snow": "in the snow", "wood": "on a wooden table", "night": "under a night sky",
}
# One (shape, colour) pair per shape never appears in pretraining captions or images.
HELD_OUT: frozenset[tuple[str, str]] = frozenset({
    ("star", "blue"), ("circle", "purple"), ("square", "yellow"),
    ("triangle", "white"), ("ring", "red"), ("diamond", "green"),
})


@dataclass(frozen=True)
class ShapeSpec:
    """One object: attributes plus placement in unit coordinates (centre, radius)."""

    shape: str
    color: str
    pattern: str
    cx: float
    cy: float
    r: float

    def phrase(self) -> str:
        """``a red striped star`` (``solid`` is left unsaid)."""
        pat = "" if self.pattern == "solid" else f"{self.pattern} "
        return f"a {self.color} {pat}{self.shape}"


@dataclass(frozen=True)
class WorldImage:
    """A sampled image description: objects and context."""

    objects: tuple[ShapeSpec, ...]
    context: str

    def caption(self) -> str:
        """The plain-English caption."""
        return "a photo of " + " and ".join(o.phrase() for o in self.objects) + " " + CONTEXTS[self.context]


def shape_mask(spec: ShapeSpec, size: int, ss: int = 2) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of one shape at ``size`` px (``ss``x supersampled)."""
    n = size * ss
    c = (np.arange(n) + 0.5) / n
    x, y = np.meshgrid(c, c)
    dx, dy = x - spec.cx, y - spec.cy
    r = spec.r
    if spec.shape == "circle":
        m = dx ** 2 + dy ** 2 <= r ** 2
    elif spec.shape == "ring":
        d2 = dx ** 2 + dy ** 2
        m = (d2 <= r ** 2) & (d2 >= (0.55 * r) ** 2)
    elif spec.shape == "square":
        m = (np.abs(dx) <= 0.85 * r) & (np.abs(dy) <= 0.85 * r)
    elif spec.shape == "diamond":
        m = np.abs(dx) + np.abs(dy) <= r
    elif spec.shape == "triangle":
        # upward triangle inscribed in the circle of radius r
        m = (dy <= 0.5 * r) & (dy >= -r + 1.732 * np.abs(dx))
    elif spec.shape == "star":
        ang = np.arctan2(dx, -dy)
        rad = np.hypot(dx, dy)
        k = (ang % (2 * np.pi / 5)) / (2 * np.pi / 5)
        edge = r * (0.45 + 0.55 * np.abs(1 - 2 * k) ** 1.5)
        m = rad <= edge
    else:
        raise ValueError(f"unknown shape {spec.shape!r}")
    return m.reshape(size, ss, size, ss).mean((1, 3)).astype(np.float32)


def _pattern_fill(spec: ShapeSpec, size: int) -> np.ndarray:
    base = np.array(COLORS[spec.color], np.float32)
    img = np.broadcast_to(base, (size, size, 3)).copy()
    if spec.pattern == "solid":
        return img
    yy, xx = np.mgrid[:size, :size] / size
    contrast = np.array((30, 30, 30) if spec.color == "white" else (250, 250, 250), np.float32)
    if spec.pattern == "striped":
        on = ((yy - spec.cy) * 12 / (2 * spec.r + 1e-6) % 2) < 1
    else:  # dotted
        p = 2 * spec.r / 4
        u = ((xx - spec.cx) % p) / p - 0.5
        v = ((yy - spec.cy) % p) / p - 0.5
        on = u ** 2 + v ** 2 < 0.09
    img[on] = contrast
    return img


def render_background(context: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """The context's background as float32 RGB (0..255)."""
    yy, xx = np.mgrid[:size, :size] / size
    img = np.zeros((size, size, 3), np.float32)
    if context == "green":
        img[:] = (70, 140, 70)
    elif context == "gray":
        img[:] = (128, 128, 128)
    elif context == "beach":
        horizon = 0.45 + 0.05 * rng.uniform(-1, 1)
        img[:] = (110, 180, 240)
        img[yy > horizon] = (225, 200, 140)
    elif context == "snow":
        img[:] = (235, 240, 248)
        speck = rng.random((size, size)) < 0.04
        img[speck] = (190, 200, 215)
    elif context == "wood":
        grain = np.sin((yy + 0.03 * np.sin(xx * 12)) * 60) * 0.5 + 0.5
        img[:] = np.array((150, 95, 50), np.float32) * (0.8 + 0.25 * grain[..., None])
    elif context == "night":
        img[:] = (15, 20, 55)
        stars = rng.random((size, size)) < 0.015
        img[stars] = (240, 240, 200)
    else:
        raise ValueError(f"unknown context {context!r}")
    return img


def render(desc: WorldImage, size: int = 64, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """Render an image (uint8 HxWx3) and each object's visible-coverage mask (float32 in [0, 1])."""
    rng = np.random.default_rng(seed)
    img = render_background(desc.context, size, rng)
    covers = []
    for spec in desc.objects:
        cov = shape_mask(spec, size)
        img = img * (1 - cov[..., None]) + _pattern_fill(spec, size) * cov[..., None]
        covers.append(cov)
    visible = []
    for i, cov in enumerate(covers):  # later objects occlude earlier ones
        v = cov.copy()
        for later in covers[i + 1:]:
            v *= 1 - later
        visible.append(v)
    return np.clip(img, 0, 255).round().astype(np.uint8), visible


def _place(rng: np.random.Generator, n: int, scale: float = 1.0) -> list[tuple[float, float, float]]:
    """Non-overlapping-ish placements (rejection sampling, falls back to overlap); ``scale``
    shrinks the radii (the world's own images use 1)."""
    out: list[tuple[float, float, float]] = []
    for _ in range(n):
        for _attempt in range(30):
            r = scale * (rng.uniform(0.13, 0.24) if n > 1 else rng.uniform(0.18, 0.32))
            cx, cy = rng.uniform(r, 1 - r), rng.uniform(r, 1 - r)
            if all(np.hypot(cx - a, cy - b) > (r + c) * 0.95 for a, b, c in out):
                break
        out.append((cx, cy, r))
    return out


def sample_image(rng: np.random.Generator, allow_held_out: bool = False, n_objects: int | None = None,
                 context: str | None = None, scale: float = 1.0) -> WorldImage:
    """Draw a random image description; pretraining uses ``allow_held_out=False`` and ``scale=1``
    (``scale`` < 1 draws smaller objects than the world's, for the judge)."""
    n = n_objects or int(rng.choice([1, 1, 2, 2, 3]))
    objs = []
    for cx, cy, r in _place(rng, n, scale):
        while True:
            shape = str(rng.choice(SHAPES))
            color = str(rng.choice(list(COLORS)))
            if allow_held_out or (shape, color) not in HELD_OUT:
                break
        objs.append(ShapeSpec(shape, color, str(rng.choice(PATTERNS)), float(cx), float(cy), float(r)))
    return WorldImage(tuple(objs), context or str(rng.choice(list(CONTEXTS))))


def training_batch(rng: np.random.Generator, batch: int, size: int = 64) -> tuple[np.ndarray, list[str]]:
    """``batch`` pretraining images (uint8 BxHxWx3) and their captions."""
    imgs, caps = [], []
    for _ in range(batch):
        desc = sample_image(rng)
        img, _ = render(desc, size, seed=int(rng.integers(1 << 31)))
        imgs.append(img)
        caps.append(desc.caption())
    return np.stack(imgs), caps
