"""The ShapesWorld judges: a small CNN trained on rendered images (the analogue of DINO/CLIP).

It reads a whole image and predicts, as independent probabilities, which shapes, colours,
patterns and which (shape, colour, pattern) objects are present, plus a softmax over the
background context. Identity, leakage and composition scores are built from the object
probabilities; prompt fidelity from the context. Trained on all attribute combinations (the
held-out ones included), so it can recognise objects the generator never saw named.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from engine.paths import resources_dir
from engine.shapesworld.world import COLORS, CONTEXTS, PATTERNS, SHAPES, ShapeSpec, render, sample_image

OBJECTS: list[tuple[str, str, str]] = list(itertools.product(SHAPES, COLORS, PATTERNS))
OBJECT_INDEX = {o: i for i, o in enumerate(OBJECTS)}
CONTEXT_NAMES = list(CONTEXTS)
JUDGE_DIR = "shapesworld-judge"


class Judge(nn.Module):
    """Conv net over 64x64 RGB with presence heads and a context head."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w = width
        layers: list[nn.Module] = []
        chans = [3, w, 2 * w, 4 * w, 4 * w]
        for a, b in zip(chans, chans[1:]):
            layers += [nn.Conv2d(a, b, 3, padding=1), nn.GroupNorm(8, b), nn.SiLU(),
                       nn.Conv2d(b, b, 3, stride=2, padding=1), nn.SiLU()]
        self.features = nn.Sequential(*layers)
        feat = 4 * w * 2  # mean- and max-pooled
        self.objects = nn.Linear(feat, len(OBJECTS))
        self.shapes = nn.Linear(feat, len(SHAPES))
        self.colors = nn.Linear(feat, len(COLORS))
        self.patterns = nn.Linear(feat, len(PATTERNS))
        self.context = nn.Linear(feat, len(CONTEXT_NAMES))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.features(x)
        f = torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1)
        return {"objects": self.objects(f), "shapes": self.shapes(f), "colors": self.colors(f),
                "patterns": self.patterns(f), "context": self.context(f)}


def targets(objs: tuple[ShapeSpec, ...], context: str) -> dict[str, torch.Tensor]:
    """Multi-hot presence targets and the context index for one image."""
    t = {"objects": torch.zeros(len(OBJECTS)), "shapes": torch.zeros(len(SHAPES)),
         "colors": torch.zeros(len(COLORS)), "patterns": torch.zeros(len(PATTERNS))}
    for o in objs:
        t["objects"][OBJECT_INDEX[(o.shape, o.color, o.pattern)]] = 1
        t["shapes"][SHAPES.index(o.shape)] = 1
        t["colors"][list(COLORS).index(o.color)] = 1
        t["patterns"][PATTERNS.index(o.pattern)] = 1
    t["context"] = torch.tensor(CONTEXT_NAMES.index(context))
    return t


SMALLEST = 0.45  # the judge's smallest objects, relative to the world's: radius 0.06 of the image in a group


