"""A handle pack's manifest, ``pack.json``: its names, its checks and its reader (torch-free).

Reading a manifest opens one JSON file and checks every field's presence, type and range; no
tensor library is imported, so the app lists a pack's handles without loading the engine.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Callable, Mapping, TypeGuard

import numpy as np

from engine.errors import PackError, short_reason
from engine.scene import MAX_HANDLES

PACK_FORMAT = "break-a-scene-pack"
SCHEMA_VERSION = 2  # 2: phase 2 of a full fine-tune may be stored as an extracted LoRA (phase2.extracted)
MANIFEST = "pack.json"
MAX_MANIFEST_BYTES = 1 << 20
FILE_ROLES = ("embeddings", "unet", "text_encoder", "lora_unet", "lora_text_encoder", "text_encoder_2",
              "lora_text_encoder_2", "extracted_unet", "extracted_text_encoder", "extracted_text_encoder_2")
EXTRACTED_ROLES = ("extracted_unet", "extracted_text_encoder", "extracted_text_encoder_2")
PHASE2_MODES = ("none", "full", "lora")
MAX_TOKEN_CHARS = 64


def safe_member(root: Path, name: object) -> Path:
    """``root / name`` for a file name a manifest lists; ``PackError`` for absolute paths, ``..`` or drives."""
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts \
            or "\\" in name or (len(name) > 1 and name[1] == ":"):
        raise PackError(f"manifest names an unsafe file {name!r}", root / MANIFEST)
    return root / name


def _is_int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def is_pack_token(v: object) -> bool:
    """A usable handle in a pack: a non-empty string without spaces, at most 64 characters."""
    return isinstance(v, str) and 0 < len(v) <= MAX_TOKEN_CHARS and not any(ch.isspace() for ch in v)


def _check_concepts(concepts: object, bad: Callable[[str], PackError]) -> None:
    if not isinstance(concepts, list) or not concepts:
        raise bad("has no valid concept list")
    if len(concepts) > MAX_HANDLES + 1:
        raise bad(f"lists {len(concepts)} concepts; at most {MAX_HANDLES} (plus a background) are supported")
    for i, c in enumerate(concepts):
        if not isinstance(c, dict) or not is_pack_token(c.get("token")):
            raise bad(f"concept {i} must be an object with a 'token' (one word, no spaces)")
        if c.get("init_word") is not None and not isinstance(c["init_word"], str):
            raise bad(f"concept {i} 'init_word' must be text")
        color = c.get("color", [0, 0, 0])
        if not (isinstance(color, list) and len(color) == 3 and all(_is_int(x) and 0 <= x <= 255 for x in color)):
            raise bad(f"concept {i} 'color' must be three numbers 0-255")
        if not isinstance(c.get("is_background", False), bool):
            raise bad(f"concept {i} 'is_background' must be true or false")
    if len({c["token"] for c in concepts}) != len(concepts):
        raise bad("lists a handle twice")


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_extracted(phase2: dict[str, Any], bad: Callable[[str], PackError]) -> None:
    """A compact pack's record of its extracted LoRA (``phase2.extracted``, schema 2)."""
    meta = phase2.get("extracted")
    if phase2.get("mode") != "full" or not isinstance(meta, dict):
        raise bad("has an extracted LoRA but no valid 'phase2.extracted' record of a full fine-tune")
    if not (_number(meta.get("energy")) and 0 < meta["energy"] <= 1):
        raise bad("phase2 'extracted.energy' must be a number in (0, 1]")
    if not (_is_int(meta.get("rank_cap")) and meta["rank_cap"] >= 1):
        raise bad("phase2 'extracted.rank_cap' must be an integer >= 1")
    errors = meta.get("relative_error", {})
    if not (isinstance(errors, dict) and all(isinstance(k, str) and _number(v) and v >= 0 for k, v in errors.items())):
        raise bad("phase2 'extracted.relative_error' must map module groups to numbers >= 0")


