"""Quality benchmark on ShapesWorld: does Break-A-Scene extract concepts, and what does each part add?

Scenes: objects whose (shape, colour) pairs were held out of the model's pretraining, rendered
with tight or loose (dilated) masks. Each arm breaks each scene, then generates:

* each handle alone in three new contexts ("a photo of <asset0> at the beach" ...),
* the first two handles together in one context.

The shipped judge (a classifier trained on the world) scores:

* identity: mean of P(the concept's shape), P(its colour), P(its pattern) present in its
  single-handle images (graded: a blurry red star-ish blob scores on colour and part of shape);
* exact object: P(the concept's exact shape+colour+pattern object is present), the strict version;
* prompt fidelity: P(the background is the prompted context) in those images;
* leakage: max over the *other* concepts of the attribute score of the attributes they do not
  share with the prompted concept, in a single-handle image;
* composition: product of the two concepts' attribute scores in two-handle images;
* control: mean attribute score of every other object of the world, the chance
  level of identity.

    python bench/quality.py                 # 8 scenes x 7 arms (about 30 min on 2 cores)
    python bench/quality.py --quick         # 2 scenes, 3 arms, short training (CI-sized)

Writes docs/quality.md and docs/quality_scatter.png (identity vs prompt fidelity, like the
paper's Fig. 5).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.config import preset  # noqa: E402
from engine.models import load_model  # noqa: E402
from engine.shapesworld.evaluate import evaluate_run  # noqa: E402
from engine.shapesworld.judge import load_judge  # noqa: E402
from engine.shapesworld.scenes import benchmark_scenes  # noqa: E402

ARMS: dict[str, dict[str, object]] = {
    "full": {},
    "no phase 1": {"phase1_steps": 0},
    "no masked loss": {"masked_loss": False},
    "no attention loss": {"lambda_attention": 0.0},
    "no union sampling": {"union_sampling": False},
    "TI-m (phase 1 only)": {"phase2_steps": 0, "lambda_attention": 0.0},
    "DB-m (phase 2 only)": {"phase1_steps": 0, "lambda_attention": 0.0},
}
QUICK_ARMS = ("full", "TI-m (phase 1 only)", "DB-m (phase 2 only)")


def directions(summary: dict[str, dict[str, tuple[float, float]]]) -> list[str]:
    """Check the paper's ablation directions against the measured means."""
    def v(arm: str, key: str) -> float | None:
        return summary[arm][key][0] if arm in summary else None

    full = summary.get("full")
    if full is None:
        return ["(no full-method arm in this run)"]
    out = []
    for arm, key, sign, text in [
        ("no masked loss", "prompt_fidelity", -1, "without the masked loss, prompt fidelity drops"),
        ("no attention loss", "identity", -1, "without the attention loss, identity drops"),
        ("no attention loss", "leakage", +1, "without the attention loss, leakage rises"),
        ("no union sampling", "identity", -1, "without union sampling, identity drops"),
        ("no union sampling", "composition", -1, "without union sampling, composition drops"),
        ("TI-m (phase 1 only)", "identity", -1, "TI-m has poorer identity"),
        ("DB-m (phase 2 only)", "prompt_fidelity", -1, "DB-m has poorer prompt fidelity"),
    ]:
        a, f = v(arm, key), full[key][0]
        if a is None:
            continue
        ok = (a - f) * sign > 0
        out.append(f"{'reproduced' if ok else 'NOT reproduced'}: {text} ({key} {a:.3f} vs full {f:.3f})")
    return out


