"""SAM model specs (official vit_b / vit_l / vit_h and a tiny test model), building and safe weight loading.

The official checkpoints are named ``sam_<arch>_<md5 prefix>.pth``: the six hex digits are the start of
the file's MD5, not its SHA-256. We verify the full published SHA-256 (and keep the MD5 for reference).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from engine.errors import short_reason
from engine.sam.errors import SamError, SamWeightsInvalid, SamWeightsMissing

if TYPE_CHECKING:
    from segment_anything.modeling import Sam

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)

#: Bump when the structure of what we export or cache changes, so stale files are not reused.
CACHE_FORMAT = 1


@dataclass(frozen=True)
class SamArch:
    """Hyper-parameters of one SAM variant, as accepted by segment_anything's modeling classes."""

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    prompt_embed_dim: int = 256
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256


@dataclass(frozen=True)
class ModelSpec:
    """One downloadable (or test-only) SAM model.

    ``url``/``sha256`` are None for the tiny test model, which never has a weights file.
    """

    name: str
    arch: SamArch
    url: str | None = None
    filename: str | None = None
    sha256: str | None = None
    md5: str | None = None
    size_bytes: int | None = None
    description: str = ""

    @property
    def downloadable(self) -> bool:
        """True when the spec names a URL and a checksum to verify it against."""
        return bool(self.url and self.filename and self.sha256)


_BASE = "https://dl.fbaipublicfiles.com/segment_anything/"

VIT_B = ModelSpec(
    name="vit_b",
    arch=SamArch(768, 12, 12, (2, 5, 8, 11)),
    url=_BASE + "sam_vit_b_01ec64.pth",
    filename="sam_vit_b_01ec64.pth",
    sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
    md5="01ec64d29a2fca3f0661936605ae66f8",
    size_bytes=375_042_383,
    description="SAM ViT-B (375 MB): fastest, good enough for click-to-mask",
)
VIT_L = ModelSpec(
    name="vit_l",
    arch=SamArch(1024, 24, 16, (5, 11, 17, 23)),
    url=_BASE + "sam_vit_l_0b3195.pth",
    filename="sam_vit_l_0b3195.pth",
    sha256="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
    md5="0b3195507c641ddb6910d2bb5adee89c",
    size_bytes=None,  # ~1.25 GB; the server's Content-Length is used for progress
    description="SAM ViT-L (1.2 GB)",
)
VIT_H = ModelSpec(
    name="vit_h",
    arch=SamArch(1280, 32, 16, (7, 15, 23, 31)),
    url=_BASE + "sam_vit_h_4b8939.pth",
    filename="sam_vit_h_4b8939.pth",
    sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
    md5="4b8939a88964f0f4ff5f5b2642c598a6",
    size_bytes=2_564_550_879,
    description="SAM ViT-H (2.5 GB): best masks, slowest encoder",
)
#: A few-hundred-kB random SAM with the same module types and shapes conventions as vit_b; tests only.
TINY = ModelSpec(
    name="tiny",
    arch=SamArch(
        encoder_embed_dim=32,
        encoder_depth=2,
        encoder_num_heads=2,
        encoder_global_attn_indexes=(1,),
        prompt_embed_dim=32,
        mask_in_chans=4,
        decoder_depth=2,
        decoder_mlp_dim=64,
        decoder_num_heads=2,
        iou_head_hidden_dim=32,
    ),
    description="random tiny SAM for tests and benches (no weights file)",
)

SPECS: dict[str, ModelSpec] = {s.name: s for s in (VIT_B, VIT_L, VIT_H, TINY)}


def get_spec(name: str) -> ModelSpec:
    """Return the spec called ``name`` (vit_b, vit_l, vit_h, tiny) or raise SamError listing the choices."""
    try:
        return SPECS[name]
    except KeyError:
        raise SamError(f"unknown SAM model {name!r}; choose one of {', '.join(SPECS)}") from None


