"""Generation from a handle pack with a plain diffusers pipeline of the model's family
(``StableDiffusionPipeline``, ``StableDiffusionXLPipeline``).

Also the gallery's helpers: scheduler choice, PNG text metadata (A1111 ``parameters`` plus an exact
JSON copy), the "variations" grid, and the background render.
"""

from __future__ import annotations

import itertools
import math
import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from PIL import Image, ImageDraw, ImageFont

from engine.errors import PackError
from engine.formats.png import png_info
from engine.families import split_vector
from engine.handles import set_handle_rows
from engine.models import SDComponents, load_model
from engine.packs.pack import HandlePack
from engine.packs.lora_extract import fuse_lora
from engine.safe_output import write_file

if TYPE_CHECKING:
    # the defining modules: diffusers' __init__ gives type checkers placeholder classes (engine/models.py)
    from diffusers.configuration_utils import ConfigMixin
    from diffusers.schedulers.scheduling_ddim import DDIMScheduler
    from diffusers.schedulers.scheduling_ddpm import DDPMScheduler
    from diffusers.schedulers.scheduling_dpmsolver_multistep import DPMSolverMultistepScheduler
    from diffusers.schedulers.scheduling_euler_ancestral_discrete import EulerAncestralDiscreteScheduler
    from diffusers.schedulers.scheduling_euler_discrete import EulerDiscreteScheduler
    from diffusers.schedulers.scheduling_pndm import PNDMScheduler
    from diffusers.schedulers.scheduling_unipc_multistep import UniPCMultistepScheduler
else:
    from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler,
                           EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, PNDMScheduler,
                           UniPCMultistepScheduler)

HANDLE_IN_PROMPT = re.compile(r"<[^<>\s]+>")


def apply_pack(comps: SDComponents, pack: HandlePack) -> SDComponents:
    """Put a pack's weights and handles into freshly loaded base-model components (in place).

    A LoRA (trained, or a compact pack's extracted one) is fused into the weights here, once, so
    generation costs what it costs with a plain model. A handle vector is cut into one row per text encoder of the family (SDXL: CLIP-L, then bigG).
    """
    family = comps.family
    widths = family.widths(comps)
    for tok, vec in pack.embeddings.items():
        if vec.shape != (sum(widths),):
            raise PackError(f"embedding of {tok} has width {tuple(vec.shape)}, but the base model "
                            f"'{pack.base_model}' needs {sum(widths)}"
                            + (f" ({' + '.join(map(str, widths))} for its {len(widths)} text encoders)"
                               if len(widths) > 1 else ""), pack.path)
    try:
        if pack.unet_state is not None:
            comps.unet.load_state_dict(pack.unet_state, strict=True)
        for state, part in ((pack.text_encoder_state, "text_encoder"), (pack.text_encoder_2_state, "text_encoder_2")):
            if state is None:
                continue
            module = getattr(comps, part, None)
            if module is None:
                raise KeyError(f"the pack has weights for a {part} this model does not have")
            # Strict but for the token table, which packs leave out (phase 2 never changes it).
            missing, unexpected = module.load_state_dict(state, strict=False)
            missing = [k for k in missing if not k.endswith("token_embedding.weight")]
            if missing or unexpected:
                raise KeyError(f"{part} tensors missing {missing[:3]}, unexpected {unexpected[:3]}")
        for part, tensors, alpha in _loras(pack):
            module = getattr(comps, part, None)
            if module is None:
                raise KeyError(f"the pack has a LoRA for a {part} this model does not have")
            fuse_lora(module, tensors, alpha)
    except (RuntimeError, KeyError, ValueError) as e:
        raise PackError(f"the pack's weights do not fit the base model '{pack.base_model}' ({e})",
                        pack.path) from None
    rows = {tok: split_vector(vec, widths) for tok, vec in pack.embeddings.items()}
    for k, (tokenizer, encoder) in enumerate(family.encoders(comps)):
        set_handle_rows(tokenizer, encoder, {tok: parts[k] for tok, parts in rows.items()})
    return comps


def _loras(pack: HandlePack) -> list[tuple[str, dict[str, torch.Tensor], float | None]]:
    """``(part, peft-layout tensors, alpha)`` of the pack's LoRA; alpha ``None`` = each layer's rank."""
    if pack.extracted is not None:
        return [(part, tensors, None) for part, tensors in pack.extracted.items() if tensors]
    if pack.lora is None:
        return []
    alpha = float(pack.lora.get("alpha") or pack.lora["rank"])
    return [(part, pack.lora[part], alpha) for part in ("unet", "text_encoder", "text_encoder_2") if pack.lora.get(part)]


