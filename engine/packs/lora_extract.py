"""Phase 2 of a full fine-tune as a LoRA: per-layer SVD of (tuned - base), and fusing a LoRA back.

Two uses share one extraction (:func:`_svd_part`):

* the compact pack (:func:`extract_lora`, what :func:`engine.packs.pack.save_pack` stores by
  default): each layer keeps the smallest rank whose components hold ``energy`` of the
  difference's squared Frobenius norm, at most ``rank_cap``, in fp16; layers whose difference is
  zero are left out;
* the export of a pack stored with full weights (:func:`lora_from_pack` with a fixed ``rank``),
  every layer at the same rank (zero components pad short layers).

A LoRA ``(A, B)`` of a layer adds ``scale * B @ A`` to its weight; a conv kernel ``[out, in, k, k]``
is ``A [r, in, k, k]`` then ``B [out, r, 1, 1]``. Extracted LoRAs have scale 1 (alpha = each
layer's rank); trained ones ``alpha / rank``. :func:`fuse_lora` adds it into the weights once at
load, so generation runs at the cost of a plain model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from engine.errors import PackError
from engine.formats.results import DEFAULT_LORA_ENERGY, DEFAULT_LORA_RANK_CAP, PackStorage
from engine.training.phase2 import TEXT_LORA_TARGETS, UNET_LORA_TARGETS

if TYPE_CHECKING:  # pragma: no cover - type hints only (pack.py imports this module)
    from engine.packs.pack import HandlePack

PARTS = ("unet", "text_encoder", "text_encoder_2")
LAYER_SETS = ("attention", "all")
DTYPES = {"float16": torch.float16, "float32": torch.float32}


@dataclass
class LoraExport:
    """A LoRA ready to write: peft-layout tensors per model part, plus how faithful it is.

    ``layer_errors`` maps each extracted layer to ``||delta - B A|| / ||delta||`` (Frobenius);
    ``layer_norms`` to ``(||delta||^2, ||delta - B A||^2)``, from which group errors are summed;
    ``not_carried`` maps each model part to ``||change outside the LoRA layers|| / ||whole change||``.
    All are empty for a pack whose phase 2 was a LoRA (exported exactly). ``per_layer_rank``: the
    ranks differ by layer and every layer's alpha is its rank (scale 1), as extracted LoRAs store
    them; otherwise one ``rank`` and ``alpha`` hold for all. ``extraction`` is a compact pack's
    record of its stored LoRA (``phase2.extracted`` of the manifest).
    """

    rank: int
    alpha: float
    unet: dict[str, torch.Tensor]
    text_encoder: dict[str, torch.Tensor]
    exact: bool
    layer_errors: dict[str, float] = field(default_factory=dict)
    not_carried: dict[str, float] = field(default_factory=dict)
    overall_error: float = 0.0  # relative error over all extracted layers together
    text_encoder_2: dict[str, torch.Tensor] = field(default_factory=dict)  # SDXL's second text encoder
    family: str = "sd"
    layers_per_block: int = 2
    per_layer_rank: bool = False
    layer_norms: dict[str, tuple[float, float]] = field(default_factory=dict)
    extraction: dict[str, Any] | None = None

    @property
    def max_error(self) -> float:
        """The worst per-layer relative reconstruction error (0 for an exact export)."""
        return max(self.layer_errors.values(), default=0.0)

    def part(self, name: str) -> dict[str, torch.Tensor]:
        """The tensors of one model part (``unet``, ``text_encoder``, ``text_encoder_2``)."""
        return {"unet": self.unet, "text_encoder": self.text_encoder, "text_encoder_2": self.text_encoder_2}[name]


def _targets(module: torch.nn.Module, suffixes: list[str] | None) -> dict[str, torch.nn.Module]:
    """Linear layers named by ``suffixes``; with ``None`` every Linear and Conv2d layer."""
    if suffixes is None:
        return {n: m for n, m in module.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))}
    return {n: m for n, m in module.named_modules()
            if isinstance(m, torch.nn.Linear) and any(n == s or n.endswith("." + s) for s in suffixes)}


def _top_components(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``u, s, vh`` of ``flat`` (float64, singular values descending), through the eigenvectors of
    the smaller Gram matrix: a full SVD of SD 2.1's [1280, 23040] conv kernels is many times slower,
    and in float64 the components a LoRA keeps come out the same."""
    wide = flat.shape[0] <= flat.shape[1]
    m = flat if wide else flat.T
    evals, evecs = torch.linalg.eigh(m @ m.T)
    evals, evecs = evals.flip(0).clamp_min(0), evecs.flip(1)
    s = evals.sqrt()
    keep = s > s[0] * 1e-12 if s.numel() and s[0] > 0 else torch.zeros_like(s, dtype=torch.bool)
    u, s = evecs[:, keep], s[keep]
    vh = (u.T @ m) / s[:, None]
    return (u, s, vh) if wide else (vh.T, s, u.T)


