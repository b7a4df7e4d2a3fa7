"""New text handles: tokens added to the tokenizer and their embeddings in the text encoder.

During training the handles live in a separate ``[N, D]`` parameter wrapped around the frozen
embedding table (:class:`HandleEmbedding`), so phase 1's optimizer only ever sees the new rows:
every other row is unchanged by construction, and Adam keeps no state for 49k unused rows. For
generation the rows are baked into a resized embedding table, which is also what diffusers'
``load_textual_inversion`` produces. The rows each handle starts from are the reference code's
(:func:`initial_embeddings`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from transformers import CLIPTextModel, CLIPTokenizer


class HandleEmbedding(nn.Module):
    """Token embedding = frozen base table for ids ``< first_id``, trainable ``handles`` above.

    With ``track_base_grad`` set, each forward that records gradients also sums the squared norm
    of the gradient the frozen rows *would* receive (rows of "a", "photo", "of", padding ...) into
    ``base_grad_sq``: the reference code trains the whole table, so its global gradient norm, and
    with it its clipping, counts those rows too (:mod:`engine.training.clipping`).
    """

    def __init__(self, base: nn.Embedding, first_id: int, init: torch.Tensor,
                 shared: nn.Parameter | None = None, columns: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.base = base
        self.first_id = first_id
        # Handles train in fp32 even over a half-precision table (a frozen model stored in bf16).
        dtype = torch.float32 if base.weight.dtype in (torch.float16, torch.bfloat16) else base.weight.dtype
        self.handles = shared if shared is not None else nn.Parameter(
            init.detach().clone().to(base.weight.device, dtype))
        # Several text encoders (SDXL's two) share one [N, D1 + D2] parameter, each its columns.
        self.columns = columns
        self.track_base_grad = False
        self.base_grad_sq: torch.Tensor | None = None

    def rows(self) -> torch.Tensor:
        """This encoder's ``[N, D]`` handle rows (its columns of a shared parameter)."""
        return self.handles if self.columns is None else self.handles[:, self.columns[0]:self.columns[1]]

    @property
    def weight(self) -> torch.Tensor:
        """The full table (base rows then handle rows), for code that reads ``.weight``."""
        return torch.cat([self.base.weight[: self.first_id], self.rows().to(self.base.weight.dtype)])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        is_new = ids >= self.first_id
        base_ids = ids.clamp(max=self.first_id - 1)
        base = self.base(base_ids)
        if self.track_base_grad and torch.is_grad_enabled() and not base.requires_grad:
            base = base.detach().requires_grad_(True)  # a small [B, L, D] leaf, freed with the graph
            base.register_hook(self._row_grad_hook(base_ids))
        new = self.rows()[(ids - self.first_id).clamp(min=0, max=self.handles.shape[0] - 1)]
        return torch.where(is_new[..., None], new.to(base.dtype), base)

    def _row_grad_hook(self, base_ids: torch.Tensor) -> Callable[[torch.Tensor], None]:
        def hook(grad: torch.Tensor) -> None:
            # An embedding's weight gradient is the sum of its output gradients over the positions
            # holding each id; handle positions carry zeros here (torch.where), so they add nothing.
            uniq, inv = torch.unique(base_ids, return_inverse=True)
            rows = grad.new_zeros(len(uniq), grad.shape[-1], dtype=torch.float32)
            rows.index_add_(0, inv.reshape(-1), grad.reshape(-1, grad.shape[-1]).float())
            sq = rows.pow(2).sum()
            self.base_grad_sq = sq if self.base_grad_sq is None else self.base_grad_sq + sq
        return hook

    def take_base_grad_sq(self) -> torch.Tensor | None:
        """The squared frozen-row gradient norm summed since the last call (``None``: none)."""
        out, self.base_grad_sq = self.base_grad_sq, None
        return out


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
    assert isinstance(ids, list)  # a list of tokens gives a list of ids
    for t, i in zip(tokens, ids):
        if tokenizer(t, add_special_tokens=False).input_ids != [i]:
            raise ValueError(f"token {t} does not tokenize to a single id")
    return list(ids)


