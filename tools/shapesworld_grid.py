"""Sample a grid from the ShapesWorld model for a dozen prompts (docs/shapesworld_grid.png).

    python tools/shapesworld_grid.py [--model shapesworld] [--seeds 4] [--steps 30] [--guidance 5] [--control 96]

With ``--control N`` it also prints how often the judge finds the prompted shape, colour, pattern
and context in N images of random single-object prompts (engine.shapesworld.evaluate.prompt_control).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.compose.generate import generate  # noqa: E402
from engine.models import load_model  # noqa: E402

PROMPTS = [
    "a photo of a red circle on a green background",
    "a photo of a blue square on a gray background",
    "a photo of a yellow triangle at the beach",
    "a photo of a purple star in the snow",
    "a photo of a white ring under a night sky",
    "a photo of a green diamond on a wooden table",
    "a photo of a red striped square at the beach",
    "a photo of a blue dotted circle in the snow",
    "a photo of a yellow star and a blue ring on a gray background",
    "a photo of a white circle and a red triangle on a green background",
    "a photo of a purple dotted diamond on a wooden table",
    "a photo of a green striped triangle under a night sky",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="shapesworld")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "shapesworld_grid.png")
    ap.add_argument("--control", type=int, default=0, help="also measure prompt control on N random prompts")
    args = ap.parse_args()
    comps = load_model(args.model)
    cell = 128
    font = ImageFont.load_default(size=15)
    labels = [p.removeprefix("a photo of ") for p in PROMPTS]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = 12 + int(max(measure.textlength(t, font=font) for t in labels))
    grid = Image.new("RGB", (label_w + cell * args.seeds, cell * len(PROMPTS)), "white")
    draw = ImageDraw.Draw(grid)
    for r, prompt in enumerate(PROMPTS):
        imgs = generate(comps, prompt, n=args.seeds, seed=0, steps=args.steps, guidance=args.guidance)
        draw.text((6, r * cell + cell // 2 - 8), labels[r], fill="black", font=font)
        for c, g in enumerate(imgs):
            grid.paste(g.image.resize((cell, cell), Image.NEAREST), (label_w + c * cell, r * cell))
        print(prompt, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out)
    print(f"wrote {args.out} ({np.asarray(grid).shape[1]}x{np.asarray(grid).shape[0]})")
    if args.control:
        from engine.shapesworld.evaluate import prompt_control
        from engine.shapesworld.judge import load_judge

        r = prompt_control(comps, load_judge(), n=args.control, steps=args.steps, guidance=args.guidance)
        print(f"prompt control on {args.control} single-object prompts (judge top-1 = prompted): "
              + ", ".join(f"{k} {r[k]:.2f} (chance {r['chance_' + k]:.2f})" for k in ("shape", "colour", "pattern", "context")))


if __name__ == "__main__":
    main()
