"""Which cross-attention level localises a scene's masks, on a given model (engine/training/attention_levels.py).

    python bench/attention_levels.py --model stabilityai/stable-diffusion-xl-base-1.0 --scene SCENE_DIR
    python bench/attention_levels.py --model tiny-random-sdxl --example      # runs; numbers meaningless
    python bench/attention_levels.py --pack PACK --scene SCENE_DIR          # a trained pack's handles

A scene folder is the reference layout (img.jpg + mask*.png, or the app's scene export); its
concepts' init words (``--words star circle``) are read when no pack is given. Prints one line per
cross-attention side: attention mass inside the mask, its lift over a uniform map and the IoU of
the map's top pixels with the mask, averaged over three noise levels of the photo's latents.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="base model reference (default: the pack's, else $BAS_MODEL)")
    ap.add_argument("--pack", help="a handle pack: its handles are the words read")
    ap.add_argument("--scene", help="scene folder (default: the pack's scene)")
    ap.add_argument("--example", action="store_true", help="use the built-in example scene")
    ap.add_argument("--words", nargs="+", help="one word per concept (default: init words)")
    ap.add_argument("--resolution", type=int, default=None)
    ap.add_argument("--timesteps", type=int, nargs="+", default=[250, 500, 750])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--bf16", action="store_true", help="run the UNet and text encoders in bf16")
    args = ap.parse_args()

    import torch

    from engine.devices import pick_device
    from engine.example import make_example_scene
    from engine.models import load_model
    from engine.scene import load_scene
    from engine.training.attention_levels import format_levels, measure_levels

    device = pick_device(args.device)
    pack = None
    if args.pack:
        from engine.compose.generate import load_pack_model
        from engine.packs.pack import load_pack

        pack = load_pack(args.pack)
        comps = load_pack_model(pack, device=device, model=args.model)
    else:
        comps = load_model(args.model, device=device)
    if args.bf16:
        for m in (comps.unet, *comps.text_encoders()):
            m.to(torch.bfloat16)
    scene = (make_example_scene(size=comps.resolution) if args.example else load_scene(args.scene) if args.scene
             else pack.scene() if pack is not None else None)
    if scene is None:
        ap.error("give --scene, --example or a --pack with a scene")
    words = args.words or ([c["token"] for c in pack.concepts] if pack is not None else None)
    scores = measure_levels(comps, scene, words, tuple(args.timesteps), args.resolution)
    latent = (args.resolution or comps.resolution) // comps.vae_scale
    print(f"{comps.ref} ({comps.family.name}), {latent}x{latent} latents; the engine's default side: "
          f"{comps.family.attention_side(comps.unet, latent)}")
    print(format_levels(scores))


if __name__ == "__main__":
    main()
