"""Train the ShapesWorld text-to-image model from scratch (SD architecture, 64 px, 2 CPU cores).

Same component classes as Stable Diffusion: AutoencoderKL (2 levels: 64 px -> 32x32x4 latents),
UNet2DConditionModel with cross-attention at 16x16 and 8x8, CLIPTextModel with the real CLIP
tokenizer, a DDIM scheduler for inference. The VAE is trained first (reconstruction + a small KL),
then the UNet and text encoder together on captions (10% dropped for classifier-free guidance),
with min-SNR loss weighting. Training stops at ``--steps`` or ``--minutes``, whichever comes
first, and saves fp16 weights as a diffusers folder.

    python tools/train_shapesworld.py --out resources/shapesworld --minutes 40
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel  # noqa: E402

from engine.models import clip_tokenizer  # noqa: E402
from engine.shapesworld.world import training_batch  # noqa: E402

SIZE = 64


def build_models(seed: int) -> tuple[AutoencoderKL, UNet2DConditionModel, CLIPTextModel]:
    """The three networks, random-init from ``seed``."""
    torch.manual_seed(seed)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, sample_size=SIZE,
                        block_out_channels=[32, 64], layers_per_block=1, norm_num_groups=32,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2)
    unet = UNet2DConditionModel(
        sample_size=SIZE // 2, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64, 64), norm_num_groups=32, cross_attention_dim=64, attention_head_dim=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"))
    te = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=64, intermediate_size=128, num_attention_heads=4, num_hidden_layers=3,
        max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
        hidden_act="quick_gelu", projection_dim=64))
    return vae, unet, te


def to_pixels(imgs: np.ndarray) -> torch.Tensor:
    """uint8 BxHxWx3 -> float Bx3xHxW in [-1, 1]."""
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def train_vae(vae: AutoencoderKL, rng: np.random.Generator, steps: int, batch: int, log: list[str]) -> float:
    """Reconstruction training; returns the latent scaling factor (1 / std of latents)."""
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    vae.train()
    t0 = time.time()
    for step in range(steps):
        x = to_pixels(training_batch(rng, batch, SIZE)[0])
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        kl = post.kl().mean() / (x[0].numel())
        loss = F.mse_loss(rec, x) + 1e-4 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            msg = f"vae step {step} loss {loss.item():.4f} ({time.time() - t0:.0f}s)"
            print(msg, flush=True)
            log.append(msg)
    vae.eval()
    with torch.no_grad():
        lat = vae.encode(to_pixels(training_batch(rng, 256, SIZE)[0])).latent_dist.mean
    return float(1.0 / lat.std())


def train_diffusion(vae: AutoencoderKL, unet: UNet2DConditionModel, te: CLIPTextModel, scale: float,
                    rng: np.random.Generator, steps: int, minutes: float, batch: int, lr: float,
                    log: list[str], save_cb: object) -> int:
    """UNet + text encoder on captions; returns the number of steps done."""
    tok = clip_tokenizer()
    sched = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                          num_train_timesteps=1000, clip_sample=False)
    alphas = sched.alphas_cumprod
    snr = alphas / (1 - alphas)
    params = list(unet.parameters()) + list(te.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    unet.train()
    te.train()
    vae.requires_grad_(False)
    t0 = time.time()
    deadline = t0 + minutes * 60
    step = 0
    ema = None
    while step < steps and time.time() < deadline:
        frac = min(1.0, (time.time() - t0) / (minutes * 60))
        cur = lr * min(1.0, (step + 1) / 200) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = cur
        imgs, caps = training_batch(rng, batch, SIZE)
        caps = [c if rng.random() > 0.1 else "" for c in caps]
        with torch.no_grad():
            lat = vae.encode(to_pixels(imgs)).latent_dist.sample() * scale
        ids = tok(caps, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        noise = torch.randn_like(lat)
        t = torch.randint(0, 1000, (batch,))
        pred = unet(sched.add_noise(lat, noise, t), t, te(ids)[0]).sample
        w = torch.clamp(snr[t], max=5.0) / snr[t]  # min-SNR-5 weighting for epsilon prediction
        loss = (F.mse_loss(pred, noise, reduction="none").mean((1, 2, 3)) * w).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        step += 1
        if step % 100 == 0:
            msg = f"unet step {step} loss(ema) {ema:.4f} lr {cur:.2e} ({time.time() - t0:.0f}s)"
            print(msg, flush=True)
            log.append(msg)
        if step % 1000 == 0:
            save_cb()  # type: ignore[operator]
    return step


def save(out: Path, vae: AutoencoderKL, unet: UNet2DConditionModel, te: CLIPTextModel, scale: float) -> None:
    """Write the diffusers folder (fp16 weights; loads in fp32 as well)."""
    vae.register_to_config(scaling_factor=scale)
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                          num_train_timesteps=1000, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=clip_tokenizer(), unet=unet,
                                   scheduler=sched, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    tmp = out.with_name(out.name + ".tmp")
    pipe.to(torch.float16).save_pretrained(str(tmp))
    pipe.to(torch.float32)
    if out.exists():
        import shutil
        shutil.rmtree(out)
    tmp.rename(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "resources" / "shapesworld")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vae-steps", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--minutes", type=float, default=40.0, help="wall-clock budget of the UNet phase")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--vae-batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--init", type=Path, help="continue from a saved folder: reuse its VAE, train its UNet and text encoder further")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    log: list[str] = []
    start = time.time()
    if args.init:
        vae = AutoencoderKL.from_pretrained(str(args.init), subfolder="vae", dtype=torch.float32)
        unet = UNet2DConditionModel.from_pretrained(str(args.init), subfolder="unet", dtype=torch.float32)
        te = CLIPTextModel.from_pretrained(str(args.init), subfolder="text_encoder", dtype=torch.float32)
        scale = float(vae.config.scaling_factor)
        prior = (args.init / "TRAINING.md").read_text() if (args.init / "TRAINING.md").exists() else ""
        log.append(f"continued from {args.init.name} (seed {args.seed}); its log:\n{prior}")
        rng = np.random.default_rng(args.seed + 1)
    else:
        vae, unet, te = build_models(args.seed)
        scale = train_vae(vae, rng, args.vae_steps, args.vae_batch, log)
        log.append(f"latent scaling factor {scale:.4f}")
    steps = train_diffusion(vae, unet, te, scale, rng, args.steps, args.minutes, args.batch, args.lr, log,
                            lambda: save(args.out, vae, unet, te, scale))
    save(args.out, vae, unet, te, scale)
    wall = time.time() - start
    counts = {n: sum(p.numel() for p in m.parameters()) for n, m in (("unet", unet), ("vae", vae), ("text_encoder", te))}
    cmd = "python tools/train_shapesworld.py " + " ".join(sys.argv[1:])
    (args.out / "TRAINING.md").write_text(
        "# ShapesWorld model: how it was trained\n\n"
        f"Command: `{cmd}` (seed {args.seed}), {args.threads} torch threads.\n\n"
        f"Wall time {wall / 60:.1f} min on 2 shared CPU cores; {steps} UNet steps at batch {args.batch}.\n\n"
        f"Parameters: {json.dumps(counts)}.\n\nLog:\n\n```\n" + "\n".join(log) + "\n```\n")
    print(f"saved {args.out} after {wall / 60:.1f} min, {steps} steps")


if __name__ == "__main__":
    main()
