"""Composing with handles on the tiny model: generation, metadata, variations, background, local
edits, and interop (exported embeddings/LoRA loaded by a plain diffusers pipeline)."""

from __future__ import annotations

import copy
import pathlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont
from safetensors.torch import load_file, save_file

from engine.cli.main import main
from engine.compose.edit import blended_edit, edit_masks
from engine.errors import PackError
from engine.formats.png import parse_parameters, read_png_metadata
from engine.compose.generate import (VARIATION_TEMPLATES, GeneratedImage, apply_pack, background_token, generate,
                             handle_subsets, load_pack_model, make_scheduler, object_tokens,
                             render_background, variations, wrap_label)
from engine.packs.interop import (LORA_FILE, export_pack, import_embeddings, inspect_pack, lora_from_pack,
                            read_embedding_file)
from engine.models import load_model
from engine.packs.pack import HandlePack, load_pack

PROMPT = "a photo of <asset0> and <asset1>"


@pytest.fixture(scope="module")
def lora_pack(lora_bg_pack_dir: Path) -> HandlePack:
    return load_pack(lora_bg_pack_dir)


@pytest.fixture(scope="module")
def lora_comps(lora_pack: HandlePack):  # noqa: ANN201 - SDComponents
    return load_pack_model(lora_pack)


