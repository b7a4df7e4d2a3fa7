"""Score a break on a ShapesWorld scene with the judge (used by bench/quality.py and the tests)."""

from __future__ import annotations

import tempfile

import numpy as np

from engine.training.attention import remove_capture
from engine.training.config import TrainConfig
from engine.compose.generate import generate
from engine.handles import bake_handles
from engine.models import SDComponents
from engine.shapesworld.judge import (CONTEXT_NAMES, OBJECTS, Judge, context_probability, object_probability,
                                         pair_probability, score_images, swapped)
from engine.shapesworld.scenes import EVAL_CONTEXTS, WorldScene
from engine.shapesworld.world import COLORS, CONTEXTS, HELD_OUT, PATTERNS, SHAPES, WorldImage, sample_image
from engine.training.trainer import BreakTrainer
from engine.formats.results import TrainResult


def evaluate_run(ws: WorldScene, cfg: TrainConfig, judge: Judge, gen_steps: int = 20, guidance: float = 4.0,
                 seed: int = 0, model: str = "shapesworld") -> dict[str, float]:
    """Break one scene with ``cfg`` on ``model`` and score its generations with ``judge``.

    Returns mean identity (attribute level), exact-object identity, prompt fidelity (the prompted
    context; and, harder, the context plus a plainly described extra object, over all those
    images and weighted by the handle's own object being drawn), leakage,
    composition and the control (chance) level, and the best handle's identity over its control;
    see ``bench/quality.py`` for their definitions.
    """
    trainer, _ = train_run(ws, cfg, model)
    return score_components(ws, trainer.comps, judge, gen_steps, guidance, seed)


def train_run(ws: WorldScene, cfg: TrainConfig, model: str = "shapesworld") -> tuple[BreakTrainer, TrainResult]:
    """Break one scene; the trainer (its tuned components) and the result a pack is written from."""
    with tempfile.TemporaryDirectory() as work:
        trainer = BreakTrainer(ws.scene, cfg, model, work)
        result = trainer.run()
    return trainer, result


def ready_to_generate(comps: SDComponents) -> SDComponents:
    """Turn a trainer's components into generating ones, in place: the attention-capture hooks
    removed, the handles baked into the token table, eval mode. Harmless on loaded packs."""
    remove_capture(comps.unet)
    bake_handles(comps.text_encoder)
    for m in (comps.unet, comps.text_encoder):
        m.eval()
    return comps


