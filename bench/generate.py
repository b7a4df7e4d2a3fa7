"""Milliseconds per generated image: the offline ShapesWorld model on the CPU, and a GPU when present.

Times ``engine.compose.generate.generate`` (diffusers' own pipeline, DDIM as in the paper) after one
warm-up image, for batch 1 and a batch of several images, at the model's native size. With
``--pack`` it times a trained handle pack instead of the bare base model (same cost, plus the
pack's one-time load, printed separately).

    python bench/generate.py                       # shapesworld on cpu (and cuda if available)
    python bench/generate.py --model tiny-random --steps 20 --device cpu
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402


def time_model(model: str, device: str, steps: int, batch: int, images: int, pack: str | None) -> None:
    from engine.compose.generate import generate, load_pack_model
    from engine.models import load_model
    from engine.packs.pack import load_pack

    t0 = time.perf_counter()
    if pack:
        p = load_pack(pack)
        comps = load_pack_model(p, device=device)
    else:
        comps = load_model(model, device=device)
    load_s = time.perf_counter() - t0
    prompt = "a photo of a red striped star and a blue circle at the beach"
    generate(comps, prompt, n=1, steps=steps, seed=0)  # warm-up
    for b in sorted({1, batch}):
        n = max(images, b)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        generate(comps, prompt, n=n, steps=steps, seed=1, batch_size=b)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        ms = 1000 * (time.perf_counter() - t) / n
        print(f"{pack or model} on {device}, {comps.resolution}px, {steps} DDIM steps, batch {b}: "
              f"{ms:.0f} ms/image ({n} images)", flush=True)
    print(f"  model load {load_s:.2f} s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="shapesworld")
    ap.add_argument("--pack", help="time a handle pack instead of the base model")
    ap.add_argument("--device", nargs="*", help="devices (default: cpu, plus cuda when available)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.device or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    for dev in devices:
        time_model(args.model, dev, args.steps, args.batch, args.images, args.pack)


if __name__ == "__main__":
    main()