def load_pack_model(pack: HandlePack, device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32, model: str | None = None) -> SDComponents:
    """Load the pack's base model (or ``model`` if given) and apply the pack to it."""
    comps = load_model(model or pack.base_model, device=device, dtype=dtype)
    return apply_pack(comps, pack)



# Names -> (diffusers class, extra config, A1111 sampler name). All ship with diffusers.
SCHEDULERS: dict[str, tuple[type[ConfigMixin], dict[str, Any], str]] = {
    "ddim": (DDIMScheduler, {}, "DDIM"),
    "dpmpp-2m": (DPMSolverMultistepScheduler, {}, "DPM++ 2M"),
    "dpmpp-2m-karras": (DPMSolverMultistepScheduler, {"use_karras_sigmas": True}, "DPM++ 2M Karras"),
    "euler": (EulerDiscreteScheduler, {}, "Euler"),
    "euler-a": (EulerAncestralDiscreteScheduler, {}, "Euler a"),
    "unipc": (UniPCMultistepScheduler, {}, "UniPC"),
    "pndm": (PNDMScheduler, {}, "PLMS"),
    "ddpm": (DDPMScheduler, {}, "DDPM"),
}


def make_scheduler(name: str, config: Any) -> Any:
    """A fresh diffusers scheduler by name (see ``SCHEDULERS``) from a model's scheduler config."""
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose from {', '.join(SCHEDULERS)}")
    cls, extra, _ = SCHEDULERS[name]
    return cls.from_config(config, **extra)


