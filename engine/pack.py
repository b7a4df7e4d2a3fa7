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
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import engine
from engine.errors import PackError
from engine.scene import Scene, load_scene, save_scene
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
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)


def save_pack(result: TrainResult, scene: Scene, path: str | Path) -> Path:
    """Write a training result as a pack folder; files go through temporary names then renames.

    The manifest is written last, so a folder without ``pack.json`` is an incomplete write.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / MANIFEST).unlink(missing_ok=True)
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
    scene_dir = path / "scene"
    if scene_dir.exists():
        shutil.rmtree(scene_dir)
    save_scene(scene, scene_dir)
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
    tmp = path / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    os.replace(tmp, path / MANIFEST)
    return path


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise PackError("a file the manifest lists is missing", path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise PackError(f"not a valid safetensors file ({e})", path) from None


def _safe_member(root: Path, name: object) -> Path:
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise PackError(f"manifest names an unsafe file {name!r}", root / MANIFEST)
    return root / name


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read and check a pack's ``pack.json`` (format, schema version, required keys)."""
    root = Path(path)
    mpath = root / MANIFEST
    if not root.is_dir():
        raise PackError("not a handle pack folder", root)
    if not mpath.is_file():
        raise PackError("no pack.json: not a handle pack, or an interrupted write", root)
    if mpath.stat().st_size > MAX_MANIFEST_BYTES:
        raise PackError("pack.json is implausibly large", mpath)
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise PackError(f"pack.json is not valid JSON ({e})", mpath) from None
    if not isinstance(manifest, dict) or manifest.get("format") != PACK_FORMAT:
        raise PackError("pack.json is not a Break-A-Scene pack manifest", mpath)
    version = manifest.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION or version < 1:
        raise PackError(f"schema version {version!r} is not supported (this app reads up to "
                        f"{SCHEMA_VERSION}); update the app", mpath)
    for key in ("base_model", "concepts", "files", "phase2"):
        if key not in manifest:
            raise PackError(f"pack.json lacks '{key}'", mpath)
    files, phase2, base = manifest["files"], manifest["phase2"], manifest["base_model"]
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise PackError("pack.json 'files' must map roles to file names", mpath)
    if not isinstance(phase2, dict):
        raise PackError("pack.json 'phase2' must be an object", mpath)
    if not isinstance(base, dict) or not isinstance(base.get("ref"), str):
        raise PackError("pack.json 'base_model' must name the base model", mpath)
    if not (isinstance(base.get("resolution"), int) and 8 <= base["resolution"] <= 8192):
        raise PackError(f"pack.json base_model resolution {base['resolution']!r} is not a size in pixels", mpath)
    return manifest


def load_pack(path: str | Path) -> HandlePack:
    """Load a pack folder (JSON + safetensors only). Raises ``PackError`` naming the bad file."""
    root = Path(path)
    manifest = read_manifest(root)
    files = manifest["files"]
    concepts = manifest["concepts"]
    if not isinstance(concepts, list) or not concepts or not all(
            isinstance(c, dict) and isinstance(c.get("token"), str) and c["token"] for c in concepts):
        raise PackError("pack.json has no valid concept list", root / MANIFEST)
    if len({c["token"] for c in concepts}) != len(concepts):
        raise PackError("pack.json lists a handle twice", root / MANIFEST)
    emb = _load_tensors(_safe_member(root, files.get("embeddings")))
    tokens = [c["token"] for c in concepts]
    if sorted(emb) != sorted(tokens):
        raise PackError(f"embeddings hold {sorted(emb)} but the manifest lists {tokens}", root / files["embeddings"])
    widths = {tuple(v.shape) for v in emb.values()}
    if len(widths) != 1 or len(next(iter(widths))) != 1:
        raise PackError(f"embeddings must all be 1-D vectors of one width, got shapes {sorted(widths)}",
                        root / files["embeddings"])
    pack = HandlePack(path=root, manifest=manifest, embeddings=emb, concepts=concepts)
    if "unet" in files:
        pack.unet_state = _load_tensors(_safe_member(root, files["unet"]))
    if "text_encoder" in files:
        pack.text_encoder_state = _load_tensors(_safe_member(root, files["text_encoder"]))
    if "lora_unet" in files:
        meta = manifest["phase2"].get("lora") or {}
        if not isinstance(meta.get("rank"), int) or meta["rank"] < 1:
            raise PackError("LoRA pack without a valid rank in pack.json", root / MANIFEST)
        pack.lora = {**meta, "unet": _load_tensors(_safe_member(root, files["lora_unet"])),
                     "text_encoder": (_load_tensors(_safe_member(root, files["lora_text_encoder"]))
                                      if "lora_text_encoder" in files else None)}
    return pack
