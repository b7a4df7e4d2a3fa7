"""One loader for Stable Diffusion 1.x/2.x and SDXL models, offline first.

A model reference is one of:

* ``tiny-random`` / ``tiny-random-sdxl``: a tiny random-init SD / SDXL built from config (tests);
  built once, saved to the cache and then loaded from disk through the same code path as any
  diffusers folder;
* ``shapesworld``: the offline model shipped in ``resources/shapesworld``;
* a diffusers folder (``model_index.json``);
* a single ``.safetensors``/``.ckpt`` checkpoint, loaded with ``from_single_file`` against the
  configs shipped in ``resources/configs`` (so no network is needed); ``.ckpt`` files are read with
  ``weights_only`` and never executed; an SDXL checkpoint (``conditioner.embedders.1.*`` keys)
  gets the shipped ``sdxl-base`` config;
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
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer, PreTrainedModel

from engine.errors import ModelLoadError, ModelNotFoundError, short_reason
from engine.families import ModelFamily, family_of
from engine.formats.names import (DEFAULT_HUB_MODEL, OFFLINE_MODEL, TINY_MODEL, TINY_SDXL_MODEL, default_model,
                                  hub_model_size)
from engine.paths import cache_dir, resources_dir

if TYPE_CHECKING:
    # For type checkers diffusers' __init__ binds these names to its placeholder ("dummy") classes
    # first, which are not nn.Modules; the defining modules give the real classes.
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
    from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline
    from diffusers.schedulers.scheduling_ddpm import DDPMScheduler
else:
    from diffusers import (AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline,
                           UNet2DConditionModel)

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")


@dataclass
class SDComponents:
    """The parts of a Stable Diffusion model the trainer and the generator use.

    SDXL adds its second text encoder (OpenCLIP ViT-bigG with projection) and tokenizer; what
    differs between the families is asked of :attr:`family` (:mod:`engine.families`).
    """

    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    scheduler: Any
    ref: str
    text_encoder_2: CLIPTextModelWithProjection | None = None
    tokenizer_2: CLIPTokenizer | None = None

    @property
    def family(self) -> ModelFamily:
        """The model family (SD 1.x/2.x or SDXL) and its encoders, conditioning and pipelines."""
        return family_of(self)

    def text_encoders(self) -> list[PreTrainedModel]:
        """Every text encoder (one for SD, two for SDXL)."""
        return [te for _, te in self.family.encoders(self)]

    def modules(self) -> list[torch.nn.Module]:
        """UNet, VAE and the text encoders."""
        return [self.unet, self.vae, *self.text_encoders()]

    @property
    def vae_scale(self) -> int:
        """Pixel-to-latent downscale factor of the VAE."""
        return 2 ** (len(self.vae.config["block_out_channels"]) - 1)

    @property
    def resolution(self) -> int:
        """The model's native image side in pixels."""
        return int(self.unet.config["sample_size"]) * self.vae_scale

    def pipeline(self, scheduler: Any | None = None, kind: str = "text2img") -> Any:
        """A plain diffusers pipeline of the family over these components (no safety checker):
        ``text2img`` or ``inpaint``."""
        return self.family.pipeline(self, scheduler or self.scheduler, kind)


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


def build_tiny_sdxl(seed: int = 0) -> SDComponents:
    """A tiny random-init SDXL-shaped model (64 px) with the real tokenizer, as diffusers' SDXL tests.

    SDXL's shape where the engine sees it: an 8x VAE (8x8 latents at 64 px), three UNet levels
    with cross-attention at latent/2 and latent/4 only, ``addition_embed_type="text_time"``
    (pooled embedding + six time ids), linear projections, and two text encoders of *different*
    widths (32 and 48, as CLIP-L's 768 and bigG's 1280 differ) whose hidden states are
    concatenated (cross-attention width 80); the second has a projection (its pooled output).
    """
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(32, 32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4, 8), transformer_layers_per_block=(1, 1, 2), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 48, cross_attention_dim=80, norm_num_groups=16)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=64, block_out_channels=(16, 16, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=16, scaling_factor=0.13025)
    common: dict[str, Any] = dict(bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, layer_norm_eps=1e-5,
                                  vocab_size=49408, max_position_embeddings=77)
    te1 = CLIPTextModel(CLIPTextConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4,
                                       num_hidden_layers=3, hidden_act="quick_gelu", projection_dim=32, **common))
    te2 = CLIPTextModelWithProjection(CLIPTextConfig(hidden_size=48, intermediate_size=64, num_attention_heads=4,
                                                     num_hidden_layers=3, hidden_act="gelu", projection_dim=48,
                                                     **common))
    from diffusers import EulerDiscreteScheduler

    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       num_train_timesteps=1000, steps_offset=1, timestep_spacing="leading")
    tok2 = clip_tokenizer()
    tok2.pad_token = "!"  # SDXL's second tokenizer pads with "!" (id 0), as OpenCLIP does
    return SDComponents(unet=unet, vae=vae, text_encoder=te1, tokenizer=clip_tokenizer(), scheduler=scheduler,
                        ref=TINY_SDXL_MODEL, text_encoder_2=te2, tokenizer_2=tok2)


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


def ensure_tiny_model(folder: Path | None = None, seed: int = 0, sdxl: bool = False) -> Path:
    """Build the tiny model (``sdxl``: the tiny SDXL) once and save it as a diffusers folder
    (default: in the cache)."""
    name, build = (TINY_SDXL_MODEL, build_tiny_sdxl) if sdxl else (TINY_MODEL, build_tiny_sd)
    folder = Path(folder) if folder else cache_dir() / "models" / name
    return _publish_folder(folder, lambda tmp: build(seed).pipeline().save_pretrained(str(tmp)))


