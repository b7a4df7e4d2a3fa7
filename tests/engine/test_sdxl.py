"""SDXL's shape end to end on a tiny model built from config (as diffusers' own SDXL tests do).

The tiny SDXL (``tiny-random-sdxl``, engine/models.py) has what makes SDXL different for the
engine: two text encoders of different widths (32 and 48, as CLIP-L's 768 and bigG's 1280) whose
penultimate hidden states are concatenated, the second one's pooled projection and six time ids
as ``added_cond_kwargs``, an 8x VAE (8x8 latents at 64 px) and cross-attention at latent/2 and
latent/4 only. Break (the SDXL preset: LoRA, bf16, checkpointing; and a full fine-tune),
generate, edit, export in every format and re-import, through ``bas`` and through diffusers'
own loaders.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from engine.cli.main import main
from engine.compose.edit import blended_edit
from engine.compose.generate import load_pack_model
from engine.example import make_example_scene
from engine.families import SDXL
from engine.models import load_model
from engine.packs.pack import load_pack
from engine.packs.sdxl_keys import sgm_unet_name
from engine.scene import save_scene
from engine.training.attention import cross_attention_resolutions

TINY = "tiny-random-sdxl"
FAST = ["--phase1-steps", "2", "--phase2-steps", "2", "--no-prior", "--checkpoint-every", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sdxl") / "scene"
    save_scene(make_example_scene(size=64), folder)
    return folder


@pytest.fixture(scope="module")
def lora_pack(scene_dir: Path) -> Path:
    """The SDXL preset (LoRA of the UNet and both text encoders, bf16, checkpointing, 8-bit Adam
    or its fallback) for two steps a phase."""
    pack = scene_dir.parent / "lora-pack"
    assert main(["break", str(scene_dir), "-o", str(pack), "--model", TINY, "--preset", "sdxl", "--background",
                 *FAST]) == 0
    return pack


def test_the_loader_sees_sdxls_shape() -> None:
    comps = load_model(TINY)
    assert comps.family is SDXL and comps.resolution == 64 and comps.vae_scale == 8
    assert SDXL.widths(comps) == [32, 48] and comps.tokenizer_2 is not None and comps.tokenizer_2.pad_token == "!"
    assert sorted(set(cross_attention_resolutions(comps.unet, 8).values())) == [2, 4]  # latent/4, latent/2
    assert SDXL.attention_side(comps.unet, 8) == 2 and SDXL.attention_side(comps.unet, 128) == 32
    cond = SDXL.encode(comps, SDXL.tokenize(comps, ["a photo of a cat"]), (64, 64))
    assert cond.hidden.shape == (1, 77, 80) and cond.added is not None
    assert cond.added["text_embeds"].shape == (1, 48)
    assert cond.added["time_ids"].tolist() == [[64, 64, 0, 0, 64, 64]]


def test_the_pooled_embedding_is_read_at_the_end_of_text_also_with_handles() -> None:
    comps = load_model(TINY)
    comps.text_encoder_2.text_model.eos_token_id = 2  # what SDXL's released configs say
    SDXL.prepare(comps)
    assert comps.text_encoder_2.text_model.eos_token_id == 49407
    comps.tokenizer_2.add_tokens(["<h>"])
    comps.text_encoder_2.resize_token_embeddings(len(comps.tokenizer_2))
    ids = comps.tokenizer_2(["a <h>"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    out = comps.text_encoder_2(ids, output_hidden_states=True)
    eos = int((ids[0] == 49407).nonzero()[0])
    pooled = comps.text_encoder_2.text_projection(out.last_hidden_state[0, eos])
    assert torch.allclose(out.text_embeds[0], pooled, atol=1e-6)


def test_break_generate_edit_export_and_reimport_on_sdxl(lora_pack: Path, scene_dir: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    pack = load_pack(lora_pack)
    assert pack.family == "sdxl" and pack.text_widths == [32, 48]
    assert pack.manifest["training"]["attention_resolution"] == 2
    assert pack.manifest["training"]["settings"]["precision"] == "bf16"
    assert set(pack.embeddings["<asset0>"].shape) == {80}
    assert pack.lora is not None and pack.lora["text_encoder"] and pack.lora["text_encoder_2"]
    assert all(v.dtype == torch.float32 for v in pack.lora["unet"].values())

    assert main(["generate", str(lora_pack), "a photo of <asset0> and <asset1>", "-o", str(tmp_path / "g.png"),
                 "--steps", "2", "--device", "cpu"]) == 0
    assert Image.open(tmp_path / "g.png").size == (64, 64)
    # The variations grid (every handle and the pair in a template) and the background alone.
    assert main(["variations", str(lora_pack), "-o", str(tmp_path / "grid.png"), "--templates",
                 "a photo of {} in the snow", "--steps", "1", "--device", "cpu"]) == 0
    grid = Image.open(tmp_path / "grid.png")
    assert grid.height >= 3 * 64 and grid.width >= 64  # rows <asset0>, <asset1> and the pair; one template
    assert main(["background", str(lora_pack), "-o", str(tmp_path / "bg.png"), "--steps", "1", "--device", "cpu"]) == 0
    assert Image.open(tmp_path / "bg.png").size == (64, 64)

    # The blended-latent rule on SDXL's inpaint path: outside the region every pixel is the source's.
    comps = load_pack_model(pack)
    scene = make_example_scene(size=64)
    mask = scene.concepts[0].binary().astype(np.float32)
    edit = blended_edit(comps, scene.image, mask, "a photo of <asset1>", steps=2, pack=pack)
    assert edit is not None
    out = np.asarray(edit.result.image)
    keep = edit.blend_mask == 0
    assert keep.any() and np.array_equal(out[keep], scene.image[keep])
    assert not np.array_equal(out[~keep], scene.image[~keep])

    export = tmp_path / "export"
    assert main(["pack", "export", str(lora_pack), "--format", "all", "-o", str(export)]) == 0
    a1111 = load_file(str(export / "a1111" / "asset0.safetensors"))
    assert {k: tuple(v.shape) for k, v in a1111.items()} == {"clip_l": (1, 32), "clip_g": (1, 48)}
    assert torch.equal(torch.cat([a1111["clip_l"][0], a1111["clip_g"][0]]), pack.embeddings["<asset0>"])
    kohya = load_file(str(next((export / "kohya").glob("*.safetensors"))))
    prefixes = {k.split("_")[0] + "_" + k.split("_")[1] for k in kohya}
    assert prefixes == {"lora_unet", "lora_te1", "lora_te2"}
    assert any(k.startswith("lora_unet_input_blocks_") for k in kohya)  # sd-scripts' SGM names
    assert "lora_unet_middle_block_1_transformer_blocks_0_attn2_to_k.lora_down.weight" in kohya
    lora = load_file(str(export / "diffusers" / "pytorch_lora_weights.safetensors"))
    assert {k.split(".")[0] for k in lora} == {"unet", "text_encoder", "text_encoder_2"}

    again = tmp_path / "again"
    files = sorted((export / "a1111").glob("*.safetensors"))
    assert main(["pack", "import", *map(str, files), "--model", TINY, "-o", str(again)]) == 0
    back = load_pack(again)
    assert back.family == "sdxl" and torch.equal(back.embeddings["<asset0>"], pack.embeddings["<asset0>"])
    assert main(["generate", str(again), "a photo of <asset0>", "-o", str(tmp_path / "i.png"), "--steps", "1",
                 "--device", "cpu"]) == 0
    capsys.readouterr()


def test_diffusers_loads_the_exported_sdxl_loras_as_the_pack_applies_them(lora_pack: Path, tmp_path: Path) -> None:
    """Another tool's loader (diffusers' load_lora_weights, which reads kohya's SDXL layout too)
    gives the same UNet and text encoders as the pack applied by the engine, for both files."""
    from engine.packs.interop import export_pack

    pack = load_pack(lora_pack)
    assert pack.lora is not None
    with torch.no_grad():  # make the two-step LoRA visible above float noise
        for part in ("unet", "text_encoder", "text_encoder_2"):
            for k, v in pack.lora[part].items():
                if "lora_B" in k:
                    v.copy_(torch.randn(v.shape, generator=torch.Generator().manual_seed(len(k))) * 0.05)
    export_pack(pack, tmp_path / "x", ["kohya", "diffusers"])
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))

    def unet_out(comps: Any) -> torch.Tensor:
        with torch.no_grad():
            cond = SDXL.encode(comps, SDXL.tokenize(comps, ["a photo of a cat"]), (64, 64))
            return comps.unet(x, torch.tensor([500]), cond.hidden, added_cond_kwargs=cond.added).sample

    ours, plain = unet_out(load_pack_model(pack)), unet_out(load_model(TINY))
    assert not torch.allclose(ours, plain, atol=1e-3)
    for file in (next((tmp_path / "x" / "kohya").glob("*.safetensors")),
                 tmp_path / "x" / "diffusers" / "pytorch_lora_weights.safetensors"):
        theirs = load_model(TINY)
        theirs.pipeline().load_lora_weights(str(file.parent), weight_name=file.name)
        assert torch.allclose(unet_out(theirs), ours, atol=1e-5), file.name


def test_every_unet_layer_has_an_sgm_name_that_diffusers_maps_back() -> None:
    from diffusers.loaders.lora_conversion_utils import _convert_unet_lora_key, _maybe_map_sgm_blocks_to_diffusers

    unet = load_model(TINY).unet
    layers = [n for n, m in unet.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    up_attn = {int(n.split(".")[1]) for n in layers if n.startswith("up_blocks.") and ".attentions." in n}
    names = {"lora_unet_" + sgm_unet_name(n, 2, up_attn).replace(".", "_") + ".lora_down.weight": n for n in layers}
    assert len(names) == len(layers)  # one name per layer
    mapped = _maybe_map_sgm_blocks_to_diffusers(dict(names), unet.config)
    assert len(mapped) == len(layers)
    for key, layer in mapped.items():
        # diffusers' old attention naming (.processor.to_q_lora), which its loader renames once more
        name = re.sub(r"\.processor\.to_(q|k|v)_lora", r".to_\1.lora", _convert_unet_lora_key(key))
        name = name.replace(".processor.to_out_lora", ".to_out.0.lora").removesuffix(".lora.down.weight")
        assert name == layer, key


def test_full_fine_tune_on_sdxl_packs_both_text_encoders_and_exports(scene_dir: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A full fine-tune on SDXL is stored as an extracted LoRA of the UNet and both text encoders;
    diffusers loads its export (no second extraction) into the same UNet output as the pack."""
    from engine.packs.interop import export_pack

    pack = tmp_path / "full"
    assert main(["break", str(scene_dir), "-o", str(pack), "--model", TINY, "--preset", "quick", *FAST]) == 0
    loaded = load_pack(pack)
    assert loaded.unet_state is None and loaded.extracted is not None
    assert set(loaded.extracted) == {"unet", "text_encoder", "text_encoder_2"}
    errors = loaded.manifest["phase2"]["extracted"]["relative_error"]
    assert {"text_encoder", "text_encoder_2", "unet.down", "unet.up", "total"} <= set(errors)
    assert main(["pack", "export", str(pack), "--format", "all", "-o", str(tmp_path / "export")]) == 0
    kohya = load_file(str(next((tmp_path / "export" / "kohya").glob("*.safetensors"))))
    assert any(k.startswith("lora_te2_") for k in kohya) and any("_in_layers_2." in k for k in kohya)
    capsys.readouterr()
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))

    def unet_out(comps: Any) -> torch.Tensor:
        with torch.no_grad():
            cond = SDXL.encode(comps, SDXL.tokenize(comps, ["a photo of a cat"]), (64, 64))
            return comps.unet(x, torch.tensor([500]), cond.hidden, added_cond_kwargs=cond.added).sample

    ours, plain = unet_out(load_pack_model(loaded)), unet_out(load_model(TINY))
    assert not torch.allclose(ours, plain, atol=1e-4)
    for file in (next((tmp_path / "export" / "kohya").glob("*.safetensors")),
                 tmp_path / "export" / "diffusers" / "pytorch_lora_weights.safetensors"):
        theirs = load_model(TINY)
        theirs.pipeline().load_lora_weights(str(file.parent), weight_name=file.name)
        err = float((unet_out(theirs) - ours).abs().max())
        print(f"{file.name}: max |diffusers - engine| {err:.2e}")
        # The engine fuses the LoRA of every layer into the weights, diffusers runs it beside them: the
        # same sums in another order over all Linear/Conv2d layers (measured 3.4e-5 for both files).
        assert err < 1e-4, file.name
    report = export_pack(loaded, tmp_path / "again", ["diffusers"])
    assert report["lora"].exact and report["lora"].per_layer_rank  # the stored LoRA, not a new SVD


