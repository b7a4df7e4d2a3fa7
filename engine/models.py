"""One loader for Stable Diffusion 1.x/2.x models, offline first.

A model reference is one of:

* ``tiny-random``: a tiny random-init SD built from config (tests); built once, saved to the cache
  and then loaded from disk through the same code path as any diffusers folder;
* ``shapesworld``: the offline model shipped in ``resources/shapesworld``;
* a diffusers folder (``model_index.json``);
* a single ``.safetensors``/``.ckpt`` checkpoint, loaded with ``from_single_file`` against the
  configs shipped in ``resources/configs`` (so no network is needed); ``.ckpt`` files are read with
  ``weights_only`` and never executed;
* a Hugging Face hub id, looked up in the local hub cache only; :func:`download_model` fetches it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from engine.errors import ModelLoadError, ModelNotFoundError, short_reason
from engine.formats.names import DEFAULT_HUB_MODEL, OFFLINE_MODEL, TINY_MODEL, default_model
from engine.paths import cache_dir, resources_dir

if TYPE_CHECKING:
    # For type checkers diffusers' __init__ binds these names to its placeholder ("dummy") classes
    # first, which are not nn.Modules; the defining modules give the real classes.
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
    from diffusers.schedulers.scheduling_ddpm import DDPMScheduler
else:
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")


@dataclass
class SDComponents:
    """The parts of a Stable Diffusion model the trainer and the generator use."""

    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    scheduler: Any
    ref: str

    @property
    def vae_scale(self) -> int:
        """Pixel-to-latent downscale factor of the VAE."""
        return 2 ** (len(self.vae.config["block_out_channels"]) - 1)

    @property
    def resolution(self) -> int:
        """The model's native image side in pixels."""
        return int(self.unet.config["sample_size"]) * self.vae_scale

    def pipeline(self, scheduler: Any | None = None) -> StableDiffusionPipeline:
        """A plain diffusers pipeline over these components (no safety checker)."""
        return StableDiffusionPipeline(
            vae=self.vae, text_encoder=self.text_encoder, tokenizer=self.tokenizer, unet=self.unet,
            scheduler=scheduler or self.scheduler,
            # diffusers annotates these two as required, but None is its documented way to go without
            safety_checker=None, feature_extractor=None,  # type: ignore[arg-type]
            requires_safety_checker=False,
        )


def clip_tokenizer() -> CLIPTokenizer:
    """The real CLIP BPE tokenizer from ``resources/clip_tokenizer`` (no network)."""
    return CLIPTokenizer.from_pretrained(str(resources_dir() / "clip_tokenizer"))


def build_tiny_sd(seed: int = 0) -> SDComponents:
    """A tiny random-init SD (64 px, 32x32 latents, cross-attention at 16x16) with the real tokenizer.

    Deterministic from ``seed``. Shapes follow diffusers' own pipeline tests.
    """
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, attention_head_dim=8,
    )
    vae = AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4, sample_size=64,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, hidden_size=32, intermediate_size=37,
        layer_norm_eps=1e-5, num_attention_heads=4, num_hidden_layers=5, vocab_size=49408,
        max_position_embeddings=77,
    ))
    scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000, clip_sample=False, steps_offset=1)
    return SDComponents(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=clip_tokenizer(),
                        scheduler=scheduler, ref=TINY_MODEL)


def _publish_folder(folder: Path, build: Callable[[Path], None]) -> Path:
    """Build a cache folder once, safely when several processes (Ray workers) race for it.

    ``build(tmp)`` fills a private temporary sibling, which is renamed into place; when another
    process got there first, its complete folder is kept and ours is dropped.
    """
    if (folder / "model_index.json").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        build(tmp)
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / "model_index.json").exists():
                raise ModelLoadError(f"{folder}: a folder without model_index.json is in the way; "
                                     "remove it") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def ensure_tiny_model(folder: Path | None = None, seed: int = 0) -> Path:
    """Build the tiny model once and save it as a diffusers folder (default: in the cache)."""
    folder = Path(folder) if folder else cache_dir() / "models" / TINY_MODEL
    return _publish_folder(folder, lambda tmp: build_tiny_sd(seed).pipeline().save_pretrained(str(tmp)))


def _single_file_config(path: Path) -> Path:
    """Write (once) the diffusers config folder matching a single checkpoint's architecture."""
    name = "sd21-base" if _is_sd2(path) else "sd15"
    cfg = json.loads((resources_dir() / "configs" / f"{name}.json").read_text())

    def write(target: Path) -> None:
        for sub in ("unet", "vae", "text_encoder", "scheduler"):
            (target / sub).mkdir(parents=True, exist_ok=True)
        (target / "unet" / "config.json").write_text(json.dumps(cfg["unet"]))
        (target / "vae" / "config.json").write_text(json.dumps(cfg["vae"]))
        (target / "text_encoder" / "config.json").write_text(json.dumps(cfg["text_encoder"]))
        (target / "scheduler" / "scheduler_config.json").write_text(json.dumps(cfg["scheduler"]))
        tok = clip_tokenizer()
        tok.pad_token = cfg["tokenizer_pad_token"]
        tok.save_pretrained(str(target / "tokenizer"))
        (target / "model_index.json").write_text(json.dumps(cfg["model_index"]))

    return _publish_folder(cache_dir() / "configs" / name, write)