def _single_file_config(path: Path) -> Path:
    """Write (once) the diffusers config folder matching a single checkpoint's architecture."""
    name = single_file_architecture(path)
    cfg = json.loads((resources_dir() / "configs" / f"{name}.json").read_text())

    def write(target: Path) -> None:
        for sub in ("unet", "vae", "text_encoder", "text_encoder_2", "scheduler"):
            if sub in cfg:
                (target / sub).mkdir(parents=True, exist_ok=True)
                file = "scheduler_config.json" if sub == "scheduler" else "config.json"
                (target / sub / file).write_text(json.dumps(cfg[sub]))
        for sub in ("tokenizer", "tokenizer_2"):
            if f"{sub}_pad_token" in cfg:
                tok = clip_tokenizer()
                tok.pad_token = cfg[f"{sub}_pad_token"]
                tok.save_pretrained(str(target / sub))
        (target / "model_index.json").write_text(json.dumps(cfg["model_index"]))

    return _publish_folder(cache_dir() / "configs" / name, write)


def single_file_architecture(path: Path) -> str:
    """Which shipped config fits a single checkpoint: ``sdxl-base`` (SDXL's two text encoders,
    ``conditioner.embedders.1.*`` keys), ``sd21-base`` (SD 2.x's OpenCLIP,
    ``cond_stage_model.model.*``) or ``sd15``."""
    keys = _checkpoint_keys(path)
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        return "sdxl-base"
    return "sd21-base" if any(k.startswith("cond_stage_model.model.") for k in keys) else "sd15"


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
    if ref in (TINY_MODEL, TINY_SDXL_MODEL):
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


def _is_sdxl_folder(folder: Path) -> bool:
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError):
        return False
    return "text_encoder_2" in index or "XL" in str(index.get("_class_name", ""))


def _hub_folder(hub_id: str) -> Path | None:
    """The local snapshot folder of a hub model, when its ``model_index.json`` is cached."""
    try:
        from huggingface_hub import try_to_load_from_cache

        got = try_to_load_from_cache(hub_id, "model_index.json")
    except Exception:  # noqa: BLE001 - not a hub id, or a broken cache
        return None
    return Path(got).parent if isinstance(got, str) else None


def _variant(folder: Path) -> str | None:
    """``fp16`` when only the half-precision weights are on disk (what the SDXL download fetches)."""
    unet = folder / "unet"
    if (unet / "diffusion_pytorch_model.fp16.safetensors").exists() and \
            not (unet / "diffusion_pytorch_model.safetensors").exists():
        return "fp16"
    return None


def _from_folder(folder: Path, dtype: torch.dtype, **kw: Any) -> Any:
    if _is_sdxl_folder(folder):
        return StableDiffusionXLPipeline.from_pretrained(str(folder), dtype=dtype, variant=_variant(folder),
                                                         add_watermarker=False, **kw)
    return StableDiffusionPipeline.from_pretrained(str(folder), dtype=dtype, safety_checker=None,
                                                   requires_safety_checker=False, variant=_variant(folder), **kw)


def _load_pipeline(kind: str, where: str, dtype: torch.dtype) -> Any:
    if kind == "tiny":
        return _from_folder(ensure_tiny_model(sdxl=where == TINY_SDXL_MODEL), dtype)
    if kind == "folder":
        return _from_folder(Path(where), dtype, local_files_only=True)
    if kind == "single_file":
        config = _single_file_config(Path(where))
        if _is_sdxl_folder(config):
            return StableDiffusionXLPipeline.from_single_file(where, config=str(config), local_files_only=True,
                                                              original_config=None, dtype=dtype,
                                                              add_watermarker=False)
        return StableDiffusionPipeline.from_single_file(where, config=str(config), local_files_only=True,
                                                        original_config=None, dtype=dtype, safety_checker=None,
                                                        requires_safety_checker=False)
    folder = _hub_folder(where)
    try:
        if folder is None:
            raise OSError("not in the hub cache")
        return _from_folder(folder, dtype, local_files_only=True)
    except (OSError, ValueError) as e:
        if "safety_checker" in str(e):
            raise
        raise ModelNotFoundError(
            f"model '{where}' is not on this machine. Download it once with `bas models download {where}` "
            f"({hub_model_size(where)}, needs network), or pass --model with a local diffusers folder or a "
            f".safetensors file, or use --model {OFFLINE_MODEL} to try everything offline."
        ) from None


def load_model(ref: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> SDComponents:
    """Load an SD 1.x/2.x or SDXL model from any supported reference (see module doc).

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
                         tokenizer=pipe.tokenizer, scheduler=sched, ref=str(ref) if ref else default_model(),
                         text_encoder_2=getattr(pipe, "text_encoder_2", None),
                         tokenizer_2=getattr(pipe, "tokenizer_2", None))
    comps.family.prepare(comps)
    for m in comps.modules():
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
    """Fetch a hub model's diffusers weights into the hub cache (resumes partial downloads).

    Only the diffusers-layout weights: the repos also hold multi-GB single-file copies. SDXL
    fetches its fp16 files (half the size; the loader reads them into the precision asked for).
    """
    from huggingface_hub import snapshot_download

    from engine.formats.names import download_patterns

    if progress:
        progress(f"downloading {hub_id} ({hub_model_size(hub_id)}) ...")
    return Path(snapshot_download(hub_id, allow_patterns=download_patterns(hub_id)))
