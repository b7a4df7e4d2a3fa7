"""Handle packs other tools can load, and embeddings from other tools.

Exports (all safetensors):

* ``diffusers/<name>.safetensors``: one textual-inversion file per handle, ``{"<asset0>": [D]}``,
  for ``StableDiffusionPipeline.load_textual_inversion``;
* ``a1111/<name>.safetensors``: ``{"emb_params": [1, D]}``; A1111 and ComfyUI use the file name
  (``asset0``) as the trigger word;
* ``diffusers/pytorch_lora_weights.safetensors``: phase 2 as a LoRA in the diffusers/PEFT layout
  (``unet.<module>.lora_A.weight`` ..., ``text_encoder.text_model.<module>.lora_B.weight``), with
  the rank and alpha in the file's metadata, for ``load_lora_weights``;
* ``kohya/<pack>.safetensors``: the same LoRA in the kohya layout (``lora_unet_*``/``lora_te_*``
  with ``.lora_down.weight``, ``.lora_up.weight`` and ``.alpha``).

SDXL packs (two text encoders) write ``{"clip_l": [1, 768], "clip_g": [1, 1280]}`` embeddings in
both embedding formats, the LoRA's second text encoder as ``text_encoder_2.*`` (diffusers) and
kohya's SDXL names (``lora_unet_<SGM name>``, ``lora_te1_``, ``lora_te2_``); the key maps live in
:mod:`engine.packs.sdxl_keys`.

A LoRA-trained pack exports its LoRA exactly. A fully fine-tuned pack gets a LoRA extracted by a
truncated SVD of (tuned - base) per attention projection, the same layers our own LoRA mode trains
(UNet ``to_q/to_k/to_v/to_out.0``, text encoder ``q_proj/k_proj/v_proj/out_proj``); the change
in all other weights (convolutions, feed-forwards, norms, the token table) is not carried, and
:class:`LoraExport` reports how large it was.

Imports read safetensors directly; ``.pt``/``.bin``/``.ckpt`` embeddings are opened only with
``torch.load(weights_only=True)``, which refuses anything that would execute code.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import engine
from engine.errors import OutputError, PackError, short_reason
from engine.formats.manifest import (MANIFEST, PACK_FORMAT, SCHEMA_VERSION, is_pack_token, pack_entries,
                                     read_manifest)
from engine.packs.lora_extract import LAYER_SETS, LoraExport, lora_from_pack
from engine.packs.pack import HandlePack
from engine.packs.sdxl_keys import kohya_sdxl_lora_state, read_sdxl_embedding, sdxl_embedding_tensors
from engine.safe_output import check_output_folder, check_writable, write_folder

FORMATS = ("diffusers", "a1111", "kohya")
MAX_EMBEDDING_FILE_BYTES = 16 << 20  # one SD embedding is a few KB; anything this big is not one
MAX_VECTORS = 1  # our handles are single vectors (as in the paper)
LORA_FILE = "pytorch_lora_weights.safetensors"
EMBEDDING_SUFFIXES = (".safetensors", ".pt", ".bin", ".ckpt")


def trigger_name(token: str) -> str:
    """A file-name-safe trigger word for a handle: ``<asset0>`` -> ``asset0``."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "", token)
    if not name:
        raise ValueError(f"handle {token!r} has no usable characters for a file name")
    return name


# --------------------------------------------------------------------------------------- inspect
def _file_sizes(pack: HandlePack) -> dict[str, int]:
    return {name: (pack.path / name).stat().st_size for name in pack.manifest["files"].values()
            if isinstance(name, str) and (pack.path / name).is_file()}


