"""Training settings as one plain dataclass, with named presets (torch-free)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

Precision = Literal["auto", "no", "fp16", "bf16"]


@dataclass
class TrainConfig:
    """Every input of a Break-A-Scene run. Defaults are the paper's recipe."""

    phase1_steps: int = 400
    phase2_steps: int = 400
    phase1_lr: float = 5e-4
    phase2_lr: float = 2e-6
    train_text_encoder: bool = True
    lora_rank: int | None = None  # None: full fine-tuning in phase 2; else a peft LoRA of this rank
    lora_lr: float = 1e-4
    lambda_attention: float = 1e-2
    attention_resolution: int | None = None  # None: latent/4 (16 on SD 2.1 at 512 px), or the closest side the model has
    masked_loss: bool = True
    union_sampling: bool = True  # False: every step names all concepts (an ablation)
    flip: bool = True
    # Views of the photo per step, each with its own concept subset, flip, class image, noise and
    # timestep, in one batch; the paper's is 1 (docs/shapesworld.md: more lowers the run-to-run spread).
    views_per_step: int = 1
    # Class images per step with the prior; None: one per view (the paper: one beside its one view).
    # Fewer than the views costs less: a step's time grows with its rows (docs/shapesworld.md).
    class_images_per_step: int | None = None
    prior_preservation: bool = True
    prior_weight: float = 1.0
    num_class_images: int = 100
    class_prompt: str = "a photo at the beach"
    class_inference_steps: int = 50
    resolution: int | None = None  # None: the model's native resolution
    seed: int = 0
    device: str = "auto"
    precision: Precision = "auto"
    gradient_checkpointing: bool = False
    use_8bit_adam: bool = False
    adam_weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    # Phase 2: step each parameter inside backward and drop its gradient (no model-sized gradient
    # buffer; clipping becomes per tensor; engine/training/step_in_backward.py). None: only when the
    # gradient buffer does not fit, else the reference's global-norm clip (engine/training/phase2.py).
    step_in_backward: bool | None = None
    checkpoint_every: int = 100
    preview_every: int = 50

    @property
    def total_steps(self) -> int:
        """Steps of both phases."""
        return self.phase1_steps + self.phase2_steps

    def validate(self) -> TrainConfig:
        """Raise ``ValueError`` naming the first setting out of range; returns ``self``."""
        def need(ok: bool, name: str, what: str) -> None:
            if not ok:
                raise ValueError(f"{name} = {getattr(self, name)!r}: must be {what}")

        def is_int(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        for name in ("phase1_steps", "phase2_steps", "num_class_images", "checkpoint_every", "preview_every"):
            need(is_int(getattr(self, name)) and 0 <= getattr(self, name) <= 10**7, name, "a whole number >= 0")
        need(is_int(self.views_per_step) and 1 <= self.views_per_step <= 64, "views_per_step",
             "a whole number from 1 to 64")
        need(self.class_images_per_step is None or (is_int(self.class_images_per_step)
                                                    and 1 <= self.class_images_per_step <= 64),
             "class_images_per_step", "a whole number from 1 to 64 (leave it unset for one per view)")
        need(self.total_steps > 0, "phase1_steps", "more than 0 together with phase2_steps")
        for name in ("phase1_lr", "phase2_lr", "lora_lr", "lambda_attention", "prior_weight",
                     "adam_weight_decay", "max_grad_norm"):
            v = getattr(self, name)
            need(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0, name, "a finite number >= 0")
        need(self.lora_rank is None or (is_int(self.lora_rank) and 1 <= self.lora_rank <= 1024),
             "lora_rank", "between 1 and 1024 (leave it unset for full fine-tuning)")
        need(self.resolution is None or (is_int(self.resolution) and 8 <= self.resolution <= 8192
                                         and self.resolution % 8 == 0),
             "resolution", "a multiple of 8 between 8 and 8192")
        need(is_int(self.seed) and 0 <= self.seed < 2**63, "seed", "a whole number from 0 to 2**63-1")
        need(is_int(self.class_inference_steps) and self.class_inference_steps >= 1, "class_inference_steps",
             "at least 1")
        need(self.precision in ("auto", "no", "fp16", "bf16"), "precision", "auto, no, fp16 or bf16")
        need(self.attention_resolution is None or (is_int(self.attention_resolution)
                                                   and 1 <= self.attention_resolution <= 1024),
             "attention_resolution", "a side between 1 and 1024 (leave it unset for latent/4)")
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (stored in packs and checkpoints)."""
        return asdict(self)

    def identity_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` without the settings added later that are at the value every earlier run
        had: what fingerprints and benchmark keys hash, so they stay valid across such additions."""
        return {k: v for k, v in asdict(self).items() if ADDED_LATER.get(k, object()) != v}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict, ignoring unknown keys (packs written by newer versions)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


# Settings added after runs were stored, with the value those runs had (see identity_dict).
ADDED_LATER: dict[str, Any] = {"views_per_step": 1, "class_images_per_step": None}

PRESETS: dict[str, dict[str, Any]] = {
    # The paper: 400 + 400 steps, lr 5e-4 then 2e-6, prior preservation, text encoder trained.
    "paper": {},
    # A few steps to see the whole pipeline work; no prior images to generate.
    "quick": {"phase1_steps": 20, "phase2_steps": 20, "prior_preservation": False,
              "checkpoint_every": 10, "preview_every": 5},
    # The shipped ShapesWorld model (4 M-parameter UNet, 64 px): the paper's 2e-6 is for an
    # 865 M-parameter UNet and would not move this one. Chosen on 4 benchmark scenes among ten
    # (lr1, lr2, steps) settings by judge identity over chance (docs/shapesworld.md). Four views of
    # the photo per step beside one class image: the README's two-handle beach prompt composed in
    # 14 of 32 images against 9 of 32 with one view, inside the 90 s break budget on 2 cores
    # (docs/shapesworld.md, "A tenth look"; bench/quality.py's "1 view per step" arm).
    "shapesworld": {"phase1_steps": 100, "phase2_steps": 100, "phase1_lr": 5e-3, "phase2_lr": 1e-4,
                    "num_class_images": 16, "class_inference_steps": 20, "checkpoint_every": 50,
                    "preview_every": 20, "views_per_step": 4, "class_images_per_step": 1},
    # LoRA phase 2, 8-bit Adam and gradient checkpointing for small GPUs.
    "low-vram": {"lora_rank": 16, "use_8bit_adam": True, "gradient_checkpointing": True,
                 "train_text_encoder": False},
    # SDXL (2.6 B-parameter UNet, two text encoders, 1024 px): the paper's steps and learning rates
    # with phase 2 as a LoRA of the UNet and both text encoders, bf16 autocast (the frozen weights
    # stored in bf16), gradient checkpointing and 8-bit AdamW where one runs. Measured in
    # docs/performance.md. A full fine-tune stays possible: --preset paper on an SDXL model.
    "sdxl": {"lora_rank": 16, "use_8bit_adam": True, "gradient_checkpointing": True, "precision": "bf16"},
}

SDXL_PRESET = "sdxl"


def preset(name: str, **overrides: Any) -> TrainConfig:
    """A named preset (see ``PRESETS``) with keyword overrides applied on top."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return replace(TrainConfig(**PRESETS[name]), **overrides)


PRESET_FILE = "bas_preset.json"
DEFAULT_PRESET = "paper"


def model_folder(model: str | os.PathLike[str] | None) -> Path | None:
    """The local folder of a model reference (``shapesworld``, a folder, a checkpoint's folder, a hub
    id already in the local cache), or None; never touches the network, imports no torch."""
    from engine.paths import resources_dir

    ref = str(model) if model is not None else os.environ.get("BAS_MODEL") or "shapesworld"
    if ref == "shapesworld":
        return resources_dir() / "shapesworld"
    if ref == "tiny-random" or not ref:
        return None
    path = Path(ref).expanduser()
    if path.is_dir():
        return path
    if path.suffix in (".safetensors", ".ckpt"):
        return path.parent if path.is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        got = try_to_load_from_cache(ref, "model_index.json")
    except Exception:  # noqa: BLE001 - not a hub id, or a broken cache: no folder
        return None
    return Path(got).parent if isinstance(got, str) else None


def read_preset_file(folder: Path) -> str | None:
    """The preset named by ``folder/bas_preset.json``, when the file is there and names a known preset."""
    try:
        data = json.loads((folder / PRESET_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    name = data.get("preset") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name in PRESETS else None


def recommended_preset(model: str | os.PathLike[str] | None) -> str | None:
    """The break preset a model recommends in its folder's ``bas_preset.json`` (``{"preset": "shapesworld"}``).

    ``model`` is a model reference as ``--model`` takes it, or None for the default model. Returns
    None (an SDXL model: ``sdxl``) when the model declares nothing, names an unknown preset, or the file cannot be read: the
    caller then uses its default (:data:`DEFAULT_PRESET` for the CLI).
    """
    if str(model) == "tiny-random-sdxl":
        return SDXL_PRESET
    folder = model_folder(model)
    if folder is None:
        return None
    return read_preset_file(folder) or (SDXL_PRESET if is_sdxl_folder(folder) else None)


def is_sdxl_folder(folder: Path) -> bool:
    """Whether a diffusers folder holds an SDXL model (a second text encoder in its index); torch-free."""
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(index, dict) and "text_encoder_2" in index
