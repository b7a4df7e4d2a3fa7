"""The quality benchmark's page: the table, the paired differences, the paper's directions and the
scatter plot of ``bench/quality.py``'s runs (pure functions of the saved runs)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

# Arms that are read against another arm than full as well (paired_table adds the row).
BASELINES = {"no masked loss, phase-2 lr 5e-4": "full, phase-2 lr 5e-4"}
# The paper's directions: (arm, [(metric, sign)], text). A direction is shown when any of its
# metrics moves the paper's way by more than two standard errors of the paired difference.
PAPER_DIRECTIONS = [
    ("no masked loss", [("prompt_fidelity", -1), ("prompt_fidelity_given_handle", -1), ("prompt_fidelity_extra", -1)],
     "masked loss -> prompt fidelity"),
    ("no attention loss", [("identity", -1), ("leakage", +1)], "attention loss -> identity or leakage"),
    ("no union sampling", [("identity", -1), ("composition", -1)], "union sampling -> identity or composition"),
    ("TI-m (phase 1 only)", [("identity", -1)], "TI-m has poorer identity"),
    ("DB-m (phase 2 only)", [("prompt_fidelity", -1), ("prompt_fidelity_given_handle", -1), ("prompt_fidelity_extra", -1)],
     "DB-m has poorer prompt fidelity"),
]
METRICS = ("identity", "exact_object", "prompt_fidelity", "prompt_fidelity_extra", "prompt_fidelity_given_handle",
           "leakage", "composition", "control", "best_handle_margin")
def present(rows: dict[str, list[dict]], keys: tuple[str, ...] | list[str]) -> list[str]:
    """The metrics every run has (older runs lack the newer ones)."""
    return [k for k in keys if all(k in r for rs in rows.values() for r in rs)]


def paired(rows: dict[str, list[dict]], arm: str, key: str, base: str = "full") -> tuple[float, float, int]:
    """Mean and standard error of ``arm - base`` in ``key`` over the runs both have (same scene and seed)."""
    full = {(r["scene"], r["seed"]): r[key] for r in rows.get(base, [])}
    d = np.array([r[key] - full[(r["scene"], r["seed"])] for r in rows.get(arm, []) if (r["scene"], r["seed"]) in full])
    if len(d) < 2:
        return float(d.mean()) if len(d) else float("nan"), float("inf"), len(d)
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))), len(d)


def directions(rows: dict[str, list[dict]]) -> list[str]:
    """The paper's directions, each judged on paired differences to the full method (arms share scenes and seeds).

    Shown: a metric of the direction moves the paper's way by more than 2 s.e.; reversed: one
    moves the other way by as much and none the paper's way; not resolved otherwise.
    """
    if not rows.get("full"):
        return ["(no full-method arm in this run)"]
    out, shown = [], 0
    for arm, checks, text in PAPER_DIRECTIONS:
        if not rows.get(arm):
            continue
        parts, verdicts = [], []
        for key, sign in checks:
            if key not in present(rows, [key]):
                continue
            if key == "prompt_fidelity_extra" and present(rows, ["prompt_fidelity_given_handle"]):
                continue  # superseded where the runs have the handle-weighted version (scoring 3)
            mean, se, n = paired(rows, arm, key)
            verdicts.append("shown" if mean * sign > 2 * se else "reversed" if mean * sign < -2 * se else "open")
            parts.append(f"{key}: paired difference {mean:+.3f} ± {se:.3f} s.e. over {n} runs")
        verdict = ("shown" if "shown" in verdicts else "reversed" if "reversed" in verdicts else "not resolved")
        shown += verdict == "shown"
        out.append(f"{verdict}: {text} ({arm} minus full; " + "; ".join(parts) + ")")
    out.append(f"{shown} of {len(PAPER_DIRECTIONS)} of the paper's directions shown beyond 2 s.e.")
    return out


def _cell(stat: tuple[float, float, int]) -> str:
    """A paired difference as a table cell, bold beyond 2 s.e."""
    m, se, _ = stat
    return f"**{m:+.3f} ± {se:.3f}**" if abs(m) > 2 * se else f"{m:+.3f} ± {se:.3f}"


def paired_table(rows: dict[str, list[dict]]) -> str:
    """Every arm minus full in every metric (paired by scene and seed), beyond 2 s.e. in bold.

    An arm whose runs equal full's in every metric (e.g. the attention level the engine already
    chooses for this model) is named as such instead of a row of zeros.
    """
    keys = present(rows, [k for k in METRICS if k != "control"])
    lines = ["| arm minus full | pairs | " + " | ".join(k.replace("_", " ") for k in keys) + " |",
             "| --- " * (len(keys) + 2) + "|"]
    for arm in rows:
        if arm == "full":
            continue
        stats = [paired(rows, arm, k) for k in keys]
        if all(abs(m) < 1e-12 and se < 1e-12 for m, se, _ in stats):
            lines.append(f"| {arm} | {stats[0][2]} | " + " | ".join(["= full"] * len(keys)) + " |")
            continue
        lines.append(f"| {arm} | {stats[0][2]} | " + " | ".join(map(_cell, stats)) + " |")
    for arm, base in BASELINES.items():  # investigations paired with their own baseline arm
        if rows.get(arm) and rows.get(base):
            stats = [paired(rows, arm, k, base) for k in keys]
            lines.append(f"| {arm} *minus {base}* | {stats[0][2]} | " + " | ".join(map(_cell, stats)) + " |")
    return "\n".join(lines)


def scatter_png(rows: dict[str, list[dict[str, float]]], path: Path) -> None:
    """Identity (y) vs prompt fidelity (x) per arm with ± 1 s.e. bars, like the paper's Fig. 5.

    Axes are zoomed to the data; the dashed line is the mean chance level of identity. Drawn with
    PIL (no plotting dependency).
    """
    from PIL import Image, ImageDraw, ImageFont

    # The extra-object fidelity where the runs have it: the context alone sits at the judge's ceiling.
    fkey = next(k for k in ("prompt_fidelity_given_handle", "prompt_fidelity_extra", "prompt_fidelity")
                if present(rows, [k]))
    stats = {}
    for arm, rs in rows.items():
        if not rs:
            continue
        n = len(rs)
        fx, iy = np.array([r[fkey] for r in rs]), np.array([r["identity"] for r in rs])
        stats[arm] = (fx.mean(), iy.mean(), fx.std(ddof=1) / np.sqrt(n) if n > 1 else 0.0,
                      iy.std(ddof=1) / np.sqrt(n) if n > 1 else 0.0)
    chance = float(np.mean([r["control"] for rs in rows.values() for r in rs]))
    xs = [v[0] - v[2] for v in stats.values()] + [v[0] + v[2] for v in stats.values()]
    ys = [v[1] - v[3] for v in stats.values()] + [v[1] + v[3] for v in stats.values()] + [chance]
    x0, x1 = max(0.0, min(xs) - 0.03), min(1.0, max(xs) + 0.03)
    y0, y1 = max(0.0, min(ys) - 0.03), min(1.0, max(ys) + 0.03)
    w, h, ml, mb, mt, mr = 900, 560, 70, 60, 30, 290
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
    label = {"prompt_fidelity_given_handle": "prompt fidelity (extra object, given the handle)",
             "prompt_fidelity_extra": "prompt fidelity (extra object)"}.get(fkey, "prompt fidelity")
    d.text((ml + (w - ml - mr) // 2 - 50, h - 28), label, fill="black", font=font)
    d.text((8, 6), "identity (± 1 s.e.)", fill="black", font=font)
    cy = at(x0, chance)[1]
    for xx in range(ml, w - mr, 12):
        d.line([xx, cy, xx + 6, cy], fill="gray")
    d.text((w - mr + 6, cy - 7), "chance", fill="gray", font=font)
    colours = ["red", "blue", "green", "orange", "purple", "brown", "black", "magenta", "teal", "olive",
               "navy", "gray", "gold", "deepskyblue", "lime", "maroon", "indigo", "crimson", "darkgreen", "sienna"]
    if len(stats) > len(colours):
        raise ValueError(f"{len(stats)} arms to plot, colours for {len(colours)}: add colours")
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


def recipe_note(command: str) -> str:
    """`` with --set ...`` for a page made with ``--set`` (else nothing)."""
    sets = [w for w in command.split(" --set ")[1:]]
    return (" with " + ", ".join(f"`{w}`" for w in sets)) if sets else ""


def write_report(runs: list[dict], settings: dict, out: Path, order: Iterable[str], suffix: str = "") -> None:
    """The table, the scatter plot and the direction checks of the current model's runs, as docs/quality{suffix}.md."""
    mine = [r for r in runs if r.get("model") == settings["model"] and r.get("setup") == settings["setup"]]
    rows: dict[str, list[dict]] = {}
    for arm in order:
        rs = sorted((r for r in mine if r["arm"] == arm), key=lambda r: (r["seed"], r["scene"]))
        if rs:
            rows[arm] = rs
    if not rows:
        print(f"no runs of model {settings['model']} ({settings['setup']}) in {out}")
        return
    names = {"prompt_fidelity_extra": "prompt fidelity (extra object)",
             "prompt_fidelity_given_handle": "prompt fidelity (extra object, given the handle)", "control": "control (chance)",
             "best_handle_margin": "best handle over chance"}
    metrics = present(rows, METRICS)
    lines = ["| arm | runs | " + " | ".join(names.get(k, k.replace("_", " ")) for k in metrics) + " |",
             "| --- " * (len(metrics) + 2) + "|"]
    for a, rs in rows.items():
        cells = []
        for k in metrics:
            v = np.array([r[k] for r in rs])
            se = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
            cells.append(f"{v.mean():.3f} ± {se:.3f}")
        lines.append(f"| {a} | {len(rs)} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    checks = directions(rows)
    scatter_png(rows, out / f"quality_scatter{suffix}.png")
    notes = out / "quality-notes.md"
    doc = ["# Quality benchmark (ShapesWorld)", "",
           f"Generated by `{settings['command']}` on model `{settings['model']}` (hash of its weights), "
           f"{settings['setup']}, base recipe: preset `shapesworld`{recipe_note(settings['command'])}; runs accumulate in quality{suffix}.json across sessions "
           f"(`python bench/quality.py` goes on where it stopped; `--report` rewrites this page). "
           "Mean ± standard error over runs (scenes x training seeds).", "", table, "",
           f"![identity vs prompt fidelity](quality_scatter{suffix}.png)", "", "## The paper's directions", ""]
    doc += [f"- {c}" for c in checks]
    doc += ["", "## Every arm against the full method", "",
            "Paired differences (arm minus full over the runs both have, same scene and seed), mean ± "
            "standard error; bold: beyond 2 s.e.", "", paired_table(rows)]
    if notes.exists() and not suffix:
        doc += ["", notes.read_text(encoding="utf-8")]
    (out / f"quality{suffix}.md").write_text("\n".join(doc) + "\n", encoding="utf-8")
    print("\n".join(checks))