def inspect_pack(pack: HandlePack) -> dict[str, Any]:
    """What a pack holds: tokens, base model, phase-2 mode, tensor/file sizes and settings."""
    m = pack.manifest
    phase2 = m["phase2"]
    n_params = {"unet": sum(v.numel() for v in (pack.unet_state or {}).values()),
                "text_encoder": sum(v.numel() for v in (pack.text_encoder_state or {}).values())}
    if pack.lora:
        n_params = {"lora_unet": sum(v.numel() for v in pack.lora["unet"].values()),
                    "lora_text_encoder": sum(v.numel() for v in (pack.lora.get("text_encoder") or {}).values())}
    if pack.extracted is not None:
        n_params = {f"lora_{part}": sum(v.numel() for v in tensors.values()) for part, tensors in pack.extracted.items()}
    width = next(iter(pack.embeddings.values())).shape[0]
    return {
        "path": str(pack.path), "id": pack.id, "created": m.get("created"),
        "app_version": m.get("app_version"), "base_model": pack.base_model, "resolution": pack.resolution,
        "tokens": [{"token": c["token"], "init_word": c.get("init_word"),
                    "background": bool(c.get("is_background"))} for c in pack.concepts],
        "embedding_width": width,
        "phase2": {"mode": phase2.get("mode"), "text_encoder": phase2.get("text_encoder"),
                   "lora_rank": (phase2.get("lora") or {}).get("rank"), "storage": pack.storage,
                   "extracted": phase2.get("extracted")},
        "parameters": n_params, "files": _file_sizes(pack),
        "settings": (m.get("training") or {}).get("settings", {}),
    }


def _extraction_lines(ex: dict[str, Any] | None) -> list[str]:
    """What a compact pack's stored LoRA keeps, for ``bas pack inspect``."""
    if not ex:
        return []
    errors = ex.get("relative_error", {})
    return [f"stored as   LoRA extracted at save time: energy {ex.get('energy')}, rank cap {ex.get('rank_cap')}, "
            f"{ex.get('dtype')}, {ex.get('layers')} layers (mean rank {ex.get('rank_mean')}, max {ex.get('rank_max')}), "
            f"{_size(int(ex.get('bytes', 0)))}",
            "rel. error  " + ", ".join(f"{k} {v:.4f}" for k, v in errors.items())
            + " (||tuned - base - B A|| / ||tuned - base|| over the extracted layers)",
            "not carried " + ", ".join(f"{k} {v:.4f}" for k, v in (ex.get("not_carried") or {}).items())
            + " (change in biases, norms, position table, relative to the part's whole change)"]


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"


def format_inspection(info: dict[str, Any]) -> str:
    """``inspect_pack``'s result as the text ``bas pack inspect`` prints."""
    p2 = info["phase2"]
    mode = str(p2["mode"] or "none") + (f" (rank {p2['lora_rank']})" if p2.get("lora_rank") else "")
    lines = [f"pack        {info['path']}", f"id          {info['id']}",
             f"created     {info['created']} (app {info['app_version']})",
             f"base model  {info['base_model']} at {info['resolution']} px",
             "handles     " + ", ".join(t["token"] + (" (background)" if t["background"] else
                                                     f" ({t['init_word']})" if t["init_word"] else "")
                                       for t in info["tokens"]),
             f"embedding   {info['embedding_width']} floats per handle",
             f"phase 2     {mode}, text encoder {'trained' if p2['text_encoder'] else 'frozen'}",
             *_extraction_lines(p2.get("extracted")),
             "parameters  " + ", ".join(f"{k} {v:,}" for k, v in info["parameters"].items()),
             "files       " + ", ".join(f"{k} {_size(v)}" for k, v in info["files"].items())]
    s = info["settings"]
    if s:
        keys = ("phase1_steps", "phase2_steps", "phase1_lr", "phase2_lr", "lora_rank", "prior_preservation",
                "seed")
        lines.append("settings    " + ", ".join(f"{k}={s[k]}" for k in keys if k in s))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ embeddings