@dataclass
class GeneratedImage:
    """One generated image and everything needed to make it again."""

    image: Image.Image
    prompt: str
    seed: int
    steps: int
    guidance: float
    negative_prompt: str | None = None
    scheduler: str = "ddim"
    width: int = 0
    height: int = 0
    pack_id: str | None = None
    base_model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (what the PNG's ``bas`` text chunk holds)."""
        d = asdict(self)
        d.pop("image")
        return d

    def parameters(self) -> str:
        """The A1111 ``parameters`` text: prompt, negative prompt, then ``Key: value`` pairs."""
        lines = [self.prompt]
        if self.negative_prompt:
            lines.append(f"Negative prompt: {self.negative_prompt}")
        sampler = SCHEDULERS.get(self.scheduler, (None, None, self.scheduler))[2]
        pairs = [("Steps", self.steps), ("Sampler", sampler), ("CFG scale", self.guidance), ("Seed", self.seed),
                 ("Size", f"{self.width}x{self.height}"), ("Model", self.base_model), ("Pack", self.pack_id)]
        pairs += [(k, v) for k, v in self.extra.items()]
        lines.append(", ".join(f"{k}: {v}" for k, v in pairs if v is not None))
        return "\n".join(lines)

    def save(self, path: str | Path) -> Path:
        """Write a PNG carrying ``parameters`` (A1111 convention) and ``bas`` (exact JSON) text chunks.

        The file is written under a temporary name and renamed over ``path`` once complete.
        """
        info = png_info(self.metadata(), self.parameters())
        return write_file(path, lambda tmp: self.image.save(tmp, format="PNG", pnginfo=info))


def check_prompt(comps: SDComponents, prompt: str, pack: HandlePack | None = None) -> None:
    """Refuse a prompt naming a ``<handle>`` the pack lacks; warn when CLIP will cut it short."""
    if not isinstance(prompt, str):
        raise ValueError("the prompt must be text")
    if pack is not None:
        unknown = sorted(set(HANDLE_IN_PROMPT.findall(prompt)) - set(pack.tokens))
        if unknown:
            raise PackError(f"the prompt names {', '.join(unknown)}, which this pack does not have (it has "
                            f"{', '.join(pack.tokens)})", pack.path)
    limit = int(getattr(comps.tokenizer, "model_max_length", 0) or 0)
    if 0 < limit < 100_000:
        ids = comps.tokenizer(prompt).input_ids
        if len(ids) > limit:
            cut = comps.tokenizer.decode(ids[limit - 1:-1])
            assert isinstance(cut, str)  # one sequence of ids decodes to one string
            cut = cut.strip()
            warnings.warn(f"the prompt is {len(ids)} tokens; the text encoder reads {limit}, so the end "
                          f"is ignored: '{cut[:60]}{'...' if len(cut) > 60 else ''}'", UserWarning, stacklevel=3)


def check_guidance(guidance: float) -> None:
    """``ValueError`` unless the guidance scale is a finite number >= 0."""
    if not isinstance(guidance, (int, float)) or not math.isfinite(guidance) or guidance < 0:
        raise ValueError(f"guidance {guidance!r}: must be a finite number >= 0")


def generate(comps: SDComponents, prompt: str, n: int = 1, seed: int = 0, steps: int = 30,
             guidance: float = 7.5, negative_prompt: str | None = None, size: int | None = None,
             on_step: Callable[[int, int], None] | None = None,
             should_stop: Callable[[], bool] | None = None, scheduler: str = "ddim",
             seeds: list[int] | None = None, batch_size: int = 1, width: int | None = None,
             height: int | None = None, pack: HandlePack | None = None) -> list[GeneratedImage]:
    """Generate ``n`` images (DDIM by default, as the paper); image ``i`` uses ``seeds[i]`` or ``seed + i``.

    ``batch_size`` images go through the pipeline together, each with its own seeded generator, so
    a seed gives the same picture alone or in a batch (up to float rounding). ``on_step(done, total)``
    and ``should_stop()`` go through diffusers' step-end callback; a stop ends the current batch early
    and returns the batches finished before it. ``pack`` is recorded in the images' metadata.
    """
    seeds = list(seeds) if seeds is not None else [seed + i for i in range(n)]
    if not seeds:
        raise ValueError("nothing to generate: n must be at least 1")
    if batch_size < 1 or steps < 1:
        raise ValueError("batch size and steps must be at least 1")
    check_guidance(guidance)
    for v in (size, width, height):
        if v is not None and not (isinstance(v, int) and 0 < v <= 8192):
            raise ValueError(f"image size {v!r}: must be between 1 and 8192 pixels")
    height = height or size or comps.resolution
    width = width or size or comps.resolution
    multiple = comps.vae_scale * 8
    if height % multiple or width % multiple:
        raise ValueError(f"image size {width}x{height} must be a multiple of {multiple}")
    check_prompt(comps, prompt, pack)
    if negative_prompt:
        check_prompt(comps, negative_prompt, pack)
    pipe = comps.pipeline(scheduler=make_scheduler(scheduler, comps.scheduler.config))
    pipe.set_progress_bar_config(disable=True)
    total = len(seeds) * steps
    pid = None
    if pack is not None:
        pid = pack.id
    out: list[GeneratedImage] = []
    for start in range(0, len(seeds), batch_size):
        chunk = seeds[start:start + batch_size]
        stopped = False

        def step_end(p: object, step: int, t: object, kw: dict) -> dict:
            nonlocal stopped
            if on_step is not None:
                on_step(start * steps + (step + 1) * len(chunk), total)
            if should_stop is not None and should_stop():
                stopped = True
                setattr(p, "_interrupt", True)
            return kw

        gens = [torch.Generator("cpu").manual_seed(s) for s in chunk]
        with torch.no_grad():
            images = pipe(prompt, negative_prompt=negative_prompt, height=height, width=width,
                          num_inference_steps=steps, guidance_scale=guidance, generator=gens,
                          num_images_per_prompt=len(chunk), callback_on_step_end=step_end).images
        if stopped:
            break
        out += [GeneratedImage(img, prompt, s, steps, guidance, negative_prompt, scheduler, width, height, pid,
                               pack.base_model if pack is not None else comps.ref)
                for img, s in zip(images, chunk)]
    return out


# ------------------------------------------------------------------------------------ variations
VARIATION_TEMPLATES = ("a photo of {} at the beach", "a photo of {} in the snow",
                       "a photo of {} on a wooden table", "an oil painting of {}")


def handle_subsets(tokens: list[str]) -> list[list[str]]:
    """Every handle alone, every pair, then all together (without repeats)."""
    subsets = [[t] for t in tokens] + [list(p) for p in itertools.combinations(tokens, 2)]
    if len(tokens) > 2:
        subsets.append(list(tokens))
    return subsets


@dataclass
class VariationGrid:
    """Images of every handle subset (rows) in every context template (columns)."""

    rows: list[str]
    columns: list[str]
    cells: list[list[GeneratedImage]]

    def image(self) -> Image.Image:
        """One labelled picture: handle-set labels left of the rows, template labels (wrapped to the
        cell width, ``*`` for the handles) above the columns."""
        cell_w, cell_h = self.cells[0][0].image.size
        font = ImageFont.load_default()
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        line_h = int(probe.textbbox((0, 0), "Ag*<>", font=font)[3]) + 2
        heads = [wrap_label(c.replace("{}", "*"), cell_w - 4, font) for c in self.columns]
        top = line_h * max(len(h) for h in heads) + 4
        left = int(max(probe.textlength(r, font=font) for r in self.rows)) + 8
        grid = Image.new("RGB", (left + cell_w * len(self.columns), top + cell_h * len(self.rows)), "white")
        for j, lines in enumerate(heads):
            label = Image.new("RGB", (cell_w, top), "white")  # drawn per column, so labels never overlap
            for k, line in enumerate(lines):
                ImageDraw.Draw(label).text((2, 2 + k * line_h), line, fill="black", font=font)
            grid.paste(label, (left + j * cell_w, 0))
        draw = ImageDraw.Draw(grid)
        for i, row in enumerate(self.rows):
            draw.text((4, top + i * cell_h + (cell_h - line_h) // 2), row, fill="black", font=font)
            for j, g in enumerate(self.cells[i]):
                grid.paste(g.image, (left + j * cell_w, top + i * cell_h))
        return grid


def wrap_label(text: str, width: int, font: Any) -> list[str]:
    """Split ``text`` into lines at spaces so each line is at most ``width`` pixels in ``font``."""
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def object_tokens(pack: HandlePack) -> list[str]:
    """The pack's handles that are not the background."""
    return [c["token"] for c in pack.concepts if not c.get("is_background")]


def variations(comps: SDComponents, tokens: list[str], templates: tuple[str, ...] | list[str] = VARIATION_TEMPLATES,
               seed: int = 0, steps: int = 30, guidance: float = 7.5, scheduler: str = "ddim",
               on_step: Callable[[int, int], None] | None = None,
               should_stop: Callable[[], bool] | None = None, pack: HandlePack | None = None,
               **kw: Any) -> VariationGrid:
    """The "variations" preset: each handle subset in each template, one image per cell, same seed.

    A template holds ``{}`` where the handles go (``"a photo of {} in the snow"``). A stop request
    returns the rows finished so far.
    """
    if not tokens:
        raise ValueError("no handles to vary")
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise ValueError(f"--templates: templates need a {{}} where the handles go: {bad}")
    if pack is not None and set(tokens) - set(pack.tokens):
        raise PackError(f"--tokens: this pack has no {', '.join(sorted(set(tokens) - set(pack.tokens)))} "
                        f"(it has {', '.join(pack.tokens)})", pack.path)
    subsets = handle_subsets(tokens)
    total = len(subsets) * len(templates) * steps
    rows: list[str] = []
    cells: list[list[GeneratedImage]] = []
    for i, subset in enumerate(subsets):
        row: list[GeneratedImage] = []
        for j, template in enumerate(templates):
            done = (i * len(templates) + j) * steps
            got = generate(comps, template.replace("{}", " and ".join(subset)), seed=seed, steps=steps, guidance=guidance,
                           scheduler=scheduler, should_stop=should_stop, pack=pack,
                           on_step=_offset_progress(on_step, done, total) if on_step else None, **kw)
            if not got:
                return VariationGrid(rows, list(templates), cells)
            row.append(got[0])
        rows.append(" + ".join(subset))
        cells.append(row)
    return VariationGrid(rows, list(templates), cells)


def _offset_progress(on_step: Callable[[int, int], None], done: int, total: int) -> Callable[[int, int], None]:
    """``on_step`` for one generation of many: its steps count on from ``done`` of ``total``."""
    return lambda k, _n: on_step(done + k, total)


# ------------------------------------------------------------------------------------ background
def background_token(pack: HandlePack) -> str:
    """The pack's background handle; ``PackError`` if it was trained without one."""
    for c in pack.concepts:
        if c.get("is_background"):
            return str(c["token"])
    raise PackError("this pack has no background handle; break the scene again with --background", pack.path)


def render_background(comps: SDComponents, pack: HandlePack, prompt: str = "a photo of {bg}",
                      **kw: Any) -> list[GeneratedImage]:
    """Render the background alone (``"a photo of <bg>"``); ``{bg}`` in ``prompt`` is the handle.

    Objects are re-placed by naming them too, e.g. ``"a photo of <asset0> in {bg}"``.
    """
    return generate(comps, prompt.replace("{bg}", background_token(pack)), pack=pack, **kw)
