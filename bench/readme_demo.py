"""The README's main command, judged: does it draw both objects apart at the beach?

Runs what the README's first command runs (``bas example``, ``bas break`` with the default model
and its own preset, ``bas generate`` "a photo of <asset0> and <asset1> at the beach") for each
training seed, generates ``--images`` images (generation seeds 0, 1, ...), and counts those that
``engine.shapesworld.evaluate.composed_correctly`` passes: both (shape, colour) pairs, both
patterns, no exchanged pair, the beach.

    python bench/readme_demo.py --train-seeds 0 1 --images 8 -o /tmp/readme-demo

``--figure PNG`` also draws, for the first training seed, the README's picture: the input photo
with its masks outlined, then the first four outputs with the judge's verdict under each.

``--words`` instead judges the base model on the same prompt with the objects described in words
("a photo of a red striped star and a blue dotted circle at the beach", and in the other order),
``--images`` images each, generated as ``bas generate`` does: what the model itself composes.

    python bench/readme_demo.py --words --images 16

``--objects`` breaks a variant of the example in this process instead (no CLI, no files): the
example's layout with other objects, ``--context`` ground, ``--loose`` mask dilation (px at 512),
``--background`` handle or ``--set`` preset overrides, and counts the composed images per training
seed (the README's prompt only):

    python bench/readme_demo.py --objects star,red,striped circle,blue,dotted --set phase1_lr=1e-3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.shapesworld.evaluate import composed_correctly  # noqa: E402
from engine.shapesworld.judge import load_judge  # noqa: E402

PROMPT = "a photo of <asset0> and <asset1> at the beach"
OBJECTS = [("star", "red", "striped"), ("circle", "blue", "dotted")]  # what `bas example` draws


def bas(*args: str) -> None:
    """Run the ``bas`` CLI of this interpreter's environment; fail loudly."""
    subprocess.run([sys.executable, "-m", "engine.cli.main", *args], check=True, cwd=ROOT)


def generated(comps: object, prompt: str, n: int) -> np.ndarray:
    """``n`` images of ``prompt`` as ``bas generate`` makes them (seeds 0 .. n-1), at the judge's 64 px."""
    from engine.compose.generate import generate

    return np.stack([np.asarray(g.image.convert("RGB").resize((64, 64)))
                     for g in generate(comps, prompt, n=n, seed=0)])  # type: ignore[arg-type]


def figure(scene: Path, outputs: list[Path], verdicts: list[bool], path: Path, cell: int = 192) -> None:
    """The README's strip: the photo with each mask outlined in its concept's colour, then ``outputs``
    (nearest-neighbour upscaled to ``cell`` px) labelled with the judge's verdict. Refuses to
    overwrite ``path``; written through a temporary file."""
    from PIL import ImageDraw, ImageFilter

    from engine.safe_output import write_file
    from engine.scene import load_scene

    if path.exists():
        raise SystemExit(f"{path}: exists (nothing is overwritten)")
    sc = load_scene(scene)
    photo = Image.fromarray(sc.image).convert("RGB").resize((cell, cell))
    for concept in sc.concepts:
        mask = Image.fromarray(concept.binary().astype(np.uint8) * 255).resize((cell, cell))
        edge = mask.filter(ImageFilter.FIND_EDGES).point(lambda v: 255 if v > 64 else 0)
        photo.paste(Image.new("RGB", photo.size, concept.color), mask=edge.filter(ImageFilter.MaxFilter(3)))
    label_h = 18
    strip = Image.new("RGB", (cell * (1 + len(outputs)) + 8 * len(outputs), cell + label_h), "white")
    strip.paste(photo, (0, 0))
    draw = ImageDraw.Draw(strip)
    draw.text((4, cell + 3), "input photo + masks", fill="black")
    for i, (f, ok) in enumerate(zip(outputs, verdicts)):
        x = (cell + 8) * (i + 1)
        strip.paste(Image.open(f).convert("RGB").resize((cell, cell), Image.NEAREST), (x, 0))
        draw.text((x + 4, cell + 3), f"seed {i}: {'composed' if ok else 'not composed'}", fill="black")
    write_file(path, lambda tmp: strip.save(tmp, format="PNG"))


def words(n: int) -> None:
    """The base model on the README's prompt with words for the handles, both orders."""
    from engine.models import load_model

    comps, judge = load_model("shapesworld"), load_judge()
    described = [f"a {colour} {pattern} {shape}" for shape, colour, pattern in OBJECTS]
    for names in (described, described[::-1]):
        prompt = PROMPT.replace("<asset0>", names[0]).replace("<asset1>", names[1])
        imgs = generated(comps, prompt, n)
        ok = composed_correctly(judge, imgs, OBJECTS, "beach")
        print(f"{prompt!r}: {sum(ok)} of {len(ok)} composed correctly ({''.join('+' if o else '-' for o in ok)})",
              flush=True)