def _save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # fp16 (a compact pack's LoRA) stays fp16, as LoRA files are usually shared; the rest is float32
    save_file({k: (v if v.dtype == torch.float16 else v.float()).detach().contiguous().cpu()
               for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def export_embeddings(pack: HandlePack, out_dir: str | Path, fmt: str) -> list[Path]:
    """Write each handle's embedding as its own file in ``fmt`` (``diffusers`` or ``a1111``)."""
    out = Path(out_dir) / fmt
    paths = []
    for tok, vec in pack.embeddings.items():
        name = trigger_name(tok)
        if len(pack.text_widths) == 2 and fmt in ("diffusers", "a1111"):  # SDXL: clip_l + clip_g
            paths.append(_save(sdxl_embedding_tensors(vec, pack.text_widths), out / f"{name}.safetensors",
                               {"name": name, "token": tok, "base_model": pack.base_model}))
        elif fmt == "diffusers":
            paths.append(_save({tok: vec}, out / f"{name}.safetensors"))
        elif fmt == "a1111":
            paths.append(_save({"emb_params": vec.reshape(1, -1)}, out / f"{name}.safetensors",
                               {"name": name, "base_model": pack.base_model}))
        else:
            raise ValueError(f"embedding format must be diffusers or a1111, not {fmt!r}")
    return paths


def _check_embedding_file(path: Path) -> None:
    if not path.is_file():
        raise PackError("embedding file not found", path)
    if path.suffix.lower() not in EMBEDDING_SUFFIXES:
        raise PackError(f"not an embedding file (expected one of {', '.join(EMBEDDING_SUFFIXES)})", path)
    if path.stat().st_size > MAX_EMBEDDING_FILE_BYTES:
        raise PackError(f"{path.stat().st_size / 1e6:.0f} MB is far too large for a textual-inversion "
                        "embedding (a LoRA or a model file?)", path)


def _read_embedding_dict(path: Path) -> dict[str, Any]:
    if path.suffix.lower() == ".safetensors":
        try:
            return dict(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as e:
            raise PackError(f"not a valid safetensors file ({e})", path) from None
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any refusal of the safe unpickler means: not loadable safely
        raise PackError("refused: this pickle file cannot be read with weights_only (it would need to "
                        f"execute code to load: {type(e).__name__}). Convert it to .safetensors with "
                        "a tool you trust", path) from None
    if isinstance(data, torch.Tensor):
        return {path.stem: data}
    if not isinstance(data, dict):
        raise PackError(f"holds a {type(data).__name__}, not an embedding dictionary", path)
    return data


def read_embedding_file(path: str | Path, token: str | None = None) -> dict[str, torch.Tensor]:
    """Read one textual-inversion file (diffusers, A1111/ComfyUI safetensors or A1111 ``.pt``).

    Returns ``{token: [D] tensor}``. The token is ``token`` if given, else the diffusers key, else
    ``<file stem>`` for A1111 files (whose trigger word is the file name).
    """
    path = Path(path)
    _check_embedding_file(path)
    data = _read_embedding_dict(path)
    try:
        sdxl = read_sdxl_embedding(data)
    except ValueError as e:
        raise PackError(f"SDXL embedding: {e}", path) from None
    if sdxl is not None:
        return {token or f"<{path.stem}>": sdxl}
    if "string_to_param" in data and isinstance(data["string_to_param"], dict):
        vec, name = data["string_to_param"].get("*"), f"<{path.stem}>"
    elif "emb_params" in data:
        vec, name = data["emb_params"], f"<{path.stem}>"
    elif len(data) == 1:
        name, vec = next(iter(data.items()))
    else:
        raise PackError(f"unrecognised embedding layout (keys {sorted(map(str, data))[:5]}); expected "
                        "{token: tensor}, {'emb_params': tensor} or A1111's string_to_param", path)
    if not isinstance(vec, torch.Tensor) or vec.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise PackError("the embedding is not a floating-point tensor", path)
    if vec.dim() == 2 and vec.shape[0] <= MAX_VECTORS:
        vec = vec[0]
    if vec.dim() != 1:
        raise PackError(f"embedding of shape {tuple(vec.shape)}: only single-vector embeddings ([D] or [1, D]) "
                        "can become a handle", path)
    if not torch.isfinite(vec).all():
        raise PackError("the embedding holds NaN or infinite values", path)
    return {token or str(name): vec.float().clone()}


def text_widths_of(model_ref: str) -> list[int] | None:
    """Each text encoder's token width of a base model, read from its configs (None if unknown)."""
    from engine.formats.names import TINY_SDXL_MODEL
    from engine.models import resolve_model

    kind, where = resolve_model(model_ref)
    if kind == "tiny":
        return [32, 48] if where == TINY_SDXL_MODEL else [32]
    widths = []
    for part in ("text_encoder", "text_encoder_2"):
        cfg = Path(where) / part / "config.json"
        if kind == "folder" and cfg.is_file():
            widths.append(int(json.loads(cfg.read_text()).get("hidden_size", 0)))
    return widths if widths and all(widths) else None


def embedding_width_of(model_ref: str) -> int | None:
    """The width of a handle vector for a base model (the sum over its text encoders; None if unknown)."""
    widths = text_widths_of(model_ref)
    return sum(widths) if widths else None


def import_embeddings(files: list[str | Path], base_model: str, out: str | Path,
                      resolution: int = 512, force: bool = False) -> Path:
    """Make a pack (handles only, no phase-2 weights) from textual-inversion files.

    Each file's trigger becomes a handle; widths must match the base model's text encoder. ``out``
    follows :mod:`engine.safe_output`'s rules (an existing pack is replaced only with ``force``).
    """
    if not files:
        raise ValueError("no embedding files given")
    if not (isinstance(resolution, int) and 8 <= resolution <= 8192 and resolution % 8 == 0):
        raise ValueError(f"--resolution {resolution}: must be a multiple of 8 between 8 and 8192")
    check_output_folder(out, force, pack_entries, "handle pack")
    vectors: dict[str, torch.Tensor] = {}
    for f in files:
        for tok, vec in read_embedding_file(f).items():
            if tok in vectors:
                raise PackError(f"handle {tok} is defined twice", f)
            if not is_pack_token(tok):
                raise PackError(f"handle {tok!r} is not usable (one word, no spaces, at most 64 characters)", f)
            vectors[tok] = vec
    widths = text_widths_of(base_model)
    width = sum(widths) if widths else None
    for (tok, vec), f in zip(vectors.items(), files):
        if width is not None and vec.shape[0] != width:
            raise PackError(f"embedding {tok} has width {vec.shape[0]}, but base model '{base_model}' "
                            f"needs {width} (trained for another model family?)", f)
    manifest = {"format": PACK_FORMAT, "schema_version": SCHEMA_VERSION, "app_version": engine.__version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "base_model": {"ref": base_model, "resolution": resolution,
                               **({"family": "sdxl", "text_widths": widths} if widths and len(widths) == 2 else {})},
                "concepts": [{"token": t, "init_word": None, "color": [128, 128, 128], "is_background": False}
                             for t in vectors],
                "phase2": {"mode": "none", "text_encoder": False, "lora": None},
                "files": {"embeddings": "embeddings.safetensors"},
                "imported_from": [Path(f).name for f in files]}

    def write(root: Path) -> None:
        _save(vectors, root / "embeddings.safetensors")
        (root / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        read_manifest(root)

    write_folder(out, write, force, pack_entries, "handle pack", write_errors=(SafetensorError,))
    return Path(out)


# ------------------------------------------------------------------------------------------ LoRA
def _te_key(name: str) -> str:
    """transformers 5 dropped the ``text_model.`` level; files keep it for older tools."""
    return name if name.startswith("text_model.") else "text_model." + name


def diffusers_lora_state(lora: LoraExport) -> dict[str, torch.Tensor]:
    """The diffusers/PEFT LoRA layout (``unet.*`` / ``text_encoder.*`` keys).

    This layout has no alpha: diffusers then uses alpha = rank, so a scale alpha/rank other than 1
    is folded into ``lora_B``. A per-layer-rank LoRA has scale 1 everywhere, which diffusers reads
    as such from the shapes (alpha = each module's rank when a file holds no alphas).
    """
    scale = 1.0 if lora.per_layer_rank else lora.alpha / lora.rank

    def scaled(k: str, v: torch.Tensor) -> torch.Tensor:
        return v * scale if scale != 1.0 and k.endswith("lora_B.weight") else v

    out = {f"unet.{k}": scaled(k, v) for k, v in lora.unet.items()}
    out.update({f"text_encoder.{_te_key(k)}": scaled(k, v) for k, v in lora.text_encoder.items()})
    out.update({f"text_encoder_2.{_te_key(k)}": scaled(k, v) for k, v in lora.text_encoder_2.items()})
    return out


def kohya_lora_state(lora: LoraExport) -> dict[str, torch.Tensor]:
    """The kohya layout: ``lora_unet_<module_with_underscores>.lora_down.weight`` / ``.lora_up.weight``
    / ``.alpha`` (and ``lora_te_`` for the text encoder); SDXL as sd-scripts names it
    (:func:`engine.packs.sdxl_keys.kohya_sdxl_lora_state`).

    One alpha for every module: a per-layer-rank LoRA gets alpha = its rank cap, and each module's
    ``lora_up`` is multiplied by rank / cap so that every loader's alpha / rank still gives scale 1
    (diffusers' kohya reader maps per-module alphas to the wrong names and would use one for all).
    """
    unet, te, te2 = (_uniform_alpha(lora, lora.part(p)) for p in ("unet", "text_encoder", "text_encoder_2"))
    if lora.family == "sdxl":
        return kohya_sdxl_lora_state(unet, [te, te2], lora.alpha, lora.layers_per_block, _te_key)
    out: dict[str, torch.Tensor] = {}
    for prefix, tensors, rename in (("lora_unet_", unet, lambda k: k), ("lora_te_", te, _te_key)):
        for key, v in tensors.items():
            if not key.endswith(".lora_A.weight"):
                continue
            module = key[: -len(".lora_A.weight")]
            name = prefix + rename(module).replace(".", "_")
            out[f"{name}.lora_down.weight"] = v
            out[f"{name}.lora_up.weight"] = tensors[f"{module}.lora_B.weight"]
            out[f"{name}.alpha"] = torch.tensor(float(lora.alpha))
    return out


def _uniform_alpha(lora: LoraExport, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``tensors`` with scale 1 at alpha = ``lora.alpha`` for every module (see :func:`kohya_lora_state`)."""
    if not lora.per_layer_rank:
        return tensors
    out = dict(tensors)
    for key, a in tensors.items():
        if key.endswith(".lora_A.weight"):
            up = key.replace(".lora_A.weight", ".lora_B.weight")
            out[up] = (tensors[up].float() * (a.shape[0] / lora.alpha)).to(tensors[up].dtype)
    return out


EXPORT_README = "README.txt"


def export_entries(path: Path) -> set[str] | None:
    """The names of an earlier export in ``path`` (recognised by its README), or ``None``."""
    try:
        head = (path / EXPORT_README).read_text(encoding="utf-8")[:64]
    except (OSError, UnicodeDecodeError):
        return None
    return {EXPORT_README, *FORMATS} if head.startswith("Exported from a Break-A-Scene handle pack") else None


def export_pack(pack: HandlePack, out_dir: str | Path, formats: list[str] | str = "all", rank: int = 16,
                base: Any | None = None, layers: str = "all", force: bool = False) -> dict[str, Any]:
    """Export a pack for other tools (see the module doc). Returns written paths and LoRA fidelity.

    ``formats`` is a list of ``diffusers``, ``a1111``, ``kohya`` or ``"all"``; ``rank`` and
    ``layers`` apply only when the LoRA is extracted from fully fine-tuned weights. ``out_dir``
    follows :mod:`engine.safe_output`'s rules (an earlier export is replaced only with ``force``).
    """
    fmts = list(FORMATS) if formats == "all" or formats == ["all"] else ([formats] if isinstance(formats, str) else formats)
    bad = [f for f in fmts if f not in FORMATS]
    if bad:
        raise ValueError(f"unknown export format(s) {bad}; choose from {', '.join(FORMATS)} or all")
    if not isinstance(rank, int) or rank < 1:
        raise ValueError(f"--rank {rank}: the LoRA rank must be at least 1")
    target = Path(out_dir)
    has_weights = (pack.lora is not None or pack.extracted is not None or pack.unet_state is not None or pack.text_encoder_state is not None
                   or pack.text_encoder_2_state is not None)
    entries = [EXPORT_README, *(f for f in ("diffusers", "a1111") if f in fmts),
               *(["kohya"] if has_weights and "kohya" in fmts else [])]
    _check_export_target(target, entries, force)
    written: list[Path] = []
    report: dict[str, Any] = {"files": written, "lora": None}
    target.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-partial-", dir=target))
    try:
        for fmt in ("diffusers", "a1111"):
            if fmt in fmts:
                written.extend(export_embeddings(pack, tmp, fmt))
        if has_weights and ({"diffusers", "kohya"} & set(fmts)):
            lora = lora_from_pack(pack, rank, base, layers)
            meta = {"rank": str(lora.rank), "alpha": str(lora.alpha), "base_model": pack.base_model,
                    "tokens": ",".join(pack.tokens), "exact": str(lora.exact)}
            if "diffusers" in fmts:
                written.append(_save(diffusers_lora_state(lora), tmp / "diffusers" / LORA_FILE, meta))
            if "kohya" in fmts:
                name = re.sub(r"[^A-Za-z0-9_-]+", "", pack.path.name) or "pack"
                written.append(_save(kohya_lora_state(lora), tmp / "kohya" / f"{name}.safetensors", meta))
            report["lora"] = lora
        (tmp / EXPORT_README).write_text(_export_readme(pack, fmts, report["lora"]), encoding="utf-8")
        written.append(tmp / EXPORT_README)
        for name in entries:  # each entry replaced only now that all are complete
            if (tmp / name).exists():
                if (target / name).exists():
                    os.replace(target / name, tmp / f".old-{name}")
                os.replace(tmp / name, target / name)
    except (OSError, SafetensorError) as e:
        raise OutputError(f"could not write the export ({short_reason(e)}); earlier files are unchanged",
                          target) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    written[:] = [target / p.relative_to(tmp) for p in written]
    return report


def _check_export_target(target: Path, entries: list[str], force: bool) -> None:
    check_writable(target / EXPORT_README)
    if target.exists() and not target.is_dir():
        raise OutputError("exists and is a file, not a folder for the export; nothing was written", target)
    clash = [n for n in entries if (target / n).exists()]
    if not clash:
        return
    if export_entries(target) is None:
        raise OutputError(f"already holds {', '.join(clash)}, not written by a pack export; choose another "
                          "folder (nothing was written)", target)
    if not force:
        raise OutputError(f"holds an earlier export ({', '.join(clash)}); add --force to replace it "
                          "(nothing was written)", target)


def _export_readme(pack: HandlePack, fmts: list[str], lora: LoraExport | None) -> str:
    names = ", ".join(trigger_name(t) for t in pack.tokens)
    lines = [f"Exported from a Break-A-Scene handle pack (base model {pack.base_model}).", ""]
    if "diffusers" in fmts and len(pack.text_widths) == 2:
        lines += ["diffusers (SDXL): for each handle, e = safetensors.torch.load_file('diffusers/<name>.safetensors'); "
                  "pipe.load_textual_inversion(e['clip_l'], token=T, text_encoder=pipe.text_encoder, "
                  "tokenizer=pipe.tokenizer) and the same with e['clip_g'], pipe.text_encoder_2, pipe.tokenizer_2; "
                  f"prompts then use {', '.join(pack.tokens)}."]
    elif "diffusers" in fmts:
        lines += ["diffusers: pipe.load_textual_inversion('diffusers/<name>.safetensors') for each handle; "
                  f"prompts then use {', '.join(pack.tokens)}."]
        if lora:
            lines.append(f"           pipe.load_lora_weights('diffusers', weight_name='{LORA_FILE}')")
    if "a1111" in fmts:
        lines.append(f"a1111/ComfyUI: copy a1111/*.safetensors to embeddings/; trigger words: {names}.")
    if "kohya" in fmts and lora:
        lines.append("kohya: kohya/*.safetensors is a LoRA ("
                     + ("lora_unet_*/lora_te1_*/lora_te2_*, SDXL" if lora.family == "sdxl" else "lora_unet_*/lora_te_*")
                     + ") for A1111/ComfyUI loras/.")
    if lora is not None and lora.extraction:
        ex = lora.extraction
        lines += ["", f"The LoRA is the one stored in the pack, extracted from fully fine-tuned weights at save "
                      f"time (energy {ex.get('energy')}, rank cap {ex.get('rank_cap')}, per-layer ranks, alpha = "
                      "rank): relative reconstruction error "
                  + ", ".join(f"{k} {v:.4f}" for k, v in ex.get("relative_error", {}).items()) + "."]
    if lora is not None and not lora.exact:
        lines += ["", f"The LoRA was extracted from fully fine-tuned weights at rank {lora.rank}: relative "
                      f"reconstruction error {lora.overall_error:.4f} over the {len(lora.layer_errors)} extracted layers; the change "
                      "in other layers (not carried), relative to the whole change: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in lora.not_carried.items()) + "."]
    if lora is None and pack.manifest["phase2"].get("mode") != "none":
        lines += ["", "No LoRA written (formats asked for carry none)."]
    return "\n".join(lines) + "\n"

