"""The two-phase trainer on the tiny model, on the CPU."""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.training.config import TrainConfig
from engine.errors import CheckpointError, OutOfMemory, TrainingCancelled
from engine.jobs.events import TrainEvent
from engine.example import make_example_scene
from engine.models import load_model
from engine.scene import Scene
from engine.training.trainer import BreakTrainer, build_prompt, sample_subset


@pytest.fixture(scope="module")
def scene() -> Scene:
    return make_example_scene(size=64)


def _cfg(**kw: object) -> TrainConfig:
    base = dict(phase1_steps=2, phase2_steps=2, prior_preservation=False, num_class_images=2,
                class_inference_steps=2, checkpoint_every=0, preview_every=0)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_union_sampling_draws_every_non_empty_subset_in_every_order() -> None:
    rng = random.Random(0)
    draws = [tuple(sample_subset(rng, 3)) for _ in range(3000)]
    # random.sample's order is kept, as in the reference: (2, 0) is drawn as well as (0, 2)
    expected = {c for k in (1, 2, 3) for c in itertools.permutations(range(3), k)}
    assert set(draws) == expected
    assert {frozenset(d) for d in draws} == {frozenset(c) for c in expected}
    assert all(sample_subset(rng, 3, union_sampling=False) == [0, 1, 2] for _ in range(10))
    assert build_prompt(["<asset0>", "<asset2>"]) == "a photo of <asset0> and <asset2>"


def test_phase1_changes_only_the_new_token_rows(scene: Scene, tmp_path: Path) -> None:
    comps = load_model("tiny-random")
    table = comps.text_encoder.get_input_embeddings().weight.detach().clone()
    unet = {k: v.clone() for k, v in comps.unet.state_dict().items()}
    te = {k: v.clone() for k, v in comps.text_encoder.state_dict().items()}
    trainer = BreakTrainer(scene, _cfg(phase1_steps=3, phase2_steps=0), comps, tmp_path)
    result = trainer.run()
    emb = comps.text_encoder.get_input_embeddings()
    assert torch.equal(emb.base.weight, table)  # all 49,408 original rows untouched
    assert all(torch.equal(v, unet[k]) for k, v in comps.unet.state_dict().items())
    te_after = {k.replace("token_embedding.base.", "token_embedding."): v
                for k, v in comps.text_encoder.state_dict().items() if not k.endswith("handles")}
    assert te_after.keys() == te.keys() and all(torch.equal(v, te[k]) for k, v in te_after.items())
    init = torch.stack([table[comps.tokenizer("star", add_special_tokens=False).input_ids].mean(0),
                        table[comps.tokenizer("circle", add_special_tokens=False).input_ids].mean(0)])
    trained = torch.stack([result.handles["<asset0>"], result.handles["<asset1>"]])
    assert not torch.allclose(trained, init)  # the handles did move
    assert result.unet_state is None and result.lora is None


def test_phase2_changes_unet_weights(scene: Scene, tmp_path: Path) -> None:
    comps = load_model("tiny-random")
    before = {k: v.clone() for k, v in comps.unet.state_dict().items()}
    te_before = {k: v.clone() for k, v in comps.text_encoder.state_dict().items()}
    table = comps.text_encoder.get_input_embeddings().weight.detach().clone()
    result = BreakTrainer(scene, _cfg(phase1_steps=1, phase2_steps=2, phase2_lr=1e-3), comps, tmp_path).run()
    assert result.unet_state is not None and result.text_encoder_state is not None
    changed = [k for k, v in result.unet_state.items() if not torch.equal(v, before[k])]
    assert len(changed) > 0.5 * len(before)
    te_changed = [k for k, v in result.text_encoder_state.items() if not torch.equal(v, te_before[k])]
    assert len(te_changed) > 0.5 * len(result.text_encoder_state)  # the text encoder trained too
    # ...but not the existing token rows: frozen in phase 2 as in phase 1, and left out of the pack
    assert torch.equal(comps.text_encoder.get_input_embeddings().base.weight, table)
    assert not any("token_embedding" in k for k in result.text_encoder_state)