def scatter_png(summary: dict[str, dict[str, tuple[float, float]]], path: Path) -> None:
    """Identity (y) vs prompt fidelity (x) per arm, drawn with PIL (no plotting dependency)."""
    from PIL import Image, ImageDraw

    w, h, m = 640, 480, 60
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    d.rectangle([m, 20, w - 20, h - m], outline="black")
    d.text((w // 2 - 50, h - 30), "prompt fidelity", fill="black")
    d.text((5, 20), "identity", fill="black")
    for t in range(0, 11, 2):
        x = m + (w - 20 - m) * t / 10
        y = h - m - (h - m - 20) * t / 10
        d.text((x - 8, h - m + 5), f"{t / 10:.1f}", fill="gray")
        d.text((m - 30, y - 6), f"{t / 10:.1f}", fill="gray")
    colours = ["red", "blue", "green", "orange", "purple", "brown", "black"]
    for (arm, vals), c in zip(summary.items(), colours):
        x = m + (w - 20 - m) * vals["prompt_fidelity"][0]
        y = h - m - (h - m - 20) * vals["identity"][0]
        d.ellipse([x - 5, y - 5, x + 5, y + 5], fill=c)
        d.text((x + 8, y - 6), arm, fill=c)
    img.save(path)


_WORKER: dict[str, object] = {}


def _init_worker(threads: int, n_scenes: int, masks: str) -> None:
    import torch

    torch.set_num_threads(threads)
    _WORKER["scenes"] = benchmark_scenes(n_scenes, seed=7, loose_px=2 if masks == "loose" else 0)
    _WORKER["judge"] = load_judge()


def _run(si: int, cfg: object, gen_steps: int, guidance: float) -> dict[str, float]:
    ws = _WORKER["scenes"][si]  # type: ignore[index]
    return evaluate_run(ws, cfg, _WORKER["judge"], gen_steps, guidance, seed=1000 * si)  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--scenes", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=1, help="training seeds per scene")
    ap.add_argument("--masks", choices=["tight", "loose"], default="loose")
    ap.add_argument("--gen-steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--arms", nargs="+", help="subset of arms")
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads per worker; 1 avoids the 2-20x slowdown of oversubscribed cores")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (one per core)")
    args = ap.parse_args()
    base = preset("shapesworld")
    arms = list(args.arms or (QUICK_ARMS if args.quick else ARMS))
    n_scenes = 2 if args.quick else args.scenes
    if args.quick:
        base = replace(base, phase1_steps=base.phase1_steps // 2, phase2_steps=base.phase2_steps // 2)
    scenes = benchmark_scenes(n_scenes, seed=7, loose_px=2 if args.masks == "loose" else 0)
    load_model("shapesworld")  # fail early with a clear message if the model is missing
    rows: dict[str, list[dict[str, float]]] = {a: [] for a in arms}
    t0 = time.time()
    # Training seed = scene index + run seed: every run of an arm has its own seed; arms share them.
    tasks = [(arm, si, seed, replace(base, seed=si + 100 * seed, **ARMS[arm]))  # type: ignore[arg-type]
             for arm in arms for si in range(len(scenes)) for seed in range(args.seeds)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(args.jobs, initializer=_init_worker, initargs=(args.threads, n_scenes, args.masks)) as pool:
        jobs = [pool.apply_async(_run, (si, cfg, args.gen_steps, args.guidance)) for _, si, _, cfg in tasks]
        for (arm, si, seed, _), job in zip(tasks, jobs):
            r = job.get()
            rows[arm].append(r)
            print(f"[{time.time() - t0:5.0f}s] {arm:22s} scene {si} seed {seed}: "
                  + " ".join(f"{k}={v:.3f}" for k, v in r.items()), flush=True)
    summary = {a: {k: (float(np.mean([r[k] for r in rs])), float(np.std([r[k] for r in rs])))
                   for k in rs[0]} for a, rs in rows.items() if rs}
    keys = ("identity", "exact_object", "prompt_fidelity", "leakage", "composition", "control")
    lines = ["| arm | identity | exact object | prompt fidelity | leakage | composition | control (chance) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for a, v in summary.items():
        lines.append(f"| {a} | " + " | ".join(f"{v[k][0]:.3f} ± {v[k][1]:.3f}" for k in keys) + " |")
    table = "\n".join(lines)
    print(table)
    checks = directions(summary)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if args.quick else ""
    scatter_png(summary, args.out / f"quality_scatter{suffix}.png")
    (args.out / f"quality{suffix}.json").write_text(json.dumps({"summary": summary, "runs": rows,
                                                                "seconds": time.time() - t0,
                                                                "masks": args.masks}, indent=1))
    took = time.time() - t0
    notes = args.out / "quality-notes.md"
    doc = ["# Quality benchmark (ShapesWorld)", "",
           f"Generated by `python bench/quality.py{' --quick' if args.quick else ''}` "
           f"({len(scenes)} scenes x {args.seeds} seed(s) x {len(arms)} arms, {args.masks} masks, "
           f"{args.jobs} worker(s) x {args.threads} thread(s), "
           f"{args.gen_steps} DDIM steps, guidance {args.guidance}, preset `shapesworld`; {took / 60:.1f} min). "
           "Mean ± standard deviation over scene runs.", "", table, "",
           f"![identity vs prompt fidelity](quality_scatter{suffix}.png)", "", "## The paper's directions", ""]
    doc += [f"- {c}" for c in checks]
    if notes.exists():
        doc += ["", notes.read_text(encoding="utf-8")]
    (args.out / f"quality{suffix}.md").write_text("\n".join(doc) + "\n", encoding="utf-8")
    print("\n".join(checks))
    print(f"{len(scenes)} scenes x {args.seeds} seeds x {len(arms)} arms in {took:.0f} s")


if __name__ == "__main__":
    main()
