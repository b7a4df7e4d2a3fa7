"""Train the ShapesWorld judge (attribute classifier) on rendered images; report fresh-render accuracy.

    python tools/train_shapesworld_judge.py --out ~/.cache/bas-desktop/judge   # a new folder
    python tools/train_shapesworld_judge.py --out resources/shapesworld-judge --replace  # the shipped one

The judge sees only renders of the world (every combination, held-out pairs included), never a
model's samples. Half of each batch is blurred and noised a little, so the soft edges of a
generator's 64 px images read as the shapes they are rather than as unseen inputs. ``--small``
renders that fraction of the images with smaller objects than the world's (a model's samples
draw them); ``--init`` starts from a saved judge instead of from scratch.

    python tools/train_shapesworld_judge.py --init resources/shapesworld-judge --small 0.5 \
        --steps 3000 --lr 1e-3 --out ~/.cache/bas-desktop/judge-small
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
from engine.shapesworld.judge import (JUDGE_DIR, SMALLEST, Judge, accuracy_on_renders, judge_batch,  # noqa: E402
                                      load_judge, save_judge)


def loss_fn(out: dict[str, torch.Tensor], t: dict[str, torch.Tensor]) -> torch.Tensor:
    loss = F.cross_entropy(out["context"], t["context"])
    for k in ("objects", "shapes", "colors", "patterns"):
        loss = loss + F.binary_cross_entropy_with_logits(out[k], t[k]) * (10.0 if k == "objects" else 1.0)
    return loss


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Blur (Gaussian, sigma 0.3-1.0 px) and noise (std up to 0.05) on a random half of the batch."""
    b = x.shape[0]
    pick = torch.rand(b, generator=gen) < 0.5
    if not pick.any():
        return x
    out = x.clone()
    for i in pick.nonzero().flatten().tolist():
        sigma = 0.3 + 0.7 * float(torch.rand(1, generator=gen))
        k = torch.arange(-2, 3, dtype=torch.float32)
        w = torch.exp(-(k ** 2) / (2 * sigma ** 2))
        w = w / w.sum()
        img = out[i:i + 1]
        img = F.conv2d(F.pad(img, (2, 2, 0, 0), mode="replicate"), w.view(1, 1, 1, 5).repeat(3, 1, 1, 1), groups=3)
        img = F.conv2d(F.pad(img, (0, 0, 2, 2), mode="replicate"), w.view(1, 1, 5, 1).repeat(3, 1, 1, 1), groups=3)
        noise = torch.randn(img.shape, generator=gen) * 0.05 * float(torch.rand(1, generator=gen))
        out[i:i + 1] = img + noise
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--width", type=int, default=48)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--small", type=float, default=0.0, help="fraction of images with shrunk objects")
    ap.add_argument("--init", type=Path, help="a saved judge to start from (its width is kept)")
    ap.add_argument("--out", type=Path, required=True,
                    help=f"a new folder for the judge (the shipped one is {resources_dir() / JUDGE_DIR})")
    ap.add_argument("--replace", action="store_true", help="replace a judge already in --out")
    args = ap.parse_args(argv)
    if (args.out / "judge.safetensors").exists() and not args.replace:
        raise SystemExit(f"{args.out} already holds a judge: choose another --out, or --replace to overwrite it")
    small = (SMALLEST, SMALLEST + (1 - SMALLEST) / 2)  # the lower half of the shrunk sizes
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = load_judge(args.init).train() if args.init else Judge(width=args.width)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps)
    t0 = time.time()
    for step in range(args.steps):
        x, t = judge_batch(rng, args.batch, small=args.small)
        loss = loss_fn(model(augment(x, gen)), t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0 or step == args.steps - 1:
            model.eval()
            acc = accuracy_on_renders(model, 256, seed=999)
            acc_small = accuracy_on_renders(model, 256, seed=998, scale=small)
            model.train()
            print(f"step {step} loss {loss.item():.4f} {acc} small {acc_small} ({time.time() - t0:.0f}s)", flush=True)
    model.eval()
    acc = accuracy_on_renders(model, 1024, seed=12345)
    acc_small = accuracy_on_renders(model, 1024, seed=12346, scale=small)
    save_judge(model, args.out, {"steps": args.steps, "seed": args.seed, "batch": args.batch, "lr": args.lr,
                                 "augment": "blur+noise on half", "small": args.small,
                                 "init": str(args.init) if args.init else None,
                                 "minutes": round((time.time() - t0) / 60, 1),
                                 "fresh_render_accuracy": acc, "fresh_small_render_accuracy": acc_small})
    print(f"saved {args.out}; accuracy on 1024 fresh renders: {acc}; with small objects: {acc_small}")


if __name__ == "__main__":
    main()
