"""New text handles: tokens added to the tokenizer and their embeddings in the text encoder.

During training the handles live in a separate ``[N, D]`` parameter wrapped around the frozen
embedding table (:class:`HandleEmbedding`), so phase 1's optimizer only ever sees the new rows:
every other row is unchanged by construction, and Adam keeps no state for 49k unused rows. For
generation the rows are baked into a resized embedding table, which is also what diffusers'
``load_textual_inversion`` produces.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import CLIPTextModel, CLIPTokenizer


class HandleEmbedding(nn.Module):
    """Token embedding = frozen base table for ids ``< first_id``, trainable ``handles`` above."""

    def __init__(self, base: nn.Embedding, first_id: int, init: torch.Tensor) -> None:
        super().__init__()
        self.base = base
        self.first_id = first_id
        self.handles = nn.Parameter(init.detach().clone().to(base.weight.device, base.weight.dtype))

    @property
    def weight(self) -> torch.Tensor:
        """The full table (base rows then handle rows), for code that reads ``.weight``."""
        return torch.cat([self.base.weight[: self.first_id], self.handles.to(self.base.weight.dtype)])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        is_new = ids >= self.first_id
        base = self.base(ids.clamp(max=self.first_id - 1))
        new = self.handles[(ids - self.first_id).clamp(min=0, max=self.handles.shape[0] - 1)]
        return torch.where(is_new[..., None], new.to(base.dtype), base)


def add_handle_tokens(tokenizer: CLIPTokenizer, tokens: list[str]) -> list[int]:
    """Add ``tokens`` to the tokenizer as single, unsplittable tokens; return their ids.

    Raises ``ValueError`` if a token already exists (it would silently reuse a trained word).
    """
    vocab = tokenizer.get_vocab()
    clash = [t for t in tokens if t in vocab]
    if clash:
        raise ValueError(f"tokens already in the tokenizer: {clash}")
    tokenizer.add_tokens(tokens)
    ids = tokenizer.convert_tokens_to_ids(tokens)
    for t, i in zip(tokens, ids):
        if tokenizer(t, add_special_tokens=False).input_ids != [i]:
            raise ValueError(f"token {t} does not tokenize to a single id")
    return list(ids)


def initial_embeddings(tokenizer: CLIPTokenizer, table: torch.Tensor, init_words: list[str | None]) -> torch.Tensor:
    """Starting vectors: the mean embedding of each initializer word's sub-tokens.

    Concepts without a word start, as in the reference code, from copies of existing rows near the
    end of the vocabulary (rows ``-3N .. -2N``), which are deterministic and have a typical norm.
    """
    n = len(init_words)
    out = []
    for k, word in enumerate(init_words):
        ids = tokenizer(word, add_special_tokens=False).input_ids if word else []
        if ids:
            out.append(table[ids].mean(0))
        else:
            out.append(table[table.shape[0] - 3 * n + k])
    return torch.stack(out).detach().clone()


def install_handles(text_encoder: CLIPTextModel, first_id: int, init: torch.Tensor) -> HandleEmbedding:
    """Wrap the text encoder's token embedding with a trainable handle table."""
    base = text_encoder.get_input_embeddings()
    if isinstance(base, HandleEmbedding):
        raise RuntimeError("handles are already installed on this text encoder")
    if base.weight.shape[0] != first_id:
        raise ValueError(f"embedding has {base.weight.shape[0]} rows but the first handle id is {first_id}")
    wrapper = HandleEmbedding(base, first_id, init)
    text_encoder.set_input_embeddings(wrapper)
    return wrapper


def bake_handles(text_encoder: CLIPTextModel) -> None:
    """Replace the wrapper by a plain resized ``nn.Embedding`` holding base and handle rows."""
    wrapper = text_encoder.get_input_embeddings()
    if not isinstance(wrapper, HandleEmbedding):
        return
    weight = wrapper.weight.detach().clone()
    emb = nn.Embedding(weight.shape[0], weight.shape[1], device=weight.device, dtype=weight.dtype)
    emb.weight.data.copy_(weight)
    text_encoder.set_input_embeddings(emb)
    text_encoder.config.vocab_size = weight.shape[0]


def set_handle_rows(tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel, vectors: dict[str, torch.Tensor]) -> None:
    """Add tokens with given vectors to a plain tokenizer/text encoder pair (for generation)."""
    ids = add_handle_tokens(tokenizer, list(vectors))
    text_encoder.resize_token_embeddings(len(tokenizer))
    table = text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        for i, vec in zip(ids, vectors.values()):
            if vec.shape != table.shape[1:]:
                raise ValueError(f"embedding width {tuple(vec.shape)} does not match the text encoder's {table.shape[1]}")
            table[i] = vec.to(table.device, table.dtype)
