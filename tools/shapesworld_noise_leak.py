"""Does the initial noise's per-channel mean pick the background? (non-zero terminal SNR leak)

For a night-sky and a snow prompt, generates 10 images from plain noise, from noise whose
per-channel mean is set to sqrt(abar_T) x the mean latent of green-background renders, and from
noise with the prompted context's mean, and prints the context the judge sees in each.

    python tools/shapesworld_noise_leak.py /tmp/sw2
"""
import sys

import numpy as np
import torch
from diffusers import StableDiffusionPipeline
from engine.shapesworld.world import sample_image, render, CONTEXTS
from engine.shapesworld.judge import load_judge, score_images, CONTEXT_NAMES
torch.set_num_threads(1)
pipe = StableDiffusionPipeline.from_pretrained(sys.argv[1] if len(sys.argv) > 1 else "resources/shapesworld", safety_checker=None, requires_safety_checker=False, torch_dtype=torch.float32)
pipe.set_progress_bar_config(disable=True)
judge = load_judge()
ac = pipe.scheduler.alphas_cumprod[-1].sqrt().item()
sf = pipe.vae.config.scaling_factor
rng = np.random.default_rng(0)
def ctx_mean(ctx):
    imgs = np.stack([render(sample_image(rng, n_objects=1, context=ctx), 64, int(rng.integers(1 << 30)))[0] for _ in range(8)])
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        lat = pipe.vae.encode(x).latent_dist.mean * sf
    return lat.mean(dim=(0, 2, 3))
means = {c: ctx_mean(c) for c in CONTEXTS}
print("sqrt(abar_T)", ac, {c: [round(v, 2) for v in m.tolist()] for c, m in means.items()})
for target in ["night", "snow"]:
    for src in ["none", "green", target]:
        hits = []
        for seed in range(10):
            d = sample_image(np.random.default_rng(100 + seed), n_objects=1, context=target)
            g = torch.Generator().manual_seed(seed)
            z = torch.randn(1, 4, 32, 32, generator=g)
            if src != "none":
                z = z - z.mean(dim=(2, 3), keepdim=True) + ac * means[src].view(1, 4, 1, 1)
            img = pipe(d.caption(), latents=z, num_inference_steps=30, guidance_scale=5.0, output_type="np").images
            s = score_images(judge, (img * 255).round().astype(np.uint8))
            hits.append(CONTEXT_NAMES[int(s["context"][0].argmax())])
        print(target, "noise mean from", src, "->", hits, "acc", np.mean([h == target for h in hits]))
