"""Handle packs: the trained result of a break, as a folder of JSON + safetensors.

Layout (documented in ``docs/handle-pack.md``)::

    PACK/
      pack.json                    manifest, schema_version 1 (2 with an extracted LoRA)
      embeddings.safetensors       {"<asset0>": [D], ...}
      extracted_lora_unet.safetensors  phase 2 full fine-tuning, stored compactly (default): a
      extracted_lora_text_encoder.safetensors  LoRA extracted from (tuned - base), per-layer rank
      unet.safetensors             phase 2 full fine-tuning with --full-weights: the tuned UNet
      text_encoder.safetensors     ... and the tuned text encoder (handle rows excluded)
      lora_unet.safetensors        phase 2 LoRA: peft-layout LoRA weights
      lora_text_encoder.safetensors
      text_encoder_2.safetensors   SDXL: the second text encoder (full) ...
      lora_text_encoder_2.safetensors  ... or its LoRA
      scene/                       the scene in the reference layout (img.png, mask0.png ...)

Reading a pack never executes anything: only JSON and safetensors are opened.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import engine
from engine.errors import PackError, short_reason
from engine.safe_output import write_folder
from engine.formats.manifest import (MANIFEST, PACK_FORMAT, SCHEMA_VERSION, pack_entries, pack_id, read_manifest,
                                     safe_member)
from engine.formats.results import PackStorage, TrainResult
from engine.scene import Scene, load_scene, save_scene

if TYPE_CHECKING:  # pragma: no cover - type hints only
    from engine.models import SDComponents

PARTS = ("unet", "text_encoder", "text_encoder_2")
EXTRACTED_FILES = {part: f"extracted_lora_{part}.safetensors" for part in PARTS}


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
    text_encoder_2_state: dict[str, torch.Tensor] | None = None
    # A compact pack's extracted LoRA per part (peft layout, per-layer rank, scale 1)
    extracted: dict[str, dict[str, torch.Tensor]] | None = None

    @property
    def storage(self) -> str:
        """How phase 2 is stored: ``extracted_lora``, ``full``, ``lora`` or ``none``."""
        if self.extracted is not None:
            return "extracted_lora"
        if self.lora is not None:
            return "lora"
        return "full" if self.unet_state is not None or self.text_encoder_state is not None else "none"

    @property
    def family(self) -> str:
        """The base model's family as recorded at training (``sd`` for packs that do not say)."""
        return str(self.manifest["base_model"].get("family") or "sd")

    @property
    def text_widths(self) -> list[int]:
        """Each text encoder's width in a handle vector (SD: one, the vector's width)."""
        widths = self.manifest["base_model"].get("text_widths")
        if isinstance(widths, list) and widths and all(isinstance(w, int) for w in widths):
            return [int(w) for w in widths]
        return [int(next(iter(self.embeddings.values())).shape[0])]

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

    @property
    def id(self) -> str:
        """A short stable id: the hash of the manifest and the embeddings (:func:`engine.formats.manifest.pack_id`)."""
        return pack_id(self.manifest, self.embeddings)

    def scene(self) -> Scene | None:
        """The scene stored with the pack, if any."""
        folder = self.path / "scene"
        return load_scene(folder) if folder.is_dir() else None


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path, dtype: torch.dtype | None = None) -> None:
    save_file({k: v.detach().to(dtype or v.dtype).contiguous().cpu() for k, v in tensors.items()}, str(path))


def save_pack(result: TrainResult, scene: Scene, path: str | Path, force: bool = False,
              storage: PackStorage | None = None, base: SDComponents | None = None) -> Path:
    """Write a training result as a pack folder, following :mod:`engine.safe_output`'s rules.

    A full fine-tune's phase 2 is stored as ``storage`` says (default: a LoRA extracted from the
    difference to the base model, :func:`engine.packs.lora_extract.extract_lora`; ``base`` is that
    model, loaded from ``result.base_model`` when omitted; with ``full_weights`` the tuned tensors).
    Everything goes into a new temporary sibling renamed into place at the end; a non-empty
    ``path`` that is not a pack is refused (``OutputError``), an existing pack is replaced only
    with ``force``. The ``checkpoints/`` of the running break are carried over.
    """
    path = Path(path)
    storage = storage or PackStorage()
    storage.check()
    extracted = None
    full = any(s is not None for s in (result.unet_state, result.text_encoder_state, result.text_encoder_2_state))
    if full and result.lora is None and not storage.full_weights:
        extracted = _extract_for_pack(result, storage, base)
    write_folder(path, lambda tmp: _write_pack_files(result, scene, tmp, storage, extracted), force, pack_entries,
                 "handle pack", write_errors=(SafetensorError,))
    return path


