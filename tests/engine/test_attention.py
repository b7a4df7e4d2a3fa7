"""Cross-attention capture: which layers, the maps' shape and normalisation, checkpointing."""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from engine.training.attention import (AttentionStore, CapturingCrossAttnProcessor, choose_attention_resolution,
                              cross_attention_resolutions, install_capture, remove_capture)
from engine.models import build_tiny_sd


def _inputs(batch: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return (torch.randn(batch, 4, 32, 32, generator=g), torch.tensor([10, 500][:batch]),
            torch.randn(batch, 77, 32, generator=g))


def test_only_cross_attention_at_the_loss_resolution_is_captured() -> None:
    unet = build_tiny_sd().unet
    assert choose_attention_resolution(unet, 32) == 16
    chosen = install_capture(unet, 32, 16, AttentionStore())
    procs = {n: m.processor for n, m in unet.named_modules() if isinstance(m, Attention)}
    captured = sorted(n for n, p in procs.items() if isinstance(p, CapturingCrossAttnProcessor))
    assert captured == sorted(chosen) and all(n.endswith("attn2") for n in captured)
    others = [p for n, p in procs.items() if n not in captured]
    assert others and all(isinstance(p, AttnProcessor2_0) for p in others)  # self-attention stays fused
    remove_capture(unet)
    assert all(isinstance(m.processor, AttnProcessor2_0) for m in unet.modules() if isinstance(m, Attention))


def test_resolution_is_derived_from_the_latent_size() -> None:
    unet = build_tiny_sd().unet
    assert set(cross_attention_resolutions(unet, 32).values()) == {16}
    assert set(cross_attention_resolutions(unet, 64).values()) == {32}
    assert choose_attention_resolution(unet, 64) == 32  # no 16x16 layer there: closest side


def test_the_engine_pulls_maps_at_latent_over_four_as_the_paper_does_at_512_px() -> None:
    from engine.families import SD
    from engine.models import load_model

    assert SD.preferred_attention_side(64) == 16  # SD 2.1 / 1.5 at 512 px: the paper's 16x16
    assert SD.preferred_attention_side(96) == 24 and SD.preferred_attention_side(3) == 1
    # ShapesWorld: 32x32 latents, cross-attention at 16 and 8; 8x8 measured better (docs/quality.md)
    comps = load_model("shapesworld")
    assert sorted(set(cross_attention_resolutions(comps.unet, 32).values())) == [8, 16]
    assert SD.attention_side(comps.unet, 32) == 8
    # a side the UNet lacks: the closest it has (here only 16 at 32x32 latents)
    assert SD.attention_side(build_tiny_sd().unet, 32) == 16


def test_maps_have_the_right_shape_and_sum_to_one_over_tokens() -> None:
    unet = build_tiny_sd().unet
    x, t, ehs = _inputs()
    with torch.no_grad():
        plain = unet(x, t, ehs).sample
    store = AttentionStore()
    layers = install_capture(unet, 32, 16, store)
    with torch.no_grad():
        captured = unet(x, t, ehs).sample
    torch.testing.assert_close(captured, plain, atol=1e-5, rtol=1e-5)  # same attention, just explicit
    assert sorted(store.maps) == sorted(layers)
    for m in store.maps.values():
        assert m.shape == (2, 16 * 16, 77)
        torch.testing.assert_close(m.sum(-1), torch.ones(2, 256))
    agg = store.aggregate(16)
    assert agg.shape == (2, 16, 16, 77)
    torch.testing.assert_close(agg.sum(-1), torch.ones(2, 16, 16))


def _attn_grad(checkpointing: bool) -> tuple[torch.Tensor, int]:
    unet = build_tiny_sd().unet
    store = AttentionStore()
    install_capture(unet, 32, 16, store)
    if checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    x, t, ehs = _inputs()
    ehs.requires_grad_(True)
    unet(x, t, ehs)
    n_maps = len(store.maps)
    loss = store.aggregate(16)[0, ..., 3].pow(2).sum()
    loss.backward()
    return ehs.grad.detach().clone(), n_maps


def test_gradient_checkpointing_neither_mixes_maps_nor_loses_gradients() -> None:
    grad_plain, n_plain = _attn_grad(False)
    grad_ckpt, n_ckpt = _attn_grad(True)
    assert n_plain == n_ckpt  # recomputation overwrites, never appends
    assert grad_plain.abs().sum() > 0
    torch.testing.assert_close(grad_ckpt, grad_plain, atol=1e-6, rtol=1e-5)