def parse_manifest(raw: bytes | str, where: Path, root: Path | None = None) -> dict[str, Any]:
    """Parse and check the text of a ``pack.json``: every field's presence, type and range.

    ``where`` is the name the errors use (the file, or the archive it came from).
    """
    def bad(what: str) -> PackError:
        return PackError(f"pack.json {what}", where)

    if len(raw) > MAX_MANIFEST_BYTES:
        raise bad("is implausibly large")
    try:
        manifest = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise PackError(f"pack.json is not valid JSON ({short_reason(e, 80)})", where) from None
    if not isinstance(manifest, dict) or manifest.get("format") != PACK_FORMAT:
        raise PackError("pack.json is not a Break-A-Scene pack manifest", where)
    version = manifest.get("schema_version")
    if not _is_int(version) or version > SCHEMA_VERSION or version < 1:
        raise bad(f"schema version {version!r} is not supported (this app reads up to {SCHEMA_VERSION}); "
                  "update the app")
    for key in ("base_model", "concepts", "files", "phase2"):
        if key not in manifest:
            raise PackError(f"pack.json lacks '{key}'", where)
    files, phase2, base = manifest["files"], manifest["phase2"], manifest["base_model"]
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise bad("'files' must map roles to file names")
    if "embeddings" not in files:
        raise bad("'files' lacks 'embeddings'")
    for name in files.values():
        safe_member(root if root is not None else where.parent, name)
    if not isinstance(phase2, dict):
        raise bad("'phase2' must be an object")
    if phase2.get("mode", "none") not in PHASE2_MODES:
        raise bad(f"phase2 mode {phase2.get('mode')!r} is not one of {', '.join(PHASE2_MODES)}")
    lora = phase2.get("lora")
    if lora is not None and not isinstance(lora, dict):
        raise bad("phase2 'lora' must be an object")
    if "lora_unet" in files:
        if not isinstance(lora, dict) or not _is_int(lora.get("rank")) or lora["rank"] < 1:
            raise bad("has LoRA weights but no valid LoRA rank")
        alpha = lora.get("alpha")
        if alpha is not None and not (isinstance(alpha, (int, float)) and not isinstance(alpha, bool)
                                      and math.isfinite(alpha) and alpha > 0):
            raise bad("LoRA 'alpha' must be a positive number")
    if any(role in files for role in EXTRACTED_ROLES):
        _check_extracted(phase2, bad)
    if not isinstance(base, dict) or not isinstance(base.get("ref"), str) or not base["ref"]:
        raise bad("'base_model' must name the base model")
    res = base.get("resolution")
    if not (_is_int(res) and 8 <= res <= 8192):
        raise bad(f"base_model resolution {res!r} is not a size in pixels")
    _check_concepts(manifest["concepts"], bad)
    training = manifest.get("training")
    if training is not None and not (isinstance(training, dict)
                                     and isinstance(training.get("settings", {}), dict)):
        raise bad("'training' must be an object with 'settings' an object")
    if manifest.get("imported_from") is not None and not isinstance(manifest["imported_from"], list):
        raise bad("'imported_from' must be a list")
    if not isinstance(phase2.get("text_encoder", False), bool):
        raise bad("phase2 'text_encoder' must be true or false")
    return manifest


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read and check a pack's ``pack.json`` (see :func:`parse_manifest`)."""
    root = Path(path)
    mpath = root / MANIFEST
    if not root.is_dir():
        raise PackError("not a handle pack folder", root)
    if not mpath.is_file():
        raise PackError("no pack.json: not a handle pack, or an interrupted write", root)
    if mpath.stat().st_size > MAX_MANIFEST_BYTES:
        raise PackError("pack.json is implausibly large", mpath)
    try:
        raw = mpath.read_bytes()
    except OSError as e:
        raise PackError(f"cannot read pack.json ({e.strerror or e})", mpath) from None
    return parse_manifest(raw, mpath, root)


def pack_entries(path: Path) -> set[str] | None:
    """The top-level names that belong to the pack in ``path``, or ``None`` if it holds no valid pack."""
    try:
        manifest = read_manifest(path)
    except PackError:
        return None
    return {MANIFEST, "scene", *(Path(v).parts[0] for v in manifest["files"].values())}


def pack_id(manifest: Mapping[str, Any], embeddings: Mapping[str, Any]) -> str:
    """A short stable id of a pack: the hash of its manifest and its handle embeddings.

    ``embeddings`` maps each token to its vector (a CPU tensor or an array; hashed as float32).
    """
    h = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode())
    for tok in sorted(embeddings):
        h.update(tok.encode())
        h.update(np.asarray(embeddings[tok], dtype=np.float32).tobytes())
    return h.hexdigest()[:12]
