"""Scenes: one RGB photo plus concept masks, read and written in the reference layout.

The reference Break-A-Scene layout is a folder with ``img.jpg`` (or ``img.png``) and one
``maskN.png`` per concept. Masks may be L, LA, RGB, RGBA, P, 1-bit, 8- or 16-bit, binary or soft:

* where the alpha channel varies, alpha is the mask (a painted layer exported from an editor);
* otherwise the red channel is (the reference code reads channel 0; for grey masks it equals the
  luminance).

Non-square photos are padded to a square by replicating the edge pixels (masks are padded with 0),
never squashed and never cropped, so no masked pixel is lost; a warning says so. Masks of another
size than the photo are resized with nearest-neighbour sampling, with a warning.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.errors import SceneError, short_reason

MAX_HANDLES = 8
BACKGROUND_TOKEN = "<bg>"
MASK_THRESHOLD = 0.5
IMAGE_NAMES = ("img.jpg", "img.jpeg", "img.png", "img.webp")
SCENE_META = "scene.json"
# Distinct, colour-blind-friendlier hues (Okabe-Ito plus two) for the UI's layer overlays.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66),
    (0, 114, 178), (213, 94, 0), (204, 121, 167), (120, 120, 120),
)
BACKGROUND_COLOR = (60, 60, 60)
MAX_META_BYTES = 1 << 20
HANDLE_PATTERN = re.compile(r"^<[^<>\s]{1,62}>$")  # <asset0>, <bg>, <cat-toy>: one word in angle brackets
MAX_WORD_CHARS = 64


def token_name(index: int) -> str:
    """The text handle of concept ``index``: ``<asset0>``, ``<asset1>`` ..."""
    return f"<asset{index}>"


@dataclass
class Concept:
    """One concept of a scene: a soft mask in [0, 1] at the photo's size and its handle."""

    mask: np.ndarray
    token: str
    init_word: str | None = None
    color: tuple[int, int, int] = PALETTE[0]
    is_background: bool = False
    source: Path | None = None

    def binary(self) -> np.ndarray:
        """The mask thresholded at 0.5 (what the losses use)."""
        return self.mask >= MASK_THRESHOLD

    @property
    def label(self) -> str:
        """A human-readable name: the initializer word if any, else the token."""
        return self.init_word or self.token


@dataclass
class Scene:
    """An RGB photo (uint8, HxWx3, square) and its concepts (at most ``MAX_HANDLES``)."""

    image: np.ndarray
    concepts: list[Concept]
    source: Path | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Side of the (square) photo in pixels."""
        return int(self.image.shape[0])

    @property
    def tokens(self) -> list[str]:
        """The concepts' tokens in order."""
        return [c.token for c in self.concepts]

    def masks(self) -> np.ndarray:
        """All masks stacked as float32 ``[N, H, W]`` in [0, 1]."""
        return np.stack([c.mask for c in self.concepts]).astype(np.float32)

    def object_concepts(self) -> list[Concept]:
        """The concepts that are not the background."""
        return [c for c in self.concepts if not c.is_background]

    def with_background(self) -> Scene:
        """A copy with a background concept whose mask is the complement of the objects' union."""
        objects = self.object_concepts()
        union = np.zeros(self.image.shape[:2], dtype=bool)
        for c in objects:
            union |= c.binary()
        bg = Concept(mask=(~union).astype(np.float32), token=BACKGROUND_TOKEN,
                     init_word="background", color=BACKGROUND_COLOR, is_background=True)
        scene = replace(self, concepts=[*objects, bg], warnings=list(self.warnings))
        validate_scene(scene)
        return scene


def _open_image(path: Path) -> Image.Image:
    if not path.exists():
        raise SceneError("file not found", path)
    if path.stat().st_size == 0:
        raise SceneError("the file is empty (0 bytes)", path)
    try:
        img = Image.open(path)
        img.load()
    except UnidentifiedImageError:
        raise SceneError("not an image file PIL can read (wrong extension or corrupt header)", path) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise SceneError(f"the image is corrupt or truncated ({e})", path) from None
    except Image.DecompressionBombError:
        raise SceneError("the image is too large to open safely (decompression-bomb limit)", path) from None
    return img


