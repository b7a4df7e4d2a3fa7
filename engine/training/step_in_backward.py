"""Optimizer steps taken inside the backward pass, one parameter at a time.

Full fine-tuning in phase 2 normally holds, at the peak, the weights, one gradient per weight and
AdamW's two moments. Stepping each parameter from its post-accumulate-gradient hook and dropping
the gradient at once removes the gradient buffer: 3.5 GB for the SD2.1 UNet, 4.8 GB with its text
encoder. This is the pattern of PyTorch's "optimizer step in backward" recipe, kept in one object
that answers the few calls the trainer and the checkpoints make of an optimizer.

The one change in meaning: clipping by the norm of *all* gradients needs every gradient at once,
so ``max_grad_norm`` clips each tensor's gradient on its own. Whenever the global norm exceeds
the threshold the update is then larger than the reference's, which clips the global norm. So
this is a memory lever, not the paper's recipe: phase 2 uses it when asked
(``step_in_backward=True``, ``bas break --step-in-backward on``) or when the gradient buffer does
not fit in free memory (``engine/training/phase2.py``), and says so in its status line. With clipping off
the updates equal the plain optimizer's exactly (tests compare them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

MakeOptimizer = Callable[[list[dict[str, Any]]], torch.optim.Optimizer]


class StepInBackward:
    """One optimizer per parameter, stepped by a gradient hook as soon as that gradient is complete.

    ``groups`` are ordinary optimizer parameter groups; ``make`` builds the optimizer for a
    one-parameter group (e.g. ``lambda g: torch.optim.AdamW(g)``). ``step`` and ``zero_grad`` are
    no-ops: the work happens during ``backward``.
    """

    def __init__(self, groups: list[dict[str, Any]], make: MakeOptimizer, max_grad_norm: float = 0.0) -> None:
        self.param_groups = groups
        self.max_grad_norm = max_grad_norm
        self.optimizers: list[torch.optim.Optimizer] = []
        self._hooks: list[Any] = []
        for group in groups:
            for p in group["params"]:
                opt = make([{**group, "params": [p]}])
                self.optimizers.append(opt)
                self._hooks.append(p.register_post_accumulate_grad_hook(self._hook(opt)))

    def _hook(self, opt: torch.optim.Optimizer) -> Callable[[torch.Tensor], None]:
        def step(p: torch.Tensor) -> None:
            if p.grad is None:
                return
            if self.max_grad_norm:
                torch.nn.utils.clip_grad_norm_([p], self.max_grad_norm)
            opt.step()
            p.grad = None
        return step

    def step(self) -> None:
        """Nothing to do: every parameter was stepped during ``backward``."""

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Nothing to do: gradients are dropped right after their step."""

    def state_dict(self) -> dict[str, Any]:
        """Every per-parameter optimizer's state, in parameter order."""
        return {"step_in_backward": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (same parameters, same order)."""
        states = state["step_in_backward"]
        if len(states) != len(self.optimizers):
            raise ValueError(f"optimizer state holds {len(states)} parameters, this run trains {len(self.optimizers)}")
        for opt, s in zip(self.optimizers, states):
            opt.load_state_dict(s)

    def close(self) -> None:
        """Remove the gradient hooks (the model may be trained again or used for inference)."""
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