def _choose_rank(s: torch.Tensor, cap: int, energy: float | None) -> int:
    """The smallest rank holding ``energy`` of ``sum(s^2)`` (at most ``cap``); ``cap`` without one."""
    if energy is None:
        return min(cap, s.shape[0])
    kept = torch.cumsum(s.pow(2), 0) / s.pow(2).sum()
    return min(cap, int((kept < energy - 1e-12).sum()) + 1, s.shape[0])


def _svd_part(base: torch.nn.Module, tuned: dict[str, torch.Tensor], suffixes: list[str] | None, rank: int,
              errors: dict[str, float], prefix: str, energy: float | None = None,
              dtype: torch.dtype = torch.float32,
              norms: dict[str, tuple[float, float]] | None = None) -> tuple[dict[str, torch.Tensor], float, float, float]:
    """Per-layer truncated SVD of (tuned - base); returns peft tensors and the norms for reporting.

    ``energy`` None: every layer at ``rank`` (zero-padded). Otherwise each layer's rank is chosen
    by :func:`_choose_rank` with ``rank`` as the cap, and no padding. Errors are measured on the
    tensors as stored (after the cast to ``dtype``).
    """
    out: dict[str, torch.Tensor] = {}
    base_sd = base.state_dict()
    carried_sq = residual_sq = total_sq = 0.0
    targets = _targets(base, suffixes)
    for key, new in tuned.items():
        old = base_sd.get(key)
        if old is None or old.shape != new.shape:
            continue
        delta = new.double() - old.double().to(new.device)
        d2 = float(delta.pow(2).sum())
        total_sq += d2
        module = key.rsplit(".", 1)[0]
        if key.endswith(".weight") and module in targets and d2 > 0:
            carried_sq += d2
            # A conv kernel [out, in, k, k] factors as a k x k conv to r channels then a 1x1 conv.
            flat = delta.reshape(delta.shape[0], -1)
            u, s, vh = _top_components(flat)
            r = _choose_rank(s, rank, energy)
            root = s[:r].sqrt()
            up, down = (u[:, :r] * root).to(dtype), (root[:, None] * vh[:r]).to(dtype)
            err = float((flat - up.double() @ down.double()).pow(2).sum())
            if energy is None and r < rank:
                # Zero components up to the nominal rank: loaders derive alpha / rank scaling and
                # per-layer ranks differently, and one rank everywhere reads the same in all of them.
                up = torch.cat([up, up.new_zeros(up.shape[0], rank - r)], 1)
                down = torch.cat([down, down.new_zeros(rank - r, down.shape[1])], 0)
                r = rank
            residual_sq += err
            errors[prefix + module] = (err / d2) ** 0.5
            if norms is not None:
                norms[prefix + module] = (d2, err)
            if delta.dim() == 4:
                down, up = down.reshape(r, *delta.shape[1:]), up.reshape(*up.shape, 1, 1)
            out[f"{module}.lora_A.weight"] = down.contiguous()
            out[f"{module}.lora_B.weight"] = up.contiguous()
    return out, carried_sq, residual_sq, total_sq


