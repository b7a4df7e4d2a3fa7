"""SDXL's key maps for the exports other tools load (kept apart from :mod:`engine.packs.interop`).

* Embeddings: A1111, Forge and ComfyUI read an SDXL textual inversion as one safetensors file
  with two tensors, ``clip_l`` ``[n, 768]`` (CLIP ViT-L, the first text encoder) and ``clip_g``
  ``[n, 1280]`` (OpenCLIP ViT-bigG, the second). A pack's SDXL handle vector is those two rows
  concatenated (:mod:`engine.families`), so the file is the vector cut in two.
* kohya LoRA: sd-scripts names SDXL's UNet modules as the original (SGM) UNet does
  (``lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q``) and the two text encoders
  ``lora_te1_`` / ``lora_te2_`` with transformers' names. :func:`sgm_unet_name` maps diffusers
  module names to SGM ones; diffusers' own kohya loader maps them back (tested).
"""

from __future__ import annotations

import re
from typing import Any

import torch

from engine.families import SDXL, split_vector

CLIP_L, CLIP_G = (s.a1111_key for s in SDXL.slots)

_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
           "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_FIXED = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
          "time_embedding.linear_2": "time_embed.2", "add_embedding.linear_1": "label_emb.0.0",
          "add_embedding.linear_2": "label_emb.0.2", "conv_norm_out": "out.0", "conv_out": "out.2"}


def sdxl_embedding_tensors(vec: torch.Tensor, widths: list[int]) -> dict[str, torch.Tensor]:
    """``{"clip_l": [1, D1], "clip_g": [1, D2]}`` of a pack's SDXL handle vector."""
    rows = split_vector(vec.float(), widths)
    return {CLIP_L: rows[0][None].contiguous(), CLIP_G: rows[1][None].contiguous()}


def read_sdxl_embedding(data: dict[str, Any]) -> torch.Tensor | None:
    """The pack vector (``clip_l`` row, then ``clip_g`` row) of an SDXL embedding dict, or None when
    ``data`` is not one. Raises ``ValueError`` for a multi-vector or malformed one."""
    if CLIP_L not in data or CLIP_G not in data:
        return None
    parts = []
    for key in (CLIP_L, CLIP_G):
        t = data[key]
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise ValueError(f"'{key}' is not a floating-point tensor")
        if t.dim() == 2 and t.shape[0] == 1:
            t = t[0]
        if t.dim() != 1:
            raise ValueError(f"'{key}' has shape {tuple(t.shape)}: only single-vector embeddings ([1, D]) "
                             "can become a handle")
        parts.append(t.float())
    return torch.cat(parts)


def sgm_unet_name(module: str, layers_per_block: int, up_has_attention: set[int]) -> str:
    """The SGM (original SDXL UNet) name of a diffusers UNet module, dots kept.

    ``layers_per_block`` is the UNet config's (2 for SDXL); ``up_has_attention`` lists the up
    levels with attention blocks (their upsampler sits third in an output block, else second).
    Raises ``ValueError`` for a module the original UNet has no counterpart for.
    """
    if module in _FIXED:
        return _FIXED[module]
    per = layers_per_block + 1
    m = re.fullmatch(r"(down|up)_blocks\.(\d+)\.(resnets|attentions|downsamplers|upsamplers)\.(\d+)(?:\.(.+))?",
                     module)
    mid = re.fullmatch(r"mid_block\.(resnets|attentions)\.(\d+)(?:\.(.+))?", module)
    if mid:
        kind, j, rest = mid.group(1), int(mid.group(2)), mid.group(3)
        block = "middle_block." + ("1" if kind == "attentions" else "0" if j == 0 else "2")
        return block + _inner(kind, rest)
    if not m:
        raise ValueError(f"no SGM name for UNet module {module}")
    side, i, kind, j, rest = m.group(1), int(m.group(2)), m.group(3), int(m.group(4)), m.group(5)
    if side == "down":
        if kind == "downsamplers":
            return f"input_blocks.{(i + 1) * per}.0.op"
        return f"input_blocks.{1 + i * per + j}.{1 if kind == 'attentions' else 0}" + _inner(kind, rest)
    if kind == "upsamplers":
        return f"output_blocks.{i * per + layers_per_block}.{2 if i in up_has_attention else 1}.conv"
    return f"output_blocks.{i * per + j}.{1 if kind == 'attentions' else 0}" + _inner(kind, rest)


def _inner(kind: str, rest: str | None) -> str:
    if rest is None:
        return ""
    if kind == "resnets":
        if rest not in _RESNET:
            raise ValueError(f"no SGM name for resnet layer {rest}")
        return "." + _RESNET[rest]
    return "." + rest  # attention blocks keep their names (proj_in, transformer_blocks..., proj_out)


def kohya_sdxl_lora_state(unet: dict[str, torch.Tensor], text_encoders: list[dict[str, torch.Tensor]],
                          alpha: float, layers_per_block: int, te_key: Any) -> dict[str, torch.Tensor]:
    """kohya sd-scripts' SDXL LoRA layout from peft-layout tensors: ``lora_unet_<sgm name>``,
    ``lora_te1_`` / ``lora_te2_`` (transformers names via ``te_key``), each with
    ``.lora_down.weight``, ``.lora_up.weight`` and ``.alpha``."""
    up_attn = {int(k.split(".")[1]) for k in unet if k.startswith("up_blocks.") and ".attentions." in k}
    out: dict[str, torch.Tensor] = {}
    parts = [("lora_unet_", unet, lambda k: sgm_unet_name(k, layers_per_block, up_attn))]
    parts += [(slot.kohya_prefix, tensors, te_key) for slot, tensors in zip(SDXL.slots, text_encoders)]
    for prefix, tensors, rename in parts:
        for key, v in tensors.items():
            if not key.endswith(".lora_A.weight"):
                continue
            module = key[: -len(".lora_A.weight")]
            name = prefix + rename(module).replace(".", "_")
            out[f"{name}.lora_down.weight"] = v
            out[f"{name}.lora_up.weight"] = tensors[f"{module}.lora_B.weight"]
            out[f"{name}.alpha"] = torch.tensor(float(alpha))
    return out
