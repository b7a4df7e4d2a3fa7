"""Behaviours matched to the reference code (google/break-a-scene ``train.py``), on the tiny model."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

import engine.training.trainer as trainer_module
from engine.training.clipping import clip_global_norm_
from engine.training.config import TrainConfig
from engine.jobs.events import TrainEvent
from engine.example import make_example_scene
from engine.handles import add_handle_tokens, initial_embeddings, install_handles
from engine.models import load_model
from engine.scene import Scene
from engine.training.trainer import BreakTrainer, class_image_index


@pytest.fixture(scope="module")
def scene() -> Scene:
    return make_example_scene(size=64)


def _cfg(**kw: object) -> TrainConfig:
    base = dict(phase1_steps=2, phase2_steps=2, prior_preservation=False, num_class_images=2,
                class_inference_steps=2, checkpoint_every=0, preview_every=0)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_handles_without_a_word_start_from_the_rows_the_reference_copies() -> None:
    comps = load_model("tiny-random")
    tok, te = comps.tokenizer, comps.text_encoder
    table = te.get_input_embeddings().weight.detach().clone()
    n = 3
    init = initial_embeddings(tok, table, [None] * n)
    # The reference: add the tokens, resize the table, then copy rows -3N..-2N into the new rows.
    add_handle_tokens(tok, [f"<asset{k}>" for k in range(n)])
    te.resize_token_embeddings(len(tok))
    resized = te.get_input_embeddings().weight.detach()
    assert torch.equal(init, resized[-3 * n:-2 * n])
    assert torch.equal(init, table[table.shape[0] - 2 * n:table.shape[0] - n])


def test_a_split_initializer_word_starts_from_its_first_sub_token() -> None:
    comps = load_model("tiny-random")
    tok = comps.tokenizer
    table = comps.text_encoder.get_input_embeddings().weight.detach()
    ids = tok("teddybear", add_special_tokens=False).input_ids
    assert len(ids) == 2  # the CLIP tokenizer splits it: "teddy", "bear"
    init = initial_embeddings(tok, table, ["teddybear", None])
    assert torch.equal(init[0], table[ids[0]])
    assert not torch.allclose(init[0], table[ids].mean(0))
    assert torch.equal(init[1], table[table.shape[0] - 4 + 1])  # N = 2: row V - 2N + k


def _pair(loss_scale: float) -> dict[str, torch.Tensor]:
    """One backward through UNet and text encoder, set up two ways: the reference's (the whole
    token table one trained parameter) and ours (frozen table, handle rows apart)."""
    ref, ours = load_model("tiny-random"), load_model("tiny-random")
    tokens = ["<asset0>", "<asset1>"]
    table = ref.text_encoder.get_input_embeddings().weight.detach().clone()
    init = initial_embeddings(ref.tokenizer, table, ["star", None])
    ids = add_handle_tokens(ref.tokenizer, tokens)
    assert add_handle_tokens(ours.tokenizer, tokens) == ids
    ref.text_encoder.resize_token_embeddings(len(ref.tokenizer))
    with torch.no_grad():
        ref.text_encoder.get_input_embeddings().weight[ids] = init
    emb = install_handles(ours.text_encoder, ids[0], init)
    emb.track_base_grad = True
    for m in (ref.unet, ref.text_encoder, ours.unet, ours.text_encoder):
        m.eval().requires_grad_(True)
    emb.base.weight.requires_grad_(False)

    prompts = ["a photo of <asset1> and <asset0>", "a photo at the beach"]
    g = torch.Generator().manual_seed(0)
    noisy = torch.randn(2, 4, 32, 32, generator=g)
    t = torch.tensor([10, 500])
    out: dict[str, torch.Tensor] = {}
    for name, comps in (("ref", ref), ("ours", ours)):
        input_ids = comps.tokenizer(prompts, padding="max_length", max_length=comps.tokenizer.model_max_length,
                                    return_tensors="pt").input_ids
        pred = comps.unet(noisy, t, comps.text_encoder(input_ids)[0]).sample
        (loss_scale * pred.pow(2).mean()).backward()
    ref_params = list(itertools.chain(ref.unet.parameters(), ref.text_encoder.parameters()))
    out["ref_norm"] = torch.nn.utils.clip_grad_norm_(ref_params, 1.0)
    ours_params = [p for m in (ours.unet, ours.text_encoder) for p in m.parameters() if p.requires_grad]
    out["ours_norm"] = clip_global_norm_(ours_params, 1.0, emb.take_base_grad_sq())
    out["ref_unet"] = torch.cat([p.grad.flatten() for p in ref.unet.parameters()])
    out["ours_unet"] = torch.cat([p.grad.flatten() for p in ours.unet.parameters()])
    out["ref_handles"] = ref.text_encoder.get_input_embeddings().weight.grad[ids]
    out["ours_handles"] = emb.handles.grad
    out["ref_layers"] = torch.cat([p.grad.flatten() for n, p in ref.text_encoder.named_parameters()
                                   if "token_embedding" not in n])
    out["ours_layers"] = torch.cat([p.grad.flatten() for n, p in ours.text_encoder.named_parameters()
                                    if "token_embedding" not in n])
    return out


@pytest.mark.parametrize("loss_scale", [1e-4, 1e3])  # clipping idle, clipping engaged
def test_global_clip_equals_torch_clip_grad_norm_over_the_references_parameters(loss_scale: float) -> None:
    out = _pair(loss_scale)
    assert (out["ref_norm"] > 1.0) == (loss_scale > 1)
    torch.testing.assert_close(out["ours_norm"], out["ref_norm"], rtol=1e-5, atol=0)
    for part in ("unet", "handles", "layers"):
        torch.testing.assert_close(out[f"ours_{part}"], out[f"ref_{part}"], rtol=1e-5, atol=1e-9, msg=part)


def test_the_trainer_clips_the_global_norm_with_the_token_rows(scene: Scene, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, bool]] = []
    real = trainer_module.clip_global_norm_

    def recording(params: list[torch.Tensor], max_norm: float, extra_sq: torch.Tensor | None = None) -> torch.Tensor:
        params = list(params)
        calls.append((len(params), extra_sq is not None and float(extra_sq) > 0))
        return real(params, max_norm, extra_sq)

    monkeypatch.setattr(trainer_module, "clip_global_norm_", recording)
    status: list[str] = []
    comps = load_model("tiny-random")
    n_trained = sum(1 for m in (comps.unet, comps.text_encoder) for n, _ in m.named_parameters()
                    if "token_embedding" not in n) + 1  # + the handles
    BreakTrainer(scene, _cfg(), comps, tmp_path,
                 callback=lambda e: e.kind == "status" and status.append(e.message or "")).run()
    # phase 1: the handles plus the prompt rows; phase 2: every UNet and text-encoder tensor too
    assert calls == [(1, True), (1, True), (n_trained, True), (n_trained, True)]
    assert any("global gradient-norm clipping at 1" in m for m in status)


def test_step_in_backward_when_asked_clips_per_tensor(scene: Scene, tmp_path: Path) -> None:
    status: list[str] = []
    BreakTrainer(scene, _cfg(step_in_backward=True), "tiny-random", tmp_path,
                 callback=lambda e: e.kind == "status" and status.append(e.message or "")).run()
    assert any("steps inside backward (no gradient buffer; per-tensor clipping)" in m for m in status)


def test_subset_order_varies_in_prompt_and_masks(scene: Scene, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, torch.Tensor]] = []
    real_loss = trainer_module.attention_loss

    class Recording(BreakTrainer):
        def _tokenize(self, prompts: list[str]) -> torch.Tensor:
            if prompts[0].startswith("a photo of <"):
                seen.append((prompts[0], torch.empty(0)))
            return super()._tokenize(prompts)

    def recording_loss(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        seen[-1] = (seen[-1][0], masks.detach().clone())
        return real_loss(maps, masks)

    monkeypatch.setattr(trainer_module, "attention_loss", recording_loss)
    trainer = Recording(scene, _cfg(phase1_steps=16, phase2_steps=0), "tiny-random", tmp_path)
    trainer.run()
    prompts = [p for p, _ in seen]
    assert "a photo of <asset0> and <asset1>" in prompts and "a photo of <asset1> and <asset0>" in prompts
    for prompt, masks in seen:  # the masks follow the prompt's order
        order = [trainer.tokens.index(t) for t in prompt.removeprefix("a photo of ").split(" and ")]
        assert any(torch.equal(masks, trainer.attn_masks[flip, order]) for flip in (0, 1)), prompt


def test_each_class_image_once_per_epoch_in_a_fresh_order() -> None:
    epochs = [[class_image_index(0, e * 10 + i, 10) for i in range(10)] for e in range(3)]
    assert all(sorted(order) == list(range(10)) for order in epochs)
    assert len({tuple(order) for order in epochs}) == 3
    assert epochs[1] == [class_image_index(0, 10 + i, 10) for i in range(10)]  # a function of the step


def test_resume_in_step_in_backward_mode_is_exact(scene: Scene, tmp_path: Path) -> None:
    cfg = _cfg(phase1_steps=1, phase2_steps=3, checkpoint_every=2, step_in_backward=True)
    full = BreakTrainer(scene, cfg, "tiny-random", tmp_path / "a").run()

    def crash_at_three(e: TrainEvent) -> None:
        if e.kind == "step" and e.global_step == 3:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        BreakTrainer(scene, cfg, "tiny-random", tmp_path / "b", callback=crash_at_three).run()
    resumed = BreakTrainer(scene, cfg, "tiny-random", tmp_path / "b").run(resume=True)
    assert full.unet_state is not None and resumed.unet_state is not None
    assert all(torch.equal(resumed.unet_state[k], v) for k, v in full.unet_state.items())
    assert all(torch.equal(resumed.handles[t], v) for t, v in full.handles.items())


class _WholeTablePhase1(BreakTrainer):
    """Phase 1 as the reference runs it: AdamW over the whole token table, old rows restored after
    every step, the clip over the table's whole gradient."""

    def _phase1_optimizer(self) -> torch.optim.Optimizer:
        self.emb.base.weight.requires_grad_(True)
        table = self.emb.base.weight.detach().clone()
        opt = torch.optim.AdamW([self.emb.handles, self.emb.base.weight], lr=self.cfg.phase1_lr,
                                weight_decay=self.cfg.adam_weight_decay)

        def restore(*_: object) -> None:
            with torch.no_grad():
                self.emb.base.weight.copy_(table)
        opt.register_step_post_hook(restore)
        return opt


