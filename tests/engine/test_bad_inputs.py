"""Table-driven bad photos and masks: each gets a specific, clear error naming the file, or loads.

Packs and projects have their own tables (tests/engine/test_pack_cli.py, the app's tests); this
file covers what a user feeds the engine first: the photo and its masks.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from engine.errors import SceneError
from engine.scene import MAX_HANDLES, load_image, load_mask, load_scene, mask_from_pil

RNG = np.random.default_rng(7)
PHOTO = RNG.integers(0, 255, (48, 48, 3), dtype=np.uint8)


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(PHOTO).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(PHOTO).save(buf, "PNG")
    return buf.getvalue()


def _write(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder / name
    return make


def _save(name: str, img: Image.Image, **kw: object) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        img.save(folder / name, **kw)
        return folder / name
    return make


def _huge(folder: Path) -> Path:
    # 20000x20000 one-bit PNG: 50 MB in memory while writing, ~60 kB on disk.
    Image.new("1", (20000, 20000)).save(folder / "huge.png")
    return folder / "huge.png"


BAD_PHOTOS: list[tuple[str, Callable[[Path], Path], str]] = [
    ("truncated jpeg", _write("img.jpg", _jpeg_bytes()[: len(_jpeg_bytes()) // 2]), "corrupt or truncated"),
    ("truncated png", _write("img.png", _png_bytes()[: len(_png_bytes()) // 2]), "corrupt or truncated"),
    ("corrupt png body", _write("img.png", _png_bytes()[:60] + b"\0" * 200 + _png_bytes()[260:]),
     "corrupt or truncated"),
    ("zero bytes", _write("img.jpg", b""), "empty \\(0 bytes\\)"),
    ("text with a jpg name", _write("img.jpg", b"name,value\n1,2\n"), "not an image file"),
    ("html with a png name", _write("img.png", b"<html><body>404</body></html>"), "not an image file"),
    ("1x1 image", _save("img.png", Image.new("RGB", (1, 1))), "1x1 pixels; at least 8x8"),
    ("20000x20000 image", _huge, "too large to open safely"),
    ("missing file", lambda folder: folder / "nope.jpg", "file not found"),
]


@pytest.mark.parametrize("case,make,match", BAD_PHOTOS, ids=[c[0] for c in BAD_PHOTOS])
def test_bad_photo_gets_a_clear_error_naming_the_file(tmp_path: Path, case: str,
                                                      make: Callable[[Path], Path], match: str) -> None:
    path = make(tmp_path)
    with pytest.raises(SceneError, match=match) as info:
        load_image(path)
    assert str(path) in str(info.value), f"{case}: the message must name the file"


GOOD_ODD_PHOTOS: list[tuple[str, Callable[[Path], Path]]] = [
    ("cmyk jpeg", _save("img.jpg", Image.fromarray(PHOTO).convert("CMYK"))),
    ("palette png", _save("img.png", Image.fromarray(PHOTO).convert("P"))),
    ("palette with transparency", _save("img.png", Image.fromarray(PHOTO).convert("P"), transparency=0)),
    ("16-bit grey png", _save("img.png", Image.fromarray(PHOTO[..., 0].astype(np.uint16) * 257))),
    ("rgba png", _save("img.png", Image.fromarray(np.dstack([PHOTO, PHOTO[..., :1]])))),
    ("1-bit png", _save("img.png", Image.fromarray(PHOTO[..., 0] > 127))),
    ("webp", _save("img.webp", Image.fromarray(PHOTO), lossless=True)),
]


@pytest.mark.parametrize("case,make", GOOD_ODD_PHOTOS, ids=[c[0] for c in GOOD_ODD_PHOTOS])
def test_unusual_but_valid_photos_load_as_rgb(tmp_path: Path, case: str, make: Callable[[Path], Path]) -> None:
    arr = load_image(make(tmp_path))
    assert arr.shape == (48, 48, 3) and arr.dtype == np.uint8, case
    assert arr.std() > 0, f"{case}: decoded to a flat image"


def test_exif_orientation_is_honoured(tmp_path: Path) -> None:
    tall = np.zeros((40, 20, 3), np.uint8)
    tall[:5] = 255  # white band on top of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display = rotate 90 degrees clockwise
    Image.fromarray(tall).save(tmp_path / "img.jpg", exif=exif.tobytes(), quality=95)
    arr = load_image(tmp_path / "img.jpg")
    assert arr.shape[:2] == (20, 40)
    assert arr[:, -5:].mean() > 200 and arr[:, :5].mean() < 50  # the top band is now on the right


def _scene(folder: Path, masks: list[np.ndarray], size: int = 40) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / "img.png")
    for i, m in enumerate(masks):
        Image.fromarray(m).save(folder / f"mask{i}.png")
    return folder


def _box(y0: int, y1: int, x0: int, x1: int, size: int = 40, value: int = 255) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    m[y0:y1, x0:x1] = value
    return m


BAD_MASKS: list[tuple[str, list[np.ndarray], str]] = [
    ("empty", [_box(0, 10, 0, 10), np.zeros((40, 40), np.uint8)], "mask of .* is empty"),
    ("full", [_box(0, 10, 0, 10), np.full((40, 40), 255, np.uint8)], "covers the whole image"),
    ("faint soft mask", [_box(0, 10, 0, 10, value=40)], "is empty \\(no pixel reaches"),
    ("more than the handle limit", [_box(i, i + 2, 0, 4) for i in range(MAX_HANDLES + 1)],
     f"at most {MAX_HANDLES} concepts"),
]


@pytest.mark.parametrize("case,masks,match", BAD_MASKS, ids=[c[0] for c in BAD_MASKS])
def test_bad_masks_get_a_clear_error(tmp_path: Path, case: str, masks: list[np.ndarray], match: str) -> None:
    folder = _scene(tmp_path / "s", masks)
    with pytest.raises(SceneError, match=match) as info:
        load_scene(folder)
    assert str(folder) in str(info.value), f"{case}: the message must name the scene or mask file"


def test_wrong_size_and_soft_masks_load_with_warnings(tmp_path: Path) -> None:
    small = _box(0, 5, 0, 5, size=20)
    soft = (np.linspace(0, 255, 40)[None, :].repeat(40, 0)).astype(np.uint8)
    folder = _scene(tmp_path / "s", [small, soft])
    with pytest.warns(UserWarning, match="mask0.png: mask is 20x20 but the photo is 40x40"):
        scene = load_scene(folder)
    assert scene.concepts[0].mask.shape == (40, 40)
    assert scene.concepts[0].binary()[:10, :10].all() and not scene.concepts[0].binary()[10:, 10:].any()
    assert 0 < scene.concepts[1].binary().mean() < 1  # soft mask thresholded, not refused


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mode=st.sampled_from(["1", "L", "LA", "RGB", "RGBA", "P", "I;16", "I", "F"]),
       h=st.integers(1, 24), w=st.integers(1, 24), seed=st.integers(0, 2**16))
def test_any_mask_mode_loads_to_a_unit_float_map(mode: str, h: int, w: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h, w), dtype=np.uint8)
    if mode == "1":
        img = Image.fromarray(base > 127)
    elif mode in ("I;16", "I"):
        img = Image.fromarray(base.astype(np.uint16) * 257) if mode == "I;16" else \
            Image.fromarray(base.astype(np.int32) * 257, "I")
    elif mode == "F":
        img = Image.fromarray(base.astype(np.float32))
    else:
        img = Image.fromarray(base, "L").convert(mode)
    buf = io.BytesIO()
    fmt = "TIFF" if mode in ("F", "I") else "PNG"
    img.save(buf, fmt)
    buf.seek(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no stray numeric warnings either
        mask = mask_from_pil(Image.open(buf))
    assert mask.shape == (h, w) and mask.dtype == np.float32
    assert np.isfinite(mask).all() and mask.min() >= 0.0 and mask.max() <= 1.0
    ref = base.astype(np.float32) / 255.0
    if mode == "1":
        ref = (base > 127).astype(np.float32)
    # every mode keeps the ordering of the luminance it was made from (alpha-less modes) or is flat
    if mode not in ("LA", "RGBA", "P"):
        assert np.abs(mask - ref).max() < 0.02, mode


@settings(max_examples=40, deadline=None)
@given(data=st.binary(min_size=0, max_size=300), ext=st.sampled_from([".png", ".jpg", ".webp"]))
def test_arbitrary_bytes_as_a_mask_never_crash(tmp_path_factory: pytest.TempPathFactory, data: bytes,
                                               ext: str) -> None:
    path = tmp_path_factory.mktemp("m") / f"mask0{ext}"
    path.write_bytes(data)
    try:
        mask = load_mask(path)
    except SceneError as e:
        assert str(path) in str(e)
    else:
        assert mask.ndim == 2 and np.isfinite(mask).all()
