"""Scenes: mask formats, the reference layout, validation errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.errors import SceneError
from engine.scene import (MAX_HANDLES, Concept, Scene, load_image, load_mask, load_scene, save_scene,
                          validate_scene)


def _soft_mask(size: int = 32) -> np.ndarray:
    """A soft disc: values across the whole 0..255 range, not only 0 and 255."""
    yy, xx = np.mgrid[:size, :size]
    d = np.hypot(yy - size / 2, xx - size / 3)
    return np.clip(255 - d * 25, 0, 255).astype(np.uint8)


def _write_formats(folder: Path, m8: np.ndarray) -> dict[str, Path]:
    """The same mask in every accepted encoding."""
    h, w = m8.shape
    files: dict[str, Path] = {}

    def save(name: str, img: Image.Image) -> None:
        files[name] = folder / f"{name}.png"
        img.save(files[name])

    save("L", Image.fromarray(m8, "L"))
    save("LA_const_alpha", Image.fromarray(np.dstack([m8, np.full_like(m8, 255)]), "LA"))
    save("LA_alpha", Image.fromarray(np.dstack([np.zeros_like(m8), m8]), "LA"))
    save("RGB_red", Image.fromarray(np.dstack([m8, np.zeros_like(m8), np.zeros_like(m8)]), "RGB"))
    save("RGB_grey", Image.fromarray(np.dstack([m8] * 3), "RGB"))
    save("RGBA_red", Image.fromarray(np.dstack([m8, m8 // 3, np.zeros_like(m8), np.full_like(m8, 255)]), "RGBA"))
    save("RGBA_alpha", Image.fromarray(np.dstack([np.full((h, w, 3), 200, np.uint8), m8]), "RGBA"))
    save("I16", Image.fromarray(m8.astype(np.uint16) * 257))
    save("P", Image.fromarray(np.dstack([m8] * 3), "RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
         if len(np.unique(m8)) <= 256 else Image.fromarray(m8, "L"))
    return files


def test_every_mask_format_loads_to_the_same_array(tmp_path: Path) -> None:
    m8 = _soft_mask()
    expected = m8.astype(np.float32) / 255.0
    files = _write_formats(tmp_path, m8)
    img16 = Image.open(files["I16"])
    assert img16.mode.startswith("I"), "the 16-bit case must really be 16-bit"
    for name, path in files.items():
        got = load_mask(path)
        assert got.shape == expected.shape, name
        tol = 2 / 255 if name == "P" else 1e-6
        np.testing.assert_allclose(got, expected, atol=tol, err_msg=name)


def test_binary_one_bit_mask(tmp_path: Path) -> None:
    m = np.zeros((16, 16), bool)
    m[4:9, 2:12] = True
    Image.fromarray(m).convert("1").save(tmp_path / "b.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "b.png"), m.astype(np.float32))


def _scene_folder(root: Path, size: tuple[int, int] = (40, 40), masks: list[np.ndarray] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    w, h = size
    rgb = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(root / "img.png")
    if masks is None:
        a = np.zeros((h, w), np.uint8)
        a[5:15, 5:15] = 255
        b = np.zeros((h, w), np.uint8)
        b[20:30, 20:35] = 255
        masks = [a, b]
    for i, m in enumerate(masks):
        Image.fromarray(m, "L").save(root / f"mask{i}.png")
    return root


def test_reference_layout_round_trip(tmp_path: Path, scenes_dir: Path) -> None:
    scene = load_scene(scenes_dir / "chicken")
    assert scene.tokens == ["<asset0>", "<asset1>", "<asset2>"]
    assert scene.image.shape == (512, 512, 3)
    out = save_scene(scene, tmp_path / "copy")
    again = load_scene(out)
    np.testing.assert_array_equal(again.image, scene.image)
    for a, b in zip(scene.concepts, again.concepts):
        np.testing.assert_allclose(a.mask, b.mask, atol=0.5 / 255)
        assert a.color == b.color


def test_overlap_is_reported_not_refused(tmp_path: Path) -> None:
    a = np.zeros((40, 40), np.uint8)
    a[5:25, 5:25] = 255
    b = np.zeros((40, 40), np.uint8)
    b[15:35, 15:35] = 255
    with pytest.warns(UserWarning, match="overlap"):
        scene = load_scene(_scene_folder(tmp_path / "s", masks=[a, b]))
    assert any("overlap" in w for w in scene.warnings)


def test_init_words_and_background(tmp_path: Path) -> None:
    scene = load_scene(_scene_folder(tmp_path / "s"), init_words=["cat", "dog"], background=True)
    assert scene.tokens == ["<asset0>", "<asset1>", "<bg>"]
    assert [c.init_word for c in scene.concepts] == ["cat", "dog", "background"]
    union = scene.concepts[0].binary() | scene.concepts[1].binary()
    np.testing.assert_array_equal(scene.concepts[2].binary(), ~union)


def test_non_square_photo_is_padded_not_squashed(tmp_path: Path) -> None:
    folder = _scene_folder(tmp_path / "s", size=(60, 40))
    with pytest.warns(UserWarning, match="padded"):
        scene = load_scene(folder)
    assert scene.image.shape == (60, 60, 3)
    original = np.asarray(Image.open(folder / "img.png"))
    np.testing.assert_array_equal(scene.image[10:50], original)
    assert scene.concepts[0].binary().sum() == 100  # no mask pixel lost


def test_mask_of_another_size_is_resized_with_a_warning(tmp_path: Path) -> None:
    folder = _scene_folder(tmp_path / "s")
    small = np.zeros((20, 20), np.uint8)
    small[2:8, 2:8] = 255
    Image.fromarray(small, "L").save(folder / "mask1.png")
    with pytest.warns(UserWarning, match="mask1.png: mask is 20x20 but the photo is 40x40"):
        scene = load_scene(folder)
    assert scene.concepts[1].mask.shape == (40, 40)
    assert scene.concepts[1].binary().sum() == 144


@pytest.mark.parametrize("case, match", [
    ("empty_mask", "mask1.png: the mask of <asset1> is empty"),
    ("full_mask", "mask1.png: the mask of <asset1> covers the whole image"),
    ("truncated_image", "img.png: the image is corrupt or truncated"),
    ("zero_byte_image", "img.png: the file is empty"),
    ("not_an_image", "img.png: not an image file"),
    ("too_many", f"at most {MAX_HANDLES} concepts"),
    ("gap", "mask1.png is missing"),
    ("no_masks", "no masks found"),
    ("words_mismatch", "1 initializer words given for 2 masks"),
])
def test_validation_errors_name_the_file(tmp_path: Path, case: str, match: str) -> None:
    folder = _scene_folder(tmp_path / "s")
    words = None
    if case == "empty_mask":
        Image.fromarray(np.zeros((40, 40), np.uint8), "L").save(folder / "mask1.png")
    elif case == "full_mask":
        Image.fromarray(np.full((40, 40), 255, np.uint8), "L").save(folder / "mask1.png")
    elif case == "truncated_image":
        data = (folder / "img.png").read_bytes()
        (folder / "img.png").write_bytes(data[: len(data) // 2])
    elif case == "zero_byte_image":
        (folder / "img.png").write_bytes(b"")
    elif case == "not_an_image":
        (folder / "img.png").write_text("this is text, not a PNG")
    elif case == "too_many":
        m = np.zeros((40, 40), np.uint8)
        m[0:3, 0:3] = 255
        for i in range(MAX_HANDLES + 1):
            Image.fromarray(m, "L").save(folder / f"mask{i}.png")
    elif case == "gap":
        (folder / "mask1.png").rename(folder / "mask2.png")
    elif case == "no_masks":
        for p in folder.glob("mask*.png"):
            p.unlink()
    elif case == "words_mismatch":
        words = ["cat"]
    with pytest.raises(SceneError, match=match), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_scene(folder, init_words=words)


def test_more_masks_than_handle_names(tmp_path: Path) -> None:
    with pytest.raises(SceneError, match="2 masks but only 1 handle names"):
        load_scene(_scene_folder(tmp_path / "s"), tokens=["<cat>"])


def test_validate_scene_rejects_empty_and_too_many() -> None:
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(SceneError, match="no concepts"):
        validate_scene(Scene(image=img, concepts=[]))
    m = np.zeros((8, 8), np.float32)
    m[0, 0] = 1
    many = [Concept(mask=m, token=f"<t{i}>") for i in range(MAX_HANDLES + 1)]
    with pytest.raises(SceneError, match="at most"):
        validate_scene(Scene(image=img, concepts=many))


def test_load_image_modes(tmp_path: Path) -> None:
    rgb = np.random.default_rng(1).integers(0, 255, (12, 10, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(rgb).convert("P").save(tmp_path / "pal.png")
    Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(tmp_path / "g16.png")
    for name in ("cmyk.jpg", "pal.png", "g16.png"):
        arr = load_image(tmp_path / name)
        assert arr.shape == (12, 10, 3) and arr.dtype == np.uint8, name
    red = rgb[..., 0].astype(np.float64)
    np.testing.assert_array_equal(load_image(tmp_path / "g16.png")[..., 0], (red / red.max() * 255).astype(np.uint8))
    Image.new("RGB", (1, 1)).save(tmp_path / "one.png")
    with pytest.raises(SceneError, match="one.png: the image is 1x1"):
        load_image(tmp_path / "one.png")
