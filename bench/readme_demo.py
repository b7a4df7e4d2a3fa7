"""The README's main command, judged: does it draw both objects apart at the beach?

Runs what the README's first command runs (``bas example``, ``bas break`` with the default model
and its own preset, ``bas generate`` "a photo of <asset0> and <asset1> at the beach") for each
training seed, generates ``--images`` images (generation seeds 0, 1, ...), and counts those that
``engine.shapesworld.evaluate.composed_correctly`` passes: both (shape, colour) pairs, both
patterns, no exchanged pair, the beach.

    python bench/readme_demo.py --train-seeds 0 1 --images 8 -o /tmp/readme-demo

``--words`` instead judges the base model on the same prompt with the objects described in words
("a photo of a red striped star and a blue dotted circle at the beach", and in the other order),
``--images`` images each, generated as ``bas generate`` does: what the model itself composes.

    python bench/readme_demo.py --words --images 16
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
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


def words(n: int) -> None:
    """The base model on the README's prompt with words for the handles, both orders."""
    from engine.compose.generate import generate
    from engine.models import load_model

    comps, judge = load_model("shapesworld"), load_judge()
    described = [f"a {colour} {pattern} {shape}" for shape, colour, pattern in OBJECTS]
    for names in (described, described[::-1]):
        prompt = PROMPT.replace("<asset0>", names[0]).replace("<asset1>", names[1])
        imgs = np.stack([np.asarray(g.image.convert("RGB").resize((64, 64))) for g in generate(comps, prompt, n=n, seed=0)])
        ok = composed_correctly(judge, imgs, OBJECTS, "beach")
        print(f"{prompt!r}: {sum(ok)} of {len(ok)} composed correctly ({''.join('+' if o else '-' for o in ok)})",
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("-o", "--out", type=Path, help="a new folder for the scenes, packs and images")
    ap.add_argument("--words", action="store_true", help="judge the base model on the prompt in words instead")
    args = ap.parse_args()
    if args.words:
        words(args.images)
        return
    if args.out is None:
        ap.error("-o/--out is required unless --words")
    if args.out.exists():
        raise SystemExit(f"{args.out}: exists; give a new folder (nothing is overwritten)")
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


if __name__ == "__main__":
    main()
