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

    python bench/quality.py                 # 8 scenes x 7 arms (19 min on 2 cores)
    python bench/quality.py --report        # rewrite docs/quality.md from docs/quality.json
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


def directions(rows: dict[str, list[dict[str, float]]]) -> list[str]:
    """Check the paper's ablation directions: paired over runs (arms share scenes and seeds).

    A direction counts as reproduced when the mean paired difference to the full method points
    the paper's way by more than two standard errors, as reversed when it points the other way by
    as much, and as unresolved otherwise (the spread between runs hides it).
    """
    full = rows.get("full")
    if not full:
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
        if not rows.get(arm) or len(rows[arm]) != len(full):
            continue
        d = np.array([a[key] - f[key] for a, f in zip(rows[arm], full)])
        mean = float(d.mean())
        se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("inf")
        if mean * sign > 2 * se:
            verdict = "reproduced"
        elif mean * sign < -2 * se:
            verdict = "reversed"
        else:
            verdict = "not resolved"
        out.append(f"{verdict}: {text} ({key} {np.mean([a[key] for a in rows[arm]]):.3f} vs full "
                   f"{np.mean([f[key] for f in full]):.3f}; paired difference {mean:+.3f} ± {se:.3f} s.e.)")
    return out


def scatter_png(rows: dict[str, list[dict[str, float]]], path: Path) -> None:
    """Identity (y) vs prompt fidelity (x) per arm with ± 1 s.e. bars, like the paper's Fig. 5.

    Axes are zoomed to the data; the dashed line is the mean chance level of identity. Drawn with
    PIL (no plotting dependency).
    """
    from PIL import Image, ImageDraw, ImageFont

    stats = {}
    for arm, rs in rows.items():
        if not rs:
            continue
        n = len(rs)
        fx, iy = np.array([r["prompt_fidelity"] for r in rs]), np.array([r["identity"] for r in rs])
        stats[arm] = (fx.mean(), iy.mean(), fx.std(ddof=1) / np.sqrt(n) if n > 1 else 0.0,
                      iy.std(ddof=1) / np.sqrt(n) if n > 1 else 0.0)
    chance = float(np.mean([r["control"] for rs in rows.values() for r in rs]))
    xs = [v[0] - v[2] for v in stats.values()] + [v[0] + v[2] for v in stats.values()]
    ys = [v[1] - v[3] for v in stats.values()] + [v[1] + v[3] for v in stats.values()] + [chance]
    x0, x1 = max(0.0, min(xs) - 0.03), min(1.0, max(xs) + 0.03)
    y0, y1 = max(0.0, min(ys) - 0.03), min(1.0, max(ys) + 0.03)
    w, h, ml, mb, mt, mr = 760, 560, 70, 60, 30, 200
    font = ImageFont.load_default(size=14)
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)

    def at(x: float, y: float) -> tuple[float, float]:
        return (ml + (w - ml - mr) * (x - x0) / (x1 - x0), h - mb - (h - mb - mt) * (y - y0) / (y1 - y0))

    d.rectangle([ml, mt, w - mr, h - mb], outline="black")
    for t in np.linspace(0, 1, 6):
        gx, gy = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
        px, _ = at(gx, y0)
        _, py = at(x0, gy)
        d.text((px - 14, h - mb + 6), f"{gx:.2f}", fill="gray", font=font)
        d.text((ml - 42, py - 7), f"{gy:.2f}", fill="gray", font=font)
    d.text((ml + (w - ml - mr) // 2 - 50, h - 28), "prompt fidelity", fill="black", font=font)
    d.text((8, 6), "identity (± 1 s.e.)", fill="black", font=font)
    cy = at(x0, chance)[1]
    for xx in range(ml, w - mr, 12):
        d.line([xx, cy, xx + 6, cy], fill="gray")
    d.text((w - mr + 6, cy - 7), "chance", fill="gray", font=font)
    colours = ["red", "blue", "green", "orange", "purple", "brown", "black"]
    for i, ((arm, (fx, iy, sx, sy)), c) in enumerate(zip(stats.items(), colours)):
        px, py = at(fx, iy)
        lx, _ = at(fx - sx, iy)
        rx, _ = at(fx + sx, iy)
        _, ty = at(fx, iy + sy)
        _, by = at(fx, iy - sy)
        d.line([lx, py, rx, py], fill=c, width=2)
        d.line([px, ty, px, by], fill=c, width=2)
        d.ellipse([px - 5, py - 5, px + 5, py + 5], fill=c)
        # legend on the right, keyed by colour (labels next to the points would overlap)
        d.ellipse([w - mr + 10, mt + 20 * i + 3, w - mr + 20, mt + 20 * i + 13], fill=c)
        d.text((w - mr + 26, mt + 20 * i), arm, fill="black", font=font)
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
    ap.add_argument("--report", action="store_true", help="only rewrite the page from the saved JSON")
    args = ap.parse_args()
    suffix = "-quick" if args.quick else ""
    if args.report:
        saved = json.loads((args.out / f"quality{suffix}.json").read_text())
        write_report(saved["runs"], saved["settings"], args.out, suffix)
        return
    base = preset("shapesworld")
    arms = list(args.arms or (QUICK_ARMS if args.quick else ARMS))
    n_scenes = 2 if args.quick else args.scenes
    if args.quick:
        base = replace(base, phase1_steps=base.phase1_steps // 2, phase2_steps=base.phase2_steps // 2)
    load_model("shapesworld")  # fail early with a clear message if the model is missing
    rows: dict[str, list[dict[str, float]]] = {a: [] for a in arms}
    t0 = time.time()
    # Training seed = scene index + run seed: every run of an arm has its own seed; arms share them.
    tasks = [(arm, si, seed, replace(base, seed=si + 100 * seed, **ARMS[arm]))  # type: ignore[arg-type]
             for arm in arms for si in range(n_scenes) for seed in range(args.seeds)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(args.jobs, initializer=_init_worker, initargs=(args.threads, n_scenes, args.masks)) as pool:
        jobs = [pool.apply_async(_run, (si, cfg, args.gen_steps, args.guidance)) for _, si, _, cfg in tasks]
        for (arm, si, seed, _), job in zip(tasks, jobs):
            r = job.get()
            rows[arm].append(r)
            print(f"[{time.time() - t0:5.0f}s] {arm:22s} scene {si} seed {seed}: "
                  + " ".join(f"{k}={v:.3f}" for k, v in r.items()), flush=True)
    took = time.time() - t0
    settings = {"command": "python bench/quality.py" + (" --quick" if args.quick else ""), "scenes": n_scenes,
                "seeds": args.seeds, "masks": args.masks, "jobs": args.jobs, "threads": args.threads,
                "gen_steps": args.gen_steps, "guidance": args.guidance, "seconds": took}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"quality{suffix}.json").write_text(json.dumps({"settings": settings, "runs": rows}, indent=1))
    write_report(rows, settings, args.out, suffix)


def write_report(rows: dict[str, list[dict[str, float]]], settings: dict, out: Path, suffix: str = "") -> None:
    """The table, the scatter plot and the direction checks, as docs/quality{suffix}.md."""
    summary = {a: {k: (float(np.mean([r[k] for r in rs])), float(np.std([r[k] for r in rs])))
                   for k in rs[0]} for a, rs in rows.items() if rs}
    keys = ("identity", "exact_object", "prompt_fidelity", "leakage", "composition", "control", "best_handle_margin")
    lines = ["| arm | identity | exact object | prompt fidelity | leakage | composition | control (chance) "
             "| best handle over chance |", "| --- " * 8 + "|"]
    for a, v in summary.items():
        lines.append(f"| {a} | " + " | ".join(f"{v[k][0]:.3f} ± {v[k][1]:.3f}" for k in keys if k in v) + " |")
    table = "\n".join(lines)
    print(table)
    checks = directions(rows)
    scatter_png(rows, out / f"quality_scatter{suffix}.png")
    notes = out / "quality-notes.md"
    n_arms = len([a for a in rows if rows[a]])
    doc = ["# Quality benchmark (ShapesWorld)", "",
           f"Generated by `{settings['command']}` ({settings['scenes']} scenes x {settings['seeds']} seed(s) x "
           f"{n_arms} arms, {settings['masks']} masks, {settings['jobs']} worker(s) x {settings['threads']} "
           f"thread(s), {settings['gen_steps']} DDIM steps, guidance {settings['guidance']}, preset `shapesworld`; "
           f"{settings['seconds'] / 60:.1f} min); `python bench/quality.py --report` rewrites this page from "
           f"quality{suffix}.json. Mean ± standard deviation over runs.", "", table, "",
           f"![identity vs prompt fidelity](quality_scatter{suffix}.png)", "", "## The paper's directions", ""]
    doc += [f"- {c}" for c in checks]
    if notes.exists() and not suffix:
        doc += ["", notes.read_text(encoding="utf-8")]
    (out / f"quality{suffix}.md").write_text("\n".join(doc) + "\n", encoding="utf-8")
    print("\n".join(checks))
    print(f"{settings['scenes']} scenes x {settings['seeds']} seeds x {n_arms} arms in {settings['seconds']:.0f} s")

if __name__ == "__main__":
    main()