def _extract_for_pack(result: TrainResult, storage: PackStorage,
                      base: SDComponents | None) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    from engine.packs.lora_extract import extract_lora, extraction_report

    if base is None:
        from engine.models import load_model

        base = load_model(result.base_model)
    lora = extract_lora(base, result.unet_state, result.text_encoder_state, result.text_encoder_2_state,
                        storage.lora_energy, storage.lora_rank_cap, storage.dtype,
                        str(result.model_info.get("family") or "sd"),
                        int(result.model_info.get("layers_per_block", 2)))
    tensors = {part: lora.part(part) for part in PARTS if lora.part(part)}
    return tensors, extraction_report(lora, storage.lora_energy, storage.lora_rank_cap, storage.dtype)


def _write_pack_files(result: TrainResult, scene: Scene, path: Path, storage: PackStorage,
                      extracted: tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]] | None) -> None:
    files: dict[str, str] = {"embeddings": "embeddings.safetensors"}
    _save_tensors(result.handles, path / files["embeddings"])
    dtype = torch.float16 if storage.dtype == "float16" else torch.float32
    if extracted is not None:
        for part, tensors in extracted[0].items():
            files[f"extracted_{part}"] = EXTRACTED_FILES[part]
            _save_tensors(tensors, path / EXTRACTED_FILES[part])
    else:
        for part, state in (("unet", result.unet_state), ("text_encoder", result.text_encoder_state),
                            ("text_encoder_2", result.text_encoder_2_state)):
            if state is not None:
                files[part] = f"{part}.safetensors"
                _save_tensors(state, path / files[part], dtype)
    lora_meta = None
    if result.lora is not None:
        files["lora_unet"] = "lora_unet.safetensors"
        _save_tensors(result.lora["unet"], path / files["lora_unet"])
        if result.lora.get("text_encoder"):
            files["lora_text_encoder"] = "lora_text_encoder.safetensors"
            _save_tensors(result.lora["text_encoder"], path / files["lora_text_encoder"])
        if result.lora.get("text_encoder_2"):
            files["lora_text_encoder_2"] = "lora_text_encoder_2.safetensors"
            _save_tensors(result.lora["text_encoder_2"], path / files["lora_text_encoder_2"])
        lora_meta = {k: v for k, v in result.lora.items() if k not in ("unet", "text_encoder", "text_encoder_2")}
    save_scene(scene, path / "scene")
    mode = "lora" if result.lora is not None else ("full" if result.unet_state is not None else "none")
    manifest = {
        "format": PACK_FORMAT,
        # Only a pack with an extracted LoRA needs schema 2: the others stay readable by older apps.
        "schema_version": SCHEMA_VERSION if extracted is not None else 1,
        "app_version": engine.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "base_model": {"ref": result.base_model, "resolution": result.resolution, **result.model_info},
        "concepts": [{"token": c.token, "init_word": c.init_word, "color": list(c.color),
                      "is_background": c.is_background} for c in scene.concepts],
        "phase2": {"mode": mode, "text_encoder": result.text_encoder_state is not None
                   or bool(result.lora and result.lora.get("text_encoder")), "lora": lora_meta,
                   "storage": "extracted_lora" if extracted is not None else mode,
                   **({"extracted": extracted[1]} if extracted is not None else {})},
        "files": files,
        "training": {"settings": result.config.to_dict(), "seed": result.config.seed,
                     "seconds": round(result.seconds, 2),
                     "attention_resolution": result.attention_resolution,
                     "final_losses": result.losses[-1] if result.losses else {}},
    }
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")


FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


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


def load_pack(path: str | Path) -> HandlePack:
    """Load a pack folder (JSON + safetensors only). Raises ``PackError`` naming the bad file.

    Every tensor must be floating point and finite; embeddings must be 1-D vectors of one width.
    """
    root = Path(path)
    manifest = read_manifest(root)
    files = manifest["files"]
    concepts = manifest["concepts"]
    emb = _load_tensors(safe_member(root, files["embeddings"]))
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
        pack.unet_state = _load_tensors(safe_member(root, files["unet"]))
    if "text_encoder" in files:
        pack.text_encoder_state = _load_tensors(safe_member(root, files["text_encoder"]))
    if "text_encoder_2" in files:
        pack.text_encoder_2_state = _load_tensors(safe_member(root, files["text_encoder_2"]))
    extracted = {part: _load_tensors(safe_member(root, files[f"extracted_{part}"]))
                 for part in PARTS if f"extracted_{part}" in files}
    if extracted or manifest["phase2"].get("storage") == "extracted_lora":
        pack.extracted = extracted
    if "lora_unet" in files:
        meta = manifest["phase2"]["lora"]
        pack.lora = {**meta, "unet": _load_tensors(safe_member(root, files["lora_unet"])),
                     "text_encoder": (_load_tensors(safe_member(root, files["lora_text_encoder"]))
                                      if "lora_text_encoder" in files else None),
                     "text_encoder_2": (_load_tensors(safe_member(root, files["lora_text_encoder_2"]))
                                        if "lora_text_encoder_2" in files else None)}
    return pack
