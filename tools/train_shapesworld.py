"""Train the ShapesWorld text-to-image model (SD architecture, 64 px) on a CPU or a GPU, resumably.

Same component classes as Stable Diffusion: AutoencoderKL (2 levels: 64 px -> 32x32x4 latents),
UNet2DConditionModel with cross-attention at 16x16 and 8x8, CLIPTextModel with the real CLIP
tokenizer, a DDIM scheduler for inference. The VAE is trained first (L1 + MSE reconstruction + a
small KL) or reused from a saved model (``--vae-from``); then the UNet and text encoder train
together on captions (10% dropped for classifier-free guidance) with min-SNR-5 loss weighting and
an exponential moving average of the weights (the EMA weights are the ones exported).

Training state (weights, AdamW and EMA state, both random generators, step, loss log, wall time
per session) is checkpointed to ``--workdir`` every ``--ckpt-minutes`` and at the end of each
session, so a long run is split over several sessions and resumes exactly:

    python tools/train_shapesworld.py --vae-from resources/shapesworld --te-width 128 --te-layers 4 \\
        --steps 10000 --minutes 135 --threads 2 --compile  # first session
    python tools/train_shapesworld.py --resume --minutes 150   # every later one
    python tools/train_shapesworld.py --export resources/shapesworld   # EMA weights -> model folder

The learning rate warms up, stays constant and decays (cosine to 10%) over the last
``--decay-frac`` of ``--steps``; EMA weights are usable at any step, so an export in the constant
stretch is a fair snapshot. Architecture and schedule arguments are stored in the checkpoint and
taken from it on ``--resume``.

A 3-level VAE (16x16 latents) was tried for the first model and dropped: after 1000 steps it
still lost the objects' colours (MSE 0.070 on fresh renders against 0.039 for the 2-level one).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel  # noqa: E402
from diffusers.training_utils import EMAModel  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel  # noqa: E402

from engine.models import clip_tokenizer  # noqa: E402
from engine.shapesworld.world import training_batch  # noqa: E402

SIZE = 64
CKPT = "train_state.pt"
DEFAULT_WORKDIR = Path.home() / ".cache" / "bas-desktop" / "shapesworld2"


def build_vae(seed: int) -> AutoencoderKL:
    """The random-init VAE (64 px <-> 32x32x4)."""
    torch.manual_seed(seed)
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, sample_size=SIZE,
                         block_out_channels=[32, 64], layers_per_block=1, norm_num_groups=8,
                         down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2)


def build_denoiser(seed: int, te_width: int, te_layers: int,
                   unet_channels: tuple[int, ...]) -> tuple[UNet2DConditionModel, CLIPTextModel]:
    """The random-init UNet and text encoder.

    Eight norm groups: 32 groups over 32 channels is instance normalisation, which strips each
    channel's absolute level, i.e. the objects' colours (a model with 32 groups turned green
    objects grey and purple ones blue).
    """
    torch.manual_seed(seed + 1)
    unet = UNet2DConditionModel(
        sample_size=SIZE // 2, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=tuple(unet_channels), norm_num_groups=8, cross_attention_dim=te_width,
        attention_head_dim=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"))
    te = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=te_width, intermediate_size=2 * te_width, num_attention_heads=4,
        num_hidden_layers=te_layers, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407,
        pad_token_id=49407, hidden_act="quick_gelu", projection_dim=te_width))
    return unet, te


def to_pixels(imgs: np.ndarray) -> torch.Tensor:
    """uint8 BxHxWx3 -> float Bx3xHxW in [-1, 1]."""
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def train_vae(vae: AutoencoderKL, rng: np.random.Generator, steps: int, batch: int, log: list[str]) -> float:
    """Reconstruction training; returns the latent scaling factor (1 / std of latents)."""
    lr = 1e-3
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    vae.train()
    t0 = time.time()
    for step in range(steps):
        for g in opt.param_groups:  # warm-up, then cosine to 5%
            g["lr"] = lr * min(1.0, (step + 1) / 50) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        x = to_pixels(training_batch(rng, batch, SIZE)[0])
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        kl = post.kl().mean() / (x[0].numel())
        # L1 keeps flat colours exact (MSE alone left them washed out); the KL term only keeps the
        # latents tame, as SD's 1e-6-weighted one does.
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + 1e-4 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            _say(log, f"vae step {step} loss {loss.item():.4f} ({time.time() - t0:.0f}s)")
    vae.eval()
    with torch.no_grad():
        lat = vae.encode(to_pixels(training_batch(rng, 256, SIZE)[0])).latent_dist.mean
    return float(1.0 / lat.std())


def _say(log: list[str], msg: str) -> None:
    print(msg, flush=True)
    log.append(msg)


def lr_at(step: int, cfg: dict[str, Any]) -> float:
    """Warm-up, constant, then cosine to 10% over the last ``decay_frac`` of the steps."""
    lr, steps = float(cfg["lr"]), int(cfg["steps"])
    warm = min(1.0, (step + 1) / int(cfg["warmup"]))
    start = steps * (1 - float(cfg["decay_frac"]))
    if step < start:
        return lr * warm
    frac = min(1.0, (step - start) / max(1.0, steps - start))
    return lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


class State:
    """Everything a session needs to go on exactly where the last one stopped."""

    def __init__(self, cfg: dict[str, Any], device: str) -> None:
        self.cfg = cfg
        self.device = device
        self.unet, self.te = build_denoiser(cfg["seed"], cfg["te_width"], cfg["te_layers"],
                                            tuple(cfg["unet_channels"]))
        self.unet.to(device)
        self.te.to(device)
        self.params = list(self.unet.parameters()) + list(self.te.parameters())
        self.opt = torch.optim.AdamW(self.params, lr=cfg["lr"], weight_decay=1e-2)
        self.ema = EMAModel(self.params, decay=cfg["ema"], foreach=True)
        self.step = 0
        self.rng = np.random.default_rng(cfg["seed"])
        self.log: list[str] = []
        self.sessions: list[dict[str, Any]] = []
        self.vae: AutoencoderKL | None = None
        self.vae_state: dict[str, torch.Tensor] | None = None
        self.scale = 1.0

    def save(self, workdir: Path) -> None:
        """Atomic checkpoint (a crash while writing keeps the previous one)."""
        data = {
            "cfg": self.cfg, "step": self.step, "log": self.log, "sessions": self.sessions,
            "unet": self.unet.state_dict(), "te": self.te.state_dict(), "opt": self.opt.state_dict(),
            "ema": self.ema.state_dict(), "np_rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(), "scale": self.scale,
            "vae": self.vae.state_dict() if self.vae is not None else None,
        }
        tmp = workdir / (CKPT + ".tmp")
        torch.save(data, tmp)
        os.replace(tmp, workdir / CKPT)

    @classmethod
    def load(cls, workdir: Path, device: str) -> State:
        """The state saved by :meth:`save`."""
        data = torch.load(workdir / CKPT, map_location="cpu", weights_only=False)
        st = cls(data["cfg"], device)
        st.unet.load_state_dict(data["unet"])
        st.te.load_state_dict(data["te"])
        st.opt.load_state_dict(data["opt"])
        st.ema.load_state_dict(data["ema"])
        st.ema.to(device)
        st.step, st.log, st.sessions, st.scale = data["step"], data["log"], data["sessions"], data["scale"]
        st.rng.bit_generator.state = data["np_rng"]
        st.vae = build_vae(st.cfg["seed"])
        st.vae.load_state_dict(data["vae"])
        st.vae.register_to_config(scaling_factor=st.scale)
        torch.set_rng_state(data["torch_rng"])  # last: building the VAE reseeds the generator
        return st


def train_session(st: State, workdir: Path, minutes: float, ckpt_minutes: float, compile_unet: bool = False) -> None:
    """Train until ``cfg['steps']`` or the wall-clock cap, checkpointing on the way.

    ``compile_unet`` runs the UNet through ``torch.compile`` (0.75 against 0.90 s per CPU step at
    batch 16 on two threads); the weights, and so every checkpoint, stay the plain module's.
    """
    assert st.vae is not None
    cfg, dev = st.cfg, st.device
    tok = clip_tokenizer()
    sched = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                          num_train_timesteps=1000, clip_sample=False)
    snr = (sched.alphas_cumprod / (1 - sched.alphas_cumprod)).to(dev)
    vae = st.vae.to(dev).eval().requires_grad_(False)
    st.unet.train()
    st.te.train()
    unet = torch.compile(st.unet) if compile_unet else st.unet
    t0 = time.time()
    deadline = t0 + minutes * 60
    last_ckpt = t0
    start_step = st.step
    avg: float | None = None
    batch = int(cfg["batch"])
    while st.step < cfg["steps"] and time.time() < deadline:
        cur = lr_at(st.step, cfg)
        for g in st.opt.param_groups:
            g["lr"] = cur
        imgs, caps = training_batch(st.rng, batch, SIZE)
        caps = [c if st.rng.random() > 0.1 else "" for c in caps]
        ids = tok(caps, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        # Noise and timesteps come from the CPU generator, so CPU and CUDA runs draw the same ones.
        eps = torch.randn(batch, 4, SIZE // 2, SIZE // 2)
        noise = torch.randn(batch, 4, SIZE // 2, SIZE // 2)
        if cfg.get("noise_offset", 0.0):
            # Offset noise: SD's schedule leaves sqrt(abar_T)=0.068 of the latent in x_T, so the
            # model reads the background from the noise's per-channel mean instead of the caption
            # (measured: a night-sky prompt gets the night sky 10/10 from a night-mean start, 0/10
            # from a green-mean one). A random per-channel shift drowns that signal.
            noise = noise + float(cfg["noise_offset"]) * torch.randn(batch, 4, 1, 1)
        t = torch.randint(0, 1000, (batch,))
        with torch.no_grad():
            post = vae.encode(to_pixels(imgs).to(dev)).latent_dist
            lat = (post.mean + post.std * eps.to(dev)) * st.scale
        noise, t = noise.to(dev), t.to(dev)
        pred = unet(sched.add_noise(lat, noise, t.cpu()).to(dev) if dev == "cpu" else
                       _add_noise(sched, lat, noise, t), t, st.te(ids.to(dev))[0]).sample
        w = torch.clamp(snr[t], max=5.0) / snr[t]  # min-SNR-5 weighting for epsilon prediction
        loss = (F.mse_loss(pred, noise, reduction="none").mean((1, 2, 3)) * w).mean()
        st.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(st.params, 1.0)
        st.opt.step()
        st.ema.step(st.params)
        avg = loss.item() if avg is None else 0.98 * avg + 0.02 * loss.item()
        st.step += 1
        if st.step % 200 == 0:
            rate = (time.time() - t0) / (st.step - start_step)
            _say(st.log, f"unet step {st.step} loss(avg) {avg:.4f} lr {cur:.2e} ({rate:.2f} s/step)")
        if time.time() - last_ckpt > ckpt_minutes * 60:
            _close_session(st, t0, start_step)
            st.save(workdir)
            st.sessions.pop()
            last_ckpt = time.time()
    _close_session(st, t0, start_step)
    st.save(workdir)
    print(f"session: steps {start_step} -> {st.step} in {(time.time() - t0) / 60:.1f} min; state in {workdir}")


def _add_noise(sched: DDPMScheduler, lat: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    a = sched.alphas_cumprod.to(lat.device)[t].view(-1, 1, 1, 1)
    return a.sqrt() * lat + (1 - a).sqrt() * noise


def _close_session(st: State, t0: float, start_step: int) -> None:
    st.sessions.append({"date": time.strftime("%Y-%m-%d %H:%M"), "device": st.device,
                        "threads": torch.get_num_threads(), "steps": [start_step, st.step],
                        "minutes": round((time.time() - t0) / 60, 1)})


@torch.no_grad()
def vae_check(vae: AutoencoderKL, path: Path, log: list[str]) -> None:
    """Eight fresh renders over their reconstructions, and the reconstruction MSE."""
    from PIL import Image

    imgs = training_batch(np.random.default_rng(12345), 8, SIZE)[0]
    x = to_pixels(imgs)
    rec = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
    _say(log, f"vae reconstruction mse {float(((rec - x) ** 2).mean()):.4f} on 8 fresh renders")
    out = ((rec + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    grid = np.concatenate([np.concatenate(list(imgs), 1), np.concatenate(list(out), 1)], 0)
    Image.fromarray(grid).save(path)


def export(st: State, out: Path, command_log: str) -> None:
    """Write the EMA weights as a diffusers folder (fp16), with TRAINING.md and the preset file."""
    assert st.vae is not None
    st.ema.store(st.params)
    st.ema.copy_to(st.params)
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                          num_train_timesteps=1000, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    vae = st.vae.to("cpu")
    vae.register_to_config(scaling_factor=st.scale)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=st.te.to("cpu"), tokenizer=clip_tokenizer(),
                                   unet=st.unet.to("cpu"), scheduler=sched, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    tmp = out.with_name(out.name + ".tmp-export")
    if tmp.exists():
        shutil.rmtree(tmp)  # our own leftover from an interrupted export
    pipe.to(torch.float16).save_pretrained(str(tmp))
    pipe.to(torch.float32)
    st.ema.restore(st.params)
    if st.cfg.get("preset"):
        (tmp / "bas_preset.json").write_text(json.dumps({"preset": st.cfg["preset"]}, indent=2) + "\n")
    counts = {n: sum(p.numel() for p in m.parameters()) for n, m in (("unet", st.unet), ("vae", vae),
                                                                        ("text_encoder", st.te))}
    total_min = sum(s["minutes"] for s in st.sessions)
    rows = "\n".join(f"| {s['date']} | {s['device']} | {s['threads']} | {s['steps'][0]} -> {s['steps'][1]} | "
                     f"{s['minutes']} |" for s in st.sessions)
    (tmp / "TRAINING.md").write_text(
        "# ShapesWorld model: how it was trained\n\n"
        f"Configuration (stored in the checkpoint): `{json.dumps(st.cfg)}`.\n\n"
        f"{command_log}\n\nExported at UNet step {st.step} of {st.cfg['steps']} (EMA weights, decay "
        f"{st.cfg['ema']}), batch {st.cfg['batch']}; {total_min:.0f} min of training in "
        f"{len(st.sessions)} session(s):\n\n| date | device | torch threads | steps | minutes |\n"
        f"| --- | --- | --- | --- | --- |\n{rows}\n\nParameters: {json.dumps(counts)}.\n\n"
        "Log:\n\n```\n" + "\n".join(st.log) + "\n```\n")
    backup = out.with_name(out.name + ".previous")
    if out.exists():
        if backup.exists() or not (out / "model_index.json").exists():
            shutil.rmtree(tmp)
            raise SystemExit(f"error: {out}: not replaced (not a model folder, or {backup.name} is in the way)")
        out.rename(backup)  # kept until the new folder is in place
    tmp.rename(out)
    if backup.exists():
        shutil.rmtree(backup)
    print(f"exported step {st.step} to {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="checkpoint folder (outside the repo)")
    ap.add_argument("--resume", action="store_true", help="go on from the checkpoint in --workdir")
    ap.add_argument("--export", type=Path, help="write the checkpoint's EMA weights to this model folder and stop")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vae-from", type=Path, help="reuse the VAE of this saved model instead of training one")
    ap.add_argument("--vae-steps", type=int, default=1200)
    ap.add_argument("--vae-batch", type=int, default=8)
    ap.add_argument("--vae-check", type=Path, help="write fresh renders and their VAE reconstructions to this PNG")
    ap.add_argument("--te-width", type=int, default=128)
    ap.add_argument("--te-layers", type=int, default=4)
    ap.add_argument("--unet-channels", default="32,64,128")
    ap.add_argument("--steps", type=int, default=40000, help="UNet steps the lr schedule spans")
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--decay-frac", type=float, default=0.25)
    ap.add_argument("--minutes", type=float, default=60.0, help="wall-clock cap of this session")
    ap.add_argument("--ckpt-minutes", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--ema", type=float, default=0.9995, help="EMA decay of the exported weights")
    ap.add_argument("--noise-offset", type=float, default=0.0,
                    help="std of a per-channel shift added to the training noise (0: plain noise)")
    ap.add_argument("--preset", default="shapesworld", help="break preset the exported folder recommends")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="torch.compile the UNet (faster steps, same weights)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="on --resume, change a stored value (steps, decay_frac, lr, noise_offset); logged")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.resume or args.export:
        st = State.load(args.workdir, args.device)
        for kv in args.set:
            key, _, val = kv.partition("=")
            if key not in ("steps", "decay_frac", "lr", "noise_offset"):
                ap.error(f"--set: {key!r} cannot change on resume")
            try:
                st.cfg[key] = type(st.cfg.get(key, 0.0))(val)
            except ValueError:
                ap.error(f"--set {kv}: {val!r} is not a number")
            _say(st.log, f"at step {st.step}: {key} set to {val}")
        if args.export:
            export(st, args.export.resolve(), "Commands: see docs/shapesworld.md (training history).")
            return
    else:
        if (args.workdir / CKPT).exists():
            ap.error(f"{args.workdir / CKPT} exists: use --resume, or another --workdir")
        cfg = {"seed": args.seed, "te_width": args.te_width, "te_layers": args.te_layers,
               "unet_channels": [int(c) for c in args.unet_channels.split(",")], "batch": args.batch,
               "lr": args.lr, "ema": args.ema, "steps": args.steps, "decay_frac": args.decay_frac,
               "warmup": args.warmup, "vae_from": str(args.vae_from or ""), "preset": args.preset,
               "noise_offset": args.noise_offset}
        st = State(cfg, args.device)
        if args.vae_from:
            st.vae = AutoencoderKL.from_pretrained(str(args.vae_from), subfolder="vae", dtype=torch.float32)
            st.scale = float(st.vae.config.scaling_factor)
            _say(st.log, f"VAE reused from {args.vae_from} (scaling factor {st.scale:.4f})")
        else:
            st.vae = build_vae(args.seed)
            st.scale = train_vae(st.vae, np.random.default_rng(args.seed + 7), args.vae_steps, args.vae_batch, st.log)
            _say(st.log, f"latent scaling factor {st.scale:.4f}")
        if args.vae_check:
            vae_check(st.vae, args.vae_check, st.log)
    train_session(st, args.workdir, args.minutes, args.ckpt_minutes, args.compile)


if __name__ == "__main__":
    main()
