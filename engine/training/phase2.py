"""Phase 2 of Break-A-Scene: which weights train (full UNet/text encoder, or peft LoRA) and how.

Kept apart from the loop so the loop reads the same for both modes, and so packs and checkpoints
ask one object for "the weights phase 2 changed".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.utils import get_peft_model_state_dict

from engine.training.config import TrainConfig
from engine.devices import free_memory_bytes, transient_peak_bytes
from engine.handles import HandleEmbedding
from engine.models import SDComponents
from engine.training.step_in_backward import StepInBackward

Optimizer = torch.optim.Optimizer | StepInBackward

UNET_LORA_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]
TEXT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def unet_lora_config(rank: int, alpha: float | None = None) -> LoraConfig:
    """The LoRA layout used for the UNet (attention projections, as diffusers' trainers do)."""
    # peft annotates lora_alpha as int but only divides by it (scale alpha / r); packs may hold a float
    return LoraConfig(r=rank, lora_alpha=alpha or rank, init_lora_weights="gaussian",  # type: ignore[arg-type]
                      target_modules=UNET_LORA_TARGETS)


def text_lora_config(rank: int, alpha: float | None = None) -> LoraConfig:
    """The LoRA layout used for the CLIP text encoder."""
    # peft annotates lora_alpha as int but only divides by it (scale alpha / r); packs may hold a float
    return LoraConfig(r=rank, lora_alpha=alpha or rank, init_lora_weights="gaussian",  # type: ignore[arg-type]
                      target_modules=TEXT_LORA_TARGETS)


def add_text_lora(text_encoder: torch.nn.Module, config: LoraConfig) -> None:
    """Inject LoRA layers into the text encoder with peft directly.

    transformers' own ``add_adapter`` insists on a newer peft than the one that installs beside
    it here; peft's injection gives the same layers and state-dict names.
    """
    inject_adapter_in_model(config, text_encoder, adapter_name="default")


@dataclass
class Phase2State:
    """The phase-2 optimizer and the modules it trains."""

    comps: SDComponents
    emb: HandleEmbedding
    mode: str  # "full", "lora" or "none"
    unet_trains: bool
    text_encoder_trains: bool
    optimizer: Optimizer | None = None
    notes: list[str] = field(default_factory=list)
    rank: int | None = None

    def _parts(self) -> list[tuple[str, torch.nn.Module]]:
        """``(name, module)`` of the UNet and every text encoder of the family."""
        slots = [s.encoder for s in self.comps.family.slots]
        return [("unet", self.comps.unet), *((name, getattr(self.comps, name)) for name in slots)]

    def named_trainable(self) -> dict[str, torch.nn.Parameter]:
        """Every trained parameter except the handles (checkpointed separately), by name."""
        out: dict[str, torch.nn.Parameter] = {}
        for part, module in self._parts():
            prefix = part + "."
            for n, p in module.named_parameters():
                if p.requires_grad and not n.endswith("token_embedding.handles"):
                    out[prefix + n] = p
        return out

    def load_trainable(self, state: dict[str, torch.Tensor]) -> None:
        """Copy checkpointed values into the trained parameters (names must match)."""
        params = self.named_trainable()
        missing = set(params) - set(state)
        if missing:
            raise KeyError(f"checkpoint lacks {len(missing)} trained tensors, e.g. {sorted(missing)[:3]}")
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(state[n])

    def unet_state(self) -> dict[str, torch.Tensor] | None:
        """Full-mode UNet weights after training (``None`` unless phase 2 fine-tuned them)."""
        if self.mode != "full" or not self.unet_trains:
            return None
        return {n: p.detach().cpu().clone() for n, p in self.comps.unet.named_parameters()}

    def text_encoder_state(self, part: str = "text_encoder") -> dict[str, torch.Tensor] | None:
        """Full-mode weights of a text encoder (``text_encoder_2``: SDXL's second) in the plain
        layout; the token table (frozen, the base model's own) and the handle rows are left out."""
        module = getattr(self.comps, part, None)
        if self.mode != "full" or not self.text_encoder_trains or module is None:
            return None
        out = {}
        for n, p in module.named_parameters():
            if "token_embedding." in n:
                continue
            out[n.replace("token_embedding.base.", "token_embedding.")] = p.detach().cpu().clone()
        return out

    def lora_state(self) -> dict[str, Any] | None:
        """LoRA weights and layout in the peft format (``None`` unless phase 2 used LoRA)."""
        if self.mode != "lora":
            return None
        out: dict[str, Any] = {"rank": self.rank, "alpha": self.rank,
                               "unet": _cpu(get_peft_model_state_dict(self.comps.unet)),
                               "unet_targets": UNET_LORA_TARGETS, "text_encoder_targets": TEXT_LORA_TARGETS}
        for part, module in self._parts()[1:]:
            out[part] = _cpu(get_peft_model_state_dict(module)) if self.text_encoder_trains else None
        return out

    def describe(self) -> str:
        """One line for the progress log."""
        what = {"full": "UNet", "lora": f"UNet LoRA r={self.rank}", "none": "nothing"}[self.mode]
        if self.text_encoder_trains:
            what += " + text encoder" + (" LoRA" if self.mode == "lora" else "")
        return f"training {what} + handles" + ("; " + "; ".join(self.notes) if self.notes else "")

    def close(self) -> None:
        """Release what phase 2 attached for training: the gradient hooks and the optimizer state."""
        if isinstance(self.optimizer, StepInBackward):
            self.optimizer.close()
        self.optimizer = None


def _cpu(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in sd.items()}


def _note(notes: list[str], text: str) -> None:
    if text not in notes:  # one optimizer per parameter would repeat it thousands of times
        notes.append(text)


_TORCHAO_OK: bool | None = None


def _torchao_works(device: torch.device) -> bool:
    """Whether torchao's 8-bit AdamW can step here (it compiles its update: a C++ compiler on the
    CPU, Triton on CUDA). Probed once per process on a throwaway tensor (~20 s on 2 cores with a
    cold cache). The update compiles again for each parameter shape on phase 2's first step:
    about 200 s for SD 2.1 on 2 cores, once per process, against 400 steps of ~50 s."""
    global _TORCHAO_OK
    if _TORCHAO_OK is None:
        try:
            from torchao.optim import AdamW8bit

            p = torch.nn.Parameter(torch.zeros(4096, device=device))
            p.grad = torch.ones_like(p)
            AdamW8bit([p], lr=1e-3).step()
            _TORCHAO_OK = True
        except Exception:  # noqa: BLE001 - missing package, no compiler, unsupported device
            _TORCHAO_OK = False
    return _TORCHAO_OK


def _adamw(params: list[dict[str, Any]], cfg: TrainConfig, device: torch.device, notes: list[str]) -> torch.optim.Optimizer:
    """AdamW, or with ``use_8bit_adam`` an 8-bit one: bitsandbytes on CUDA where installed (what
    the reference code's ``--use_8bit_adam`` uses), else torchao's, which also runs on the CPU.
    Both keep the two moments in 8 bits per value (a quarter of fp32 AdamW's 8 bytes/parameter)."""
    if cfg.use_8bit_adam:
        if device.type == "cuda":
            try:
                import bitsandbytes as bnb

                return bnb.optim.AdamW8bit(params, weight_decay=cfg.adam_weight_decay)
            except ImportError:
                pass
        if _torchao_works(device):
            from torchao.optim import AdamW8bit

            _note(notes, "8-bit AdamW (torchao)")
            return AdamW8bit(params, weight_decay=cfg.adam_weight_decay)
        _note(notes, "8-bit Adam unavailable here (needs bitsandbytes on CUDA, or torchao with a C++ "
                     "compiler); using torch AdamW")
    return torch.optim.AdamW(params, weight_decay=cfg.adam_weight_decay)


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def choose_step_in_backward(cfg: TrainConfig, params: list[torch.Tensor], device: torch.device,
                            notes: list[str]) -> bool:
    """Whether phase 2 steps inside backward (per-tensor clipping, no gradient buffer).

    ``cfg.step_in_backward`` True/False decides. ``None`` (the default) keeps the reference's
    plain optimizer and global-norm clipping whenever the memory free now holds its gradient
    buffer next to AdamW's state and phase 2's activations (or the free memory is unknown), and
    steps inside backward only when it does not. Phase 2 saves each trained layer's input for its
    weight gradient, which phase 1 does not, so phase 1's measured transient peak counts twice.
    """
    if cfg.step_in_backward is not None:
        return cfg.step_in_backward
    grad_bytes = sum(p.numel() * p.element_size() for p in params)
    adam_bytes = sum(p.numel() for p in params) * (2 if cfg.use_8bit_adam else 8)
    need = 1.1 * (grad_bytes + adam_bytes + 2 * transient_peak_bytes(device)) + 2**29
    free = free_memory_bytes(device)
    if free is None or free >= need:
        return False
    _note(notes, f"{_gib(free)} free is short of the {_gib(need)} a gradient buffer needs")
    return True


def setup_phase2(comps: SDComponents, emb: HandleEmbedding, cfg: TrainConfig, enable: bool = True,
                 loss_scaling: bool = False, in_backward: bool | None = None) -> Phase2State:
    """Unfreeze (or add LoRA adapters to) what phase 2 trains and build its optimizer.

    The optimizer steps each parameter inside ``backward``
    (:class:`engine.training.step_in_backward.StepInBackward`) as :func:`choose_step_in_backward` decides,
    or as ``in_backward`` says (a resumed run keeps its first decision), except under fp16 loss
    scaling (``loss_scaling``), whose overflow check needs every gradient before any step.
    Otherwise one optimizer steps after backward, and the trainer clips the global norm.
    """
    device = emb.handles.device
    if not enable:
        return Phase2State(comps, emb, "none", False, False)
    notes: list[str] = []
    groups: list[dict[str, Any]]
    if cfg.lora_rank:
        comps.unet.add_adapter(unet_lora_config(cfg.lora_rank))
        if cfg.train_text_encoder:
            for te in comps.text_encoders():
                add_text_lora(te, text_lora_config(cfg.lora_rank))
        state = Phase2State(comps, emb, "lora", True, cfg.train_text_encoder, notes=notes, rank=cfg.lora_rank)
        for m in (comps.unet, *comps.text_encoders()):
            for n, p in m.named_parameters():
                p.requires_grad_("lora_" in n)
        emb.handles.requires_grad_(True)
        lora = [p for p in state.named_trainable().values()]
        for p in lora:  # adapters take their base layer's dtype; a frozen model stored in bf16 trains fp32 LoRA
            if p.dtype != torch.float32:
                p.data = p.data.float()
        groups = [{"params": lora, "lr": cfg.lora_lr}, {"params": [emb.handles], "lr": cfg.phase2_lr}]
    else:
        comps.unet.requires_grad_(True)
        for te in comps.text_encoders():
            te.requires_grad_(cfg.train_text_encoder)
            table = te.get_input_embeddings()
            if isinstance(table, HandleEmbedding):
                table.base.weight.requires_grad_(False)
        # The 49k existing token rows stay frozen (the reference trains them at 2e-6, which moves
        # only "a", "photo", "of", "and" and decays the rest): no AdamW state for them (0.4 GB on
        # SD 2.1; 0.2 GB more of gradient) and no copy in the pack (0.2 GB); the handles train as
        # their own parameter. The clip still counts their gradient (engine/training/clipping.py).
        emb.base.weight.requires_grad_(False)
        emb.handles.requires_grad_(True)
        state = Phase2State(comps, emb, "full", True, cfg.train_text_encoder, notes=notes)
        groups = [{"params": list(state.named_trainable().values()) + [emb.handles], "lr": cfg.phase2_lr}]
    params = [p for g in groups for p in g["params"]]
    if in_backward is None:
        in_backward = choose_step_in_backward(cfg, params, device, notes)
    if in_backward and not loss_scaling:
        state.optimizer = StepInBackward(groups, lambda g: _adamw(g, cfg, device, notes), cfg.max_grad_norm)
        notes.append("optimizer steps inside backward (no gradient buffer; per-tensor clipping)")
    else:
        state.optimizer = _adamw(groups, cfg, device, notes)
        if cfg.max_grad_norm:
            notes.append(f"global gradient-norm clipping at {cfg.max_grad_norm:g}")
    return state