def _np(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


# ------------------------------------------------------------------------------------ generation
def test_generate_seeds_schedulers_size_progress_and_cancel(lora_comps, lora_pack: HandlePack) -> None:
    calls: list[tuple[int, int]] = []
    imgs = generate(lora_comps, PROMPT, n=3, seed=7, steps=2, batch_size=2, scheduler="dpmpp-2m",
                    size=48, pack=lora_pack, on_step=lambda d, t: calls.append((d, t)))
    assert [g.seed for g in imgs] == [7, 8, 9] and imgs[0].image.size == (48, 48)
    assert calls[-1] == (6, 6) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    again = generate(lora_comps, PROMPT, seeds=[8], steps=2, scheduler="dpmpp-2m", size=48)
    # Seed 8 alone vs. second in a batch of two: the same picture up to batched-matmul rounding.
    assert np.abs(_np(again[0].image) - _np(imgs[1].image)).max() <= 2
    assert np.abs(_np(imgs[0].image) - _np(imgs[1].image)).max() > 10
    ddim = generate(lora_comps, PROMPT, seeds=[8], steps=2, scheduler="ddim", size=48)
    assert not np.array_equal(_np(ddim[0].image), _np(again[0].image))
    stop_after = {"n": 0}

    def should_stop() -> bool:
        stop_after["n"] += 1
        return stop_after["n"] > 2  # during the second single-image batch

    got = generate(lora_comps, PROMPT, n=3, steps=2, should_stop=should_stop)
    assert len(got) == 1
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    assert type(make_scheduler("ddim", lora_comps.scheduler.config)) is DDIMScheduler
    assert type(make_scheduler("dpmpp-2m", lora_comps.scheduler.config)) is DPMSolverMultistepScheduler
    assert make_scheduler("dpmpp-2m-karras", lora_comps.scheduler.config).config.use_karras_sigmas
    with pytest.raises(ValueError, match="unknown scheduler 'nope'"):
        generate(lora_comps, PROMPT, steps=2, scheduler="nope")
    with pytest.raises(ValueError, match="multiple of 16"):
        generate(lora_comps, PROMPT, steps=2, size=50)


def test_png_metadata_rebuilds_the_settings(lora_comps, lora_pack: HandlePack, tmp_path: Path) -> None:
    g = generate(lora_comps, PROMPT, seeds=[11], steps=2, guidance=5.0, negative_prompt="blurry",
                 pack=lora_pack)[0]
    path = g.save(tmp_path / "a.png")
    meta = read_png_metadata(path)
    assert meta == g.metadata()
    assert meta["seed"] == 11 and meta["pack_id"] == inspect_pack(lora_pack)["id"]
    assert meta["base_model"] == "tiny-random" and meta["steps"] == 2 and meta["guidance"] == 5.0
    with Image.open(path) as im:
        params = parse_parameters(im.text["parameters"])
    assert params["prompt"] == PROMPT and params["negative_prompt"] == "blurry"
    assert params["Seed"] == "11" and params["Steps"] == "2" and params["Sampler"] == "DDIM"
    assert params["CFG scale"] == "5.0" and params["Model"] == "tiny-random" and params["Size"] == "64x64"
    # A PNG with only an A1111 parameters chunk (another tool's) still reads.
    g2 = GeneratedImage(g.image, "x", 1, 3, 2.0)
    g2.image.save(tmp_path / "b.png", pnginfo=_only_parameters(g2.parameters()))
    assert read_png_metadata(tmp_path / "b.png")["Seed"] == "1"


def _only_parameters(text: str):  # noqa: ANN202
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    return info


def test_variations_grid(lora_comps, lora_pack: HandlePack) -> None:
    assert handle_subsets(["a", "b", "c"]) == [["a"], ["b"], ["c"], ["a", "b"], ["a", "c"], ["b", "c"],
                                                ["a", "b", "c"]]
    tokens = object_tokens(lora_pack)
    assert tokens == ["<asset0>", "<asset1>"]
    templates = ["a photo of {} at the beach", "an oil painting of {}"]
    grid = variations(lora_comps, tokens, templates, steps=2, pack=lora_pack)
    assert grid.rows == ["<asset0>", "<asset1>", "<asset0> + <asset1>"] and grid.columns == templates
    assert grid.cells[2][1].prompt == "an oil painting of <asset0> and <asset1>"
    img = grid.image()
    assert img.size[0] > 2 * 64 and img.size[1] > 3 * 64
    cell = np.asarray(grid.cells[1][0].image)
    left, top = img.size[0] - 2 * 64, img.size[1] - 3 * 64
    assert np.array_equal(np.asarray(img)[top + 64:top + 128, left:left + 64], cell)
    # The labels are drawn: dark text in the header above each column and left of each row.
    a = np.asarray(img.convert("L"))
    for j in range(2):
        assert (a[:top, left + j * 64:left + (j + 1) * 64] < 128).any(), f"column {j} label"
    for i in range(3):
        assert (a[top + i * 64:top + (i + 1) * 64, :left] < 128).any(), f"row {i} label"
    assert (a[:top, :left] >= 128).all()  # the corner stays blank
    font = ImageFont.load_default()
    lines = wrap_label("a photo of * on a wooden table", 60, font)
    assert " ".join(lines) == "a photo of * on a wooden table" and len(lines) > 1
    assert all(ImageDraw.Draw(img).textlength(line, font=font) <= 60 for line in lines)
    with pytest.raises(ValueError, match="need a \\{\\}"):
        variations(lora_comps, tokens, ["no slot"], steps=2)
    assert [t.format("X") for t in VARIATION_TEMPLATES] == [
        "a photo of X at the beach", "a photo of X in the snow", "a photo of X on a wooden table",
        "an oil painting of X"]
    stops = iter([False, True])
    partial = variations(lora_comps, tokens[:1], steps=1, should_stop=lambda: next(stops, True))
    assert partial.rows == [] and partial.cells == []  # cancelled in the first row's second cell


def test_background_handle_renders_alone_and_hosts_objects(lora_comps, lora_pack: HandlePack,
                                                           full_pack_dir: Path) -> None:
    assert background_token(lora_pack) == "<bg>"
    assert lora_pack.scene().concepts[-1].is_background
    bg = render_background(lora_comps, lora_pack, steps=2)[0]
    assert bg.prompt == "a photo of <bg>" and bg.image.size == (64, 64)
    placed = render_background(lora_comps, lora_pack, "a photo of <asset0> in {bg}", steps=2)[0]
    assert placed.prompt == "a photo of <asset0> in <bg>"
    assert not np.array_equal(_np(placed.image), _np(bg.image))
    with pytest.raises(PackError, match="no background handle"):
        background_token(load_pack(full_pack_dir))


# ----------------------------------------------------------------------------------------- edit
def test_edit_keeps_every_pixel_outside_the_region(lora_comps, lora_pack: HandlePack, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (56, 80, 3), dtype=np.uint8)  # any photo, not square, not 64 px
    mask = np.zeros((56, 80), np.float32)
    mask[20:36, 30:50] = 1.0
    res = blended_edit(lora_comps, photo, mask, "a photo of <asset1>", steps=4, strength=0.9, pack=lora_pack,
                       dilate_px=2, feather_px=2)
    out = np.asarray(res.result.image)
    outside = res.blend_mask == 0
    assert out.shape == photo.shape and outside.mean() > 0.5
    assert np.array_equal(out[outside], photo[outside])
    inside = mask > 0
    assert np.abs(out[inside].astype(int) - photo[inside]).mean() > 5
    # The feather is bounded: nothing farther than dilate + 3 * feather from the mask changes.
    far = np.ones_like(outside)
    far[20 - 8:36 + 8, 30 - 8:50 + 8] = False
    assert outside[far].all()
    saved = res.result.save(tmp_path / "edit.png")
    assert np.array_equal(np.asarray(Image.open(saved).convert("RGB"))[outside], photo[outside])
    assert read_png_metadata(saved)["extra"]["Strength"] == 0.9
    with pytest.raises(ValueError, match="the mask is 10x10 but the photo is 80x56"):
        blended_edit(lora_comps, photo, np.ones((10, 10), np.float32), "x", steps=2)
    region, blend = edit_masks(mask, 0, 0)
    assert np.array_equal(region, mask > 0) and np.array_equal(blend, mask)


def test_edit_replaces_latents_outside_the_region_at_every_step(lora_comps) -> None:  # noqa: ANN001
    """Blended latent diffusion: outside the region the latents are the source's, noised to each step."""
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), np.float32)
    mask[16:40, 24:48] = 1.0
    runs = []
    for prompt in ("a photo of <asset1>", "an oil painting of <asset0> in the snow"):
        lat: list[torch.Tensor] = []
        res = blended_edit(lora_comps, photo, mask, prompt, steps=5, strength=1.0, seed=3, dilate_px=0,
                           feather_px=0, on_latents=lambda i, x, lat=lat: lat.append(x))
        runs.append((res, lat))
    (res, a), (_, b) = runs
    assert len(a) == len(b) == 5
    region = Image.fromarray((res.region * 255).astype(np.uint8)).resize(res.raw.size, Image.NEAREST)
    inside = torch.nn.functional.interpolate(torch.from_numpy(np.asarray(region) > 127)[None, None].float(),
                                             size=a[0].shape[-2:])[0, 0].bool()
    assert 0 < inside.sum() < inside.numel()
    for x, y in zip(a, b):
        assert torch.equal(x[..., ~inside], y[..., ~inside])  # prompt-independent: the source's
        assert not torch.equal(x[..., inside], y[..., inside])  # the prompt acts inside
    # ... and re-noised at each step's level, ending at the clean source latents.
    levels = [float(x[..., ~inside].std()) for x in a]
    assert levels[0] > levels[-1] and not torch.equal(a[0][..., ~inside], a[-1][..., ~inside])
    calls: list[tuple[int, int]] = []
    assert blended_edit(lora_comps, photo, mask, "a photo of <asset1>", steps=4, strength=0.5,
                        on_step=lambda d, t: calls.append((d, t)), should_stop=lambda: len(calls) >= 1) is None
    assert calls == [(1, 2)]


