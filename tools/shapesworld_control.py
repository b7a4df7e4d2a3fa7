"""Measure how well a ShapesWorld model follows prompts, with the judge's own accuracy beside it.

    python tools/shapesworld_control.py [--model shapesworld] [--single 192] [--pairs 96] [--json out.json]

Single-object prompts (engine.shapesworld.evaluate.prompt_control): the share of images whose
most likely shape / colour / pattern / context is the prompted one, and the context per prompted
context. Two-object prompts (two_object_control): both (shape, colour) pairs found, no exchanged
pair found. The judge's accuracy on fresh renders (judge.accuracy_on_renders) is printed first.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.models import load_model  # noqa: E402
from engine.shapesworld.evaluate import prompt_control, two_object_control  # noqa: E402
from engine.shapesworld.judge import accuracy_on_renders, load_judge  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="shapesworld")
    ap.add_argument("--judge", type=Path, help="judge folder (default: the shipped one)")
    ap.add_argument("--single", type=int, default=192)
    ap.add_argument("--pairs", type=int, default=96)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=100, help="prompt/sample seed (fresh: not the grid's 0)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    judge = load_judge(args.judge)
    t0 = time.time()
    res = {"judge_on_renders": accuracy_on_renders(judge, 1024)}
    print("judge on 1024 fresh renders:", json.dumps(res["judge_on_renders"]), flush=True)
    comps = load_model(args.model)
    if args.single:
        res["single"] = prompt_control(comps, judge, n=args.single, steps=args.steps, guidance=args.guidance,
                                       seed=args.seed)
        print(f"single ({args.single} prompts):", json.dumps({k: round(v, 3) for k, v in res["single"].items()}),
              flush=True)
    if args.pairs:
        res["pairs"] = two_object_control(comps, judge, n=args.pairs, steps=args.steps, guidance=args.guidance,
                                          seed=args.seed)
        print(f"pairs ({args.pairs} prompts):", json.dumps({k: round(v, 3) for k, v in res["pairs"].items()}),
              flush=True)
    res["settings"] = {"model": args.model, "steps": args.steps, "guidance": args.guidance, "seed": args.seed,
                       "seconds": round(time.time() - t0)}
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
