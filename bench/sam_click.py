"""Milliseconds per SAM click on the CPU, after the image embedding exists.

    PYTHONPATH=. python bench/sam_click.py                      # tiny + random vit_b, 1024x768 photo
    PYTHONPATH=. python bench/sam_click.py --models tiny --sizes 1024x768 3000x2000 --threads 1 2 --spin both

A click is ``SamSession.predict`` end to end: prompt arrays, onnxruntime decoder, choosing the mask and
upsampling it to the photo. ``decoder`` is the onnxruntime run alone. Weights are random (no download
here); click cost does not depend on weight values. vit_b's encoder takes ~30 s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np
import torch

from engine.sam.models import ModelManager
from engine.sam.session import SamSession


def _stats(ms: list[float]) -> str:
    a = np.asarray(ms)
    return f"median {np.median(a):6.1f} ms  p90 {np.percentile(a, 90):6.1f} ms"


def _photo(w: int, h: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    img[h // 4: h // 2, w // 3: 2 * w // 3] = (200, 40, 40)
    return img


def bench_clicks(session: SamSession, clicks: int, rng: np.random.Generator) -> tuple[list[float], list[float]]:
    """Time ``clicks`` warm predicts (after 5 warm-up ones) and the bare decoder on the same prompts."""
    h, w = session._current().original_size
    prompts = []
    for i in range(clicks + 5):
        pts = [(float(rng.uniform(0, w)), float(rng.uniform(0, h))) for _ in range(1 + i % 3)]
        prompts.append((pts, [1] + [int(rng.integers(0, 2)) for _ in pts[1:]]))
    full, dec = [], []
    state = session._current()
    for i, (pts, labels) in enumerate(prompts):
        t = time.perf_counter()
        session.predict(pts, labels)
        elapsed = (time.perf_counter() - t) * 1000
        coords, codes = session._prompt_arrays(pts, labels, None, state)
        t = time.perf_counter()
        session.decoder.run(state.embedding, coords, codes)
        if i >= 5:
            full.append(elapsed)
            dec.append((time.perf_counter() - t) * 1000)
    return full, dec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tiny", "vit_b"])
    parser.add_argument("--sizes", nargs="+", default=["1024x768"], help="photo sizes WxH")
    parser.add_argument("--threads", nargs="+", type=int, default=[0], help="onnxruntime threads (0 = default)")
    parser.add_argument("--spin", choices=["off", "on", "both"], default="off")
    parser.add_argument("--clicks", type=int, default=50)
    parser.add_argument("--suggest", action="store_true", help="also time suggest() with its defaults")
    parser.add_argument("--cache-dir", default=None, help="reuse embeddings/ONNX between runs (default: fresh temp)")
    args = parser.parse_args()

    print(f"cpu_count={os.cpu_count()} torch_threads={torch.get_num_threads()} torch={torch.__version__}")
    cache = args.cache_dir or tempfile.mkdtemp(prefix="bas-sam-bench-")
    try:
        run(args, ModelManager(cache))
    finally:
        if not args.cache_dir:
            shutil.rmtree(cache, ignore_errors=True)


def run(args: argparse.Namespace, manager: ModelManager) -> None:
    """Open each model, embed each photo size, then time clicks for each thread/spin setting."""
    spins = {"off": [False], "on": [True], "both": [False, True]}[args.spin]
    for name in args.models:
        t = time.perf_counter()
        session = SamSession.open(name, manager, random_weights=True)
        print(f"\n[{name}] load + ONNX export/reuse: {time.perf_counter() - t:.1f} s  ({session.decoder.path.name}, "
              f"{session.decoder.path.stat().st_size / 1e6:.1f} MB)")
        for size in args.sizes:
            w, h = (int(v) for v in size.lower().split("x"))
            t = time.perf_counter()
            session.set_image(_photo(w, h))
            print(f"[{name}] {w}x{h} set_image: {time.perf_counter() - t:.1f} s "
                  f"(encoder runs so far: {session.encoder_runs})")
            for threads in args.threads:
                for spin in spins:
                    session.configure_decoder(threads or None, spin)
                    full, dec = bench_clicks(session, args.clicks, np.random.default_rng(1))
                    label = f"threads={threads or 'default'} spin={'on' if spin else 'off'}"
                    print(f"[{name}] {w}x{h} {label:24s} click: {_stats(full)} | decoder: {_stats(dec)}")
            if args.suggest:
                t = time.perf_counter()
                found = session.suggest()
                print(f"[{name}] {w}x{h} suggest(): {time.perf_counter() - t:.1f} s, {len(found)} masks kept "
                      "(random weights: most proposals fail the quality filters)")


if __name__ == "__main__":
    main()