def build_sam(arch: SamArch) -> Sam:
    """Build an un-trained ``segment_anything.modeling.Sam`` in eval mode from ``arch``.

    Mirrors ``segment_anything.build_sam._build_sam`` but takes every size as a parameter (so the tiny
    test model goes through the same classes) and never touches a checkpoint: the package's loader
    calls ``torch.load`` without ``weights_only``, which would unpickle arbitrary objects.
    """
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    emb = arch.image_size // arch.patch_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=arch.encoder_depth,
            embed_dim=arch.encoder_embed_dim,
            img_size=arch.image_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=arch.encoder_num_heads,
            patch_size=arch.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=arch.encoder_global_attn_indexes,
            window_size=arch.window_size,
            out_chans=arch.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=arch.prompt_embed_dim,
            image_embedding_size=(emb, emb),
            input_image_size=(arch.image_size, arch.image_size),
            mask_in_chans=arch.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=arch.decoder_depth,
                embedding_dim=arch.prompt_embed_dim,
                mlp_dim=arch.decoder_mlp_dim,
                num_heads=arch.decoder_num_heads,
            ),
            transformer_dim=arch.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=arch.iou_head_hidden_dim,
        ),
        pixel_mean=list(PIXEL_MEAN),
        pixel_std=list(PIXEL_STD),
    )
    return sam.eval()


def build_random(spec: ModelSpec, seed: int = 0) -> Sam:
    """A randomly initialised SAM for ``spec``, deterministic in ``seed`` without disturbing global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_sam(spec.arch)


def sha256_file(path: Path, progress: Callable[[int, int], None] | None = None) -> str:
    """Stream ``path`` through SHA-256 (1 MiB chunks); ``progress(done, total)`` after each chunk."""
    h = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    return h.hexdigest()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a ``.pth`` state dict with ``weights_only=True``; SamError naming ``path`` if unusable."""
    path = Path(path)
    if not path.is_file():
        raise SamWeightsMissing("SAM weights file not found", path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        raise SamWeightsInvalid(f"not a readable PyTorch weights file ({short_reason(exc)})", path) from exc
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise SamWeightsInvalid(f"holds a {type(obj).__name__}, not a SAM state dict of tensors", path)
    return obj


def check_state_dict(state: dict[str, torch.Tensor], spec: ModelSpec, path: Path) -> None:
    """Raise SamError naming ``path`` unless ``state`` has exactly the keys and shapes of ``spec``'s model.

    The reference model is built on the meta device, so checking a vit_h file costs no memory.
    """
    with torch.device("meta"):
        ref = build_sam(spec.arch).state_dict()
    missing = [k for k in ref if k not in state]
    unexpected = [k for k in state if k not in ref]
    wrong = [k for k in ref if k in state and tuple(state[k].shape) != tuple(ref[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} tensors of the wrong shape (e.g. {k}: {tuple(state[k].shape)} "
                         f"instead of {tuple(ref[k].shape)})")
        raise SamWeightsInvalid(f"is not a SAM {spec.name} checkpoint: " + "; ".join(parts), path)


def load_sam(spec: ModelSpec, path: Path) -> Sam:
    """Build ``spec``'s SAM and load the weights at ``path`` safely; SamError naming the file if unusable.

    The model is built on the meta device and the loaded tensors are assigned in place: no random
    initialisation (seconds for vit_h) and no second copy of the weights in memory.
    """
    path = Path(path)
    state = read_state_dict(path)
    check_state_dict(state, spec, path)
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}  # fp16 re-saves
    with torch.device("meta"):
        sam = build_sam(spec.arch)
    sam.load_state_dict(state, assign=True)
    # Non-persistent buffers are never in a checkpoint, so they are created for real here.
    sam.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(-1, 1, 1), False)
    sam.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(-1, 1, 1), False)
    left = [n for n, t in [*sam.named_parameters(), *sam.named_buffers()] if t.is_meta]
    if left:
        raise SamWeightsInvalid(f"does not set {len(left)} tensors of SAM {spec.name} (e.g. {left[0]})", path)
    return sam.eval()
