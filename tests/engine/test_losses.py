"""Each loss against a value computed by hand."""

from __future__ import annotations

import pytest
import torch

from engine.training.losses import attention_loss, masked_diffusion_loss, resize_masks


def test_masked_diffusion_loss_by_hand() -> None:
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    target = torch.zeros_like(pred)
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    # inside the mask: errors 1 and 4 -> (1 + 16) / 4 elements (the mean runs over all elements)
    assert masked_diffusion_loss(pred, target, mask).item() == pytest.approx(4.25)
    assert masked_diffusion_loss(pred, target, None).item() == pytest.approx(7.5)


def test_masked_loss_ignores_everything_outside_the_mask() -> None:
    pred = torch.randn(1, 4, 8, 8)
    target = torch.randn(1, 4, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :] = 1
    changed = target.clone()
    changed[..., 4:, :] += 100.0
    assert masked_diffusion_loss(pred, target, mask).item() == pytest.approx(
        masked_diffusion_loss(pred, changed, mask).item())


def test_attention_loss_by_hand() -> None:
    maps = torch.tensor([[[0.2, 0.4], [0.1, 0.0]], [[0.5, 0.5], [0.5, 0.5]]])
    masks = torch.tensor([[[1.0, 1.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]])
    # concept 0: normalised [[.5, 1], [.25, 0]] vs mask -> (.25 + 0 + .0625 + 0) / 4 = 0.078125
    # concept 1: normalised all ones vs one pixel set -> 3 / 4 = 0.75
    assert attention_loss(maps, masks).item() == pytest.approx(0.078125 + 0.75)


def test_attention_loss_does_not_modify_its_input_and_has_gradients() -> None:
    maps = torch.rand(2, 4, 4, requires_grad=True)
    before = maps.detach().clone()
    loss = attention_loss(maps, torch.zeros(2, 4, 4))
    loss.backward()
    assert torch.equal(maps.detach(), before)
    assert maps.grad is not None and maps.grad.abs().sum() > 0


def test_attention_loss_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        attention_loss(torch.rand(2, 4, 4), torch.rand(1, 4, 4))


def test_resize_masks_nearest_stays_binary() -> None:
    m = torch.zeros(1, 64, 64)
    m[0, :32] = 1
    r = resize_masks(m, 16)
    assert r.shape == (1, 16, 16)
    assert set(r.unique().tolist()) == {0.0, 1.0}
    assert r[0, :8].all() and not r[0, 8:].any()
