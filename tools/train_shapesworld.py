"""Train the ShapesWorld text-to-image model from scratch (SD architecture, 64 px, 2 CPU cores).

Same component classes as Stable Diffusion: AutoencoderKL (2 levels: 64 px -> 32x32x4 latents),
UNet2DConditionModel with cross-attention at 16x16 (the paper's attention-loss side) and 8x8, CLIPTextModel with the real CLIP tokenizer, a DDIM
scheduler for inference. The VAE is trained first (L1 + MSE reconstruction + a small KL), then
the UNet and text encoder together on captions (10% dropped for classifier-free guidance), with
min-SNR loss weighting and an exponential moving average of the weights (the EMA weights are the
ones saved). Training stops at ``--steps`` or ``--minutes``, whichever comes first, and saves
fp16 weights as a diffusers folder.

    python tools/train_shapesworld.py --out resources/shapesworld --vae-steps 1200 --steps 4400

A 3-level VAE (16x16 latents) was tried and dropped: after 1000 steps it still lost the objects'
colours (MSE 0.070 on fresh renders against 0.039 for the 2-level one at 700 steps).
Norm groups: see ``build_models``.
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
from diffusers.training_utils import EMAModel  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel  # noqa: E402

from engine.models import clip_tokenizer  # noqa: E402
from engine.shapesworld.world import training_batch  # noqa: E402

SIZE = 64


def build_models(seed: int) -> tuple[AutoencoderKL, UNet2DConditionModel, CLIPTextModel]:
    """The three networks, random-init from ``seed``."""
    torch.manual_seed(seed)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, sample_size=SIZE,
                        block_out_channels=[32, 64], layers_per_block=1, norm_num_groups=8,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2)
    # 4.1 M parameters: the 8x8 level is cheap, so it gets the width (+10% time over 64 channels).
    # Eight norm groups in both networks: 32 groups over 32 channels is instance normalisation,
    # which strips each channel's absolute level, i.e. the objects' colours (an earlier model with
    # 32 groups turned green objects grey and purple ones blue).
    unet = UNet2DConditionModel(
        sample_size=SIZE // 2, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64, 128), norm_num_groups=8, cross_attention_dim=64, attention_head_dim=8,
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
            msg = f"vae step {step} loss {loss.item():.4f} ({time.time() - t0:.0f}s)"
            print(msg, flush=True)
            log.append(msg)
    vae.eval()
    with torch.no_grad():
        lat = vae.encode(to_pixels(training_batch(rng, 256, SIZE)[0])).latent_dist.mean
    return float(1.0 / lat.std())


def train_diffusion(vae: AutoencoderKL, unet: UNet2DConditionModel, te: CLIPTextModel, scale: float,
                    rng: np.random.Generator, steps: int, minutes: float, batch: int, lr: float,
                    log: list[str], save_cb: object, ema: EMAModel) -> int:
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
    avg = None
    while step < steps and time.time() < deadline:
        # The schedule follows the step count (reproducible from the seed); ``minutes`` only caps
        # the run on a slower machine, where the schedule is then cut short.
        frac = min(1.0, step / steps)
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
        ema.step(params)
        avg = loss.item() if avg is None else 0.98 * avg + 0.02 * loss.item()
        step += 1
        if step % 100 == 0:
            msg = f"unet step {step} loss(avg) {avg:.4f} lr {cur:.2e} ({time.time() - t0:.0f}s)"
            print(msg, flush=True)
            log.append(msg)
        if step % 1000 == 0:  # save the averaged weights, then train on with the live ones
            ema.store(params)
            ema.copy_to(params)
            save_cb()  # type: ignore[operator]
            ema.restore(params)
    return step


@torch.no_grad()
def vae_check(vae: AutoencoderKL, path: Path, log: list[str]) -> None:
    """Eight fresh renders over their reconstructions, and the reconstruction MSE."""
    from PIL import Image

    imgs = training_batch(np.random.default_rng(12345), 8, SIZE)[0]
    x = to_pixels(imgs)
    rec = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
    msg = f"vae reconstruction mse {float(((rec - x) ** 2).mean()):.4f} on 8 fresh renders"
    print(msg, flush=True)
    log.append(msg)
    out = ((rec + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    grid = np.concatenate([np.concatenate(list(imgs), 1), np.concatenate(list(out), 1)], 0)
    Image.fromarray(grid).save(path)


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
    ap.add_argument("--vae-steps", type=int, default=1200)
    ap.add_argument("--steps", type=int, default=4400, help="UNet steps (the lr schedule spans them)")
    ap.add_argument("--minutes", type=float, default=60.0, help="wall-clock cap of the UNet phase")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--vae-batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--ema", type=float, default=0.999, help="EMA decay of the saved UNet/text-encoder weights")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vae-check", type=Path, help="write fresh renders and their VAE reconstructions to this PNG")
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
        if args.vae_check:
            vae_check(vae, args.vae_check, log)
        log.append(f"latent scaling factor {scale:.4f}")
    ema = EMAModel(list(unet.parameters()) + list(te.parameters()), decay=args.ema, foreach=True)
    steps = train_diffusion(vae, unet, te, scale, rng, args.steps, args.minutes, args.batch, args.lr, log,
                            lambda: save(args.out, vae, unet, te, scale), ema)
    ema.copy_to(list(unet.parameters()) + list(te.parameters()))
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
