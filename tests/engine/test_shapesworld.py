"""ShapesWorld: the world renderer, the held-out split, the shipped model and judge, and the method on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.paths import resources_dir
from engine.shapesworld.world import (COLORS, CONTEXTS, HELD_OUT, SHAPES, ShapeSpec, WorldImage, render,
                                      sample_image, training_batch)

HAVE_MODEL = (resources_dir() / "shapesworld" / "model_index.json").exists()
HAVE_JUDGE = (resources_dir() / "shapesworld-judge" / "judge.safetensors").exists()


def test_rendering_is_deterministic_from_the_seed() -> None:
    a, caps_a = training_batch(np.random.default_rng(3), 4)
    b, caps_b = training_batch(np.random.default_rng(3), 4)
    c, _ = training_batch(np.random.default_rng(4), 4)
    assert np.array_equal(a, b) and caps_a == caps_b
    assert not np.array_equal(a, c)
    assert a.shape == (4, 64, 64, 3) and a.dtype == np.uint8


def test_captions_name_the_drawn_attributes() -> None:
    desc = WorldImage((ShapeSpec("star", "red", "striped", 0.3, 0.3, 0.2),
                       ShapeSpec("circle", "blue", "solid", 0.7, 0.7, 0.2)), "green")
    assert desc.caption() == "a photo of a red striped star and a blue circle on a green background"
    rng = np.random.default_rng(0)
    for _ in range(50):
        d = sample_image(rng)
        cap = d.caption()
        assert cap.startswith("a photo of ") and cap.endswith(CONTEXTS[d.context])
        for o in d.objects:
            assert o.phrase() in cap


def test_masks_match_the_drawn_objects() -> None:
    desc = WorldImage((ShapeSpec("square", "red", "solid", 0.3, 0.3, 0.15),
                       ShapeSpec("circle", "blue", "solid", 0.7, 0.7, 0.15)), "gray")
    img, masks = render(desc, 64)
    red = np.all(img == COLORS["red"], axis=-1)
    blue = np.all(img == COLORS["blue"], axis=-1)
    assert np.array_equal(masks[0] == 1.0, red)
    assert np.array_equal(masks[1] == 1.0, blue)
    assert red.sum() > 100 and blue.sum() > 100


def test_held_out_pairs_never_appear_in_pretraining_data() -> None:
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(3000):
        for o in sample_image(rng).objects:
            seen.add((o.shape, o.color))
    assert not seen & HELD_OUT
    assert len(seen) == len(SHAPES) * len(COLORS) - len(HELD_OUT)  # every other pair does appear
    rng = np.random.default_rng(2)
    allowed = {(o.shape, o.color) for _ in range(3000) for o in sample_image(rng, allow_held_out=True).objects}
    assert HELD_OUT <= allowed


def test_the_judges_smaller_objects_shrink_the_worlds_and_leave_it_unchanged_at_scale_1() -> None:
    from engine.shapesworld.judge import SMALLEST, judge_batch

    a, b = np.random.default_rng(5), np.random.default_rng(5)
    world = [sample_image(a) for _ in range(20)]
    assert [sample_image(b, scale=1.0) for _ in range(20)] == world  # the same draws, bit for bit
    half = [sample_image(np.random.default_rng(6), n_objects=2, scale=0.5) for _ in range(20)]
    assert all(0.065 <= o.r <= 0.12 for d in half for o in d.objects)  # half of 0.13-0.24
    # the judge's batches: without ``small`` exactly the world's; with it, some smaller objects
    xa, _ = judge_batch(np.random.default_rng(7), 8)
    xb, _ = judge_batch(np.random.default_rng(7), 8, small=0.0)
    assert np.array_equal(xa.numpy(), xb.numpy())
    rng = np.random.default_rng(8)
    radii = [o.r for _ in range(200) for o in sample_image(rng, n_objects=2,
                                                           scale=float(rng.uniform(SMALLEST, 1.0))).objects]
    assert min(radii) < 0.13 * 0.6 and min(radii) >= 0.13 * SMALLEST - 1e-9


@pytest.mark.skipif(not HAVE_JUDGE, reason="judge weights not shipped")
def test_judge_recognises_fresh_renders() -> None:
    from engine.shapesworld.judge import context_probability, load_judge, object_probability, score_images

    judge = load_judge()
    rng = np.random.default_rng(424242)
    descs = [sample_image(rng, allow_held_out=True, n_objects=1) for _ in range(64)]
    imgs = np.stack([render(d, 64, seed=i)[0] for i, d in enumerate(descs)])
    s = score_images(judge, imgs)
    present = [object_probability(s, (d.objects[0].shape, d.objects[0].color, d.objects[0].pattern))[i]
               for i, d in enumerate(descs)]
    ctx = [context_probability(s, d.context)[i] for i, d in enumerate(descs)]
    assert np.mean(np.array(present) > 0.5) > 0.7  # chance would be ~0.01
    assert np.mean(np.array(ctx) > 0.5) > 0.9      # chance 1/6


@pytest.mark.skipif(not HAVE_JUDGE, reason="judge weights not shipped")
def test_judge_accuracy_rules_on_renders() -> None:
    from engine.shapesworld.judge import accuracy_on_renders, load_judge

    acc = accuracy_on_renders(load_judge(), n=96, seed=7)
    assert set(acc) == {"objects_exact", "shape", "colour", "pattern", "context", "pair", "swap_free"}
    # Top-1 per head on single objects is what prompt control scores with: it must be near-certain.
    assert min(acc["shape"], acc["colour"], acc["pattern"], acc["context"]) > 0.9
    assert acc["swap_free"] > 0.8


def test_two_object_prompts_can_be_swapped() -> None:
    from engine.shapesworld.evaluate import two_object_prompts

    descs = two_object_prompts(40, seed=3)
    assert len(descs) == 40 and len({d.caption() for d in descs}) > 30
    for d in descs:
        a, b = d.objects
        assert a.shape != b.shape and a.color != b.color  # an exchange of attributes is visible
        assert not {(a.shape, a.color), (b.shape, b.color), (a.shape, b.color), (b.shape, a.color)} & HELD_OUT


@pytest.mark.skipif(not HAVE_MODEL, reason="ShapesWorld model not shipped")
def test_shipped_model_loads_offline_and_generates() -> None:
    from engine.compose.generate import generate
    from engine.models import default_model, load_model

    assert default_model() == "shapesworld"
    comps = load_model("shapesworld")
    img = generate(comps, "a photo of a red circle on a green background", steps=4, seed=0)[0].image
    assert img.size == (64, 64)
    assert np.asarray(img).std() > 5


@pytest.mark.skipif(not (HAVE_MODEL and HAVE_JUDGE), reason="ShapesWorld model or judge not shipped")
def test_quick_two_handle_break_beats_chance() -> None:
    from dataclasses import replace

    from engine.training.config import preset
    from engine.shapesworld.evaluate import evaluate_run
    from engine.shapesworld.judge import load_judge
    from engine.shapesworld.scenes import benchmark_scenes

    # One break is a coin flip (float rounding with another thread count alone moves the best
    # handle's margin on scene 0 from 0.03 to 0.29), so the claim is checked on two scenes.
    runs = []
    for ws in benchmark_scenes(2, seed=7, loose_px=2):
        assert len(ws.scene.concepts) in (2, 3)
        cfg = replace(preset("shapesworld"), prior_preservation=False, checkpoint_every=0, preview_every=0)
        runs.append(evaluate_run(ws, cfg, load_judge(), gen_steps=20))
    # a handle whose generations show its concept's attributes clearly more than a random object's
    assert np.mean([r["best_handle_margin"] for r in runs]) > 0.05, runs
    assert np.mean([r["identity"] for r in runs]) > np.mean([r["control"] for r in runs]), runs


@pytest.mark.skipif(not HAVE_JUDGE, reason="judge weights not shipped")
def test_composed_correctly_on_renders() -> None:
    from dataclasses import replace

    from engine.shapesworld.evaluate import composed_correctly
    from engine.shapesworld.judge import load_judge
    from engine.shapesworld.scenes import example_desc

    star, circle = example_desc().objects
    objects = [(o.shape, o.color, o.pattern) for o in (star, circle)]
    judge = load_judge()
    right = np.stack([render(WorldImage((star, circle), "beach"), 64, seed=s)[0] for s in range(4)])
    swapped = np.stack([render(WorldImage((replace(star, color=circle.color), replace(circle, color=star.color)),
                                          "beach"), 64, seed=s)[0] for s in range(4)])
    elsewhere = np.stack([render(WorldImage((star, circle), "snow"), 64, seed=s)[0] for s in range(4)])
    assert sum(composed_correctly(judge, right, objects, "beach")) >= 3
    assert not any(composed_correctly(judge, swapped, objects, "beach"))
    assert not any(composed_correctly(judge, elsewhere, objects, "beach"))



@pytest.mark.skipif(not HAVE_JUDGE, reason="judge weights not shipped")
def test_extra_object_fidelity_counts_images_where_the_handle_is_drawn() -> None:
    from engine.shapesworld.evaluate import extra_object_fidelity, extra_object
    from engine.shapesworld.judge import load_judge, score_images
    from engine.shapesworld.scenes import example_desc

    star, circle = example_desc().objects
    keys = [(o.shape, o.color, o.pattern) for o in (star, circle)]
    shape, colour = extra_object(keys, 0)
    extra = ShapeSpec(shape, colour, "solid", 0.72, 0.48, 0.2)
    # Two images draw the handle (the star) but not the prompted extra object, two draw only the
    # extra object at the beach: plain fidelity is about a half, given the handle it is near 0.
    imgs = [render(WorldImage((star,), "beach"), 64, seed=s)[0] for s in range(2)]
    imgs += [render(WorldImage((extra,), "beach"), 64, seed=s)[0] for s in range(2)]
    scores = score_images(load_judge(), np.stack(imgs))
    plain, given = extra_object_fidelity(scores, [(0, (shape, colour), "beach")] * 4, keys)
    assert 0.3 < plain < 0.6, plain
    assert given < 0.15, given
    # Both drawn, in the prompted context: fidelity given the handle is high too.
    both = [render(WorldImage((star, extra), "beach"), 64, seed=s)[0] for s in range(4)]
    plain2, given2 = extra_object_fidelity(score_images(load_judge(), np.stack(both)), [(0, (shape, colour), "beach")] * 4, keys)
    assert given2 > 0.6 and plain2 > 0.6, (plain2, given2)


def test_the_judge_tool_never_replaces_a_judge_unasked(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("tj", Path(__file__).parents[2] / "tools" / "train_shapesworld_judge.py")
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    (tmp_path / "judge.safetensors").write_bytes(b"someone's judge")
    with pytest.raises(SystemExit, match="already holds a judge.*--replace"):
        tool.main(["--out", str(tmp_path), "--steps", "1"])  # refused before any training
    assert (tmp_path / "judge.safetensors").read_bytes() == b"someone's judge"
    with pytest.raises(SystemExit):
        tool.main(["--steps", "1"])  # no default folder: the shipped judge is never the silent target
