"""Generation from a handle pack with a plain diffusers ``StableDiffusionPipeline``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from diffusers import DDIMScheduler
from PIL import Image

from engine.errors import PackError
from engine.handles import set_handle_rows
from engine.models import SDComponents, load_model
from engine.pack import HandlePack
from engine.phase2 import apply_lora


def apply_pack(comps: SDComponents, pack: HandlePack) -> SDComponents:
    """Put a pack's weights and handles into freshly loaded base-model components (in place)."""
    width = comps.text_encoder.get_input_embeddings().weight.shape[1]
    for tok, vec in pack.embeddings.items():
        if vec.shape != (width,):
            raise PackError(f"embedding of {tok} has width {tuple(vec.shape)}, but the base model "
                            f"'{pack.base_model}' needs {width}", pack.path)
    try:
        if pack.unet_state is not None:
            comps.unet.load_state_dict(pack.unet_state, strict=True)
        if pack.text_encoder_state is not None:
            comps.text_encoder.load_state_dict(pack.text_encoder_state, strict=True)
        if pack.lora is not None:
            apply_lora(comps, pack.lora)
    except (RuntimeError, KeyError, ValueError) as e:
        raise PackError(f"the pack's weights do not fit the base model '{pack.base_model}' ({e})",
                        pack.path) from None
    set_handle_rows(comps.tokenizer, comps.text_encoder, pack.embeddings)
    return comps


def load_pack_model(pack: HandlePack, device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32, model: str | None = None) -> SDComponents:
    """Load the pack's base model (or ``model`` if given) and apply the pack to it."""
    comps = load_model(model or pack.base_model, device=device, dtype=dtype)
    return apply_pack(comps, pack)


@dataclass
class GeneratedImage:
    """One generated image and what made it."""

    image: Image.Image
    prompt: str
    seed: int
    steps: int
    guidance: float


def generate(comps: SDComponents, prompt: str, n: int = 1, seed: int = 0, steps: int = 30,
             guidance: float = 7.5, negative_prompt: str | None = None, size: int | None = None,
             on_step: Callable[[int, int], None] | None = None,
             should_stop: Callable[[], bool] | None = None) -> list[GeneratedImage]:
    """Generate ``n`` images with DDIM (as the paper); image ``i`` uses seed ``seed + i``.

    Progress and cancel go through diffusers' step-end callback; a stop request ends the current
    image early and returns what was finished before it.
    """
    pipe = comps.pipeline(scheduler=DDIMScheduler.from_config(comps.scheduler.config))
    pipe.set_progress_bar_config(disable=True)
    size = size or comps.resolution
    out: list[GeneratedImage] = []
    for i in range(n):
        stopped = False

        def step_end(p: object, step: int, t: object, kw: dict) -> dict:
            nonlocal stopped
            if on_step is not None:
                on_step(i * steps + step + 1, n * steps)
            if should_stop is not None and should_stop():
                stopped = True
                setattr(p, "_interrupt", True)
            return kw

        gen = torch.Generator("cpu").manual_seed(seed + i)
        with torch.no_grad():
            img = pipe(prompt, negative_prompt=negative_prompt, height=size, width=size,
                       num_inference_steps=steps, guidance_scale=guidance, generator=gen,
                       callback_on_step_end=step_end).images[0]
        if stopped:
            break
        out.append(GeneratedImage(img, prompt, seed + i, steps, guidance))
    return out