def test_phase1_equals_the_references_whole_table_phase1(scene: Scene, tmp_path: Path) -> None:
    # A tiny threshold clips every step, so each step's scale depends on which gradients the norm counts.
    cfg = _cfg(phase1_steps=3, phase2_steps=0, max_grad_norm=1e-3, prior_preservation=True)
    ref = _WholeTablePhase1(scene, cfg, "tiny-random", tmp_path / "ref").run()
    ours = BreakTrainer(scene, cfg, "tiny-random", tmp_path / "ours").run()

    class HandlesOnlyClip(BreakTrainer):
        def _setup(self) -> None:
            super()._setup()
            self.emb.track_base_grad = False

    narrow = HandlesOnlyClip(scene, cfg, "tiny-random", tmp_path / "narrow").run()
    for tok in ref.handles:
        torch.testing.assert_close(ours.handles[tok], ref.handles[tok], rtol=1e-5, atol=1e-7)
    assert any(not torch.allclose(narrow.handles[t], ref.handles[t], rtol=1e-4, atol=1e-6) for t in ref.handles)


def test_step_mode_follows_the_setting_or_the_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.training.phase2 as phase2

    params = [torch.zeros(1000, 1000)]  # 4 MB of gradient, 8 MB of AdamW state
    cpu = torch.device("cpu")
    monkeypatch.setattr(phase2, "transient_peak_bytes", lambda device: 0)
    monkeypatch.setattr(phase2, "free_memory_bytes", lambda device: 2**30)
    notes: list[str] = []
    assert phase2.choose_step_in_backward(_cfg(), params, cpu, notes) is False and notes == []
    assert phase2.choose_step_in_backward(_cfg(step_in_backward=True), params, cpu, notes) is True
    monkeypatch.setattr(phase2, "free_memory_bytes", lambda device: 2**28)  # short of buffers + 512 MiB margin
    assert phase2.choose_step_in_backward(_cfg(), params, cpu, notes) is True
    assert notes and "short of" in notes[0]
    assert phase2.choose_step_in_backward(_cfg(step_in_backward=False), params, cpu, []) is False
    monkeypatch.setattr(phase2, "free_memory_bytes", lambda device: None)  # unknown: the paper's way
    assert phase2.choose_step_in_backward(_cfg(), params, cpu, []) is False


def test_free_memory_is_known_on_the_cpu() -> None:
    from engine.devices import free_memory_bytes, transient_peak_bytes

    free = free_memory_bytes(torch.device("cpu"))
    assert free is not None and free > 2**26
    assert transient_peak_bytes(torch.device("cpu")) >= 0
