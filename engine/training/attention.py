"""Cross-attention capture for the Break-A-Scene attention loss.

The reference implementation replaces *every* attention processor of the UNet with a dense one
that materialises and stores every attention map (self-attention included, up to 32x32), which is
what runs it out of memory on 24 GB cards. Here only the cross-attention layers (``attn2``) at the
loss resolution get a capturing processor; every other layer keeps diffusers' fused SDPA path.

Two reference bugs are avoided by construction:

* maps are stored in a dict keyed by layer name and overwritten on each call, so the recomputed
  forward of gradient checkpointing cannot append duplicates and mix maps from two passes;
* the softmax output is never edited in place (the reference does, which breaks autograd in fp32).

The store keeps the head-averaged probabilities ``[batch, query_len, text_len]`` per layer, with
their autograd graph, so the loss can pull them toward the masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import nn

if TYPE_CHECKING:
    # the defining module: diffusers' __init__ gives type checkers a placeholder class (engine/models.py)
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel


@dataclass
class AttentionStore:
    """Head-averaged cross-attention probabilities of the current forward pass, per layer."""

    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    enabled: bool = True

    def reset(self) -> None:
        """Forget the maps of the previous forward pass."""
        self.maps.clear()

    def aggregate(self, res: int) -> torch.Tensor:
        """Average the stored maps over layers: ``[batch, res, res, text_len]``.

        Raises ``RuntimeError`` when nothing was captured (the UNet did not run, or no layer
        matches ``res``).
        """
        if not self.maps:
            raise RuntimeError("no cross-attention maps were captured in this forward pass")
        stacked = torch.stack([m for _, m in sorted(self.maps.items())])  # [L, B, res*res, T]
        mean = stacked.mean(0)
        if mean.shape[1] != res * res:
            raise RuntimeError(f"captured maps have {mean.shape[1]} queries, expected {res * res}")
        return mean.reshape(mean.shape[0], res, res, mean.shape[-1])


class CapturingCrossAttnProcessor:
    """Cross-attention that computes probabilities explicitly and stores their head mean.

    Numerically the same attention as ``AttnProcessor2_0`` (softmax(QK^T * scale) V); it is only
    installed on the few layers whose maps the loss needs.
    """

    def __init__(self, store: AttentionStore, name: str) -> None:
        self.store = store
        self.name = name

    def __call__(self, attn: Attention, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 *args: object, **kwargs: object) -> torch.Tensor:
        residual = hidden_states
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        batch_size = hidden_states.shape[0]
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, key.shape[1], batch_size)

        query = attn.head_to_batch_dim(query)
        key = attn.head_to_batch_dim(key)
        value = attn.head_to_batch_dim(value)
        probs = attn.get_attention_scores(query, key, attention_mask)  # [B*heads, Q, T]
        if self.store.enabled:
            self.store.maps[self.name] = probs.reshape(batch_size, attn.heads, *probs.shape[1:]).mean(1)
        hidden_states = attn.batch_to_head_dim(torch.bmm(probs, value))

        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def cross_attention_resolutions(unet: UNet2DConditionModel, latent_size: int) -> dict[str, int]:
    """Map each cross-attention layer name (``attn2`` modules) to its spatial side in latents.

    Walks the UNet's blocks and tracks the down/up-sampling factor, so nothing assumes SD's
    64x64 latents or four levels.
    """
    res: dict[str, int] = {}
    size = latent_size

    def collect(prefix: str, block: nn.Module, side: int) -> None:
        for name, module in block.named_modules():
            if isinstance(module, Attention) and name.endswith("attn2"):
                res[f"{prefix}.{name}"] = side

    for i, block in enumerate(unet.down_blocks):
        collect(f"down_blocks.{i}", block, size)
        if getattr(block, "downsamplers", None):
            size = (size + 1) // 2
    if getattr(unet, "mid_block", None) is not None:
        collect("mid_block", unet.mid_block, size)
    for i, block in enumerate(unet.up_blocks):
        collect(f"up_blocks.{i}", block, size)
        if getattr(block, "upsamplers", None):
            size *= 2
    return res


def choose_attention_resolution(unet: UNet2DConditionModel, latent_size: int, preferred: int = 16) -> int:
    """The side of the cross-attention maps the loss uses.

    The paper uses 16x16 (SD at 512 px); when the model has no cross-attention at 16x16 for this
    latent size, the available side closest to 16 is used (ties go to the larger side).
    """
    sides = sorted(set(cross_attention_resolutions(unet, latent_size).values()))
    if not sides:
        raise ValueError("the UNet has no cross-attention layers; the attention loss cannot be used")
    return min(sides, key=lambda s: (abs(s - preferred), -s))


def install_capture(unet: UNet2DConditionModel, latent_size: int, res: int, store: AttentionStore) -> list[str]:
    """Install capturing processors on the cross-attention layers at side ``res``; return their names."""
    chosen = [n for n, s in cross_attention_resolutions(unet, latent_size).items() if s == res]
    if not chosen:
        raise ValueError(f"no cross-attention layer at {res}x{res} for {latent_size}x{latent_size} latents")
    modules = dict(unet.named_modules())
    for name in chosen:
        modules[name].set_processor(CapturingCrossAttnProcessor(store, name))
    return chosen


def remove_capture(unet: nn.Module) -> None:
    """Give every capturing layer back the fused SDPA processor."""
    for module in unet.modules():
        if isinstance(module, Attention) and isinstance(module.processor, CapturingCrossAttnProcessor):
            # diffusers annotates the argument as AttnProcessor, but any processor goes (2_0 is its default)
            module.set_processor(AttnProcessor2_0())  # type: ignore[arg-type]