def _extract(base: Any, states: dict[str, dict[str, torch.Tensor] | None], rank: int, layers: str,
             energy: float | None, dtype: torch.dtype, family: str, layers_per_block: int) -> LoraExport:
    """The LoRA of each tuned part's difference to ``base`` (:class:`SDComponents`)."""
    errors: dict[str, float] = {}
    norms: dict[str, tuple[float, float]] = {}
    not_carried: dict[str, float] = {}
    parts: dict[str, dict[str, torch.Tensor]] = {p: {} for p in PARTS}
    c_all = r_all = 0.0
    for part in PARTS:
        state = states.get(part)
        if state is None:
            continue
        module = getattr(base, part, None)
        if module is None:
            raise KeyError(f"the tuned weights hold a {part} the base model does not have")
        if part.startswith("text_encoder"):
            # Handle rows are not in the tuned state; compare the base rows only.
            state = {k: v for k, v in state.items() if "token_embedding" not in k}
        suffixes = (UNET_LORA_TARGETS if part == "unet" else TEXT_LORA_TARGETS) if layers == "attention" else None
        tensors, carried, residual, total = _svd_part(module, state, suffixes, rank, errors, part + ".",
                                                      energy, dtype, norms)
        parts[part] = tensors
        c_all, r_all = c_all + carried, r_all + residual
        not_carried[part] = ((total - carried) / total) ** 0.5 if total > 0 else 0.0
    return LoraExport(rank=rank, alpha=float(rank), unet=parts["unet"], text_encoder=parts["text_encoder"],
                      exact=False, layer_errors=errors, not_carried=not_carried,
                      overall_error=(r_all / c_all) ** 0.5 if c_all > 0 else 0.0,
                      text_encoder_2=parts["text_encoder_2"], family=family, layers_per_block=layers_per_block,
                      per_layer_rank=energy is not None, layer_norms=norms)


def extract_lora(base: Any, unet_state: dict[str, torch.Tensor] | None,
                 text_encoder_state: dict[str, torch.Tensor] | None = None,
                 text_encoder_2_state: dict[str, torch.Tensor] | None = None,
                 energy: float = DEFAULT_LORA_ENERGY, rank_cap: int = DEFAULT_LORA_RANK_CAP, dtype: str = "float16", family: str = "sd",
                 layers_per_block: int = 2) -> LoraExport:
    """A full fine-tune's phase 2 as the compact pack stores it: every Linear and Conv2d layer's
    difference to ``base`` (:class:`SDComponents`) at the smallest rank keeping ``energy`` of its
    squared Frobenius norm, at most ``rank_cap``, cast to ``dtype`` (``float16`` or ``float32``)."""
    PackStorage(dtype=dtype, lora_energy=energy, lora_rank_cap=rank_cap).check()
    return _extract(base, {"unet": unet_state, "text_encoder": text_encoder_state,
                           "text_encoder_2": text_encoder_2_state}, rank_cap, "all", energy, DTYPES[dtype],
                    family, layers_per_block)


def module_group(layer: str) -> str:
    """The report group of an extracted layer (``unet.down_blocks.0...`` -> ``unet.down``)."""
    part, _, rest = layer.partition(".")
    if part != "unet":
        return part
    head = rest.split(".", 1)[0]
    return {"down_blocks": "unet.down", "mid_block": "unet.mid", "up_blocks": "unet.up"}.get(head, "unet.other")


def extraction_report(lora: LoraExport, energy: float, rank_cap: int, dtype: str) -> dict[str, Any]:
    """What a stored extracted LoRA keeps, as the manifest records it (``phase2.extracted``):
    relative error per module group and in total, the settings, the ranks and the tensor bytes."""
    groups: dict[str, list[float]] = {}
    for layer, (d2, e2) in lora.layer_norms.items():
        g = groups.setdefault(module_group(layer), [0.0, 0.0])
        g[0], g[1] = g[0] + d2, g[1] + e2
    errors = {g: round((e / d) ** 0.5, 5) if d > 0 else 0.0 for g, (d, e) in sorted(groups.items())}
    errors["total"] = round(lora.overall_error, 5)
    ranks = [int(v.shape[0]) for p in PARTS for k, v in lora.part(p).items() if k.endswith("lora_A.weight")]
    return {"energy": energy, "rank_cap": rank_cap, "dtype": dtype, "layers": len(ranks),
            "rank_mean": round(sum(ranks) / len(ranks), 2) if ranks else 0, "rank_max": max(ranks, default=0),
            "relative_error": errors,
            "not_carried": {k: round(v, 5) for k, v in lora.not_carried.items()},
            "bytes": sum(v.numel() * v.element_size() for p in PARTS for v in lora.part(p).values())}