# -------------------------------------------------------------------------------------- interop
@pytest.fixture(scope="module")
def base_model():  # noqa: ANN201 - SDComponents
    return load_model("tiny-random")


def _plain_pipeline_image(base, folder: Path, tokens: list[str], fmt: str, seed: int = 5) -> np.ndarray:  # noqa: ANN001
    """A plain diffusers pipeline on (a copy of) the base model given only the exported files."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    base = copy.deepcopy(base)
    pipe = StableDiffusionPipeline(vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer,
                                   unet=base.unet, scheduler=DDIMScheduler.from_config(base.scheduler.config),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    for tok in tokens:
        name = tok.strip("<>")
        if fmt == "a1111":  # trigger word = file name; we name it back to our handle for the same prompt
            pipe.load_textual_inversion(str(folder / "a1111" / f"{name}.safetensors"), token=tok)
        else:
            pipe.load_textual_inversion(str(folder / "diffusers" / f"{name}.safetensors"))
    if fmt == "diffusers":
        pipe.load_lora_weights(str(folder / "diffusers"), weight_name=LORA_FILE)
    elif fmt in ("kohya", "a1111"):
        pipe.load_lora_weights(str(next((folder / "kohya").glob("*.safetensors"))))
    return _run(pipe, seed)


def _run(pipe, seed: int) -> np.ndarray:  # noqa: ANN001
    pipe.set_progress_bar_config(disable=True)
    gen = torch.Generator("cpu").manual_seed(seed)
    return pipe(PROMPT, num_inference_steps=3, generator=gen, height=64, width=64, output_type="np").images[0]


def _engine_image(base, pack: HandlePack, seed: int = 5) -> np.ndarray:  # noqa: ANN001
    from diffusers import DDIMScheduler

    comps = apply_pack(copy.deepcopy(base), pack)
    return _run(comps.pipeline(DDIMScheduler.from_config(comps.scheduler.config)), seed)


def test_lora_pack_round_trip_is_exact(lora_pack: HandlePack, base_model, tmp_path: Path) -> None:  # noqa: ANN001
    report = export_pack(lora_pack, tmp_path, "all")
    assert report["lora"].exact and report["lora"].rank == 4
    ours = _engine_image(base_model, lora_pack)
    for fmt in ("diffusers", "kohya", "a1111"):
        theirs = _plain_pipeline_image(base_model, tmp_path, lora_pack.tokens, fmt)
        # The engine fuses the LoRA into the weights once at load; diffusers runs it beside them:
        # the same sums in another order, equal to float rounding.
        assert np.abs(ours - theirs).max() < 1e-5, fmt
    no_lora = _plain_pipeline_image(base_model, tmp_path, lora_pack.tokens, "embeddings-only")
    assert np.abs(ours - no_lora).max() > 1e-4  # the LoRA matters, so equality above means something
    # Our generate() (what bas generate saves) gives the same 8-bit picture as the plain pipeline.
    png = generate(apply_pack(copy.deepcopy(base_model), lora_pack), PROMPT, seeds=[5], steps=3)[0].image
    assert np.abs(np.asarray(png).astype(int) - (np.clip(theirs, 0, 1) * 255).round().astype(int)).max() <= 1


def test_export_layouts(lora_pack: HandlePack, tmp_path: Path) -> None:
    export_pack(lora_pack, tmp_path, "all")
    for tok in lora_pack.tokens:
        d = load_file(str(tmp_path / "diffusers" / f"{tok.strip('<>')}.safetensors"))
        assert list(d) == [tok] and torch.equal(d[tok], lora_pack.embeddings[tok])
        a = load_file(str(tmp_path / "a1111" / f"{tok.strip('<>')}.safetensors"))
        assert list(a) == ["emb_params"] and a["emb_params"].shape == (1, 32)
    kohya = load_file(str(next((tmp_path / "kohya").glob("*.safetensors"))))
    pat = re.compile(r"^lora_(unet|te)_[A-Za-z0-9_]+\.(lora_down\.weight|lora_up\.weight|alpha)$")
    assert all(pat.match(k) for k in kohya)
    assert "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight" in kohya
    assert "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_out_0.alpha" in kohya
    diff = load_file(str(tmp_path / "diffusers" / LORA_FILE))
    assert "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight" in diff
    assert sum(k.startswith("unet.") for k in diff) == len(lora_pack.lora["unet"])


def test_svd_extraction_of_a_full_fine_tune(full_pack_dir: Path, base_model, tmp_path: Path) -> None:  # noqa: ANN001
    pack = load_pack(full_pack_dir)
    base = base_model
    errors = {r: lora_from_pack(pack, rank=r, base=base).overall_error for r in (4, 16, 64, 128)}
    print("SVD relative reconstruction error by rank:", errors)
    assert errors[4] > errors[16] > errors[64] > errors[128] and errors[128] < 1e-5
    report = export_pack(pack, tmp_path, "all", rank=128, base=base)
    lora = report["lora"]
    print("not carried:", lora.not_carried)
    assert not lora.exact and set(lora.not_carried) == {"unet", "text_encoder"}
    ours = _engine_image(base, pack)
    no_lora = _plain_pipeline_image(base_model, tmp_path, pack.tokens, "embeddings-only")
    for fmt in ("diffusers", "kohya"):
        theirs = _plain_pipeline_image(base_model, tmp_path, pack.tokens, fmt)
        err, without = float(np.abs(ours - theirs).max()), float(np.abs(ours - no_lora).max())
        print(f"{fmt}: max |engine - plain pipeline| = {err:.2e} (without the LoRA {without:.2e})")
        # Tolerance: biases, norms, position and token tables are not carried by a LoRA; the
        # LoRA must still remove most of the difference (measured: 9.7e-3 with, 5.3e-2 without).
        assert err < 2e-2 and err < 0.3 * without


def test_import_embeddings_and_refusals(lora_pack: HandlePack, tmp_path: Path) -> None:
    export_pack(lora_pack, tmp_path / "exp", ["diffusers", "a1111"])
    a1111 = tmp_path / "exp" / "a1111" / "asset0.safetensors"
    diffusers_file = tmp_path / "exp" / "diffusers" / "asset1.safetensors"
    assert list(read_embedding_file(a1111)) == ["<asset0>"]
    legacy = tmp_path / "legacy.pt"  # an A1111 .pt: plain tensors and strings, fine for weights_only
    torch.save({"string_to_param": {"*": lora_pack.embeddings["<bg>"][None]}, "name": "legacy"}, legacy)
    out = import_embeddings([a1111, diffusers_file, legacy], "tiny-random", tmp_path / "imported", resolution=64)
    pack = load_pack(out)
    assert pack.tokens == ["<asset0>", "<asset1>", "<legacy>"]
    comps = load_pack_model(pack)
    ids = comps.tokenizer("<asset1>", add_special_tokens=False).input_ids
    torch.testing.assert_close(comps.text_encoder.get_input_embeddings().weight[ids[0]],
                               lora_pack.embeddings["<asset1>"])
    assert generate(comps, "a photo of <legacy>", steps=2)[0].image.size == (64, 64)

    marker = tmp_path / "executed"
    evil = tmp_path / "evil.pt"
    torch.save(_Evil(str(marker)), evil)
    with pytest.raises(PackError, match="evil.pt: refused: this pickle file cannot be read with weights_only"):
        read_embedding_file(evil)
    assert not marker.exists()
    wide = tmp_path / "wide.safetensors"
    save_file({"<w>": torch.zeros(768)}, str(wide))
    with pytest.raises(PackError, match="wide.safetensors: embedding <w> has width 768, but base model "
                                        "'tiny-random' needs 32"):
        import_embeddings([wide], "tiny-random", tmp_path / "bad")
    multi = tmp_path / "multi.safetensors"
    save_file({"emb_params": torch.zeros(3, 32)}, str(multi))
    with pytest.raises(PackError, match="shape \\(3, 32\\): only single-vector"):
        read_embedding_file(multi)
    big = tmp_path / "huge.safetensors"
    save_file({"<h>": torch.zeros(5_000_000)}, str(big))
    with pytest.raises(PackError, match="far too large"):
        read_embedding_file(big)
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(PackError, match="junk.safetensors: not a valid safetensors file"):
        read_embedding_file(tmp_path / "junk.safetensors")


class _Evil:
    """Unpickling this would create a file (stands for any code a pickle can run)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # noqa: ANN204
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def test_wrong_width_pack_is_refused(lora_bg_pack_dir: Path, tmp_path: Path) -> None:
    import shutil

    d = tmp_path / "wide"
    shutil.copytree(lora_bg_pack_dir, d)
    emb = load_file(str(d / "embeddings.safetensors"))
    save_file({k: torch.zeros(768) for k in emb}, str(d / "embeddings.safetensors"))
    with pytest.raises(PackError, match="has width \\(768,\\), but the base model 'tiny-random' needs 32"):
        load_pack_model(load_pack(d))


