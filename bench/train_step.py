"""ms/step and peak memory of our trainer versus the reference's per-step design, in our trainer.

The second arm ("reference") is the reference code's per-step design (google/break-a-scene
``train.py``) rebuilt inside our trainer, with our losses and data. Per step it does what the
reference does and ours does not:

* a dense attention processor on every attention layer; each softmax output is cloned (what the
  reference's fp16 cast amounts to; in fp32 its in-place edit breaks autograd), its instance half
  is copied back into it in place and kept when it has at most 32x32 queries (self-attention
  too); the loss's aggregation first divides every kept map by the step count (a copy of each),
  and the kept maps are dropped after backward, before the optimizer step;
* the photo and the step's class image are encoded with the VAE (ours caches their posteriors);
* phase 1 trains the whole token table with AdamW and restores every old row after each step;
  phase 2 trains the whole table too; every gradient is held until one ``optimizer.step()``,
  after the global-norm clip;
* fp16 autocast with a grad scaler and an fp16 VAE on CUDA, fp32 elsewhere (its default
  ``--mixed_precision fp16`` needs CUDA).

It is not the reference script: its data loading, logging and accelerate wrapper are not here.
"ours" is our trainer as it ships (phase 2's step mode chosen by free memory unless
``--ours-step-in-backward`` says), plus the flags. Both use the paper's recipe (prior batch, text
encoder trained in phase 2) unless flags say otherwise.

Each configuration runs in its own subprocess so the peak RSS (CPU) or peak allocated memory
(CUDA) belongs to it alone. The first step of each phase is a warm-up and is not timed. Each
step is timed twice: wall clock, and the process's CPU time (all its threads), which other work on
the same cores changes much less; with ``--threads 1`` the two agree on an idle machine.

    python bench/train_step.py                      # tiny model and SD2.1-base-shaped UNet
    python bench/train_step.py --models tiny --steps 5
    python bench/train_step.py --models sd21 --sd21-resolution 512 --ours-checkpointing --ours-precision bf16
    python bench/train_step.py --models sdxl --steps 2     # SDXL-shaped, 1024 px, the sdxl preset

The last line reads ``ratio time=T memory=M``: ours over reference, phase 2, of the last model.

``sdxl`` is the SDXL base architecture from the shipped config (resources/configs/sdxl-base.json,
random weights, never downloaded) trained with the ``sdxl`` preset as it ships: LoRA rank 16 of
the UNet and both text encoders, bf16 autocast with the frozen weights stored in bf16, gradient
checkpointing, 8-bit AdamW where one runs (else torch AdamW, said in the output), prior
preservation (one class image of one step). Only our arm runs for it: the reference's design
(fp32 on the CPU, dense maps of every attention layer) is not a recipe anyone would run at
1024 px. ``--sdxl-full`` trains phase 2 as a full fine-tune instead (fp32 weights).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from engine.training.attention import AttentionStore  # noqa: E402


class ReferenceDesignProcessor:
    """The reference's attention processor and attention-store controller, as one callable."""

    def __init__(self, kept: list[torch.Tensor], store: AttentionStore, name: str, res: int) -> None:
        self.kept, self.store, self.name, self.res = kept, store, name, res

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):  # type: ignore[no-untyped-def]
        is_cross = encoder_hidden_states is not None
        ctx = encoder_hidden_states if is_cross else hidden_states
        b = hidden_states.shape[0]
        q = attn.head_to_batch_dim(attn.to_q(hidden_states))
        k = attn.head_to_batch_dim(attn.to_k(ctx))
        v = attn.head_to_batch_dim(attn.to_v(ctx))
        probs = attn.get_attention_scores(q, k, None).clone()
        half = probs.shape[0] // 2
        instance = probs[half:]
        if probs.shape[1] <= 32 ** 2:
            self.kept.append(instance)
        probs[half:] = instance  # the controller writes its (unchanged) slice back in place
        if is_cross and probs.shape[1] == self.res * self.res:
            self.store.maps[self.name] = probs.reshape(b, attn.heads, *probs.shape[1:]).mean(1)
        out = attn.batch_to_head_dim(torch.bmm(probs, v))
        return attn.to_out[1](attn.to_out[0](out)) / attn.rescale_output_factor


