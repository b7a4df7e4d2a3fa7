"""What the app says about a base model: a readable name and the training preset it recommends.

Qt-free and torch-free (called on the UI thread at start). A model folder declares its preset in
``bas_preset.json`` (``{"preset": "shapesworld"}``), which ``engine.training.config.recommended_preset``
reads (torch-free).
"""

from __future__ import annotations

from pathlib import Path

from engine.formats.names import HUB_MODELS
from engine.training.config import read_preset_file as read_preset_file
from engine.training.config import recommended_preset as engine_recommended_preset

SHAPESWORLD, TINY, TINY_SDXL = "shapesworld", "tiny-random", "tiny-random-sdxl"
LABELS = {m.hub_id: m.label for m in HUB_MODELS}
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")


def recommended_preset(ref: str) -> str | None:
    """The preset the model recommends, or None (the app then uses its default, Quick)."""
    return engine_recommended_preset(ref)


def describe_model(ref: str, long: bool = False) -> str:
    """A short name for the user: what the model is and where it comes from."""
    if ref == SHAPESWORLD:
        return "ShapesWorld (shipped offline model, 64 px)" if long else "ShapesWorld (offline)"
    if ref == TINY:
        return "tiny random test model"
    if ref == TINY_SDXL:
        return "tiny random SDXL-shaped test model"
    if ref in LABELS:
        return f"{LABELS[ref]} ({ref})" if long else LABELS[ref]
    path = Path(ref).expanduser()
    if path.is_file() or path.suffix in SINGLE_FILE_SUFFIXES:
        return f"checkpoint {path.name} ({path.parent})"
    if path.is_dir():
        return f"folder {path.name} ({path.parent})"
    return f"{ref} (Hugging Face hub)"