def score_components(ws: WorldScene, comps: SDComponents, judge: Judge, gen_steps: int = 20,
                     guidance: float = 4.0, seed: int = 0) -> dict[str, float]:
    """Score a broken model on ``ws``: generate with its handles and judge the images.

    ``comps`` holds the trained weights and the scene's handle tokens: our trainer's components
    (their training hooks are removed first), a loaded pack, or another trainer's output loaded
    into them, as ``bench/reference.py`` does. Generations: each handle alone in the three
    evaluation contexts (seed ``seed + 100 * handle + context``), the first two handles together
    in two (seed ``seed + 999 + i``), and each handle beside :data:`EXTRA_IMAGES` extra objects
    (:func:`extra_object`), the contexts in turn (seed ``seed + 2000 + i``, handle-major). Returns
    the metrics of :func:`evaluate_run`.
    """
    ready_to_generate(comps)
    toks = ws.scene.tokens
    keys = ws.object_keys()
    singles, single_meta = [], []
    for k, tok in enumerate(toks):
        for j, ctx in enumerate(EVAL_CONTEXTS):
            img = generate(comps, f"a photo of {tok} {CONTEXTS[ctx]}", n=1, seed=seed + 100 * k + j,
                           steps=gen_steps, guidance=guidance)[0].image
            singles.append(np.asarray(img))
            single_meta.append((k, ctx))
    pair = [np.asarray(generate(comps, f"a photo of {toks[0]} and {toks[1]} {CONTEXTS[c]}", n=1,
                                seed=seed + 999 + i, steps=gen_steps, guidance=guidance)[0].image)
            for i, c in enumerate(EVAL_CONTEXTS[:2])]
    # Each handle beside a plainly described object: does the rest of the prompt still happen?
    extras = [(k, extra_object(keys, seed // 1000 + k + len(toks) * e), EVAL_CONTEXTS[(k + e) % len(EVAL_CONTEXTS)])
              for k in range(len(toks)) for e in range(EXTRA_IMAGES)]
    with_extra = [np.asarray(generate(comps, f"a photo of {toks[k]} and a {o[1]} {o[0]} {CONTEXTS[c]}", n=1,
                                      seed=seed + 2000 + i, steps=gen_steps, guidance=guidance)[0].image)
                  for i, (k, o, c) in enumerate(extras)]
    s = score_images(judge, np.stack(singles))
    p = score_images(judge, np.stack(pair))
    x = score_images(judge, np.stack(with_extra))
    fidelity_extra, given_handle = extra_object_fidelity(x, extras, keys)
    identity, exact, fidelity, leakage, control = [], [], [], [], []
    # Chance level: the score a random object of the world (not one of the scene's) gets.
    unrelated = [o for o in OBJECTS if o not in keys]
    for i, (k, ctx) in enumerate(single_meta):
        identity.append(float(attribute_probability(s, keys[k])[i]))
        exact.append(float(object_probability(s, keys[k])[i]))
        fidelity.append(float(context_probability(s, ctx)[i]))
        # Leakage counts only the attributes another concept does not share with this one.
        others = [float(attribute_probability(s, keys[j], differing_from=keys[k])[i])
                  for j in range(len(keys)) if j != k and keys[j] != keys[k]]
        leakage.append(max(others) if others else 0.0)
        control.append(float(np.mean([attribute_probability(s, o)[i] for o in unrelated])))
    comp = (attribute_probability(p, keys[0]) * attribute_probability(p, keys[1])).mean()
    handle = np.array([k for k, _ in single_meta])
    margins = [float(np.mean(np.array(identity)[handle == k]) - np.mean(np.array(control)[handle == k]))
               for k in range(len(toks))]
    return {"identity": float(np.mean(identity)), "exact_object": float(np.mean(exact)),
            "prompt_fidelity": float(np.mean(fidelity)), "prompt_fidelity_extra": fidelity_extra,
            "prompt_fidelity_given_handle": given_handle,
            "leakage": float(np.mean(leakage)),
            "composition": float(comp), "control": float(np.mean(control)),
            "best_handle_margin": max(margins)}


EXTRA_IMAGES = 4  # images per handle beside an extra object


def extra_object_fidelity(scores: dict[str, np.ndarray], extras: list[tuple[int, tuple[str, str], str]],
                          keys: list[tuple[str, str, str]]) -> tuple[float, float]:
    """Prompt fidelity of images of a handle beside a described extra object, plain and given the handle.

    ``scores`` are the judge's for the images, ``extras[i]`` is (handle index, the extra object's
    (shape, colour), the context) of image ``i``, ``keys`` the scene's objects. Per image the
    fidelity is P(the extra's shape and colour) x P(the context). Returns its mean, and its mean
    weighted by P(the handle's shape) and P(its colour) (attributes the extra object never
    shares): unweighted, an image without the handle leaves the judge nothing but the extra
    object, so the weakest handles scored best.
    """
    fid = np.array([pair_probability(scores, o)[i] * context_probability(scores, c)[i]
                    for i, (_, o, c) in enumerate(extras)])
    drawn = np.array([attribute_probability(scores, keys[k], differing_from=(o[0], o[1], keys[k][2]))[i]
                      for i, (k, o, _) in enumerate(extras)])
    return float(fid.mean()), float((drawn * fid).sum() / max(float(drawn.sum()), 1e-6))


def extra_object(keys: list[tuple[str, str, str]], index: int) -> tuple[str, str]:
    """A (shape, colour) of the world unlike every object of the scene: another shape and another
    colour than each, not held out of pretraining, not white (it vanishes in the snow); the
    ``index``-th of those, cyclically, so scenes and handles get different ones."""
    shapes, colours = {k[0] for k in keys}, {k[1] for k in keys}
    options = [(sh, co) for sh in SHAPES for co in COLORS if sh not in shapes and co not in colours
               and co != "white" and (sh, co) not in HELD_OUT]
    return options[index % len(options)]


def attribute_probability(scores: dict[str, np.ndarray], obj: tuple[str, str, str],
                          differing_from: tuple[str, str, str] | None = None) -> np.ndarray:
    """Mean of P(shape), P(colour), P(pattern) present, per image (graded identity).

    With ``differing_from``, only the attributes in which ``obj`` differs from that object count.
    """
    heads = ((SHAPES, "shapes"), (tuple(COLORS), "colors"), (PATTERNS, "patterns"))
    cols = [scores[head][:, names.index(obj[a])] for a, (names, head) in enumerate(heads)
            if differing_from is None or obj[a] != differing_from[a]]
    return np.mean(cols, axis=0)


def prompt_control(comps: SDComponents, judge: Judge, n: int = 60, steps: int = 20, guidance: float = 4.0,
                   seed: int = 0) -> dict[str, float]:
    """How well the base model follows single-object prompts, as the judge sees it.

    Draws ``n`` captions of one object from the pretraining distribution ("a photo of a red
    striped star at the beach"), generates one image each, and returns the share of images whose
    most likely shape, colour, pattern and context (by the judge) are the prompted ones, with the
    chance level of each (1/6 shapes, 1/6 colours, 1/3 patterns, 1/6 contexts), and the context
    accuracy per prompted context (``context_beach`` ...).
    """
    rng = np.random.default_rng(seed)
    descs = [sample_image(rng, n_objects=1) for _ in range(n)]
    imgs = [np.asarray(generate(comps, d.caption(), n=1, seed=seed + i, steps=steps, guidance=guidance)[0].image)
            for i, d in enumerate(descs)]
    s = score_images(judge, np.stack(imgs))
    hits: dict[str, list[bool]] = {"shape": [], "colour": [], "pattern": [], "context": []}
    for i, d in enumerate(descs):
        o = d.objects[0]
        hits["shape"].append(SHAPES[int(s["shapes"][i].argmax())] == o.shape)
        hits["colour"].append(list(COLORS)[int(s["colors"][i].argmax())] == o.color)
        hits["pattern"].append(PATTERNS[int(s["patterns"][i].argmax())] == o.pattern)
        hits["context"].append(CONTEXT_NAMES[int(s["context"][i].argmax())] == d.context)
    out = {k: float(np.mean(v)) for k, v in hits.items()}
    for ctx in CONTEXT_NAMES:  # context accuracy per prompted context
        got = [h for h, d in zip(hits["context"], descs) if d.context == ctx]
        if got:
            out[f"context_{ctx}"] = float(np.mean(got))
    out.update({"chance_shape": 1 / len(SHAPES), "chance_colour": 1 / len(COLORS),
                "chance_pattern": 1 / len(PATTERNS), "chance_context": 1 / len(CONTEXTS)})
    return out


def two_object_prompts(n: int, seed: int = 0) -> list[WorldImage]:
    """``n`` two-object captions of the pretraining distribution whose objects differ in shape and colour."""
    rng = np.random.default_rng(seed)
    out: list[WorldImage] = []
    while len(out) < n:
        d = sample_image(rng, n_objects=2)
        a, b = d.objects
        if a.shape == b.shape or a.color == b.color or {(a.shape, b.color), (b.shape, a.color)} & HELD_OUT:
            continue
        out.append(d)
    return out


def two_object_control(comps: SDComponents, judge: Judge, n: int = 48, steps: int = 20, guidance: float = 4.0,
                       seed: int = 0) -> dict[str, float]:
    """Attribute binding of the base model on prompts of two objects ("a red star and a blue ring ...").

    ``both_right``: the share of images in which the judge finds both prompted (shape, colour)
    pairs; ``swap_free``: the share in which it finds neither exchanged pair (a blue star or a
    red ring); ``context``: the prompted background is the judge's top-1.
    """
    descs = two_object_prompts(n, seed)
    imgs = [np.asarray(generate(comps, d.caption(), n=1, seed=seed + 5000 + i, steps=steps, guidance=guidance)[0].image)
            for i, d in enumerate(descs)]
    s = score_images(judge, np.stack(imgs))
    both, free, ctx = [], [], []
    for i, d in enumerate(descs):
        a, b = ((o.shape, o.color) for o in d.objects)
        both.append(bool(pair_probability(s, a)[i] > 0.5 and pair_probability(s, b)[i] > 0.5))
        free.append(not bool(swapped(s, a, b)[i]))
        ctx.append(CONTEXT_NAMES[int(s["context"][i].argmax())] == d.context)
    return {"both_right": float(np.mean(both)), "swap_free": float(np.mean(free)), "context": float(np.mean(ctx))}


def composed_correctly(judge: Judge, imgs: np.ndarray, objects: list[tuple[str, str, str]], context: str) -> list[bool]:
    """Per image: every object is there with its own shape and colour, every object's pattern is
    there, no object's shape carries another's colour, and the background is ``context`` (top-1).

    The check the README's demo is held to ("both objects, each with its own colour and pattern,
    on a beach").
    """
    s = score_images(judge, imgs)
    out = []
    for i in range(len(imgs)):
        ok = CONTEXT_NAMES[int(s["context"][i].argmax())] == context
        for j, (shape, colour, pattern) in enumerate(objects):
            ok &= bool(pair_probability(s, (shape, colour))[i] > 0.5)
            ok &= bool(s["patterns"][i, PATTERNS.index(pattern)] > 0.5)
            for k, other in enumerate(objects):
                if k != j and other[1] != colour and other[0] != shape:
                    ok &= not bool(pair_probability(s, (shape, other[1]))[i] > 0.5)
        out.append(bool(ok))
    return out