def sd21_components():  # type: ignore[no-untyped-def]
    """Random-init SD2.1-base-shaped UNet, VAE and text encoder from the shipped config."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from engine.models import SDComponents, clip_tokenizer
    from engine.paths import resources_dir

    cfg = json.loads((resources_dir() / "configs" / "sd21-base.json").read_text())
    torch.manual_seed(0)
    te_cfg = {k: v for k, v in cfg["text_encoder"].items() if k not in ("architectures", "torch_dtype")}
    return SDComponents(
        unet=UNet2DConditionModel.from_config(cfg["unet"]), vae=AutoencoderKL.from_config(cfg["vae"]),
        text_encoder=CLIPTextModel(CLIPTextConfig(**te_cfg)), tokenizer=clip_tokenizer(),
        scheduler=DDPMScheduler.from_config(cfg["scheduler"]), ref="random-sd21-base")


def sdxl_components(dtype: torch.dtype):  # type: ignore[no-untyped-def]
    """Random-init SDXL-base-shaped UNet and text encoders (built in ``dtype``, as the trainer
    loads frozen weights for a LoRA recipe) and an fp32 VAE, from the shipped config."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from engine.families import SDXL
    from engine.models import SDComponents, clip_tokenizer
    from engine.paths import resources_dir

    cfg = json.loads((resources_dir() / "configs" / "sdxl-base.json").read_text())
    torch.manual_seed(0)

    def te_cfg(part: str) -> CLIPTextConfig:
        return CLIPTextConfig(**{k: v for k, v in cfg[part].items() if k not in ("architectures", "torch_dtype")})

    vae = AutoencoderKL.from_config(cfg["vae"])
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # never a full fp32 copy of the 2.6 B-parameter UNet in memory
    try:
        unet = UNet2DConditionModel.from_config(cfg["unet"])
        te1, te2 = CLIPTextModel(te_cfg("text_encoder")), CLIPTextModelWithProjection(te_cfg("text_encoder_2"))
    finally:
        torch.set_default_dtype(default)
    tok2 = clip_tokenizer()
    tok2.pad_token = cfg["tokenizer_2_pad_token"]
    comps = SDComponents(unet=unet, vae=vae, text_encoder=te1, tokenizer=clip_tokenizer(),
                         scheduler=DDPMScheduler.from_config(cfg["scheduler"]), ref="random-sdxl-base",
                         text_encoder_2=te2, tokenizer_2=tok2)
    SDXL.prepare(comps)
    return comps