def test_lora_phase2_trains_only_adapters(scene: Scene, tmp_path: Path) -> None:
    comps = load_model("tiny-random")
    result = BreakTrainer(scene, _cfg(lora_rank=4, phase2_lr=1e-3, lora_lr=1e-2), comps, tmp_path).run()
    assert result.unet_state is None and result.lora is not None
    assert result.lora["rank"] == 4 and result.lora["unet"] and result.lora["text_encoder"]
    b_weights = [v for k, v in result.lora["unet"].items() if "lora_B" in k]
    assert b_weights and any(v.abs().sum() > 0 for v in b_weights)


@pytest.mark.parametrize("prior, precision, checkpointing", list(itertools.product(
    [True, False], ["no", "bf16"], [False, True])))
def test_every_combination_runs_on_cpu(scene: Scene, tmp_path: Path, prior: bool, precision: str,
                                       checkpointing: bool) -> None:
    events: list[TrainEvent] = []
    cfg = _cfg(prior_preservation=prior, precision=precision, gradient_checkpointing=checkpointing,
               preview_every=2)
    BreakTrainer(scene, cfg, "tiny-random", tmp_path, callback=events.append).run()
    steps = [e for e in events if e.kind == "step"]
    assert [e.global_step for e in steps] == [1, 2, 3, 4]
    assert [e.phase for e in steps] == [1, 1, 2, 2]
    for e in steps:
        assert ("prior" in e.losses) == prior
        assert all(math.isfinite(v) for v in e.losses.values())
        assert e.losses["attention"] > 0
    previews = [e for e in events if e.kind == "preview"]
    assert previews and set(previews[0].attention) == {"<asset0>", "<asset1>"}
    assert all(m.shape == (16, 16) and m.max() == pytest.approx(1.0) for m in previews[0].attention.values())
    assert all(0.0 <= v <= 1.0 for v in previews[0].overlap.values())
    assert events[-1].kind == "done"


@pytest.mark.parametrize("views", [1, 2])
def test_resume_after_a_crash_continues_from_the_checkpoint(scene: Scene, tmp_path: Path, views: int) -> None:
    cfg = _cfg(phase1_steps=3, phase2_steps=3, checkpoint_every=2, prior_preservation=True, views_per_step=views)
    full = BreakTrainer(scene, cfg, "tiny-random", tmp_path / "a").run()

    seen: list[int] = []

    def crash_after_five(e: TrainEvent) -> None:
        if e.kind == "step":
            seen.append(e.global_step)
            if e.global_step == 5:
                raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        BreakTrainer(scene, cfg, "tiny-random", tmp_path / "b", callback=crash_after_five).run()
    resumed_steps: list[int] = []
    resumed = BreakTrainer(scene, cfg, "tiny-random", tmp_path / "b",
                           callback=lambda e: e.kind == "step" and resumed_steps.append(e.global_step)
                           ).run(resume=True)
    assert resumed_steps == [5, 6]  # the last checkpoint was written after step 4
    for tok in full.handles:
        assert torch.equal(resumed.handles[tok], full.handles[tok])
    assert full.unet_state is not None and resumed.unet_state is not None
    assert all(torch.equal(resumed.unet_state[k], v) for k, v in full.unet_state.items())


