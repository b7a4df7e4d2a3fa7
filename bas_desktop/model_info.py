"""What the app says about a base model: a readable name and the training preset it recommends.

Qt-free and torch-free (called on the UI thread at start). A model folder declares its preset in
``bas_preset.json`` (``{"preset": "shapesworld"}``); ``engine.config.recommended_preset`` reads it
when the engine has it, else :func:`read_preset_file` does the same here.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.config import PRESETS
from engine.paths import resources_dir

PRESET_FILE = "bas_preset.json"
SHAPESWORLD, TINY = "shapesworld", "tiny-random"
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")


def model_folder(ref: str) -> Path | None:
    """The local folder of a model reference (the shipped name, a folder, a checkpoint's folder, a
    hub id already in the local cache), or None. Never touches the network."""
    if ref == TINY or not ref:
        return None
    if ref == SHAPESWORLD:
        return resources_dir() / SHAPESWORLD
    path = Path(ref).expanduser()
    if path.is_dir():
        return path
    if path.suffix in SINGLE_FILE_SUFFIXES:
        return path.parent if path.is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        got = try_to_load_from_cache(ref, "model_index.json")
    except Exception:  # noqa: BLE001 - not a hub id, or a broken cache: no folder
        return None
    return Path(got).parent if isinstance(got, str) else None


def read_preset_file(folder: Path) -> str | None:
    """The preset named by ``folder/bas_preset.json``, when the file is there and names a known preset."""
    try:
        data = json.loads((folder / PRESET_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    name = data.get("preset") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name in PRESETS else None


def recommended_preset(ref: str) -> str | None:
    """The preset the model recommends, or None (the app then uses its default, Quick)."""
    try:
        from engine.config import recommended_preset as engine_recommended  # type: ignore[attr-defined]
    except ImportError:
        engine_recommended = None
    if engine_recommended is not None:
        try:
            got = engine_recommended(ref)
        except Exception:  # noqa: BLE001 - a model the engine cannot place: fall back to the file here
            got = None
        if got in PRESETS:
            return got
    folder = model_folder(ref)
    return read_preset_file(folder) if folder is not None else None


def describe_model(ref: str, long: bool = False) -> str:
    """A short name for the user: what the model is and where it comes from."""
    if ref == SHAPESWORLD:
        return "ShapesWorld (shipped offline model, 64 px)" if long else "ShapesWorld (offline)"
    if ref == TINY:
        return "tiny random test model"
    path = Path(ref).expanduser()
    if path.is_file() or path.suffix in SINGLE_FILE_SUFFIXES:
        return f"checkpoint {path.name} ({path.parent})"
    if path.is_dir():
        return f"folder {path.name} ({path.parent})"
    return f"{ref} (Hugging Face hub)"
