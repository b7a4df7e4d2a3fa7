"""The Break-A-Scene losses as pure functions (tested against hand-computed values)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_diffusion_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Noise-prediction MSE counted only inside ``mask`` (the union of the prompt's concepts).

    ``pred``/``target``: ``[B, C, h, w]``; ``mask``: ``[B, 1, h, w]`` in {0, 1}, or ``None`` for the
    plain loss. As in the paper's code, prediction and target are multiplied by the mask and the
    mean is taken over all elements (not only the masked ones), so a small concept weighs less.
    """
    if mask is not None:
        mask = mask.to(pred.dtype)
        pred = pred * mask
        target = target * mask
    return F.mse_loss(pred.float(), target.float(), reduction="mean")


def attention_loss(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Sum over concepts of MSE(max-normalised cross-attention map, mask).

    ``maps``: ``[K, r, r]`` (one map per concept named in the prompt, already averaged over the
    layers at side ``r``); ``masks``: ``[K, r, r]`` in {0, 1}. Each map is divided by its maximum
    (out of place). The weight (0.01 in the paper) is applied by the caller.
    """
    if maps.shape != masks.shape:
        raise ValueError(f"maps {tuple(maps.shape)} and masks {tuple(masks.shape)} differ in shape")
    peak = maps.flatten(1).amax(1).clamp_min(torch.finfo(maps.dtype).tiny)
    normed = maps / peak[:, None, None]
    per_concept = ((normed.float() - masks.float()) ** 2).flatten(1).mean(1)
    return per_concept.sum()


def resize_masks(masks: torch.Tensor, side: int) -> torch.Tensor:
    """Binary masks ``[K, H, W]`` to ``[K, side, side]`` with nearest sampling (as the reference)."""
    return F.interpolate(masks[:, None].float(), size=(side, side), mode="nearest")[:, 0]