def test_views_per_step_batches_views_with_their_own_subset_flip_class_image_and_timestep(
        scene: Scene, tmp_path: Path) -> None:
    seen: list[dict[str, object]] = []

    class Spy(BreakTrainer):
        def _step_posterior(self, flips: list[int], js: list[int] | None) -> tuple[torch.Tensor, torch.Tensor]:
            mean, std = super()._step_posterior(flips, js)
            seen.append({"flips": list(flips), "js": js, "rows": len(mean)})
            return mean, std

    comps = load_model("tiny-random")
    batches: list[tuple[torch.Tensor, torch.Tensor]] = []
    real_forward = comps.unet.forward

    def record(sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
               **kw: object) -> object:
        if seen and len(batches) < len(seen):  # the training forward of the step just prepared
            batches.append((timestep.detach().clone(), encoder_hidden_states.detach().clone()))
        return real_forward(sample, timestep, encoder_hidden_states, **kw)

    comps.unet.forward = record  # type: ignore[method-assign]
    events: list[TrainEvent] = []
    cfg = _cfg(views_per_step=3, prior_preservation=True, num_class_images=3)
    Spy(scene, cfg, comps, tmp_path, callback=events.append).run()
    assert len(seen) == 4 and all(s["rows"] == 6 for s in seen)  # 3 views + their 3 class images
    # each class image once per epoch: with 3 images and 3 views, every step uses all three
    assert all(sorted(s["js"]) == [0, 1, 2] for s in seen)  # type: ignore[arg-type]
    flips = [s["flips"] for s in seen]
    assert any(len(set(f)) == 2 for f in flips)  # type: ignore[arg-type]  # views flip independently
    assert len(batches) == 4
    for t, hidden in batches:
        assert t.shape == (6,) and len(set(t.tolist())) > 1  # every row its own timestep
        assert torch.equal(hidden[3], hidden[4]) and torch.equal(hidden[4], hidden[5])  # the class prompt
    assert any(not torch.equal(h[0], h[1]) or not torch.equal(h[1], h[2]) for _, h in batches)  # own subsets
    steps = [e for e in events if e.kind == "step"]
    assert len(steps) == 4 and all(math.isfinite(v) for e in steps for v in e.losses.values())
    assert all(e.losses["attention"] > 0 for e in steps)
    with pytest.raises(ValueError, match="views_per_step"):
        _cfg(views_per_step=0).validate()

    # Fewer class images than views: the prior's rows follow class_images_per_step, each image
    # still once per epoch (3 images, 1 a step: all three over three steps).
    seen.clear()
    batches.clear()
    cfg = _cfg(views_per_step=3, class_images_per_step=1, prior_preservation=True, num_class_images=3)
    Spy(scene, cfg, load_model("tiny-random"), tmp_path / "one-class", callback=events.append).run()
    assert len(seen) == 4 and all(s["rows"] == 4 and len(s["js"]) == 1 for s in seen)  # type: ignore[arg-type]
    assert sorted(j for s in seen[:3] for j in s["js"]) == [0, 1, 2]  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="class_images_per_step"):
        _cfg(class_images_per_step=0).validate()


def test_cancel_writes_a_checkpoint_and_resume_refuses_another_scene(scene: Scene, tmp_path: Path) -> None:
    cfg = _cfg(phase1_steps=2, phase2_steps=2)
    count = {"n": 0}

    def stop() -> bool:
        count["n"] += 1
        return count["n"] > 3

    with pytest.raises(TrainingCancelled) as info:
        BreakTrainer(scene, cfg, "tiny-random", tmp_path, should_stop=stop).run()
    assert info.value.step == 3 and info.value.checkpoint is not None and info.value.checkpoint.exists()
    other = dataclasses.replace(scene, image=np.ascontiguousarray(scene.image[:, ::-1]))
    with pytest.raises(CheckpointError, match="belongs to another scene"):
        BreakTrainer(other, cfg, "tiny-random", tmp_path).run(resume=True)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        BreakTrainer(scene, cfg, "tiny-random", tmp_path / "empty").run(resume=True)


def test_estimate_extrapolates_from_measured_steps(scene: Scene) -> None:
    from engine.training.estimate import estimate_run

    cfg = _cfg(phase1_steps=400, phase2_steps=400, prior_preservation=True, num_class_images=100,
               class_inference_steps=50)
    est = estimate_run(scene, cfg, "tiny-random", probe_steps=2)
    assert est.phase1_s_per_step > 0 and est.phase2_s_per_step > 0 and est.class_images_s > 0
    expected = 400 * est.phase1_s_per_step + 400 * est.phase2_s_per_step + est.class_images_s
    assert est.total_s == pytest.approx(expected)
    assert est.peak_memory_bytes > 50 * 2**20 and est.device == "cpu"


@pytest.mark.parametrize("text_encoder", [True, False])
def test_step_in_backward_equals_the_plain_optimizer_without_clipping(scene: Scene, tmp_path: Path,
                                                                      text_encoder: bool) -> None:
    cfg = _cfg(phase1_steps=1, phase2_steps=3, max_grad_norm=0.0, train_text_encoder=text_encoder)
    fused = BreakTrainer(scene, dataclasses.replace(cfg, step_in_backward=True), "tiny-random", tmp_path / "a").run()
    plain = BreakTrainer(scene, dataclasses.replace(cfg, step_in_backward=False), "tiny-random", tmp_path / "b").run()
    assert fused.unet_state is not None and plain.unet_state is not None
    before = load_model("tiny-random").unet.state_dict()
    moved = [k for k, v in fused.unet_state.items() if not torch.equal(v, before[k])]
    assert len(moved) > 10  # phase 2 really trained the UNet
    for k, v in plain.unet_state.items():
        torch.testing.assert_close(fused.unet_state[k], v, rtol=0, atol=1e-7, msg=k)
    for tok in plain.handles:
        torch.testing.assert_close(fused.handles[tok], plain.handles[tok], rtol=0, atol=1e-7)
    assert (fused.text_encoder_state is not None) == text_encoder
    if text_encoder:
        for k, v in plain.text_encoder_state.items():  # type: ignore[union-attr]
            torch.testing.assert_close(fused.text_encoder_state[k], v, rtol=0, atol=1e-7, msg=k)  # type: ignore[index]


