"""Train the ShapesWorld judge (attribute classifier) on rendered images; report held-out accuracy.

    python tools/train_shapesworld_judge.py            # writes resources/shapesworld-judge/
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.paths import resources_dir  # noqa: E402
from engine.shapesworld.judge import JUDGE_DIR, Judge, judge_batch, save_judge  # noqa: E402


def loss_fn(out: dict[str, torch.Tensor], t: dict[str, torch.Tensor]) -> torch.Tensor:
    loss = F.cross_entropy(out["context"], t["context"])
    for k in ("objects", "shapes", "colors", "patterns"):
        loss = loss + F.binary_cross_entropy_with_logits(out[k], t[k]) * (10.0 if k == "objects" else 1.0)
    return loss


@torch.no_grad()
def evaluate(model: Judge, seed: int, n: int = 512) -> dict[str, float]:
    """Exact-set accuracy of objects (threshold 0.5) and context accuracy on fresh renders."""
    model.eval()
    x, t = judge_batch(np.random.default_rng(seed), n)
    out = model(x)
    objects_ok = ((torch.sigmoid(out["objects"]) > 0.5) == (t["objects"] > 0.5)).all(1).float().mean().item()
    ctx_ok = (out["context"].argmax(1) == t["context"]).float().mean().item()
    model.train()
    return {"objects_exact": objects_ok, "context": ctx_ok}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=2500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=resources_dir() / JUDGE_DIR)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = Judge()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=args.steps)
    t0 = time.time()
    for step in range(args.steps):
        x, t = judge_batch(rng, args.batch)
        loss = loss_fn(model(x), t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.4f} {evaluate(model, 999, 128)} ({time.time() - t0:.0f}s)", flush=True)
    acc = evaluate(model, 12345, 1024)
    save_judge(model, args.out, {"steps": args.steps, "seed": args.seed, "heldout_accuracy": acc})
    print(f"saved {args.out}; accuracy on 1024 fresh renders: {acc}")


if __name__ == "__main__":
    main()
