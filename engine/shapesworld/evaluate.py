"""Score a break on a ShapesWorld scene with the judge (used by bench/quality.py and the tests)."""

from __future__ import annotations

import tempfile

import numpy as np

from engine.attention import remove_capture
from engine.config import TrainConfig
from engine.generate import generate
from engine.handles import bake_handles
from engine.shapesworld.judge import Judge, context_probability, object_probability, score_images
from engine.shapesworld.scenes import EVAL_CONTEXTS, WorldScene
from engine.shapesworld.world import CONTEXTS, HELD_OUT, PATTERNS
from engine.trainer import BreakTrainer


def evaluate_run(ws: WorldScene, cfg: TrainConfig, judge: Judge, gen_steps: int = 20, guidance: float = 4.0,
                 seed: int = 0, model: str = "shapesworld") -> dict[str, float]:
    """Break one scene with ``cfg`` on ``model`` and score its generations with ``judge``.

    Returns mean identity, prompt fidelity, leakage, composition and the control (chance) level;
    see ``bench/quality.py`` for their definitions.
    """
    with tempfile.TemporaryDirectory() as work:
        trainer = BreakTrainer(ws.scene, cfg, model, work)
        trainer.run()
    comps = trainer.comps
    remove_capture(comps.unet)
    bake_handles(comps.text_encoder)
    for m in (comps.unet, comps.text_encoder):
        m.eval()
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
    s = score_images(judge, np.stack(singles))
    p = score_images(judge, np.stack(pair))
    identity, fidelity, leakage, control = [], [], [], []
    absent = [(sh, co, pa) for sh, co in sorted(HELD_OUT) for pa in PATTERNS
              if (sh, co, pa) not in keys]
    for i, (k, ctx) in enumerate(single_meta):
        identity.append(float(object_probability(s, keys[k])[i]))
        fidelity.append(float(context_probability(s, ctx)[i]))
        others = [float(object_probability(s, keys[j])[i]) for j in range(len(keys)) if j != k]
        leakage.append(max(others) if others else 0.0)
        control.append(float(np.mean([object_probability(s, a)[i] for a in absent])))
    comp = (object_probability(p, keys[0]) * object_probability(p, keys[1])).mean()
    return {"identity": float(np.mean(identity)), "prompt_fidelity": float(np.mean(fidelity)),
            "leakage": float(np.mean(leakage)), "composition": float(comp),
            "control": float(np.mean(control))}