def test_the_shipped_sdxl_config_builds_the_published_architecture_and_single_files_find_it(tmp_path: Path) -> None:
    import json

    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from engine.models import _single_file_config, single_file_architecture
    from engine.paths import resources_dir

    cfg = json.loads((resources_dir() / "configs" / "sdxl-base.json").read_text())

    def te(part: str) -> CLIPTextConfig:
        return CLIPTextConfig(**{k: v for k, v in cfg[part].items() if k not in ("architectures", "torch_dtype")})

    with torch.device("meta"):
        counts = [sum(p.numel() for p in m.parameters()) for m in (
            UNet2DConditionModel.from_config(cfg["unet"]), CLIPTextModel(te("text_encoder")),
            CLIPTextModelWithProjection(te("text_encoder_2")))]
    assert counts == [2_567_463_684, 123_060_480, 694_659_840]
    ckpt = tmp_path / "sdxl.safetensors"
    save_file({"conditioner.embedders.1.model.ln_final.weight": torch.zeros(2),
               "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": torch.zeros(2)}, str(ckpt))
    assert single_file_architecture(ckpt) == "sdxl-base"
    folder = _single_file_config(ckpt)
    assert (folder / "text_encoder_2" / "config.json").is_file() and (folder / "tokenizer_2").is_dir()
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == "StableDiffusionXLPipeline"


def test_the_attention_level_measurement_scores_every_side() -> None:
    from engine.training.attention_levels import format_levels, measure_levels

    comps = load_model(TINY)
    scores = measure_levels(comps, make_example_scene(size=64), timesteps=(500,))
    assert [s.side for s in scores] == [4, 2]  # latent/2, latent/4
    assert [s.layers for s in scores] == [5, 12]  # 4x4: down 2 + up 3; 2x2: down 2x2 + mid 2 + up 3x2
    for s in scores:
        assert 0.0 <= s.mass_in <= 1.0 and 0.0 <= s.iou <= 1.0 and set(s.per_concept) == {"<asset0>", "<asset1>"}
    assert "lift over uniform" in format_levels(scores)
