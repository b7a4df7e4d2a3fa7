"""What a finished break produced, handed from the trainer to the pack writer (torch-free to import)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - type hints only: importing this module needs no torch
    import torch

    from engine.training.config import TrainConfig


@dataclass
class TrainResult:
    """What a finished run produced; :func:`engine.packs.pack.save_pack` writes it to disk."""

    tokens: list[str]
    handles: dict[str, torch.Tensor]
    unet_state: dict[str, torch.Tensor] | None
    text_encoder_state: dict[str, torch.Tensor] | None
    lora: dict[str, Any] | None
    config: TrainConfig
    base_model: str
    resolution: int
    attention_resolution: int
    seconds: float
    losses: list[dict[str, float]] = field(default_factory=list)
    # SDXL's second text encoder, fully fine-tuned (None otherwise; its LoRA is in ``lora``)
    text_encoder_2_state: dict[str, torch.Tensor] | None = None
    # The base model's shape as packs record it: family ("sd", "sdxl"), text_widths, layers_per_block
    model_info: dict[str, Any] = field(default_factory=dict)