def judge_batch(rng: np.random.Generator, batch: int, size: int = 64,
                small: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Rendered training data for the judge (held-out combinations included). A fraction ``small``
    of the images has its objects shrunk by a factor drawn from [``SMALLEST``, 1]: a model's
    samples draw objects smaller than any the world renders, and a judge that never saw them
    misses them (docs/shapesworld.md)."""
    xs, ts = [], []
    for _ in range(batch):
        scale = float(rng.uniform(SMALLEST, 1.0)) if small and rng.random() < small else 1.0
        desc = sample_image(rng, allow_held_out=True, scale=scale)
        img, _ = render(desc, size, seed=int(rng.integers(1 << 31)))
        xs.append(img)
        ts.append(targets(desc.objects, desc.context))
    x = to_input(np.stack(xs))
    return x, {k: torch.stack([t[k] for t in ts]) for k in ts[0]}


def to_input(imgs: np.ndarray) -> torch.Tensor:
    """uint8 BxHxWx3 (any size; resized to 64) -> the judge's input."""
    x = torch.from_numpy(np.ascontiguousarray(imgs)).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    if x.shape[-1] != 64:
        x = nn.functional.interpolate(x, size=(64, 64), mode="area")
    return x


def save_judge(model: Judge, folder: Path, meta: dict) -> None:
    """Weights (safetensors) and a config JSON."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "judge.safetensors"))
    (folder / "config.json").write_text(json.dumps({"width": model.objects.in_features // 8, **meta}, indent=2))


def accuracy_on_renders(judge: Judge, n: int = 1024, seed: int = 12345,
                        scale: tuple[float, float] = (1.0, 1.0)) -> dict[str, float]:
    """How often the judge is right on ``n`` fresh renders (never seen in its training), their
    objects shrunk by a factor drawn from ``scale`` (the default: the world's own sizes).

    ``objects_exact``: the set of objects above 0.5 is exactly the rendered set (1-3 objects);
    ``shape``/``colour``/``pattern``: top-1 of each head on single-object renders (the rule
    :func:`engine.shapesworld.evaluate.prompt_control` scores the generator with); ``context``:
    top-1 context; ``pair``: on two-object renders, both (shape, colour) pairs found, by the rule
    :func:`engine.shapesworld.evaluate.two_object_control` uses; ``swap_free``: on two-object
    renders of distinct shapes and colours, no exchanged pair found.
    """
    rng = np.random.default_rng(seed)
    descs = [sample_image(rng, allow_held_out=True,
                          scale=1.0 if scale == (1.0, 1.0) else float(rng.uniform(*scale))) for _ in range(n)]
    imgs = np.stack([render(d, 64, seed=int(rng.integers(1 << 31)))[0] for d in descs])
    s = score_images(judge, imgs)
    ok: dict[str, list[bool]] = {k: [] for k in ("objects_exact", "shape", "colour", "pattern", "context", "pair",
                                                 "swap_free")}
    for i, d in enumerate(descs):
        truth = np.zeros(len(OBJECTS), bool)
        for o in d.objects:
            truth[OBJECT_INDEX[(o.shape, o.color, o.pattern)]] = True
        ok["objects_exact"].append(bool(((s["objects"][i] > 0.5) == truth).all()))
        ok["context"].append(CONTEXT_NAMES[int(s["context"][i].argmax())] == d.context)
        if len(d.objects) == 1:
            o = d.objects[0]
            ok["shape"].append(SHAPES[int(s["shapes"][i].argmax())] == o.shape)
            ok["colour"].append(list(COLORS)[int(s["colors"][i].argmax())] == o.color)
            ok["pattern"].append(PATTERNS[int(s["patterns"][i].argmax())] == o.pattern)
        elif len(d.objects) == 2:
            ok["pair"].append(all(pair_probability(s, (o.shape, o.color))[i] > 0.5 for o in d.objects))
            a, b = d.objects
            if a.shape != b.shape and a.color != b.color:
                ok["swap_free"].append(not swapped(s, (a.shape, a.color), (b.shape, b.color))[i])
    return {k: float(np.mean(v)) for k, v in ok.items()}


def pair_probability(scores: dict[str, np.ndarray], pair: tuple[str, str]) -> np.ndarray:
    """P(an object of this shape and colour, any pattern, is present): the max over patterns."""
    cols = [OBJECT_INDEX[(pair[0], pair[1], p)] for p in PATTERNS]
    return scores["objects"][:, cols].max(1)


def swapped(scores: dict[str, np.ndarray], a: tuple[str, str], b: tuple[str, str]) -> np.ndarray:
    """Per image: is a (shape, colour) pair with the two objects' attributes exchanged present?"""
    return (pair_probability(scores, (a[0], b[1])) > 0.5) | (pair_probability(scores, (b[0], a[1])) > 0.5)


def load_judge(folder: Path | None = None) -> Judge:
    """The shipped judge (``resources/shapesworld-judge``)."""
    folder = folder or resources_dir() / JUDGE_DIR
    cfg = json.loads((folder / "config.json").read_text())
    model = Judge(width=int(cfg["width"]))
    model.load_state_dict(load_file(str(folder / "judge.safetensors")))
    return model.eval()


@torch.no_grad()
def score_images(judge: Judge, imgs: np.ndarray) -> dict[str, np.ndarray]:
    """Probabilities for a batch of uint8 images: presence (sigmoid) and context (softmax)."""
    out = judge(to_input(imgs))
    res = {k: torch.sigmoid(v).numpy() for k, v in out.items() if k != "context"}
    res["context"] = torch.softmax(out["context"], -1).numpy()
    return res


def object_probability(scores: dict[str, np.ndarray], obj: tuple[str, str, str]) -> np.ndarray:
    """P(object with these shape, colour, pattern is present), per image."""
    return scores["objects"][:, OBJECT_INDEX[obj]]


def context_probability(scores: dict[str, np.ndarray], context: str) -> np.ndarray:
    """P(background is ``context``), per image."""
    return scores["context"][:, CONTEXT_NAMES.index(context)]