def lora_from_pack(pack: HandlePack, rank: int = 16, base: Any | None = None,
                   layers: str = "all") -> LoraExport:
    """The pack's phase 2 as a LoRA: the stored one for a LoRA or compact pack, a truncated SVD
    for a pack stored with full weights.

    For full weights, ``layers="all"`` extracts every Linear and Conv2d layer of the UNet and
    text encoder at ``rank``; ``"attention"`` only the attention projections (our LoRA mode's
    layout, the most widely supported). ``base`` is the loaded base model (:class:`SDComponents`);
    loaded from the pack if omitted and needed. Raises ``PackError`` for a pack without phase-2 weights.
    """
    if layers not in LAYER_SETS:
        raise ValueError(f"layers must be one of {LAYER_SETS}, not {layers!r}")
    shape: dict[str, Any] = {"family": pack.family,
                             "layers_per_block": int(pack.manifest["base_model"].get("layers_per_block", 2))}
    if pack.extracted is not None:
        meta = pack.manifest["phase2"]["extracted"]
        return LoraExport(rank=int(meta["rank_cap"]), alpha=float(meta["rank_cap"]), exact=True,
                          unet=dict(pack.extracted.get("unet") or {}),
                          text_encoder=dict(pack.extracted.get("text_encoder") or {}),
                          text_encoder_2=dict(pack.extracted.get("text_encoder_2") or {}),
                          per_layer_rank=True, extraction=meta, **shape)
    if pack.lora is not None:
        alpha = float(pack.lora.get("alpha") or pack.lora["rank"])
        return LoraExport(rank=int(pack.lora["rank"]), alpha=alpha, unet=dict(pack.lora["unet"]),
                          text_encoder=dict(pack.lora.get("text_encoder") or {}), exact=True,
                          text_encoder_2=dict(pack.lora.get("text_encoder_2") or {}), **shape)
    if pack.unet_state is None and pack.text_encoder_state is None and pack.text_encoder_2_state is None:
        raise PackError("this pack has no phase-2 weights to export as a LoRA (handles only)", pack.path)
    if rank < 1:
        raise ValueError("the LoRA rank must be at least 1")
    if base is None:
        from engine.models import load_model

        base = load_model(pack.base_model)
    return _extract(base, {"unet": pack.unet_state, "text_encoder": pack.text_encoder_state,
                           "text_encoder_2": pack.text_encoder_2_state}, rank, layers, None, torch.float32,
                    **shape)


def fuse_lora(module: torch.nn.Module, tensors: dict[str, torch.Tensor], alpha: float | None = None) -> int:
    """Add a peft-layout LoRA (``<layer>.lora_A.weight`` / ``.lora_B.weight``) into ``module``'s
    weights, once: ``W += alpha / rank * B @ A`` (alpha ``None``: each layer's rank, scale 1).

    The product is formed in float32 on the weight's device and added in the weight's dtype.
    Returns the number of layers changed; ``KeyError`` for a layer the module lacks or a shape
    that does not fit, before any weight is touched.
    """
    layers = dict(module.named_modules())
    plan: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for key, a in tensors.items():
        if not key.endswith(".lora_A.weight"):
            if not key.endswith(".lora_B.weight"):
                raise KeyError(f"unexpected LoRA tensor {key!r}")
            continue
        name = key[: -len(".lora_A.weight")]
        b = tensors.get(f"{name}.lora_B.weight")
        layer = layers.get(name)
        weight = getattr(layer, "weight", None)
        if b is None or layer is None or not isinstance(weight, torch.Tensor):
            raise KeyError(f"LoRA layer {name!r} is not in the model (or lacks lora_B)")
        if b.shape[0] != weight.shape[0] or a.shape[0] != b.shape[1] or a[0].numel() != weight[0].numel():
            raise KeyError(f"LoRA of {name!r}: A {tuple(a.shape)} and B {tuple(b.shape)} do not fit its weight "
                           f"{tuple(weight.shape)}")
        plan.append((weight, a, b))
    with torch.no_grad():
        for w, a, b in plan:
            scale = (alpha / a.shape[0]) if alpha is not None else 1.0
            delta = b.to(w.device, torch.float32).flatten(1) @ a.to(w.device, torch.float32).flatten(1)
            w.copy_((w.float() + scale * delta.reshape(w.shape)).to(w.dtype))
    return len(plan)
