"""Handle packs: the trained result of a break, as a folder of JSON + safetensors.

Layout (documented in ``docs/handle-pack.md``)::

    PACK/
      pack.json                    manifest, schema_version 1
      embeddings.safetensors       {"<asset0>": [D], ...}
      unet.safetensors             phase 2 full fine-tuning: the tuned UNet weights
      text_encoder.safetensors     ... and the tuned text encoder (handle rows excluded)
      lora_unet.safetensors        phase 2 LoRA: peft-layout LoRA weights
      lora_text_encoder.safetensors
      scene/                       the scene in the reference layout (img.png, mask0.png ...)

Reading a pack never executes anything: only JSON and safetensors are opened.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import engine
from engine.errors import PackError, short_reason
from engine.safe_output import write_folder
from engine.scene import MAX_HANDLES, Scene, load_scene, save_scene
from engine.trainer import TrainResult

PACK_FORMAT = "break-a-scene-pack"
SCHEMA_VERSION = 1
MANIFEST = "pack.json"
MAX_MANIFEST_BYTES = 1 << 20


@dataclass
class HandlePack:
    """A loaded pack: manifest plus tensors (full weights or LoRA, whichever phase 2 produced)."""

    path: Path
    manifest: dict[str, Any]
    embeddings: dict[str, torch.Tensor]
    unet_state: dict[str, torch.Tensor] | None = None
    text_encoder_state: dict[str, torch.Tensor] | None = None
    lora: dict[str, Any] | None = None
    concepts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tokens(self) -> list[str]:
        """Handle tokens in training order."""
        return [c["token"] for c in self.concepts]

    @property
    def base_model(self) -> str:
        """The model reference the pack was trained on."""
        return str(self.manifest["base_model"]["ref"])

    @property
    def resolution(self) -> int:
        """The training resolution in pixels."""
        return int(self.manifest["base_model"]["resolution"])

    def scene(self) -> Scene | None:
        """The scene stored with the pack, if any."""
        folder = self.path / "scene"
        return load_scene(folder) if folder.is_dir() else None


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path))


def pack_entries(path: Path) -> set[str] | None:
    """The top-level names that belong to the pack in ``path``, or ``None`` if it holds no valid pack."""
    try:
        manifest = read_manifest(path)
    except PackError:
        return None
    return {MANIFEST, "scene", *(Path(v).parts[0] for v in manifest["files"].values())}


def save_pack(result: TrainResult, scene: Scene, path: str | Path, force: bool = False) -> Path:
    """Write a training result as a pack folder, following :mod:`engine.safe_output`'s rules.

    Everything goes into a new temporary sibling renamed into place at the end; a non-empty
    ``path`` that is not a pack is refused (``OutputError``), an existing pack is replaced only
    with ``force``. The ``checkpoints/`` of the running break are carried over.
    """
    path = Path(path)
    write_folder(path, lambda tmp: _write_pack_files(result, scene, tmp), force, pack_entries,
                 "handle pack", write_errors=(SafetensorError,))
    return path


def _write_pack_files(result: TrainResult, scene: Scene, path: Path) -> None:
    files: dict[str, str] = {"embeddings": "embeddings.safetensors"}
    _save_tensors(result.handles, path / files["embeddings"])
    if result.unet_state is not None:
        files["unet"] = "unet.safetensors"
        _save_tensors(result.unet_state, path / files["unet"])
    if result.text_encoder_state is not None:
        files["text_encoder"] = "text_encoder.safetensors"
        _save_tensors(result.text_encoder_state, path / files["text_encoder"])
    lora_meta = None
    if result.lora is not None:
        files["lora_unet"] = "lora_unet.safetensors"
        _save_tensors(result.lora["unet"], path / files["lora_unet"])
        if result.lora.get("text_encoder"):
            files["lora_text_encoder"] = "lora_text_encoder.safetensors"
            _save_tensors(result.lora["text_encoder"], path / files["lora_text_encoder"])
        lora_meta = {k: v for k, v in result.lora.items() if k not in ("unet", "text_encoder")}
    save_scene(scene, path / "scene")
    mode = "lora" if result.lora is not None else ("full" if result.unet_state is not None else "none")
    manifest = {
        "format": PACK_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "app_version": engine.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "base_model": {"ref": result.base_model, "resolution": result.resolution},
        "concepts": [{"token": c.token, "init_word": c.init_word, "color": list(c.color),
                      "is_background": c.is_background} for c in scene.concepts],
        "phase2": {"mode": mode, "text_encoder": result.text_encoder_state is not None
                   or bool(result.lora and result.lora.get("text_encoder")), "lora": lora_meta},
        "files": files,
        "training": {"settings": result.config.to_dict(), "seed": result.config.seed,
                     "seconds": round(result.seconds, 2),
                     "attention_resolution": result.attention_resolution,
                     "final_losses": result.losses[-1] if result.losses else {}},
    }
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")


FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
FILE_ROLES = ("embeddings", "unet", "text_encoder", "lora_unet", "lora_text_encoder")
PHASE2_MODES = ("none", "full", "lora")
MAX_TOKEN_CHARS = 64


def _load_tensors(path: Path, shown: Path | None = None) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; every one floating point and finite, else ``PackError``."""
    if not path.is_file():
        raise PackError("a file the manifest lists is missing", path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise PackError(f"not a valid safetensors file ({short_reason(e)})", path) from None
    for name, t in tensors.items():
        if t.dtype not in FLOAT_DTYPES:
            raise PackError(f"tensor {name!r} holds {str(t.dtype).replace('torch.', '')} values, not floating "
                            "point", path)
        if not bool(torch.isfinite(t).all()):
            raise PackError(f"tensor {name!r} holds NaN or infinite values (a diverged run?); refused", path)
    return tensors


def _safe_member(root: Path, name: object) -> Path:
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts \
            or "\\" in name or (len(name) > 1 and name[1] == ":"):
        raise PackError(f"manifest names an unsafe file {name!r}", root / MANIFEST)
    return root / name


def _is_int(v: object) -> bool:
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
        _safe_member(root if root is not None else where.parent, name)
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


def load_pack(path: str | Path) -> HandlePack:
    """Load a pack folder (JSON + safetensors only). Raises ``PackError`` naming the bad file.

    Every tensor must be floating point and finite; embeddings must be 1-D vectors of one width.
    """
    root = Path(path)
    manifest = read_manifest(root)
    files = manifest["files"]
    concepts = manifest["concepts"]
    emb = _load_tensors(_safe_member(root, files["embeddings"]))
    tokens = [c["token"] for c in concepts]
    if sorted(emb) != sorted(tokens):
        raise PackError(f"embeddings hold {sorted(emb)[:10]} but the manifest lists {tokens}", root / files["embeddings"])
    widths = {tuple(v.shape) for v in emb.values()}
    if len(widths) != 1 or len(next(iter(widths))) != 1 or not next(iter(widths))[0]:
        raise PackError(f"embeddings must all be 1-D vectors of one width, got shapes {sorted(widths)}",
                        root / files["embeddings"])
    pack = HandlePack(path=root, manifest=manifest, embeddings={k: v.float() for k, v in emb.items()},
                      concepts=concepts)
    if "unet" in files:
        pack.unet_state = _load_tensors(_safe_member(root, files["unet"]))
    if "text_encoder" in files:
        pack.text_encoder_state = _load_tensors(_safe_member(root, files["text_encoder"]))
    if "lora_unet" in files:
        meta = manifest["phase2"]["lora"]
        pack.lora = {**meta, "unet": _load_tensors(_safe_member(root, files["lora_unet"])),
                     "text_encoder": (_load_tensors(_safe_member(root, files["lora_text_encoder"]))
                                      if "lora_text_encoder" in files else None)}
    return pack
