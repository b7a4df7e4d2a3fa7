"""bench/reference.py's pure helpers: the shims, the model copy's names and files, the preset's
flags, loading a reference output folder. Neither the reference nor its venv is needed."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from bench import reference as ref
from engine.paths import resources_dir
from engine.training.config import TrainConfig, preset


def test_shims_apply_to_their_anchors_and_a_missing_anchor_names_the_file() -> None:
    text = "".join(old * count for _, old, _, count in ref.SHIMS)
    out = ref.apply_shims(text)
    assert out.count("bas shim") >= len(ref.SHIMS) - 2  # the mask shim writes no marker
    assert "size=(64, 64)" not in out and "0.18215" not in out
    first_anchor = ref.SHIMS[0][1]
    with pytest.raises(ValueError, match="train.py.*clone the attention"):
        ref.apply_shims(text.replace(first_anchor, ""))


def test_weight_names_of_the_model_copy() -> None:
    assert ref.vae_key_to_reference("decoder.mid_block.attentions.0.to_q.weight") == \
        "decoder.mid_block.attentions.0.query.weight"
    assert ref.vae_key_to_reference("encoder.mid_block.attentions.0.to_out.0.bias") == \
        "encoder.mid_block.attentions.0.proj_attn.bias"
    assert ref.vae_key_to_reference("decoder.up_blocks.0.resnets.0.conv1.weight") == \
        "decoder.up_blocks.0.resnets.0.conv1.weight"
    assert ref.text_key_to_reference("embeddings.token_embedding.weight") == \
        "text_model.embeddings.token_embedding.weight"
    assert ref.text_key_to_reference("text_model.final_layer_norm.bias") == "text_model.final_layer_norm.bias"


def test_convert_model_writes_fp32_old_names_and_a_slow_tokenizer(tmp_path: Path) -> None:
    from safetensors.torch import load_file
    from transformers import CLIPTokenizer

    src = resources_dir() / "shapesworld"
    dest = ref.convert_model(src, tmp_path / "copy")
    vae = load_file(str(dest / "vae" / "diffusion_pytorch_model.safetensors"))
    assert "decoder.mid_block.attentions.0.query.weight" in vae and not any(".to_q." in k for k in vae)
    te = load_file(str(dest / "text_encoder" / "model.safetensors"))
    assert all(k.startswith("text_model.") for k in te)
    orig = load_file(str(next((src / "text_encoder").glob("*.safetensors"))))
    assert torch.equal(te["text_model.embeddings.token_embedding.weight"],
                       orig["embeddings.token_embedding.weight"].float())
    assert {v.dtype for v in [*vae.values(), *te.values()]} == {torch.float32}
    slow = CLIPTokenizer.from_pretrained(str(dest / "tokenizer"))
    fast = CLIPTokenizer.from_pretrained(str(src / "tokenizer"))
    prompt = "a photo of a red striped star at the beach"
    assert slow(prompt).input_ids == fast(prompt).input_ids
    assert ref.convert_model(src, tmp_path / "copy") == dest  # the marker: no second conversion


def test_every_preset_field_is_a_flag_or_listed_unmatched() -> None:
    names = {f.name for f in fields(TrainConfig)}
    assert set(ref.MAPPED) | set(ref.UNMATCHED) == names and not set(ref.MAPPED) & set(ref.UNMATCHED)
    flags = ref.preset_flags(preset("shapesworld", seed=3))
    got = dict(zip(flags[::2], flags[1::2]))
    assert got["--phase1_train_steps"] == "100" and got["--initial_learning_rate"] == "0.005"
    assert got["--learning_rate"] == "0.0001" and got["--num_class_images"] == "16" and got["--seed"] == "3"


def test_step_stats_split_the_phases() -> None:
    got = ref.step_stats([0.0, 1.0, 2.0, 3.0, 5.0, 7.0], phase1=3)
    assert got == {"phase1_step_s": 1.0, "phase2_step_s": 2.0}


def test_a_reference_output_folder_loads_into_our_components(tmp_path: Path) -> None:
    from engine.models import load_model
    from engine.shapesworld.scenes import benchmark_scenes

    ws = benchmark_scenes(1, seed=7, loose_px=2)[0]
    comps = load_model("tiny-random")
    n = len(ws.scene.tokens)
    unet = {k: v + 0.5 for k, v in comps.unet.state_dict().items()}
    table = comps.text_encoder.get_input_embeddings().weight.detach()
    rows = torch.randn(n, table.shape[1])
    te = {ref.text_key_to_reference(k): v.clone() for k, v in comps.text_encoder.state_dict().items()}
    te["text_model.embeddings.token_embedding.weight"] = torch.cat([table, rows])
    te["text_model.embeddings.position_ids"] = torch.arange(77)[None]  # transformers 4.28 saves it
    for sub, name, sd in (("unet", "diffusion_pytorch_model.bin", unet), ("text_encoder", "pytorch_model.bin", te)):
        (tmp_path / sub).mkdir()
        torch.save(sd, tmp_path / sub / name)
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tokenizer" / "added_tokens.json").write_text(
        json.dumps({t: table.shape[0] + i for i, t in enumerate(ws.scene.tokens)}))
    got = ref.load_reference_output(tmp_path, ws, model="tiny-random")
    assert torch.equal(got.unet.conv_in.weight, unet["conv_in.weight"])
    ids = got.tokenizer(ws.scene.tokens[1], add_special_tokens=False).input_ids
    assert torch.equal(got.text_encoder.get_input_embeddings().weight[ids[0]], rows[1])
