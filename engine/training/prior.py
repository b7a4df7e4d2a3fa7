"""Prior-preservation class images: generated once per (model, prompt, size, seed) and cached."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from diffusers import DDIMScheduler
from PIL import Image

from engine.models import SDComponents
from engine.paths import cache_dir


def class_image_folder(model_key: str, prompt: str, resolution: int, seed: int, steps: int) -> Path:
    """The cache folder of one set of class images."""
    key = hashlib.sha1(f"{model_key}|{prompt}|{resolution}|{seed}|{steps}".encode()).hexdigest()[:16]
    return cache_dir() / "class_images" / key


def ensure_class_images(comps: SDComponents, prompt: str, count: int, resolution: int, seed: int,
                        steps: int = 50, device: torch.device | str = "cpu",
                        progress: Callable[[int, int], None] | None = None,
                        should_stop: Callable[[], bool] | None = None, batch: int = 4) -> list[Path]:
    """Return ``count`` class images for ``prompt``, generating only the missing ones.

    Image ``i`` is generated from seed ``seed + i`` (its own generator, also inside a batch of
    ``batch``), so a cache that was interrupted half-way is completed with the images an
    uninterrupted run would have made, up to float rounding. Batches because a small model's
    pipeline call is mostly overhead (16 ShapesWorld images: 23 s one by one, 17 s in fours on one
    thread). Must be called with the unmodified base model (before handles are added). The cache
    is keyed by the model's reference and a fingerprint of its UNet's weights (:func:`weights_fingerprint`).
    """
    folder = class_image_folder(_model_key(comps), prompt, resolution, seed, steps)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"class_{i:04d}.png" for i in range(count)]
    missing = [i for i, p in enumerate(paths) if not p.exists()]
    if missing:
        pipe = comps.pipeline(scheduler=DDIMScheduler.from_config(comps.scheduler.config))
        pipe.set_progress_bar_config(disable=True)
        done = 0
        for start in range(0, len(missing), max(1, batch)):
            if should_stop is not None and should_stop():
                break
            chunk = missing[start:start + max(1, batch)]
            gens = [torch.Generator("cpu").manual_seed(seed + i) for i in chunk]
            with torch.no_grad():
                imgs = _generate(comps, pipe, prompt, resolution, steps, gens)
            for i, img in zip(chunk, imgs):
                tmp = paths[i].with_suffix(f".{os.getpid()}.tmp.png")  # Ray workers may fill one cache at once
                img.save(tmp)
                tmp.replace(paths[i])
            done += len(chunk)
            if progress is not None:
                progress(done, len(missing))
    return [p for p in paths if p.exists()]


def _generate(comps: SDComponents, pipe: Any, prompt: str, resolution: int, steps: int,
              gens: list[torch.Generator]) -> list[Image.Image]:
    """Class images, one per generator. A model whose frozen UNet is stored in bf16 next to an fp32
    VAE (the LoRA recipe) denoises in bf16 and decodes in fp32, as the pipeline would decode an fp32 model."""
    unet_dtype = next(comps.unet.parameters()).dtype
    kw = dict(height=resolution, width=resolution, num_inference_steps=steps, generator=gens,
              num_images_per_prompt=len(gens))
    if unet_dtype == comps.vae.dtype:
        return list(pipe(prompt, output_type="pil", **kw).images)
    lat = pipe(prompt, output_type="latent", **kw).images
    pixels = comps.vae.decode(lat.to(comps.vae.dtype) / comps.vae.config["scaling_factor"]).sample
    return list(pipe.image_processor.postprocess(pixels.float(), output_type="pil"))


def _model_key(comps: SDComponents) -> str:
    """The model's part of the cache key: its reference and a fingerprint of its UNet's weights, so
    a model retrained under the same name or folder (a newly shipped ShapesWorld) never reuses the
    old weights' class images."""
    ref = comps.ref
    path = Path(ref)
    name = str(path.resolve()) if path.exists() else ref
    return f"{name}#{weights_fingerprint(comps.unet)}"


def weights_fingerprint(module: torch.nn.Module) -> str:
    """Short hash of a module's parameter count and its first and last parameters (as fp32): cheap
    on any model size, and different for any retrained weights."""
    params = list(module.parameters())
    h = hashlib.sha1(str(sum(p.numel() for p in params)).encode())
    for p in (params[0], params[-1]):
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def load_rgb(path: Path, resolution: int) -> np.ndarray:
    """A cached class image as uint8 RGB at ``resolution``."""
    img = Image.open(path).convert("RGB")
    if img.size != (resolution, resolution):
        img = img.resize((resolution, resolution), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.uint8)