def variant(objects: list[tuple[str, str, str]], context: str, loose: int, background: bool,
            overrides: dict[str, object], train_seeds: list[int], n: int) -> None:
    """Break the example's layout drawn with ``objects`` on ``context`` for each training seed and
    count the README prompt's composed images (generation seeds 0 .. n-1, as ``bas generate``)."""
    from engine.shapesworld.evaluate import ready_to_generate, train_run
    from engine.shapesworld.judge import pair_probability, score_images
    from engine.shapesworld.scenes import example_desc, world_scene
    from engine.shapesworld.world import ShapeSpec, WorldImage
    from engine.training.config import preset

    places = [(o.cx, o.cy, o.r) for o in example_desc().objects]
    desc = WorldImage(tuple(ShapeSpec(*obj, *pl) for obj, pl in zip(objects, places)), context)
    judge, total = load_judge(), 0
    for ts in train_seeds:
        ws = world_scene(desc, size=512, loose_px=loose, seed=0)
        for concept, obj in zip(ws.scene.concepts, objects):
            concept.init_word = obj[0]
        if background:
            ws.scene = ws.scene.with_background()
        t0 = time.time()
        trainer, _ = train_run(ws, preset("shapesworld", seed=ts, **overrides))
        imgs = generated(ready_to_generate(trainer.comps), PROMPT, n)
        ok = composed_correctly(judge, imgs, objects, "beach")
        s = score_images(judge, imgs)
        each = ", ".join(f"{o[1]} {o[0]} {int((pair_probability(s, (o[0], o[1])) > 0.5).sum())}" for o in objects)
        total += sum(ok)
        print(f"training seed {ts}: {sum(ok)} of {n} composed correctly, first four {sum(ok[:4])} ({each}; "
              f"break {time.time() - t0:.0f} s)", flush=True)
    print(f"in all: {total} of {n * len(train_seeds)}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("-o", "--out", type=Path, help="a new folder for the scenes, packs and images")
    ap.add_argument("--figure", type=Path, help="also write the README's photo-and-outputs strip (first training seed)")
    ap.add_argument("--words", action="store_true", help="judge the base model on the prompt in words instead")
    ap.add_argument("--objects", nargs=2, metavar="SHAPE,COLOUR,PATTERN", help="break a variant of the example instead")
    ap.add_argument("--context", default="green", help="the variant's ground (a ShapesWorld context)")
    ap.add_argument("--loose", type=int, default=12, help="the variant's mask dilation in px at 512 (the example's)")
    ap.add_argument("--background", action="store_true", help="the variant also learns a background handle")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=JSON", help="preset overrides for the variant")
    args = ap.parse_args()
    if args.objects:
        objs = [tuple(o.split(",")) for o in args.objects]
        if any(len(o) != 3 for o in objs):
            ap.error("--objects: each is SHAPE,COLOUR,PATTERN")
        from engine.shapesworld.world import COLORS, CONTEXTS, PATTERNS, SHAPES
        from engine.training.config import TrainConfig

        for shape, colour, pattern in objs:
            if shape not in SHAPES or colour not in COLORS or pattern not in PATTERNS:
                ap.error(f"--objects {shape},{colour},{pattern}: shapes {', '.join(SHAPES)}; colours "
                         f"{', '.join(COLORS)}; patterns {', '.join(PATTERNS)}")
        if args.context not in CONTEXTS:
            ap.error(f"--context {args.context}: one of {', '.join(CONTEXTS)}")
        overrides: dict[str, object] = {}
        for kv in args.set:
            key, _, value = kv.partition("=")
            if key not in {f.name for f in fields(TrainConfig)}:
                ap.error(f"--set {kv}: {key!r} is not a TrainConfig field (engine/training/config.py)")
            try:
                overrides[key] = json.loads(value)
            except ValueError:
                ap.error(f"--set {kv}: KEY=VALUE with a JSON value (e.g. phase1_lr=1e-3, prior_preservation=false)")
        import torch

        torch.set_num_threads(1)  # as the earlier looks were measured (one thread; results depend on it)
        variant(objs, args.context, args.loose, args.background, overrides,  # type: ignore[arg-type]
                args.train_seeds, args.images)
        return
    if args.words:
        words(args.images)
        return
    if args.out is None:
        ap.error("-o/--out is required unless --words")
    if args.out.exists():
        raise SystemExit(f"{args.out}: exists; give a new folder (nothing is overwritten)")
    if args.figure is not None and args.figure.exists():
        raise SystemExit(f"{args.figure}: exists (nothing is overwritten)")
    judge = load_judge()
    for ts in args.train_seeds:
        d = args.out / f"seed{ts}"
        d.mkdir(parents=True)
        bas("example", str(d / "scene"))
        t0 = time.time()
        bas("break", str(d / "scene"), "-o", str(d / "pack"), "--seed", str(ts))
        took = time.time() - t0
        bas("generate", str(d / "pack"), PROMPT, "-o", str(d / "out.png"), "--n", str(args.images), "--seed", "0")
        files = sorted(d.glob("out-*.png"), key=lambda f: int(f.stem.split("-")[1]))
        imgs = np.stack([np.asarray(Image.open(f).convert("RGB").resize((64, 64))) for f in files])
        ok = composed_correctly(judge, imgs, OBJECTS, "beach")
        print(f"training seed {ts}: {sum(ok)} of {len(ok)} composed correctly (break {took:.0f} s; "
              f"per image: {''.join('+' if o else '-' for o in ok)})", flush=True)
        if args.figure is not None and ts == args.train_seeds[0]:
            figure(d / "scene", files[:4], ok[:4], args.figure)


if __name__ == "__main__":
    main()