def _is_sd2(path: Path) -> bool:
    """SD 2.x checkpoints carry an OpenCLIP text encoder (``cond_stage_model.model.*`` keys)."""
    keys = _checkpoint_keys(path)
    return any(k.startswith("cond_stage_model.model.") for k in keys)


def _checkpoint_keys(path: Path) -> list[str]:
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open
            with safe_open(str(path), framework="pt") as f:
                return list(f.keys())
        sd = torch.load(str(path), map_location="meta", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 - any parse failure means an unusable file
        raise ModelLoadError(f"{path}: not a readable checkpoint ({short_reason(e)}). "
                             ".ckpt files are loaded without executing code; re-save as .safetensors if this fails") from None
    sd = sd.get("state_dict", sd) if isinstance(sd, dict) else {}
    return list(sd.keys())


def resolve_model(ref: str | os.PathLike[str] | None) -> tuple[str, str]:
    """Classify a model reference: returns ``(kind, location)`` with kind in
    ``tiny|folder|single_file|hub``. Raises ``ModelNotFoundError`` for a missing path."""
    ref = str(ref) if ref is not None else default_model()
    if ref == TINY_MODEL:
        return "tiny", ref
    if ref == OFFLINE_MODEL:
        folder = resources_dir() / OFFLINE_MODEL
        if not (folder / "model_index.json").exists():
            raise ModelNotFoundError(f"the offline model is missing from {folder}; reinstall the app or "
                                     f"use --model {TINY_MODEL}")
        return "folder", str(folder)
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").exists():
            raise ModelNotFoundError(f"{path}: not a diffusers model folder (no model_index.json)")
        return "folder", str(path)
    if path.suffix in SINGLE_FILE_SUFFIXES:
        if not path.is_file():
            raise ModelNotFoundError(f"{path}: checkpoint file not found")
        return "single_file", str(path)
    if path.exists() or ref.startswith((".", "/", "~")) or os.sep in ref and ref.count("/") != 1:
        raise ModelNotFoundError(f"{ref}: not a diffusers folder, a .safetensors/.ckpt file or a hub id")
    return "hub", ref


def _load_pipeline(kind: str, where: str, dtype: torch.dtype) -> StableDiffusionPipeline:
    common: dict[str, Any] = dict(dtype=dtype, safety_checker=None, requires_safety_checker=False)
    if kind == "tiny":
        return StableDiffusionPipeline.from_pretrained(str(ensure_tiny_model()), **common)
    if kind == "folder":
        return StableDiffusionPipeline.from_pretrained(where, local_files_only=True, **common)
    if kind == "single_file":
        config = _single_file_config(Path(where))
        return StableDiffusionPipeline.from_single_file(where, config=str(config), local_files_only=True,
                                                        original_config=None, **common)
    try:
        return StableDiffusionPipeline.from_pretrained(where, local_files_only=True, **common)
    except (OSError, ValueError) as e:
        if "safety_checker" in str(e):
            raise
        raise ModelNotFoundError(
            f"model '{where}' is not on this machine. Download it once with `bas models download {where}` "
            f"(about 5 GB, needs network), or pass --model with a local diffusers folder or a "
            f".safetensors file, or use --model {OFFLINE_MODEL} to try everything offline."
        ) from None


def load_model(ref: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> SDComponents:
    """Load an SD 1.x/2.x model from any supported reference (see module doc).

    Raises ``ModelNotFoundError`` with instructions when weights are missing and
    ``ModelLoadError`` when a file exists but cannot be used.
    """
    kind, where = resolve_model(ref)
    quiet_libraries()
    try:
        pipe = _load_pipeline(kind, where, dtype)
    except (ModelNotFoundError, ModelLoadError):
        raise
    except Exception as e:  # noqa: BLE001 - turn deep library errors into one clear message
        raise ModelLoadError(f"{where}: could not load the model ({short_reason(e, 300)})") from None
    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    comps = SDComponents(unet=pipe.unet, vae=pipe.vae, text_encoder=pipe.text_encoder,
                         tokenizer=pipe.tokenizer, scheduler=sched, ref=str(ref) if ref else default_model())
    modules: tuple[torch.nn.Module, ...] = (comps.unet, comps.vae, comps.text_encoder)
    for m in modules:
        m.to(device)
        m.eval()
    return comps


def quiet_libraries() -> None:
    """Silence diffusers/transformers progress bars and advisories; we report progress ourselves."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    for lib in (dlog, tlog):
        lib.set_verbosity_error()
        lib.disable_progress_bar()


def download_model(hub_id: str = DEFAULT_HUB_MODEL,
                   progress: Callable[[str], None] | None = None) -> Path:
    """Fetch a hub model's diffusers weights into the hub cache (resumes partial downloads)."""
    from huggingface_hub import snapshot_download

    if progress:
        progress(f"downloading {hub_id} ...")
    # Only the diffusers-layout weights: the repos also hold multi-GB single-file and fp16 copies.
    path = snapshot_download(hub_id, allow_patterns=["model_index.json", "*/*.json", "*/*.txt",
                                                     "*/diffusion_pytorch_model.safetensors",
                                                     "*/model.safetensors"])
    return Path(path)