def load_image(path: str | Path) -> np.ndarray:
    """Read a photo as RGB uint8 ``HxWx3``, honouring EXIF orientation.

    Raises ``SceneError`` naming the file when it is missing, empty, truncated or not an image.
    CMYK, palette, grey, 16-bit and alpha images are converted to RGB (alpha composited on white).
    """
    path = Path(path)
    img = _open_image(path)
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray((arr / max(arr.max(), 1.0) * 255.0).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    if min(arr.shape[:2]) < 8:
        raise SceneError(f"the image is {arr.shape[1]}x{arr.shape[0]} pixels; at least 8x8 is needed", path)
    return arr.copy()


def mask_from_pil(img: Image.Image) -> np.ndarray:
    """Convert a mask image of any supported mode to float32 ``HxW`` in [0, 1]."""
    mode = img.mode
    if mode == "1":
        return np.asarray(img, dtype=np.float32)
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr: np.ndarray = np.asarray(img, dtype=np.float64)
        scale = 65535.0 if arr.max() > 255 or mode.startswith("I;16") else 255.0
        return np.clip(arr / scale, 0, 1).astype(np.float32)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        return np.clip(arr / (255.0 if arr.max() > 1.0 else 1.0), 0, 1)
    if mode == "P":
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode not in ("L", "LA", "RGB", "RGBA"):
        img = img.convert("RGBA" if "A" in mode else "RGB")
        mode = img.mode
    arr = np.asarray(img, dtype=np.float32) / 255.0
    if arr.ndim == 2:
        return arr
    if mode in ("LA", "RGBA"):
        alpha = arr[..., -1]
        if alpha.max() - alpha.min() > 1e-6:
            return alpha
    return arr[..., 0]


def load_mask(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read a mask file as float32 ``HxW`` in [0, 1].

    ``size`` is ``(width, height)`` of the photo; a mask of another size is resized with
    nearest-neighbour sampling and a ``UserWarning`` that names the file.
    """
    path = Path(path)
    img = _open_image(path)
    mask = mask_from_pil(img)
    if size is not None and (mask.shape[1], mask.shape[0]) != tuple(size):
        warnings.warn(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but the photo is "
                      f"{size[0]}x{size[1]}; resized (nearest)", UserWarning, stacklevel=2)
        mask = np.asarray(Image.fromarray(mask, mode="F").resize((size[0], size[1]), Image.Resampling.NEAREST),
                          dtype=np.float32)
    return mask


def pad_to_square(image: np.ndarray, masks: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Pad a non-square photo to a square (edge replicate) and its masks (zeros), centred."""
    h, w = image.shape[:2]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    pad = ((top, side - h - top), (left, side - w - left))
    image = np.pad(image, (*pad, (0, 0)), mode="edge")
    return image, [np.pad(m, pad, mode="constant") for m in masks]


def _find_image(folder: Path) -> Path:
    for name in IMAGE_NAMES:
        if (folder / name).exists():
            return folder / name
    raise SceneError(f"no photo found: expected one of {', '.join(IMAGE_NAMES)}", folder)


def _find_masks(folder: Path) -> list[Path]:
    found = {}
    for p in folder.glob("mask*.png"):
        suffix = p.stem[4:]
        if suffix.isdigit():
            found[int(suffix)] = p
    if not found:
        raise SceneError("no masks found: expected mask0.png, mask1.png ...", folder)
    missing = [i for i in range(max(found) + 1) if i not in found]
    if missing:
        raise SceneError(f"mask numbering has gaps: mask{missing[0]}.png is missing", folder)
    return [found[i] for i in range(len(found))]


def load_scene(folder: str | Path, init_words: list[str] | None = None, background: bool = False,
               tokens: list[str] | None = None) -> Scene:
    """Read a scene folder in the reference layout and validate it.

    ``init_words`` gives one initializer word per mask (optional); ``tokens`` overrides the
    handle names (default ``<asset0>`` ...); ``background`` adds the background concept.
    Metadata written by :func:`save_scene` (``scene.json``) supplies words, tokens and colours.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SceneError("not a folder (a scene is a folder with img.jpg and mask0.png ...)", folder)
    image_path = _find_image(folder)
    mask_paths = _find_masks(folder)
    if len(mask_paths) > MAX_HANDLES:
        raise SceneError(f"{len(mask_paths)} masks, but at most {MAX_HANDLES} concepts are supported", folder)
    meta = _read_meta(folder)
    tokens = tokens or meta.get("tokens") or [token_name(i) for i in range(len(mask_paths))]
    if len(mask_paths) > len(tokens):
        raise SceneError(f"{len(mask_paths)} masks but only {len(tokens)} handle names were given", folder)
    words = init_words if init_words is not None else meta.get("init_words")
    if words is not None and len(words) != len(mask_paths):
        raise SceneError(f"{len(words)} initializer words given for {len(mask_paths)} masks", folder)
    colors = meta.get("colors") or []
    colors = [*colors, *(PALETTE[i % len(PALETTE)] for i in range(len(colors), len(mask_paths)))]

    image = load_image(image_path)
    h, w = image.shape[:2]
    scene_warnings: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        masks = [load_mask(p, size=(w, h)) for p in mask_paths]
    scene_warnings += [str(c.message) for c in caught]
    if h != w:
        image, masks = pad_to_square(image, masks)
        scene_warnings.append(f"{image_path}: photo is {w}x{h}; padded to {max(h, w)}x{max(h, w)} "
                              "(edges replicated, masks padded with 0)")
    concepts = [
        Concept(mask=m, token=tokens[i], init_word=(words[i] if words else None) or None,
                color=tuple(colors[i]), source=mask_paths[i])
        for i, m in enumerate(masks)
    ]
    scene = Scene(image=image, concepts=concepts, source=folder, warnings=scene_warnings)
    scene.warnings += validate_scene(scene)
    for msg in scene.warnings:
        warnings.warn(msg, UserWarning, stacklevel=2)
    if background or meta.get("background"):
        scene = scene.with_background()
    return scene


def is_handle(token: object) -> bool:
    """A usable scene handle: one word in angle brackets (``<asset0>``), at most 64 characters."""
    return isinstance(token, str) and HANDLE_PATTERN.match(token) is not None


def _read_meta(folder: Path) -> dict:
    """``scene.json``, every field checked (types, handle names, colours) before anything uses it."""
    path = folder / SCENE_META
    if not path.exists():
        return {}
    try:
        if path.stat().st_size > MAX_META_BYTES:
            raise SceneError("scene metadata is implausibly large", path)
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        raise SceneError(f"scene metadata is not valid JSON ({short_reason(e, 80)})", path) from None
    if not isinstance(meta, dict):
        raise SceneError("scene metadata must be a JSON object", path)

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise SceneError(f"scene metadata: {what}", path)

    tokens = meta.get("tokens")
    need(tokens is None or (isinstance(tokens, list) and len(tokens) <= MAX_HANDLES + 1),
         "'tokens' must be a list of handles")
    for t in tokens or []:
        need(is_handle(t), f"handle {t!r} is not one word in angle brackets like <asset0>")
    words = meta.get("init_words")
    need(words is None or (isinstance(words, list) and all(
        isinstance(w, str) and len(w) <= MAX_WORD_CHARS for w in words)), "'init_words' must be a list of words")
    colors = meta.get("colors")
    need(colors is None or (isinstance(colors, list) and all(
        isinstance(c, list) and len(c) == 3 and all(isinstance(x, int) and not isinstance(x, bool)
                                                    and 0 <= x <= 255 for x in c) for c in colors)),
         "'colors' must be a list of [r, g, b] with numbers 0-255")
    need(isinstance(meta.get("background", False), bool), "'background' must be true or false")
    return meta


def scene_entries(folder: Path) -> set[str] | None:
    """The names of a scene written by :func:`save_scene` in ``folder``, or ``None`` if there is none."""
    try:
        _read_meta(folder)
    except SceneError:
        return None
    if not (folder / SCENE_META).is_file():
        return None
    return {SCENE_META, *IMAGE_NAMES, *(p.name for p in folder.glob("mask*.png") if p.stem[4:].isdigit())}


def validate_scene(scene: Scene) -> list[str]:
    """Check a scene; raise ``SceneError`` for unusable masks, return warnings (overlaps).

    Errors: no concepts, too many concepts, duplicate tokens, a mask of the wrong shape, an empty
    mask, a mask covering the whole image. Overlapping masks are allowed (the paper's "entangled"
    scenes) but reported.
    """
    n = len(scene.concepts)
    if n == 0:
        raise SceneError("the scene has no concepts: paint at least one mask", scene.source)
    if n > MAX_HANDLES + 1 or len(scene.object_concepts()) > MAX_HANDLES:
        raise SceneError(f"{n} concepts, but at most {MAX_HANDLES} are supported", scene.source)
    if len(set(scene.tokens)) != n:
        raise SceneError(f"duplicate handle names: {scene.tokens}", scene.source)
    bad = [t for t in scene.tokens if not is_handle(t)]
    if bad:
        raise SceneError(f"handle {bad[0]!r} is not one word in angle brackets like <asset0>", scene.source)
    if scene.image.ndim != 3 or scene.image.shape[2] != 3 or scene.image.shape[0] != scene.image.shape[1]:
        raise SceneError(f"photo must be square RGB, got shape {scene.image.shape}", scene.source)
    found: list[str] = []
    for c in scene.concepts:
        where = c.source or scene.source
        if c.mask.shape != scene.image.shape[:2]:
            raise SceneError(f"mask of {c.token} is {c.mask.shape}, photo is {scene.image.shape[:2]}", where)
        b = c.binary()
        if not b.any():
            raise SceneError(f"the mask of {c.label} is empty (no pixel reaches {MASK_THRESHOLD})", where)
        if b.all():
            raise SceneError(f"the mask of {c.label} covers the whole image; it must leave some pixels out", where)
    objs = scene.object_concepts()
    for i in range(len(objs)):
        for j in range(i + 1, len(objs)):
            inter = np.logical_and(objs[i].binary(), objs[j].binary()).sum()
            if inter:
                smaller = min(objs[i].binary().sum(), objs[j].binary().sum())
                found.append(f"masks of {objs[i].label} and {objs[j].label} overlap "
                             f"({100.0 * inter / smaller:.1f}% of the smaller one); allowed, but "
                             "the handles may share what lies in the overlap")
    return found


def save_scene(scene: Scene, folder: str | Path) -> Path:
    """Write a scene in the reference layout (``img.png`` + ``maskN.png`` as 8-bit L) plus ``scene.json``.

    The background concept, if any, is not written as a mask (it is derived) but recorded in the
    metadata. Returns the folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("mask*.png"):
        old.unlink()
    for name in IMAGE_NAMES:
        (folder / name).unlink(missing_ok=True)
    Image.fromarray(scene.image).save(folder / "img.png")
    objs = scene.object_concepts()
    for i, c in enumerate(objs):
        Image.fromarray((np.clip(c.mask, 0, 1) * 255).round().astype(np.uint8), mode="L").save(folder / f"mask{i}.png")
    meta = {
        "tokens": [c.token for c in objs],
        "init_words": [c.init_word or "" for c in objs],
        "colors": [list(c.color) for c in objs],
        "background": any(c.is_background for c in scene.concepts),
    }
    (folder / SCENE_META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return folder
