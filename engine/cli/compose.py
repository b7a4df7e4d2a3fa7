"""``bas`` subcommands for composing with handles: variations, background, edit, pack inspect/export/import."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from engine.cli.argtypes import GUIDANCE, PIXELS, POSITIVE, RANK, SEED, SIZE, STRENGTH, int_in
from engine.errors import BasError


def _load(args: argparse.Namespace, outputs: list[Path]) -> tuple[Any, Any]:
    """The pack and its model, once the output files are known to be writable."""
    from engine.devices import pick_device
    from engine.compose.generate import load_pack_model
    from engine.packs.pack import load_pack
    from engine.safe_output import check_output_files

    check_output_files(outputs, args.force)
    pack = load_pack(args.pack)
    return pack, load_pack_model(pack, device=pick_device(args.device), model=args.model)


def _common(p: argparse.ArgumentParser, steps: int = 30) -> None:
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--steps", type=POSITIVE, default=steps)
    p.add_argument("--guidance", type=GUIDANCE, default=7.5)
    p.add_argument("--scheduler", default="ddim", help="ddim (default), dpmpp-2m, dpmpp-2m-karras, euler, "
                                                       "euler-a, unipc, pndm, ddpm")
    p.add_argument("--model", help="override the pack's base model location")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--force", action="store_true", help="overwrite existing output files")


def _variations(args: argparse.Namespace) -> int:
    from engine.compose.generate import VARIATION_TEMPLATES, object_tokens, variations

    cells = Path(args.cells) if args.cells else None
    if cells is not None and cells.is_dir() and any(cells.glob("r*-c*.png")) and not args.force:
        raise BasError(f"{cells}: holds cells of an earlier grid; add --force to overwrite them")
    pack, comps = _load(args, [Path(args.output)])
    grid = variations(comps, args.tokens or object_tokens(pack), args.templates or VARIATION_TEMPLATES,
                      seed=args.seed, steps=args.steps, guidance=args.guidance, scheduler=args.scheduler, pack=pack)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.image().save(out)
    if cells is not None:
        for i, row in enumerate(grid.cells):
            for j, g in enumerate(row):
                g.save(cells / f"r{i}-c{j}.png")
    print(f"{out}: {len(grid.rows)} handle sets x {len(grid.columns)} templates ({', '.join(grid.rows)})")
    return 0


def _background(args: argparse.Namespace) -> int:
    from engine.cli.main import image_paths
    from engine.compose.generate import render_background

    paths = image_paths(args.output, args.n)
    pack, comps = _load(args, paths)
    images = render_background(comps, pack, args.prompt, n=args.n, seed=args.seed, steps=args.steps,
                               guidance=args.guidance, scheduler=args.scheduler)
    for path, g in zip(paths, images):
        g.save(path)
        print(f"{path} (prompt '{g.prompt}', seed {g.seed})")
    return 0


def _edit(args: argparse.Namespace) -> int:
    from engine.compose.edit import blended_edit
    from engine.scene import load_image, load_mask

    pack, comps = _load(args, [Path(args.output)])
    scene = None if args.image else pack.scene()
    if args.image:
        image = load_image(args.image)
    elif scene is not None:
        image = scene.image
    else:
        raise BasError(f"{args.pack}: the pack stores no photo; pass --image")
    if args.mask:
        mask = load_mask(args.mask, size=(image.shape[1], image.shape[0]))
    elif args.concept is not None and scene is not None:
        if not 0 <= args.concept < len(scene.concepts):
            raise BasError(f"--concept {args.concept}: the pack has concepts 0..{len(scene.concepts) - 1}")
        mask = scene.concepts[args.concept].mask
    else:
        raise BasError("pass --mask (or --concept N to edit a concept's region of the pack's own photo)")
    res = blended_edit(comps, image, np.asarray(mask, np.float32), args.prompt, strength=args.strength,
                       steps=args.steps, seed=args.seed, guidance=args.guidance, scheduler=args.scheduler,
                       dilate_px=args.dilate, feather_px=args.feather, pack=pack)
    if res is None:
        return 130
    path = res.result.save(args.output)
    outside = res.blend_mask == 0
    same = np.asarray(res.result.image) == np.asarray(image)
    print(f"{path}: {100 * outside.mean():.1f}% of the pixels lie outside the feathered region; "
          f"{100 * same.all(-1)[outside].mean():.1f}% of those equal the source exactly")
    return 0


def _pack_inspect(args: argparse.Namespace) -> int:
    from engine.packs.interop import format_inspection, inspect_pack
    from engine.packs.pack import load_pack

    info = inspect_pack(load_pack(args.pack))
    print(json.dumps(info, indent=2) if args.json else format_inspection(info))
    return 0


def _pack_export(args: argparse.Namespace) -> int:
    from engine.packs.interop import export_pack
    from engine.packs.pack import load_pack

    fmts = "all" if args.format == "all" else [args.format]
    report = export_pack(load_pack(args.pack), args.output, fmts, rank=args.rank, layers=args.layers,
                         force=args.force)
    for f in report["files"]:
        print(f)
    lora = report["lora"]
    if lora is not None and lora.exact:
        print(f"LoRA: phase 2 was a LoRA (rank {lora.rank}); exported exactly")
    elif lora is not None:
        print(f"LoRA: extracted by SVD at rank {lora.rank} from {len(lora.layer_errors)} layers; relative "
              f"reconstruction error {lora.overall_error:.4g} overall, {lora.max_error:.4g} worst layer; "
              "change not carried (other layers): "
              + ", ".join(f"{k} {v:.3g}" for k, v in lora.not_carried.items()))
    return 0


def _pack_import(args: argparse.Namespace) -> int:
    from engine.packs.interop import import_embeddings
    from engine.formats.manifest import MANIFEST
    from engine.packs.pack import load_pack
    from engine.packs.archive import extract_pack_archive, import_pack_folder, is_archive

    first = Path(args.files[0])
    ours = len(args.files) == 1 and (is_archive(first) or (first.is_dir() and (first / MANIFEST).is_file()))
    replacing = (Path(args.output) / MANIFEST).is_file()
    if ours:
        out = (extract_pack_archive(first, args.output, force=args.force) if is_archive(first)
               else import_pack_folder(first, args.output, force=args.force))
    elif args.model is None:
        raise BasError("importing embedding files needs --model, the base model they were trained for")
    else:
        out = import_embeddings(args.files, args.model, args.output, resolution=args.resolution, force=args.force)
    pack = load_pack(out)
    note = " (replaced the earlier pack there: --force)" if replacing else ""
    print(f"wrote handle pack {out} ({', '.join(pack.tokens)}) for {pack.base_model}{note}")
    return 0


def _pack_archive(args: argparse.Namespace) -> int:
    from engine.packs.archive import archive_pack

    out = archive_pack(args.pack, args.output, force=args.force)
    print(f"{out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add variations, background, edit and pack subcommands to ``bas``'s subparsers."""
    v = sub.add_parser("variations", help="every handle, pair and all together in context templates, as a grid")
    v.add_argument("pack")
    v.add_argument("-o", "--output", required=True, help="grid image path")
    v.add_argument("--tokens", nargs="+", help="handles to vary (default: all but the background)")
    v.add_argument("--templates", nargs="+", help='templates with {} for the handles, e.g. "a photo of {} in the snow"')
    v.add_argument("--cells", help="also save each cell as a PNG with metadata in this folder")
    _common(v)
    v.set_defaults(func=_variations)

    b = sub.add_parser("background", help="render the background handle alone")
    b.add_argument("pack")
    b.add_argument("-o", "--output", required=True)
    b.add_argument("--prompt", default="a photo of {bg}", help="{bg} stands for the background handle")
    b.add_argument("--n", type=POSITIVE, default=1)
    _common(b)
    b.set_defaults(func=_background)

    e = sub.add_parser("edit", help="edit a region of a photo with a prompt naming a handle (blended latent diffusion)")
    e.add_argument("pack")
    e.add_argument("prompt", help='e.g. "a photo of <asset2>"')
    e.add_argument("-o", "--output", required=True)
    e.add_argument("--image", help="photo to edit (default: the pack's own photo)")
    e.add_argument("--mask", help="mask image of the region (white = edit)")
    e.add_argument("--concept", type=int_in(0, 63), help="use concept N's mask of the pack's own photo as the region")
    e.add_argument("--strength", type=STRENGTH, default=0.8, help="how much of the schedule runs, in (0, 1]")
    e.add_argument("--dilate", type=PIXELS, default=4, help="grow the region by this many pixels")
    e.add_argument("--feather", type=PIXELS, default=4, help="soft edge width in pixels")
    _common(e, steps=50)
    e.set_defaults(func=_edit)

    p = sub.add_parser("pack", help="inspect, export or import handle packs")
    psub = p.add_subparsers(dest="pack_command", required=True)
    i = psub.add_parser("inspect", help="tokens, base model, sizes and settings of a pack")
    i.add_argument("pack")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_pack_inspect)
    x = psub.add_parser("export", help="embeddings and LoRA for diffusers, A1111/ComfyUI and kohya")
    x.add_argument("pack")
    x.add_argument("--format", default="all", choices=["diffusers", "a1111", "kohya", "all"])
    x.add_argument("-o", "--output", required=True, help="folder to write")
    x.add_argument("--rank", type=RANK, default=16, help="LoRA rank when extracting from full fine-tuning")
    x.add_argument("--force", action="store_true", help="replace an earlier export in the folder")
    x.add_argument("--layers", default="all", choices=["all", "attention"],
                   help="layers extracted from full fine-tuning: every linear/conv layer, or attention only")
    x.set_defaults(func=_pack_export)
    m = psub.add_parser("import", help="import a pack (.zip/.tar archive or folder) or make one from "
                                       "diffusers/A1111 embedding files")
    m.add_argument("files", nargs="+", help="one pack archive or folder, or embedding files (.safetensors; "
                                            ".pt/.bin only if loadable with weights_only)")
    m.add_argument("--model", help="the base model the embeddings were trained for (embedding files only)")
    m.add_argument("-o", "--output", required=True)
    m.add_argument("--resolution", type=SIZE, default=512)
    m.add_argument("--force", action="store_true",
                   help="replace the handle pack already in the output folder (kept until the new one is complete)")
    m.set_defaults(func=_pack_import)
    a = psub.add_parser("archive", help="write a pack as one .zip file to share (import with bas pack import)")
    a.add_argument("pack")
    a.add_argument("-o", "--output", required=True, help="zip file to write")
    a.add_argument("--force", action="store_true", help="overwrite an existing zip file")
    a.set_defaults(func=_pack_archive)
