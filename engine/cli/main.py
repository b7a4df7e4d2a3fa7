"""The ``bas`` command line: break a scene, generate from a pack, manage models."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import traceback
import warnings
from pathlib import Path
from types import FrameType
from typing import Any, Iterator, Sequence

from engine.cli.argtypes import GUIDANCE, NONNEGATIVE, POSITIVE, RANK, SEED, SIZE, STEPS, VIEWS, Parser
from engine.errors import BasError, short_reason


def _print_estimate(scene: Any, config: Any, model: str) -> int:
    from engine.training.estimate import estimate_run

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
    from engine.training.config import DEFAULT_PRESET, preset, recommended_preset

    name = args.preset or recommended_preset(args.model) or DEFAULT_PRESET
    overrides = {k: v for k, v in {
        "phase1_steps": args.phase1_steps, "phase2_steps": args.phase2_steps, "seed": args.seed,
        "device": args.device, "resolution": args.resolution, "lora_rank": args.lora_rank,
        "num_class_images": args.class_images, "checkpoint_every": args.checkpoint_every,
        "precision": args.precision, "attention_resolution": args.attention_side,
        "views_per_step": args.views, "class_images_per_step": args.class_per_step,
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
    return preset(name, **overrides).validate()


def _break(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from engine.formats.names import default_model
    from engine.jobs.breaking import BreakRequest, check_break, run_break
    from engine.jobs.events import TrainEvent
    from engine.scene import load_scene

    if args.init_words is not None and not all(w.strip() and len(w) <= 64 for w in args.init_words):
        raise BasError("--init-words: each word must be non-empty text of at most 64 characters")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scene = load_scene(args.scene, init_words=args.init_words, background=args.background)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    config = break_config(args)
    if not args.preset:
        from engine.training.config import DEFAULT_PRESET, recommended_preset

        rec = recommended_preset(args.model)
        print(f"preset {rec or DEFAULT_PRESET} ({'recommended by the model' if rec else 'the default'}; "
              "--preset chooses another)", file=sys.stderr)
    if args.estimate:
        return _print_estimate(scene, config, args.model or default_model())
    if not args.output:
        raise BasError("bas break needs -o/--output, the handle pack folder to write")
    out = Path(args.output)
    request = BreakRequest(scene, config, out, model=args.model, resume=args.resume, force=args.force,
                           keep_checkpoint=args.keep_checkpoints, storage=pack_storage(args))
    # Everything that can refuse the output runs now, not after an hour of training.
    if check_break(request).replaces:
        print(f"--force: the handle pack in {out} will be replaced once the new one is complete",
              file=sys.stderr)

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
        result = run_break(request, on_event, should_stop=lambda: stop["requested"])
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.close()
    if result.cancelled_at is not None:
        print(f"cancelled at step {result.cancelled_at}; resume with: bas break {args.scene} -o {out} --resume",
              file=sys.stderr)
        return 130
    print(f"wrote handle pack {out} ({', '.join(result.tokens)}) in {result.seconds:.0f} s")
    return 0


def image_paths(output: str, count: int) -> list[Path]:
    """Where ``bas generate``/``background`` put ``count`` images for ``-o OUTPUT``."""
    out = Path(output)
    if count == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i}{out.suffix or '.png'}") for i in range(1, count + 1)]


def _generate(args: argparse.Namespace) -> int:
    from engine.devices import pick_device
    from engine.compose.generate import generate, load_pack_model
    from engine.packs.pack import load_pack
    from engine.safe_output import check_output_files

    paths = image_paths(args.output, len(args.seeds) if args.seeds else args.n)
    check_output_files(paths, args.force)
    pack = load_pack(args.pack)
    comps = load_pack_model(pack, device=pick_device(args.device), model=args.model)
    images = generate(comps, args.prompt, n=args.n, seed=args.seed, steps=args.steps,
                      guidance=args.guidance, negative_prompt=args.negative, scheduler=args.scheduler,
                      size=args.size, batch_size=args.batch_size, seeds=args.seeds, pack=pack)
    for path, g in zip(paths, images):
        g.save(path)
        print(f"{path} (seed {g.seed})")
    return 0


def _models(args: argparse.Namespace) -> int:
    from engine.formats.names import HUB_MODELS, model_alias

    if args.action == "list":
        for m in HUB_MODELS:
            print(f"{m.hub_id:45s} {m.label}, {m.resolution} px, {m.size_bytes / 1e9:.1f} GB download, "
                  f"preset {m.recommended_preset}")
        return 0
    from engine.models import DEFAULT_HUB_MODEL, download_model, ensure_tiny_model

    if args.action == "download":
        path = download_model(model_alias(args.id) if args.id else DEFAULT_HUB_MODEL, progress=print)
        print(f"downloaded to {path}")
    elif args.action == "tiny":
        print(ensure_tiny_model(Path(args.id) if args.id else None))
    return 0


def _example(args: argparse.Namespace) -> int:
    from engine.example import make_example_scene
    from engine.safe_output import write_folder
    from engine.scene import save_scene, scene_entries

    scene = make_example_scene(seed=args.seed)
    write_folder(args.output, lambda tmp: save_scene(scene, tmp) and None, args.force, scene_entries, "scene")
    print(f"wrote example scene {args.output}")
    return 0


def add_training_options(p: argparse.ArgumentParser) -> None:
    """The options :func:`break_config` reads (``bas break`` and ``bas batch`` share them)."""
    from engine.training.config import PRESETS

    p.add_argument("--model", help="tiny-random, shapesworld, a diffusers folder, a .safetensors file or a hub id")
    p.add_argument("--preset", choices=list(PRESETS),
                   help="paper, quick, shapesworld or low-vram; default: the one the model recommends "
                   "(bas_preset.json in its folder; shapesworld for the offline model), else paper")
    p.add_argument("--phase1-steps", type=STEPS)
    p.add_argument("--phase2-steps", type=STEPS)
    p.add_argument("--seed", type=SEED)
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--resolution", type=SIZE, help="training resolution, a multiple of 8 (default: the model's)")
    p.add_argument("--no-prior", action="store_true", help="no prior preservation")
    p.add_argument("--class-images", type=POSITIVE, help="number of prior class images")
    p.add_argument("--lora-rank", type=RANK, help="phase 2 as a LoRA of this rank instead of full fine-tuning")
    p.add_argument("--no-text-encoder", action="store_true", help="do not train the text encoder in phase 2")
    p.add_argument("--precision", choices=["auto", "no", "fp16", "bf16"],
                   help="autocast (auto: bf16 or fp16 on CUDA, fp32 elsewhere; bf16 also runs on the CPU)")
    p.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations in backward (less memory)")
    p.add_argument("--8bit-adam", dest="adam_8bit", action="store_true",
                   help="8-bit AdamW moments (bitsandbytes on CUDA, torchao elsewhere: pip install '.[lowmem]')")
    p.add_argument("--step-in-backward", choices=["auto", "on", "off"], default="auto",
                   help="phase 2: step each weight inside backward, no gradient buffer but per-tensor "
                        "clipping (on); one step with the paper's global-norm clip (off); auto: off "
                        "unless the gradient buffer does not fit in free memory")
    p.add_argument("--attention-side", type=POSITIVE,
                   help="side of the cross-attention maps the attention loss pulls toward the masks (default: "
                        "latent/4, the paper's 16x16 on SD at 512 px, 8x8 on ShapesWorld; 16 is the reference "
                        "code's fixed level: on ShapesWorld it trades identity for prompt fidelity, docs/quality.md)")
    p.add_argument("--views", type=VIEWS,
                   help="views of the photo per step, each with its own concepts, flip, noise and timestep "
                        "(default 1, the paper's; more costs time per step and lowers the spread between "
                        "training seeds, docs/shapesworld.md)")
    p.add_argument("--class-per-step", type=VIEWS,
                   help="class images per step with the prior (default: one per view)")
    p.add_argument("--checkpoint-every", type=NONNEGATIVE)
    s = p.add_argument_group("pack storage (a full fine-tune's phase 2; a LoRA-trained one is stored as it is)")
    s.add_argument("--full-weights", action="store_true",
                   help="store every tuned tensor (SD 2.1: 4.6 GB in fp16) instead of the LoRA extracted from "
                        "the weight difference (the default; at most ~200 MB on SD 2.1)")
    s.add_argument("--weights-dtype", choices=["float16", "float32"], default="float16",
                   help="precision of the stored weights or extracted LoRA (default float16)")
    s.add_argument("--lora-energy", type=float, default=None,
                   help="share of each layer's weight difference (squared Frobenius norm) the extracted LoRA "
                        "keeps, in (0, 1] (default 0.9)")
    s.add_argument("--lora-rank-cap", type=RANK, default=None,
                   help="the extracted LoRA's highest rank per layer (default 64)")


def pack_storage(args: argparse.Namespace) -> Any:
    """The :class:`PackStorage` that the pack storage options ask for (checked)."""
    from engine.formats.results import DEFAULT_LORA_ENERGY, DEFAULT_LORA_RANK_CAP, PackStorage

    if args.full_weights and (args.lora_energy is not None or args.lora_rank_cap is not None):
        raise BasError("--lora-energy / --lora-rank-cap set how the LoRA is extracted; with --full-weights "
                       "there is none")
    storage = PackStorage(full_weights=args.full_weights, dtype=args.weights_dtype,
                          lora_energy=DEFAULT_LORA_ENERGY if args.lora_energy is None else args.lora_energy,
                          lora_rank_cap=DEFAULT_LORA_RANK_CAP if args.lora_rank_cap is None else args.lora_rank_cap)
    storage.check()
    return storage


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (its names are a contract other tools call)."""

    p = Parser(prog="bas", description="Break-A-Scene: one photo -> reusable text handles.")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("break", help="learn one handle per mask of a scene folder")
    b.add_argument("scene", help="folder with img.jpg and mask0.png, mask1.png ...")
    b.add_argument("-o", "--output", help="handle pack folder to write (required unless --estimate)")
    b.add_argument("--estimate", action="store_true",
                   help="measure a few steps, print the time and memory of the full run, and stop")
    add_training_options(b)
    b.add_argument("--init-words", nargs="+", help="one initializer word per mask, e.g. creature bowl stone")
    b.add_argument("--background", action="store_true", help="add a handle <bg> for the background")
    b.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
    b.add_argument("--keep-checkpoints", action="store_true")
    b.add_argument("--force", action="store_true",
                   help="replace the handle pack already in the output folder (kept until the new one is complete)")
    b.set_defaults(func=_break)

    g = sub.add_parser("generate", help="generate images from a handle pack")
    g.add_argument("pack")
    g.add_argument("prompt", help='e.g. "a photo of <asset0> at the beach"')
    g.add_argument("-o", "--output", required=True, help="image path; with --n > 1, OUT-1.png ... OUT-N.png")
    g.add_argument("--n", type=POSITIVE, default=1)
    g.add_argument("--seed", type=SEED, default=0)
    g.add_argument("--steps", type=POSITIVE, default=30)
    g.add_argument("--guidance", type=GUIDANCE, default=7.5)
    g.add_argument("--negative", help="negative prompt")
    g.add_argument("--seeds", type=SEED, nargs="+", help="explicit seeds, one image each (overrides --n/--seed)")
    g.add_argument("--scheduler", default="ddim", help="ddim (default, as the paper), dpmpp-2m, "
                                                       "dpmpp-2m-karras, euler, euler-a, unipc, pndm, ddpm")
    g.add_argument("--size", type=SIZE, help="image side in pixels, a multiple of 8 (default: the model's)")
    g.add_argument("--batch-size", type=POSITIVE, default=1, help="images per pipeline call")
    g.add_argument("--force", action="store_true", help="overwrite existing image files")
    g.add_argument("--model", help="override the pack's base model location")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    g.set_defaults(func=_generate)

    m = sub.add_parser("models", help="get base models")
    m.add_argument("action", choices=["download", "list", "tiny"],
                   help="download a hub model, list the offered ones with their sizes, or build the tiny test model")
    m.add_argument("id", nargs="?", help="hub id to download, or sd21 / sdxl (default: sd21, the paper's SD 2.1 "
                                         "base mirror, 5.2 GB; sdxl: SDXL base 1.0, 6.9 GB)")
    m.set_defaults(func=_models)

    e = sub.add_parser("example", help="write an example scene rendered by the project's own code")
    e.add_argument("output")
    e.add_argument("--seed", type=SEED, default=0)
    e.add_argument("--force", action="store_true", help="replace an example scene already in the folder")
    e.set_defaults(func=_example)

    from engine.cli.batch import add_command as add_batch
    from engine.cli.compose import add_commands
    add_commands(sub)
    add_batch(sub)
    return p


