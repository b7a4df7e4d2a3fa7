"""Gradient clipping by the global norm, over the set of gradients the reference code clips.

The reference clips ``chain(unet.parameters(), text_encoder.parameters())`` to a norm of 1.0 in
both phases. Its text encoder's token table is one trained parameter, so the norm also counts the
gradient of the existing rows the prompts use ("a", "photo", "of", "and", the class prompt's
words, padding), which our frozen table never materialises. :class:`engine.handles.HandleEmbedding`
sums that part as ``base_grad_sq``; :func:`clip_global_norm_` adds it, so the scale applied to
every trained gradient is the reference's.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def clip_global_norm_(params: Iterable[torch.Tensor], max_norm: float,
                      extra_sq: torch.Tensor | None = None) -> torch.Tensor:
    """Scale the gradients of ``params`` in place so that their joint L2 norm, together with
    ``extra_sq`` (a squared norm of gradients held elsewhere), is at most ``max_norm``.

    Same formula as ``torch.nn.utils.clip_grad_norm_``: scale ``min(1, max_norm / (norm + 1e-6))``.
    Returns the total norm before clipping.
    """
    grads = [p.grad for p in params if p.grad is not None]
    norms = [torch.linalg.vector_norm(g.detach(), 2.0).float() for g in grads]
    if extra_sq is not None:
        norms.append(extra_sq.detach().float().sqrt())
    if not norms:
        return torch.zeros(())
    device = norms[0].device
    total = torch.linalg.vector_norm(torch.stack([n.to(device) for n in norms]), 2.0)
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.detach().mul_(coef.to(g.device, g.dtype))
    return total