@pytest.mark.parametrize("which", ["lora", "full"])
def test_wrongly_shaped_weights_are_refused_naming_the_pack(which: str, lora_bg_pack_dir: Path,
                                                           full_pack_dir: Path, tmp_path: Path) -> None:
    import shutil

    d = tmp_path / which
    shutil.copytree(lora_bg_pack_dir if which == "lora" else full_pack_dir, d)
    name = "lora_unet.safetensors" if which == "lora" else "unet.safetensors"
    tensors = load_file(str(d / name))
    key = sorted(k for k in tensors if k.endswith("weight") and tensors[k].dim() == 2)[0]
    tensors[key] = torch.zeros(tensors[key].shape[0] + 3, tensors[key].shape[1])
    save_file(tensors, str(d / name))
    with pytest.raises(PackError, match=f"{which}: the pack's weights do not fit the base model 'tiny-random'"):
        load_pack_model(load_pack(d))


# ------------------------------------------------------------------------------------------ CLI
def test_cli_compose_commands(lora_bg_pack_dir: Path, full_pack_dir: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    pack = str(lora_bg_pack_dir)
    assert main(["pack", "inspect", pack]) == 0
    out = capsys.readouterr().out
    assert "<asset0> (star), <asset1> (circle), <bg> (background)" in out and "lora (rank 4)" in out
    assert main(["generate", pack, PROMPT, "-o", str(tmp_path / "g.png"), "--n", "2", "--steps", "2",
                 "--scheduler", "dpmpp-2m", "--seed", "3"]) == 0
    assert read_png_metadata(tmp_path / "g-2.png")["seed"] == 4
    assert main(["background", pack, "-o", str(tmp_path / "bg.png"), "--steps", "2"]) == 0
    assert read_png_metadata(tmp_path / "bg.png")["prompt"] == "a photo of <bg>"
    Image.fromarray(((load_pack(pack).scene().concepts[1].mask > 0.5) * 255).astype(np.uint8)).save(tmp_path / "m.png")
    Image.fromarray(load_pack(pack).scene().image).save(tmp_path / "photo.png")
    assert main(["edit", pack, "--image", str(tmp_path / "photo.png"), "--mask", str(tmp_path / "m.png"),
                 "a photo of <asset0>", "-o", str(tmp_path / "e.png"), "--steps", "3"]) == 0
    assert "% of those equal the source exactly" in capsys.readouterr().out
    # Without --image the pack's own photo is edited, here in concept 1's region.
    assert main(["edit", pack, "--concept", "1", "a photo of <asset0>", "-o", str(tmp_path / "e2.png"),
                 "--steps", "2"]) == 0
    assert "100.0% of those equal the source exactly" in capsys.readouterr().out
    assert Image.open(tmp_path / "e2.png").size == Image.open(tmp_path / "photo.png").size
    assert main(["variations", pack, "-o", str(tmp_path / "grid.png"), "--steps", "1",
                 "--templates", "a photo of {} in the snow"]) == 0
    assert "3 handle sets x 1 templates" in capsys.readouterr().out
    assert main(["pack", "export", str(full_pack_dir), "--format", "kohya", "--rank", "8", "-o",
                 str(tmp_path / "x")]) == 0
    out = capsys.readouterr().out
    assert "extracted by SVD at rank 8" in out and (tmp_path / "x" / "README.txt").is_file()
    assert main(["pack", "import", str(tmp_path / "x" / "README.txt"), "--model", "tiny-random",
                 "-o", str(tmp_path / "i")]) == 2
    assert "not an embedding file" in capsys.readouterr().err