def initial_embeddings(tokenizer: CLIPTokenizer, table: torch.Tensor, init_words: list[str | None]) -> torch.Tensor:
    """Starting vectors for ``N`` handles, chosen as the reference code chooses them.

    A concept with an initializer word starts from the row of the word's *first* sub-token (a word
    the tokenizer splits, e.g. "teddybear", is not averaged). A concept without one starts from
    the row the reference copies: it resizes the table to ``V + N`` rows first and copies rows
    ``-3N .. -2N`` of the resized table into the new rows, so handle ``k`` starts from original row
    ``V - 2N + k``. ``table`` is the ``[V, D]`` table before any handle is added.
    """
    n = len(init_words)
    if table.shape[0] < 2 * n:
        raise ValueError(f"a table of {table.shape[0]} rows cannot seed {n} handles")
    out = []
    for k, word in enumerate(init_words):
        ids = tokenizer(word, add_special_tokens=False).input_ids if word else []
        out.append(table[ids[0]] if ids else table[table.shape[0] - 2 * n + k])
    return torch.stack(out).detach().clone()


def token_table(text_encoder: CLIPTextModel) -> torch.Tensor:
    """The text encoder's ``[V, D]`` token embedding table (with the handle rows when installed)."""
    table = text_encoder.get_input_embeddings().weight
    assert isinstance(table, torch.Tensor)  # nn.Embedding's parameter or HandleEmbedding's full table
    return table


def install_handles(text_encoder: CLIPTextModel, first_id: int, init: torch.Tensor,
                    shared: nn.Parameter | None = None, columns: tuple[int, int] | None = None) -> HandleEmbedding:
    """Wrap the text encoder's token embedding with a trainable handle table (or its ``columns``
    of a ``shared`` one)."""
    base = text_encoder.get_input_embeddings()
    if isinstance(base, HandleEmbedding):
        raise RuntimeError("handles are already installed on this text encoder")
    if not isinstance(base, nn.Embedding):
        raise TypeError(f"the text encoder's token embedding is a {type(base).__name__}, not an nn.Embedding")
    if base.weight.shape[0] != first_id:
        raise ValueError(f"embedding has {base.weight.shape[0]} rows but the first handle id is {first_id}")
    wrapper = HandleEmbedding(base, first_id, init, shared, columns)
    text_encoder.set_input_embeddings(wrapper)
    return wrapper


def install_handle_set(encoders: list[tuple[CLIPTokenizer, CLIPTextModel]], tokens: list[str],
                       init_words: list[str | None]) -> tuple[list[HandleEmbedding], list[int]]:
    """Add the handles to every (tokenizer, text encoder) pair; one trainable ``[N, sum D]``
    parameter holds all their rows side by side (the first wrapper's ``handles``).

    Returns the wrappers, in ``encoders`` order, and the handle ids of the first tokenizer (the
    prompt positions the attention loss reads; all CLIP tokenizers here share one vocabulary).
    """
    inits = [initial_embeddings(tok, token_table(te), init_words) for tok, te in encoders]
    ids = [add_handle_tokens(tok, tokens) for tok, _ in encoders]
    if len(encoders) == 1:
        return [install_handles(encoders[0][1], ids[0][0], inits[0])], ids[0]
    full = torch.cat([i.float() for i in inits], dim=1)
    wrappers: list[HandleEmbedding] = []
    start = 0
    for (_, te), init, first in zip(encoders, inits, ids):
        cols = (start, start + init.shape[1])
        shared = wrappers[0].handles if wrappers else None
        wrappers.append(install_handles(te, first[0], full if shared is None else init, shared, cols))
        start = cols[1]
    return wrappers, ids[0]


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
    table = token_table(text_encoder)
    with torch.no_grad():
        for i, vec in zip(ids, vectors.values()):
            if vec.shape != table.shape[1:]:
                raise ValueError(f"embedding width {tuple(vec.shape)} does not match the text encoder's {table.shape[1]}")
            table[i] = vec.to(table.device, table.dtype)
