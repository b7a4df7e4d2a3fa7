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


DEFAULT_LORA_ENERGY = 0.9  # chosen on the quality benchmark (docs/handle-pack.md, "Choosing the default")
DEFAULT_LORA_RANK_CAP = 64  # SD 2.1 UNet + text encoder with every layer at the cap: ~191 MB in fp16
WEIGHT_DTYPES = ("float16", "float32")


@dataclass(frozen=True)
class PackStorage:
    """How a pack stores phase 2 of a full fine-tune (a LoRA-trained phase 2 is stored as it is).

    By default as a LoRA extracted at save time: per layer, the smallest rank whose SVD components
    keep ``lora_energy`` of the squared Frobenius norm of (tuned - base), at most
    ``lora_rank_cap``. ``full_weights`` keeps every tuned tensor instead. Both in ``dtype``.
    """

    full_weights: bool = False
    dtype: str = "float16"
    lora_energy: float = DEFAULT_LORA_ENERGY
    lora_rank_cap: int = DEFAULT_LORA_RANK_CAP

    def check(self) -> None:
        """``ValueError`` naming the option that is out of range."""
        if self.dtype not in WEIGHT_DTYPES:
            raise ValueError(f"--weights-dtype {self.dtype!r}: choose {' or '.join(WEIGHT_DTYPES)}")
        if isinstance(self.lora_energy, bool) or not isinstance(self.lora_energy, (int, float)) \
                or not 0 < self.lora_energy <= 1:
            raise ValueError(f"--lora-energy {self.lora_energy!r}: the share of the difference's energy kept "
                             "must be in (0, 1]")
        if isinstance(self.lora_rank_cap, bool) or not isinstance(self.lora_rank_cap, int) or self.lora_rank_cap < 1:
            raise ValueError(f"--lora-rank-cap {self.lora_rank_cap!r}: must be an integer >= 1")
