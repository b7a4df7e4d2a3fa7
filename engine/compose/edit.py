"""Local editing by example: Blended Latent Diffusion (Avrahami et al.), the paper's application.

At every denoising step the latents outside the edit region are replaced by the source photo's
latents noised to that step; diffusers' ``StableDiffusionInpaintPipeline`` (SDXL:
``StableDiffusionXLInpaintPipeline``) does exactly this when the UNet is a plain 4-channel one, so
it runs the loop (no forked pipeline code). The result is then
blended back in pixel space with a feathered mask, so every pixel outside the (dilated, feathered)
region is the source's, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageFilter

from engine.compose.generate import GeneratedImage, check_guidance, check_prompt, make_scheduler
from engine.models import SDComponents
from engine.packs.pack import HandlePack



@dataclass
class EditResult:
    """The edited photo (source size) plus the masks used and the raw model output."""

    result: GeneratedImage
    blend_mask: np.ndarray  # float in [0, 1] at the source size; 0 = source pixel kept exactly
    region: np.ndarray  # bool, the dilated region the latents are generated in
    raw: Image.Image  # the model's output at the working size, before the pixel blend


def edit_masks(mask: np.ndarray, dilate_px: int = 4, feather_px: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """The dilated binary region and its feathered blend mask (exactly 0 far enough outside)."""
    if mask.ndim != 2:
        raise ValueError(f"the edit mask must be one channel, got shape {mask.shape}")
    binary = Image.fromarray(((mask > 0.5) * 255).astype(np.uint8))
    if dilate_px > 0:
        binary = binary.filter(ImageFilter.MaxFilter(2 * dilate_px + 1))
    region = np.asarray(binary) > 0
    soft = binary.filter(ImageFilter.GaussianBlur(feather_px)) if feather_px > 0 else binary
    # Blur only widens the region; where the blur left 0 (uint8) the source stays untouched.
    blend = np.maximum(np.asarray(soft, np.float32) / 255.0, region.astype(np.float32))
    return region, blend


def _working_size(w: int, h: int, side: int, multiple: int) -> tuple[int, int]:
    scale = side / max(w, h)
    return (max(multiple, round(w * scale / multiple) * multiple),
            max(multiple, round(h * scale / multiple) * multiple))


def blended_edit(comps: SDComponents, image: Image.Image | np.ndarray, mask: np.ndarray, prompt: str,
                 strength: float = 0.8, steps: int = 50, seed: int = 0, guidance: float = 7.5,
                 negative_prompt: str | None = None, scheduler: str = "ddim", dilate_px: int = 4,
                 feather_px: int = 4, size: int | None = None, pack: HandlePack | None = None,
                 on_step: Callable[[int, int], None] | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 on_latents: Callable[[int, torch.Tensor], None] | None = None) -> EditResult | None:
    """Edit the masked region of ``image`` with ``prompt`` (e.g. ``"a photo of <asset2>"``).

    ``mask`` is ``[H, W]`` in [0, 1] at the photo's size. ``strength`` in (0, 1] is how much of the
    schedule runs (1 starts from pure noise inside the region). The photo is worked on at the
    model's resolution (longer side ``size``) and the output resized back before the pixel blend.
    ``on_step(done, total)`` reports progress and ``should_stop()`` cancels, both through diffusers'
    step-end callback; ``on_latents(step, latents)`` sees the latents after each step's blend.
    Returns ``None`` if stopped.
    """
    src = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    src = src.convert("RGB")
    if mask.shape != (src.height, src.width):
        raise ValueError(f"the mask is {mask.shape[1]}x{mask.shape[0]} but the photo is {src.width}x{src.height}")
    if not 0.0 < strength <= 1.0:
        raise ValueError("strength must be in (0, 1]")
    if dilate_px < 0 or feather_px < 0:
        raise ValueError(f"dilate {dilate_px} / feather {feather_px}: pixel counts must be >= 0")
    check_guidance(guidance)
    check_prompt(comps, prompt, pack)
    region, blend = edit_masks(mask, dilate_px, feather_px)
    if not region.any():
        raise ValueError("the edit mask is empty")
    w, h = _working_size(src.width, src.height, size or comps.resolution, comps.vae_scale * 8)
    pipe = comps.pipeline(make_scheduler(scheduler, comps.scheduler.config), kind="inpaint")
    pipe.set_progress_bar_config(disable=True)
    n_steps = max(1, int(steps * strength))
    stopped = False

    def step_end(p: object, step: int, t: object, kw: dict) -> dict:
        nonlocal stopped
        if on_step is not None:
            on_step(step + 1, n_steps)
        if on_latents is not None:
            on_latents(step, kw["latents"].detach().clone())
        if should_stop is not None and should_stop():
            stopped = True
            setattr(p, "_interrupt", True)
        return kw

    region_img = Image.fromarray((region * 255).astype(np.uint8)).resize((w, h), Image.Resampling.NEAREST)
    with torch.no_grad():
        output = pipe(prompt, image=src.resize((w, h), Image.Resampling.BICUBIC), mask_image=region_img, height=h,
                      width=w, strength=strength, num_inference_steps=steps, guidance_scale=guidance,
                      negative_prompt=negative_prompt, generator=torch.Generator("cpu").manual_seed(seed),
                      # (pipeline, step, timestep, tensors) -> tensors, as diffusers calls it
                      callback_on_step_end=step_end,
                      callback_on_step_end_tensor_inputs=["latents"])
    assert not isinstance(output, tuple)  # return_dict (the default) gives the output object
    raw = output.images[0]
    if stopped:
        return None
    gen = np.asarray(raw.resize(src.size, Image.Resampling.BICUBIC), np.float32)
    source = np.asarray(src, np.uint8)
    a = blend[..., None]
    mixed = np.clip(np.rint(source * (1.0 - a) + gen * a), 0, 255).astype(np.uint8)
    out = np.where(a > 0, mixed, source)  # exactly the source wherever the blend mask is 0
    result = GeneratedImage(Image.fromarray(out), prompt, seed, steps, guidance, negative_prompt, scheduler,
                            src.width, src.height, pack.id if pack is not None else None,
                            pack.base_model if pack is not None else comps.ref,
                            extra={"Edit": "blended latent", "Strength": strength, "Dilate": dilate_px,
                                   "Feather": feather_px})
    return EditResult(result, blend, region, raw)