@contextlib.contextmanager
def _library_warnings_as_lines() -> Iterator[None]:
    """Warnings become one ``warning:`` line each (once per text); resource warnings are dropped."""
    seen: set[str] = set()

    def show(message: Warning | str, category: type[Warning], *rest: Any, **kw: Any) -> None:
        text = " ".join(str(message).split())
        if text and text not in seen:
            seen.add(text)
            print(f"warning: {text[:300]}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.simplefilter("ignore", ResourceWarning)
        warnings.showwarning = show
        yield


def _line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bas`` console script; returns the exit status.

    Every failure is one ``error:`` line on stderr and exit status 2 (130 when interrupted);
    ``--debug`` adds the traceback.
    """
    for lib in ("DIFFUSERS_VERBOSITY", "TRANSFORMERS_VERBOSITY"):
        os.environ.setdefault(lib, "error")  # their own notices would leak as raw log lines
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error already printed as one line (2)
        return int(e.code or 0) if not isinstance(e.code, str) else 2
    with _library_warnings_as_lines():
        try:
            return int(args.func(args))
        except KeyboardInterrupt:
            print("aborted", file=sys.stderr)
            return 130
        except (BasError, ValueError, OSError) as e:
            if args.debug:
                traceback.print_exc()
            print(f"error: {_line(e)}", file=sys.stderr)
            return 2
        except Exception as e:  # noqa: BLE001 - the last resort: never a bare traceback
            if args.debug:
                traceback.print_exc()
            print(f"error: unexpected {short_reason(e)}; run with --debug for the traceback", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
