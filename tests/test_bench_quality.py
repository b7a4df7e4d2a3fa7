"""bench/quality.py's bookkeeping: the base recipe (``--set``), the setup key runs are pooled by,
the arms that would repeat ``full``, and sharing a run between arms whose training is identical.
No break is trained."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench import quality as q
from bench import reference as ref
from engine.training.config import preset

ONE_VIEW = ["views_per_step=1", "class_images_per_step=null"]


def test_set_changes_the_base_recipe_and_bad_sets_name_the_problem() -> None:
    base = q.base_recipe(ONE_VIEW + ["lambda_attention=0.02", "class_prompt=a photo at night"])
    assert (base.views_per_step, base.class_images_per_step, base.lambda_attention) == (1, None, 0.02)
    assert base.class_prompt == "a photo at night" and base.phase2_lr == preset("shapesworld").phase2_lr
    assert q.base_recipe() == preset("shapesworld")
    with pytest.raises(SystemExit, match="KEY=VALUE.*views_per_step"):
        q.base_recipe(["views=4"])
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        q.base_recipe(["views_per_step"])


def test_the_setup_key_follows_the_base_recipe_and_the_one_view_recipe_keeps_its_runs() -> None:
    one = q.base_recipe(ONE_VIEW)
    assert preset("shapesworld").views_per_step > 1  # the preset moved on, so its key did
    assert q.setup_key(base=one) != q.setup_key()
    assert q.setup_key(base=preset("shapesworld")) == q.setup_key()
    # bench/reference.py compares like for like on the one view the reference can train
    assert ref.reference_recipe(5).views_per_step == 1 and ref.reference_recipe(5).seed == 5
    assert ref.ours_setup(3) == q.setup_key(side=8, scoring=3, base=one)
    # values at their pre-field defaults hash as before the fields existed (TrainConfig.identity_dict)
    assert "views_per_step" not in one.identity_dict() and "class_images_per_step" not in one.identity_dict()


def test_arms_that_change_nothing_are_skipped() -> None:
    four = preset("shapesworld", views_per_step=4, class_images_per_step=1)
    one = q.base_recipe(ONE_VIEW)
    assert q.repeats_full(four, "4 views, 1 class image per step", 8)
    assert not q.repeats_full(four, "1 view per step", 8) and q.repeats_full(one, "1 view per step", 8)
    assert not q.repeats_full(four, "4 views per step", 8)  # four class images, not one
    assert q.repeats_full(four, "attention at 8x8", 8) and not q.repeats_full(four, "attention at 16x16", 8)
    assert not q.repeats_full(four, "full", 8)


def test_a_run_of_the_same_training_under_another_arm_or_recipe_is_shared() -> None:
    keys = q.RunKeys(side=8, masks="loose", gen_steps=20, guidance=4.0, scenes=8)
    one, four = q.base_recipe(ONE_VIEW), preset("shapesworld", views_per_step=4, class_images_per_step=1)
    old_setup, new_setup = q.setup_key(base=one), q.setup_key(base=four)
    old = [{"arm": arm, "scene": 1, "seed": 0, "model": "m", "setup": old_setup, "identity": float(i)}
           for i, arm in enumerate(["full", "4 views, 1 class image per step", "no masked loss"])]
    runs = [dict(r) for r in old]
    # the old recipe's rows get their keys first, then serve the new recipe's tasks
    assert q.reuse_runs(runs, [], keys, "m", old_setup, one) == []
    assert all("run" in r for r in runs) and len(runs) == 3

    def task(arm: str) -> tuple:
        return (arm, 1, 0, replace(four, seed=1, **q.ARMS[arm]), 20, 4.0)

    left = q.reuse_runs(runs, [task("full"), task("1 view per step"), task("no masked loss")], keys, "m",
                        new_setup, four)
    assert [t[0] for t in left] == ["no masked loss"]  # four views without the masked loss never ran
    new = {r["arm"]: r for r in runs[3:]}
    assert new["full"]["identity"] == 1.0 and new["full"]["setup"] == new_setup
    assert new["full"]["reused_from"] == {"arm": "4 views, 1 class image per step", "setup": old_setup}
    assert new["1 view per step"]["identity"] == 0.0
    # another model, masks or generation setting is another run
    assert keys(replace(four, seed=1)) != replace(keys, masks="tight")(replace(four, seed=1))
    other = [dict(r, model="other") for r in old]
    assert len(q.reuse_runs(other, [task("full")], keys, "m", new_setup, four)) == 1