def _rss_mb() -> float:
    """Current resident memory of this process (Linux), 0 where unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _stamp(stamps: list[tuple[int, float, float]], phase: int | None) -> None:
    now = time.perf_counter()
    stamps.append((phase or 0, now, time.process_time()))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("progress " + json.dumps({"phase": phase, "t": now, "peak_mb": peak}), file=sys.stderr, flush=True)


def _progress(stderr: str) -> dict:
    """What a killed run's progress lines say: steps finished per phase, its last step's time and
    the peak RSS at its last finished step (a lower bound on the peak it died at)."""
    rows = [json.loads(line[9:]) for line in stderr.splitlines() if line.startswith("progress ")]
    out: dict = {"phase1_steps": sum(r["phase"] == 1 for r in rows), "phase2_steps": sum(r["phase"] == 2 for r in rows)}
    if rows:
        out["peak_mb"] = rows[-1]["peak_mb"]
    if len(rows) > 1:
        out["last_step_ms"] = 1000 * (rows[-1]["t"] - rows[-2]["t"])
    p1 = [1000 * (b["t"] - a["t"]) for a, b in zip(rows, rows[1:]) if a["phase"] == b["phase"] == 1]
    if p1:  # phase-1 steps after the first (the warm-up), as a finished run reports them
        out["phase1_ms"] = sum(p1) / len(p1)
    return out


def _describe(p: dict) -> str:
    if "peak_mb" not in p:
        return "no step finished"
    last = f", last step {p['last_step_ms']:.0f} ms" if "last_step_ms" in p else ""
    last += f", phase 1 {p['phase1_ms']:.0f} ms/step" if "phase1_ms" in p else ""
    return (f"finished {p['phase1_steps']} phase-1 and {p['phase2_steps']} phase-2 steps{last}, "
            f"peak {p['peak_mb']:.0f} MB at the last finished step")


def run_one(model: str, mode: str, steps: int, resolution: int, device: str, train_te: bool,
            prior: bool = False, checkpointing: bool = False, precision: str = "no",
            adam8: bool = False, lora_rank: int = 0, step_in_backward: bool | None = None,
            sdxl_full: bool = False, phases: str = "both") -> dict:
    """Train ``steps`` steps of each phase in this process; return timings and peak memory.

    "reference" is the reference's per-step design in our trainer (the module docstring lists
    what it does); "ours" is our trainer with gradient checkpointing when ``checkpointing`` is
    set, autocast at ``precision`` ("no", "bf16", "fp16"), 8-bit AdamW with ``adam8``, a LoRA
    phase 2 with ``lora_rank`` and phase 2's step mode from ``step_in_backward`` (None: chosen
    by free memory). Each step also writes a ``progress`` line to stderr, so a run the kernel
    kills for memory still reports how far it got and its peak so far. ``phases`` "1" or "2" runs
    only that phase (phase 2 alone starts from the handles' initial rows: the same step cost, and
    the setup and phase 1 of a large model are not paid to measure phase 2).
    """
    from engine.training.config import TrainConfig
    from engine.example import make_example_scene
    from engine.models import load_model
    from engine.training.trainer import BreakTrainer

    ref = mode == "reference"
    if model == "sdxl":
        from engine.training.config import PRESETS

        recipe = PRESETS["sdxl"]
        checkpointing, precision = recipe["gradient_checkpointing"], recipe["precision"]
        adam8, lora_rank = recipe["use_8bit_adam"], 0 if sdxl_full else recipe["lora_rank"]
        frozen = torch.bfloat16 if lora_rank and precision == "bf16" else torch.float32
    if model == "tiny":
        comps = load_model("tiny-random", device=device)
    else:
        comps = sdxl_components(frozen) if model == "sdxl" else sd21_components()
    res = resolution or comps.resolution
    ref_precision = "fp16" if device.startswith("cuda") else "no"
    cfg = TrainConfig(phase1_steps=0 if phases == "2" else steps, phase2_steps=0 if phases == "1" else steps,
                      prior_preservation=prior, resolution=res,
                      num_class_images=1, class_inference_steps=1, device=device, checkpoint_every=0,
                      preview_every=0, train_text_encoder=train_te,
                      step_in_backward=False if ref else step_in_backward,
                      gradient_checkpointing=checkpointing and not ref,
                      precision=ref_precision if ref else precision,  # type: ignore[arg-type]
                      use_8bit_adam=adam8 and not ref,
                      lora_rank=lora_rank if not ref and lora_rank else None)
    stamps: list[tuple[int, float, float]] = []
    kept: list[torch.Tensor] = []
    setup_mb: list[float] = []
    notes: list[str] = []

    def drop_kept(*_: object) -> None:  # the reference clears its store right after backward
        kept.clear()

    pixels: list[torch.Tensor] = []

    class Bench(BreakTrainer):
        ready = False

        def _encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            if ref and not self.ready:  # setup encodes the class images in chunks, then the photo
                pixels.append(images)
            return super()._encode(images)

        def _setup(self) -> None:
            if ref and self.device.type == "cuda":
                self._model_arg.vae.to(torch.float16)  # type: ignore[union-attr]
            super()._setup()
            self.ready = True
            setup_mb.append(_rss_mb())
            if not ref:
                return
            self.photo_pixels = pixels[-1]  # [2, 3, H, W]: the photo and its flip
            self.class_pixels = torch.cat(pixels[:-1]) if len(pixels) > 1 else None
            procs = {name: ReferenceDesignProcessor(kept, self.store, name.removesuffix(".processor"), self.attn_res)
                     for name in self.comps.unet.attn_processors}
            self.comps.unet.set_attn_processor(procs)
            aggregate = self.store.aggregate

            def average_then_aggregate(res: int) -> torch.Tensor:
                averaged = [m / 1 for m in kept]  # get_average_attention: every kept map over cur_step (1)
                del averaged
                return aggregate(res)
            self.store.aggregate = average_then_aggregate  # type: ignore[method-assign]
            self.table = self.emb.base.weight.detach().clone()

        def _step_posterior(self, flips: list[int], js: list[int] | None) -> tuple[torch.Tensor, torch.Tensor]:
            if not ref:
                return super()._step_posterior(flips, js)
            batch = self.photo_pixels[flips]
            if js is not None and self.class_pixels is not None:
                batch = torch.cat([batch, self.class_pixels[js]])
            return self._encode(batch)

        def _phase1_optimizer(self) -> torch.optim.Optimizer:
            if not ref:
                return super()._phase1_optimizer()
            self.emb.base.weight.requires_grad_(True)  # the whole table, AdamW state for every row
            opt = torch.optim.AdamW([self.emb.handles, self.emb.base.weight], lr=self.cfg.phase1_lr,
                                    weight_decay=self.cfg.adam_weight_decay)
            opt.register_step_pre_hook(drop_kept)

            def restore(*_: object) -> None:
                with torch.no_grad():
                    self.emb.base.weight.copy_(self.table)
            opt.register_step_post_hook(restore)
            return opt

        def _enter_phase2(self, state: dict | None):  # type: ignore[no-untyped-def]
            opt = super()._enter_phase2(state)
            if self.phase2 is not None:
                notes.extend(self.phase2.notes)
            if ref and isinstance(opt, torch.optim.Optimizer):
                if self.cfg.train_text_encoder:  # the reference's phase 2 trains the table too
                    self.emb.base.weight.requires_grad_(True)
                    opt.add_param_group({"params": [self.emb.base.weight], "lr": self.cfg.phase2_lr})
                opt.register_step_pre_hook(drop_kept)
            return opt

    with tempfile.TemporaryDirectory() as work:
        trainer = Bench(make_example_scene(size=res), cfg, comps, work,
                        callback=lambda e: e.kind == "step" and _stamp(stamps, e.phase))
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.run()
    out: dict = {"model": model, "mode": mode, "resolution": res, "latent": res // comps.vae_scale,
                 "attention": trainer.attn_res, "notes": notes,
                 "precision": cfg.precision, "checkpointing": cfg.gradient_checkpointing,
                 "adam8": cfg.use_8bit_adam, "lora_rank": cfg.lora_rank,
                 "in_backward": any("inside backward" in n for n in notes),
                 "setup_mb": setup_mb[0] if setup_mb else 0.0}
    prev, prev_cpu = t0, c0
    per_phase: dict[int, list[float]] = {1: [], 2: []}
    cpu_phase: dict[int, list[float]] = {1: [], 2: []}
    for phase, t, c in stamps:
        per_phase[phase].append(t - prev)
        cpu_phase[phase].append(c - prev_cpu)
        prev, prev_cpu = t, c
    for phase in (1, 2):
        for key, times in ((f"phase{phase}_ms", per_phase[phase]), (f"phase{phase}_cpu_ms", cpu_phase[phase])):
            timed = times[1:] or times
            out[key] = 1000 * sum(timed) / len(timed) if timed else float("nan")
    if device.startswith("cuda"):
        out["peak_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    else:
        out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["tiny", "sd21"], choices=["tiny", "sd21", "sdxl"])
    ap.add_argument("--steps", type=int, default=3, help="steps per phase (the first is warm-up)")
    ap.add_argument("--sd21-resolution", type=int, default=256,
                    help="image side for the SD2.1-shaped model (256 px = 32x32 latents fits 24 GB RAM)")
    ap.add_argument("--tiny-resolution", type=int, default=128,
                    help="image side for the tiny model (its VAE halves: 128 px = 64x64 latents, as SD at 512 px)")
    ap.add_argument("--sdxl-resolution", type=int, default=1024, help="image side for the SDXL-shaped model")
    ap.add_argument("--sdxl-full", action="store_true", help="SDXL: phase 2 as a full fine-tune, not the preset's LoRA")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--no-text-encoder", action="store_true",
                    help="do not train the text encoder in phase 2 (the paper and the reference train it)")
    ap.add_argument("--no-prior", action="store_true",
                    help="no prior-preservation batch (the paper and the reference use one: batch 2)")
    ap.add_argument("--ours-checkpointing", action="store_true",
                    help="gradient checkpointing in our arm (the reference code cannot use it)")
    ap.add_argument("--ours-precision", default="no", choices=["no", "bf16", "fp16"],
                    help="autocast in our arm (bf16 runs on CPUs with AVX512-BF16; the reference is fp32 on the CPU)")
    ap.add_argument("--ours-8bit-adam", action="store_true",
                    help="8-bit AdamW in our arm (torchao on the CPU, bitsandbytes on CUDA)")
    ap.add_argument("--ours-lora-rank", type=int, default=0,
                    help="phase 2 as a LoRA of this rank in our arm (the Low-VRAM preset uses 16)")
    ap.add_argument("--ours-step-in-backward", default="auto", choices=["auto", "on", "off"],
                    help="phase 2's step mode in our arm (auto: as the trainer chooses by free memory)")
    ap.add_argument("--phases", default="both", choices=["both", "1", "2"],
                    help="run only phase 1 or only phase 2 (e.g. SDXL at 1024 px: phase 2 without paying phase 1)")
    ap.add_argument("--one", nargs=2, metavar=("MODEL", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        model, mode = args.one
        res = {"tiny": args.tiny_resolution, "sd21": args.sd21_resolution, "sdxl": args.sdxl_resolution}[model]
        print(json.dumps(run_one(model, mode, args.steps, res, args.device, not args.no_text_encoder,
                                 not args.no_prior, args.ours_checkpointing, args.ours_precision,
                                 args.ours_8bit_adam, args.ours_lora_rank,
                                 {"auto": None, "on": True, "off": False}[args.ours_step_in_backward],
                                 args.sdxl_full, args.phases)))
        return
    rows = []
    for model in args.models:
        for mode in (("ours",) if model == "sdxl" else ("ours", "reference")):
            cmd = [sys.executable, __file__, "--one", model, mode, "--steps", str(args.steps),
                   "--sd21-resolution", str(args.sd21_resolution), "--tiny-resolution", str(args.tiny_resolution),
                   "--sdxl-resolution", str(args.sdxl_resolution),
                   "--device", args.device, "--phases", args.phases,
                   "--threads", str(args.threads), "--ours-precision", args.ours_precision,
                   "--ours-lora-rank", str(args.ours_lora_rank),
                   "--ours-step-in-backward", args.ours_step_in_backward] + [f for f, on in (
                       ("--no-text-encoder", args.no_text_encoder), ("--no-prior", args.no_prior),
                       ("--ours-checkpointing", args.ours_checkpointing),
                       ("--ours-8bit-adam", args.ours_8bit_adam), ("--sdxl-full", args.sdxl_full)) if on]
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            if proc.returncode != 0:
                why = ("killed: out of memory" if proc.returncode in (-9, 137)
                       else [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("progress ")][-1:])
                progress = _progress(proc.stderr)
                print(f"{model}/{mode} failed (exit {proc.returncode}): {why}; {_describe(progress)}", flush=True)
                rows.append({"model": model, "mode": mode, "failed": True, "oom": proc.returncode in (-9, 137),
                             **progress})
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            label = "ours" if mode == "ours" else "reference's per-step design, in our trainer"
            print(f"{model:5s} {label}: {row['resolution']}px ({row['latent']}x{row['latent']} latents): "
                  f"phase1 {row['phase1_ms']:.0f} ms/step (CPU {row['phase1_cpu_ms']:.0f}), "
                  f"phase2 {row['phase2_ms']:.0f} ms/step (CPU {row['phase2_cpu_ms']:.0f}), "
                  f"peak {row['peak_mb']:.0f} MB ({row['peak_mb'] - row['setup_mb']:.0f} MB above the loaded "
                  f"model and scene; {row['precision']}, checkpointing {row['checkpointing']}, "
                  f"8-bit Adam {row['adam8']}, LoRA rank {row['lora_rank']}, "
                  f"phase 2 steps inside backward {row['in_backward']}, attention at {row['attention']}x"
                  f"{row['attention']})", flush=True)
            if model == "sdxl":
                gib = row["peak_mb"] / 1024
                print(f"sdxl: peak {gib:.1f} GiB of RAM: {'fits' if gib < 24 else 'does not fit'} 24 GB; "
                      f"phase 2: {'; '.join(row['notes']) or 'no notes'}", flush=True)
                print("sdxl on a GPU (when one is lent): python bench/train_step.py --models sdxl --device cuda "
                      "--steps 5  # peak is torch.cuda.max_memory_allocated\n"
                      "  bas break SCENE -o PACK --model stabilityai/stable-diffusion-xl-base-1.0 --preset sdxl "
                      "--device cuda   # the real model, after bas models download sdxl", flush=True)
    for model in args.models:
        ours = next((r for r in rows if r["model"] == model and r["mode"] == "ours" and "failed" not in r), None)
        ref = next((r for r in rows if r["model"] == model and r["mode"] == "reference" and "failed" not in r), None)
        if ours and ref:
            above = (ours['peak_mb'] - ours['setup_mb']) / max(1.0, ref['peak_mb'] - ref['setup_mb'])
            print(f"{model}: ours/reference phase1 time {ours['phase1_ms'] / ref['phase1_ms']:.2f} "
                  f"(CPU {ours['phase1_cpu_ms'] / ref['phase1_cpu_ms']:.2f}), "
                  f"phase2 time {ours['phase2_ms'] / ref['phase2_ms']:.2f} "
                  f"(CPU {ours['phase2_cpu_ms'] / ref['phase2_cpu_ms']:.2f}), memory {ours['peak_mb'] / ref['peak_mb']:.2f} "
                  f"(training memory above the loaded model {above:.2f})")
    last = args.models[-1]
    ours = next((r for r in rows if r["model"] == last and r["mode"] == "ours" and "failed" not in r), None)
    ref = next((r for r in rows if r["model"] == last and r["mode"] == "reference" and "failed" not in r), None)
    if ours and ref:
        print(f"ratio time={ours['phase2_ms'] / ref['phase2_ms']:.2f} memory={ours['peak_mb'] / ref['peak_mb']:.2f}")
        return
    dead = next((r for r in rows if r["model"] == last and r["mode"] == "reference" and r.get("oom")), None)
    if ours and dead and "peak_mb" in dead:
        # The reference never reached a steady phase 2: its peak so far bounds the ratio from above.
        p1 = f"; phase 1 time {ours['phase1_ms'] / dead['phase1_ms']:.2f}" if "phase1_ms" in dead else ""
        print(f"ratio time=n/a memory<={ours['peak_mb'] / dead['peak_mb']:.2f} (reference out of memory{p1})")


if __name__ == "__main__":
    main()
