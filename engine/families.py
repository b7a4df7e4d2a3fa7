"""Model families: everything that differs between SD 1.x/2.x and SDXL, behind one small interface.

The trainer, the generator, the local edit and the exports ask the family of a loaded model
(:func:`family_of`) instead of testing for SDXL themselves:

* which text encoders read the prompt, and so which token tables carry the handle rows
  (SD: one CLIP; SDXL: CLIP ViT-L *and* OpenCLIP ViT-bigG, each gets its own rows);
* how a prompt becomes the UNet's conditioning (SD: the last hidden state; SDXL: both encoders'
  penultimate hidden states side by side, plus ``added_cond_kwargs`` with the pooled embedding of
  the second encoder and the six ``add_time_ids``);
* which diffusers pipelines generate and inpaint;
* which cross-attention side the attention loss uses (:meth:`ModelFamily.attention_side`);
* the names the exports give each text encoder (kohya prefixes, A1111 embedding keys).

A handle's vector in a pack is the concatenation of its rows in every text encoder, in the
order of :meth:`ModelFamily.encoders` (SDXL: 768 CLIP-L values, then 1280 bigG values), so a pack
stays one ``[D]`` vector per handle for every family.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformers import CLIPTextModel, CLIPTokenizer

    from engine.models import SDComponents


@dataclass
class Conditioning:
    """What the UNet reads besides the latents: ``unet(x, t, hidden, added_cond_kwargs=added)``."""

    hidden: torch.Tensor
    added: dict[str, torch.Tensor] | None = None

    def select(self, index: slice) -> Conditioning:
        """The conditioning of a slice of the batch."""
        added = {k: v[index] for k, v in self.added.items()} if self.added is not None else None
        return Conditioning(self.hidden[index], added)


@dataclass(frozen=True)
class TextEncoderSlot:
    """One text encoder of a family: its attribute names and what the exports call it."""

    encoder: str  # attribute of SDComponents: "text_encoder" or "text_encoder_2"
    tokenizer: str  # "tokenizer" or "tokenizer_2"
    kohya_prefix: str  # "lora_te_", "lora_te1_", "lora_te2_"
    a1111_key: str  # key of an A1111 SDXL embedding file ("clip_l", "clip_g"); "" for SD


class ModelFamily:
    """SD 1.x/2.x: one CLIP text encoder, last hidden state, ``StableDiffusionPipeline``."""

    name = "sd"
    slots: tuple[TextEncoderSlot, ...] = (TextEncoderSlot("text_encoder", "tokenizer", "lora_te_", ""),)

    def encoders(self, comps: SDComponents) -> list[tuple[CLIPTokenizer, CLIPTextModel]]:
        """The (tokenizer, text encoder) pairs that read the prompt; each carries the handle rows."""
        return [(getattr(comps, s.tokenizer), getattr(comps, s.encoder)) for s in self.slots]

    def widths(self, comps: SDComponents) -> list[int]:
        """Each text encoder's token width, in :meth:`encoders` order."""
        from engine.handles import token_table

        return [int(token_table(te).shape[1]) for _, te in self.encoders(comps)]

    def tokenize(self, comps: SDComponents, prompts: list[str], device: torch.device | str = "cpu") -> list[torch.Tensor]:
        """Token ids ``[B, 77]`` of ``prompts`` for every tokenizer (padded to its max length)."""
        out = []
        for tok, _ in self.encoders(comps):
            out.append(tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True,
                           return_tensors="pt").input_ids.to(device))
        return out

    def encode(self, comps: SDComponents, ids: list[torch.Tensor], size: tuple[int, int]) -> Conditioning:
        """The UNet conditioning of tokenized prompts (:meth:`tokenize`) for images ``size = (h, w)``."""
        return Conditioning(comps.text_encoder(ids[0])[0])

    def pipeline(self, comps: SDComponents, scheduler: Any, kind: str = "text2img") -> Any:
        """A diffusers pipeline over ``comps``: ``text2img`` or ``inpaint`` (no safety checker)."""
        from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

        cls = StableDiffusionInpaintPipeline if kind == "inpaint" else StableDiffusionPipeline
        return cls(vae=comps.vae, text_encoder=comps.text_encoder, tokenizer=comps.tokenizer, unet=comps.unet,
                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                   requires_safety_checker=False)

    def preferred_attention_side(self, latent: int) -> int:
        """latent/4: the paper's level *relative* to the latents (16x16 of SD 2.1's 64x64 at 512 px).

        The relative rule, not a fixed 16, was chosen by measurement: on ShapesWorld (32x32
        latents, cross-attention at 32, 16 and 8) the loss at 8x8 beat 16x16 over 24 paired runs
        of ``bench/quality.py`` (identity +0.12 +/- 0.04, leakage -0.06 +/- 0.03; docs/quality.md).
        SDXL has cross-attention only at latent/2 and latent/4, so this is its coarse level (70 of
        its transformer layers against 10; docs/sdxl.md).
        """
        return max(1, latent // 4)

    def attention_side(self, unet: Any, latent: int) -> int:
        """The cross-attention side the attention loss uses for ``latent x latent`` latents: of the
        sides the UNet has, the one closest to :meth:`preferred_attention_side` (ties: the larger)."""
        from engine.training.attention import choose_attention_resolution

        return choose_attention_resolution(unet, latent, self.preferred_attention_side(latent))

    def prepare(self, comps: SDComponents) -> None:
        """Fix-ups a freshly loaded model needs (none for SD)."""

    def info(self, comps: SDComponents) -> dict[str, Any]:
        """What a pack records about its base model's shape (used by exports without the model)."""
        return {"family": self.name, "text_widths": self.widths(comps),
                "layers_per_block": int(comps.unet.config["layers_per_block"])}


class SDXLFamily(ModelFamily):
    """SDXL: CLIP ViT-L + OpenCLIP ViT-bigG (with projection), penultimate hidden states, pooled
    embedding and size conditioning; ``StableDiffusionXLPipeline`` / ``...InpaintPipeline``."""

    name = "sdxl"
    slots = (TextEncoderSlot("text_encoder", "tokenizer", "lora_te1_", "clip_l"),
             TextEncoderSlot("text_encoder_2", "tokenizer_2", "lora_te2_", "clip_g"))

    def encode(self, comps: SDComponents, ids: list[torch.Tensor], size: tuple[int, int]) -> Conditioning:
        """Both encoders' penultimate hidden states, concatenated (``[B, 77, 768 + 1280]``), plus the
        second encoder's pooled, projected embedding and the time ids ``(h, w, 0, 0, h, w)``: the
        original size equals the target size and there is no crop, as the SDXL pipeline's defaults."""
        assert comps.text_encoder_2 is not None
        h1 = comps.text_encoder(ids[0], output_hidden_states=True).hidden_states[-2]
        out2 = comps.text_encoder_2(ids[1], output_hidden_states=True)
        hidden = torch.cat([h1, out2.hidden_states[-2].to(h1.dtype)], dim=-1)
        pooled = out2.text_embeds
        h, w = size
        time_ids = torch.tensor([[h, w, 0, 0, h, w]], dtype=pooled.dtype, device=pooled.device)
        return Conditioning(hidden, {"text_embeds": pooled, "time_ids": time_ids.repeat(len(pooled), 1)})

    def pipeline(self, comps: SDComponents, scheduler: Any, kind: str = "text2img") -> Any:
        """``StableDiffusionXLPipeline`` or, for ``inpaint``, ``StableDiffusionXLInpaintPipeline``
        (no watermarker; zeros for an empty negative prompt, as SDXL base ships)."""
        from diffusers import StableDiffusionXLInpaintPipeline, StableDiffusionXLPipeline

        cls: Any = StableDiffusionXLPipeline
        extra: dict[str, Any] = {}
        if kind == "inpaint":
            cls, extra["requires_aesthetics_score"] = StableDiffusionXLInpaintPipeline, False
        return cls(vae=comps.vae, text_encoder=comps.text_encoder, text_encoder_2=comps.text_encoder_2,
                   tokenizer=comps.tokenizer, tokenizer_2=comps.tokenizer_2, unet=comps.unet, scheduler=scheduler,
                   force_zeros_for_empty_prompt=True, add_watermarker=False, **extra)

    def prepare(self, comps: SDComponents) -> None:
        """Make the text encoders pool at the end-of-text token, also when handles are added.

        SDXL's released configs say ``eos_token_id: 2``, which makes transformers pool at the
        *highest* token id; with handles (ids above 49407) in the prompt that is the handle, not
        the end of text. Pooling at the tokenizer's real end-of-text id gives the same vectors for
        every prompt without handles (the first end-of-text is the highest id there).
        """
        for tok, te in self.encoders(comps):
            text_model = getattr(te, "text_model", None)
            if text_model is not None and getattr(text_model, "eos_token_id", None) == 2:
                text_model.eos_token_id = tok.eos_token_id


SD = ModelFamily()
SDXL = SDXLFamily()
FAMILIES = {SD.name: SD, SDXL.name: SDXL}


def family_of(comps: SDComponents) -> ModelFamily:
    """The family of loaded components: SDXL when a second text encoder is present."""
    return SDXL if getattr(comps, "text_encoder_2", None) is not None else SD


def family_named(name: str | None) -> ModelFamily:
    """A family by the name a pack manifest records (``sd`` when absent)."""
    return FAMILIES.get(name or "sd", SD)


def split_vector(vec: torch.Tensor, widths: list[int]) -> list[torch.Tensor]:
    """A pack's handle vector cut into each text encoder's row (:meth:`ModelFamily.encoders` order)."""
    if vec.shape[-1] != sum(widths):
        raise ValueError(f"a handle vector of width {vec.shape[-1]} does not split into {widths}")
    return list(torch.split(vec, widths, dim=-1))
