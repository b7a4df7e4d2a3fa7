"""SD 1.5's shape end to end on a tiny model built from config (as diffusers' own tests do).

SD 1.5 differs from the default tiny model (and from SD 2.1) where it matters to the engine: an
8x-downsampling VAE (8x8 latents at 64 px), four UNet levels with cross-attention at three of
them (8, 4, 2), attention without linear projections and one head size, a CLIP ViT-L-style text
encoder (quick-GELU, 77 positions). Break, generate, edit, export and re-import through ``bas``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from PIL import Image
from transformers import CLIPTextConfig, CLIPTextModel

from engine.cli.main import main
from engine.example import make_example_scene
from engine.models import clip_tokenizer, load_model
from engine.packs.pack import load_pack
from engine.scene import save_scene

FAST = ["--preset", "quick", "--phase1-steps", "2", "--phase2-steps", "2", "--no-prior",
        "--checkpoint-every", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def sd15_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SD 1.5-shaped diffusers folder, saved to disk and loaded back by the engine's loader."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 32, 64, 64),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, use_linear_projection=False, norm_num_groups=16)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=64, block_out_channels=(16, 16, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=16)
    text = CLIPTextModel(CLIPTextConfig(
        hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=3, vocab_size=49408,
        max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=49406, eos_token_id=49407,
        pad_token_id=49407))
    sched = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          steps_offset=1, num_train_timesteps=1000)
    folder = tmp_path_factory.mktemp("models") / "tiny-sd15"
    StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=clip_tokenizer(), unet=unet, scheduler=sched,
                            safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(str(folder))
    return folder


def test_the_loader_sees_sd15s_shape(sd15_folder: Path) -> None:
    comps = load_model(str(sd15_folder))
    assert comps.vae_scale == 8 and comps.resolution == 64
    assert comps.unet.config.use_linear_projection is False
    assert comps.text_encoder.config.hidden_act == "quick_gelu" and comps.tokenizer.model_max_length == 77


def test_break_generate_edit_export_and_reimport_on_sd15(sd15_folder: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    save_scene(make_example_scene(size=64), tmp_path / "scene")
    pack = tmp_path / "pack"
    assert main(["break", str(tmp_path / "scene"), "-o", str(pack), "--model", str(sd15_folder), *FAST]) == 0
    loaded = load_pack(pack)
    assert loaded.tokens == ["<asset0>", "<asset1>"] and loaded.resolution == 64
    # latent/4 of 8x8 latents, as 16x16 is of SD 1.5's 64x64 at 512 px
    assert loaded.manifest["training"]["attention_resolution"] == 2

    assert main(["generate", str(pack), "a photo of <asset0> and <asset1>", "-o", str(tmp_path / "g.png"),
                 "--steps", "2", "--device", "cpu"]) == 0
    assert Image.open(tmp_path / "g.png").size == (64, 64)

    assert main(["edit", str(pack), "a photo of <asset1>", "--concept", "0", "-o", str(tmp_path / "e.png"),
                 "--steps", "2", "--device", "cpu"]) == 0
    edited = np.asarray(Image.open(tmp_path / "e.png").convert("RGB"))
    assert edited.shape == (64, 64, 3)

    assert main(["pack", "export", str(pack), "--format", "all", "-o", str(tmp_path / "export")]) == 0
    exported = sorted(p.relative_to(tmp_path / "export").as_posix() for p in (tmp_path / "export").rglob("*")
                      if p.is_file())
    assert any(p.endswith(".safetensors") for p in exported)
    embedding_files = [tmp_path / "export" / p for p in exported if "a1111" in p and p.endswith(".safetensors")]
    assert embedding_files
    again = tmp_path / "again"
    assert main(["pack", "import", *map(str, embedding_files), "--model", str(sd15_folder), "-o", str(again)]) == 0
    assert len(load_pack(again).tokens) == len(embedding_files)
    capsys.readouterr()
