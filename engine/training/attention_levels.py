"""Which cross-attention level carries object layout: a measurement, per model and scene.

The attention loss pulls each handle's cross-attention map at one side toward its mask. The paper
uses 16x16 on SD 2.1 at 512 px (latent/4); SDXL has cross-attention at latent/2 and latent/4 only
(64x64 and 32x32 at 1024 px). Rather than assume that the relative level carries over, this
module measures, for a model and a scene with masks, how well the maps at each side localise
each concept's mask:

* ``mass_in``: the share of the token's attention mass that falls inside its mask;
* ``lift``: ``mass_in`` over the mask's share of the image (1.0 = no better than uniform);
* ``iou``: IoU between the mask and the map's top pixels, as many as the mask has.

The words read are the concepts' handles (a trained pack applied to the model) or, before any
training, their init words ("a photo of a star and a circle"): which level already places a
*word* where its object is tells where a handle's map can be pulled with the least fight. The
maps are averaged over the layers at each side and over a few noise levels of the photo's own
latents. On a tiny random model the numbers are meaningless (its text encoders know no words);
``bench/attention_levels.py`` runs this on a real checkpoint (docs/sdxl.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from engine.models import SDComponents
from engine.scene import Scene
from engine.training.attention import (AttentionStore, CapturingCrossAttnProcessor, cross_attention_resolutions,
                                       remove_capture)
from engine.training.losses import resize_masks


@dataclass
class LevelScore:
    """How well one cross-attention side localises the scene's masks (means over concepts)."""

    side: int
    layers: int
    mass_in: float
    lift: float
    iou: float
    per_concept: dict[str, dict[str, float]] = field(default_factory=dict)


def _positions(comps: SDComponents, ids: torch.Tensor, words: list[str]) -> list[int]:
    """The prompt position of each word's first sub-token (the first tokenizer's ids)."""
    out = []
    row = ids[0].tolist()
    for w in words:
        first = comps.tokenizer(w, add_special_tokens=False).input_ids[0]
        if first not in row:
            raise ValueError(f"'{w}' is not in the prompt")
        out.append(row.index(first))
    return out


@torch.no_grad()
def measure_levels(comps: SDComponents, scene: Scene, words: list[str] | None = None,
                   timesteps: tuple[int, ...] = (250, 500, 750), resolution: int | None = None,
                   seed: int = 0) -> list[LevelScore]:
    """Score every cross-attention side of ``comps`` on ``scene`` (see the module doc).

    ``words`` names the concepts in the prompt, one per concept (default: each concept's handle
    when the tokenizer knows it, else its init word, else "object"). Returns one
    :class:`LevelScore` per side, largest side first.
    """
    fam = comps.family
    res = resolution or comps.resolution
    latent = res // comps.vae_scale
    vocab = comps.tokenizer.get_vocab()
    if words is None:
        words = [c.token if c.token in vocab else (c.init_word or "object") for c in scene.concepts]
    if len(words) != len(scene.concepts):
        raise ValueError(f"{len(words)} words for {len(scene.concepts)} concepts")
    prompt = "a photo of " + " and ".join(words)
    sides = cross_attention_resolutions(comps.unet, latent)
    store = AttentionStore()
    modules = dict(comps.unet.named_modules())
    for name in sides:
        modules[name].set_processor(CapturingCrossAttnProcessor(store, name))
    device = next(comps.unet.parameters()).device
    try:
        img = Image.fromarray(scene.image).resize((res, res), Image.Resampling.BICUBIC)
        pixels = torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div(127.5).sub(1.0)[None]
        lat = comps.vae.encode(pixels.to(device, comps.vae.dtype)).latent_dist.mean
        lat = lat.float() * comps.vae.config["scaling_factor"]
        ids = fam.tokenize(comps, [prompt], device)
        cond = fam.encode(comps, ids, (res, res))
        pos = _positions(comps, ids[0], words)
        dtype = next(comps.unet.parameters()).dtype
        gen = torch.Generator("cpu").manual_seed(seed)
        sums: dict[int, torch.Tensor] = {}
        for t in timesteps:
            noise = torch.randn(lat.shape, generator=gen).to(device)
            tt = torch.full((1,), int(t), device=device)
            store.reset()
            comps.unet(comps.scheduler.add_noise(lat, noise, tt).to(dtype), tt, cond.hidden.to(dtype),
                       added_cond_kwargs=cond.added)
            for side in sorted(set(sides.values())):
                maps = [store.maps[n][0] for n, s in sides.items() if s == side and n in store.maps]
                agg = torch.stack(maps).float().mean(0)[:, pos].T.reshape(len(pos), side, side)
                sums[side] = sums.get(side, 0) + agg.cpu() / len(timesteps)
    finally:
        remove_capture(comps.unet)
    masks = torch.from_numpy(np.stack([c.binary() for c in scene.concepts])).float()
    out = []
    for side in sorted(sums, reverse=True):
        m = resize_masks(masks, side) > 0.5
        per: dict[str, dict[str, float]] = {}
        for k, c in enumerate(scene.concepts):
            amap, mask = sums[side][k].flatten(), m[k].flatten()
            area = float(mask.float().mean())
            mass = float(amap[mask].sum() / amap.sum().clamp_min(1e-12))
            top = torch.zeros_like(mask)
            top[amap.argsort(descending=True)[: max(1, int(mask.sum()))]] = True
            iou = float((top & mask).sum() / (top | mask).sum().clamp_min(1))
            per[c.token] = {"mass_in": mass, "lift": mass / area if area else 0.0, "iou": iou}
        mean = {key: float(np.mean([v[key] for v in per.values()])) for key in ("mass_in", "lift", "iou")}
        out.append(LevelScore(side, sum(1 for s in sides.values() if s == side), per_concept=per, **mean))
    return out


def format_levels(scores: list[LevelScore]) -> str:
    """A small table: one line per side, then the per-concept numbers."""
    lines = ["side   layers  mass in mask  lift over uniform  IoU of top pixels"]
    for s in scores:
        lines.append(f"{s.side:>3}x{s.side:<3} {s.layers:>5}  {s.mass_in:12.3f}  {s.lift:17.2f}  {s.iou:17.3f}")
        for tok, v in s.per_concept.items():
            lines.append(f"        {tok:<12} {v['mass_in']:8.3f}  {v['lift']:17.2f}  {v['iou']:17.3f}")
    return "\n".join(lines)