def test_step_in_backward_holds_no_gradients_and_releases_its_hooks(scene: Scene, tmp_path: Path) -> None:
    comps = load_model("tiny-random")
    seen: list[int] = []

    def count_grads(e: TrainEvent) -> None:
        if e.kind == "step" and e.phase == 2:
            seen.append(sum(p.grad is not None for p in comps.unet.parameters()))

    BreakTrainer(scene, _cfg(phase1_steps=1, phase2_steps=2, step_in_backward=True), comps, tmp_path,
                 callback=count_grads).run()
    assert seen == [0, 0]  # every gradient was dropped right after its parameter's step
    before = {k: v.clone() for k, v in comps.unet.state_dict().items()}
    x = torch.randn(1, 4, 32, 32, requires_grad=False)
    comps.unet.requires_grad_(True)
    comps.unet(x, torch.tensor([10]), torch.randn(1, 77, 32)).sample.sum().backward()
    assert all(torch.equal(v, before[k]) for k, v in comps.unet.state_dict().items())  # hooks gone: no step
    assert any(p.grad is not None for p in comps.unet.parameters())


def test_out_of_memory_becomes_advice_and_keeps_the_checkpoint(scene: Scene, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = BreakTrainer(scene, _cfg(phase1_steps=2, phase2_steps=2, checkpoint_every=1), "tiny-random", tmp_path)
    real = BreakTrainer._train_step
    calls = {"n": 0}

    def step_then_fail(self: BreakTrainer, *a: object) -> dict[str, float]:
        calls["n"] += 1
        if calls["n"] == 3:  # what the CPU allocator raises when RAM runs out
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
        return real(self, *a)  # type: ignore[arg-type]

    monkeypatch.setattr(BreakTrainer, "_train_step", step_then_fail)
    with pytest.raises(OutOfMemory, match="out of RAM memory during phase 2 step 3: choose the Low VRAM") as info:
        trainer.run()
    assert info.value.checkpoint is not None and info.value.checkpoint.exists()
    monkeypatch.setattr(BreakTrainer, "_train_step", real)
    BreakTrainer(scene, _cfg(phase1_steps=2, phase2_steps=2, checkpoint_every=1), "tiny-random", tmp_path).run(resume=True)


@pytest.mark.slow  # torchao compiles its update: ~2 min on 2 cores with a cold inductor cache
def test_8bit_adam_runs_on_the_cpu_and_resumes_exactly(scene: Scene, tmp_path: Path) -> None:
    pytest.importorskip("torchao.optim")
    cfg = _cfg(phase1_steps=1, phase2_steps=3, checkpoint_every=2, use_8bit_adam=True, train_text_encoder=False)
    status: list[str] = []
    full = BreakTrainer(scene, cfg, "tiny-random", tmp_path / "a",
                        callback=lambda e: e.kind == "status" and status.append(e.message or "")).run()
    phase2 = next(m for m in status if m.startswith("phase 2:"))
    if "8-bit AdamW (torchao)" not in phase2:
        pytest.skip(f"torchao cannot compile its update here: {phase2}")
    before = load_model("tiny-random").unet.state_dict()
    assert full.unet_state is not None
    assert any(not torch.equal(full.unet_state[k], before[k]) for k in before)

    def crash_at_three(e: TrainEvent) -> None:
        if e.kind == "step" and e.global_step == 3:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        BreakTrainer(scene, cfg, "tiny-random", tmp_path / "b", callback=crash_at_three).run()
    resumed = BreakTrainer(scene, cfg, "tiny-random", tmp_path / "b").run(resume=True)
    assert resumed.unet_state is not None
    assert all(torch.equal(resumed.unet_state[k], v) for k, v in full.unet_state.items())
