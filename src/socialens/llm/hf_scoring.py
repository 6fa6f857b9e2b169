"""Batched label scoring on a transformers causal LM: many prompts, every label, few forward passes.

``score(prompt, labels)`` for one text runs the prompt once and the labels on a copy of its cache.
Over a batch of texts the same prompt template makes most of each prompt identical, so
``score_token_batch`` runs three kinds of forward pass:

1. the **prefix**: the tokens every prompt of the batch starts with (system text, instructions,
   the template's head), once, kept in a ``DynamicCache`` (and kept across calls while the next
   batch starts with the same tokens);
2. the **suffixes**: each prompt's own tokens after the prefix, ``batch_texts`` prompts of similar
   length per pass on the prefix cache expanded to the batch, right-padded, with an attention mask
   that hides the pads and explicit position ids, so a padded row computes what it would alone;
   only the logits of each row's last real token are projected onto the vocabulary
   (``logits_to_keep``);
3. the **label tails**: only for labels of more than one token, every (prompt, label) row on its
   prompt's cache, the label's tokens but the last (whose next-token logits no score needs).

With one-token labels (most label sets) pass 3 never runs: one suffix pass scores all labels of
``batch_texts`` texts. Pads sit in the middle of a row's cache (after a short suffix, before its
label tokens); they are masked out and the position ids skip them, which transformers supports
for every model whose forward takes ``position_ids`` and a 2-D attention mask over past + new.
A sliding attention window (Gemma 3, Mistral) counts cache slots, pads included, so a batch whose
rows with their pads would outgrow the window is scored one prompt at a time instead.

The module works on token ids only (``TokenRequest``); rendering and tokenizing prompts is the
backend's (``socialens.llm.hf``). It is device-agnostic: tensors go where the model is.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def cache_keyword(model: Any) -> str:
    """The forward argument that takes a key/value cache: ``cache`` in recent transformers (which
    warns on the old name), ``past_key_values`` before."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft wrapper
    return "cache" if "cache" in inspect.signature(type(base).forward).parameters else "past_key_values"


def sliding_window(model: Any) -> int | None:
    """The attention window of a model with sliding-window layers (Gemma 3, Mistral), else None."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None and "sliding_attention" not in layer_types:
        return None
    return window if isinstance(window, int) and window > 0 else None


def per_row_logits_to_keep() -> bool:
    """Whether ``logits_to_keep`` takes a (batch, positions) tensor, one position list per row
    (transformers 5; before, a tensor held positions kept in every row)."""
    try:
        from transformers.modeling_utils import slice_logits_to_keep  # noqa: F401
    except ImportError:
        return False
    return True


def output_cache(output: Any) -> Any:
    """The key/value cache of a forward pass's output, under either name."""
    found = output.get("cache") if hasattr(output, "get") else None
    return found if found is not None else output.past_key_values


@dataclass
class TokenRequest:
    """One prompt and its continuations as token ids. ``sequences[j]`` is prompt+continuation j
    tokenized together; ``starts[j]`` is its first token that is not the prompt's own (where
    a continuation merges with the prompt's last token, that token is re-scored)."""

    prompt_ids: list[int]
    sequences: list[list[int]]
    starts: list[int]

    @property
    def shared(self) -> int:
        """How many leading prompt tokens every prompt+continuation keeps unchanged."""
        return min([len(self.prompt_ids), *self.starts])


@dataclass
class PrefixState:
    """A prefix's key/value cache (one row) and the log-probabilities after its last token."""

    ids: tuple[int, ...] = ()
    cache: Any = None
    last_logprobs: Any = None


@dataclass
class BatchScorer:
    """Scores ``TokenRequest`` batches on ``model``; remembers the last prefix it ran."""

    model: Any
    pad_id: int
    batch_texts: int = 8
    prefix: PrefixState = field(default_factory=PrefixState)

    def __post_init__(self) -> None:
        self.cache_arg = cache_keyword(self.model)
        self.window = sliding_window(self.model)
        self.per_row_logits = per_row_logits_to_keep()

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def score(self, requests: Sequence[TokenRequest]) -> list[list[float]]:
        """Summed log-probability of each continuation of each request (in order)."""
        import torch

        if not requests:
            return []
        for request in requests:
            if request.shared == 0:
                raise ValueError("cannot score after an empty prompt")
        # Prompts of similar length share a pass, so that few pads are computed; results go back
        # in the callers' order.
        order = sorted(range(len(requests)), key=lambda i: requests[i].shared)
        results: list[list[float] | None] = [None] * len(requests)
        with torch.no_grad():
            prefix = self._prefix_for(requests)
            for i in range(0, len(order), self.batch_texts):
                rows = order[i : i + self.batch_texts]
                chunk = [requests[r] for r in rows]
                if self._pads_reach_the_window(chunk):
                    # alone, a row has pads only after its real tokens
                    values = [v for request in chunk for v in self._score_chunk([request], prefix)]
                else:
                    values = self._score_chunk(chunk, prefix)
                for r, value in zip(rows, values, strict=True):
                    results[r] = value
        return results

    def _pads_reach_the_window(self, chunk: Sequence[TokenRequest]) -> bool:
        """Whether pads in the middle of a row could push real tokens out of a sliding window: the
        window counts cache slots, pads included, so such a chunk is scored one prompt at a time."""
        if self.window is None or len(chunk) == 1:
            return False
        suffix_pad = max(r.shared for r in chunk) - min(r.shared for r in chunk)
        longest = max(len(s) for r in chunk for s in r.sequences)
        return longest + suffix_pad > self.window

    # -- pass 1: the shared prefix --------------------------------------------------------------------

    def _prefix_for(self, requests: Sequence[TokenRequest]) -> PrefixState:
        import torch

        # One token is left to every suffix so that each row's last logits come from pass 2.
        limit = min(request.shared for request in requests) - 1
        first = requests[0].prompt_ids
        length = 0
        while length < limit and all(r.prompt_ids[length] == first[length] for r in requests):
            length += 1
        kept = self.prefix.ids
        if kept and len(kept) <= length and tuple(first[: len(kept)]) == kept:
            return self.prefix  # the batch starts as the last one did: reuse its cache
        if length == 0:
            return PrefixState()
        ids = torch.tensor([first[:length]], device=self.device)
        out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
        last = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
        self.prefix = PrefixState(tuple(first[:length]), output_cache(out), last)
        return self.prefix

    # -- passes 2 and 3 ---------------------------------------------------------------------------------

    def _score_chunk(self, requests: Sequence[TokenRequest], prefix: PrefixState) -> list[list[float]]:
        import torch

        device, pad = self.device, self.pad_id
        start = len(prefix.ids)
        suffixes = [r.prompt_ids[start : r.shared] for r in requests]
        width = max(len(s) for s in suffixes)
        rows = len(requests)
        mask = torch.tensor(
            [[1] * (start + len(s)) + [0] * (width - len(s)) for s in suffixes], device=device
        )
        cache = None
        if prefix.cache is not None:
            cache = copy.deepcopy(prefix.cache)
            cache.batch_select_indices(torch.zeros(rows, dtype=torch.long, device=device))
        input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in suffixes], device=device)
        positions = torch.arange(start, start + width, device=device).expand(rows, width)
        ends = [len(s) - 1 for s in suffixes]
        if self.per_row_logits:
            keep = torch.tensor([[end] for end in ends], device=device)  # (rows, 1): each row its own
        else:  # a 1-D tensor keeps the same positions in every row: those that any row needs
            needed = sorted(set(ends))
            keep = torch.tensor(needed, device=device)
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **{self.cache_arg: cache},
            logits_to_keep=keep,
        )
        # on the CPU: the sums below read single values, which on an accelerator is one sync each
        logits = (
            out.logits[:, -1]
            if self.per_row_logits
            else out.logits[torch.arange(rows), [needed.index(e) for e in ends]]
        )
        last = torch.log_softmax(logits.float(), dim=-1).cpu()  # (rows, vocab)

        # Pass 3: the rows whose tail (tokens after ``shared``) has more than one token.
        tails = [
            (b, j, r.sequences[j][r.shared :]) for b, r in enumerate(requests) for j in range(len(r.starts))
        ]
        long_tails = [(b, j, t) for b, j, t in tails if len(t) > 1]
        tail_lp: dict[tuple[int, int], Any] = {}
        if long_tails:
            fed = [t[:-1] for _, _, t in long_tails]
            tail_width = max(len(f) for f in fed)
            owners = torch.tensor([b for b, _, _ in long_tails], device=device)
            cache = output_cache(out)
            cache.batch_select_indices(owners)
            tail_mask = torch.cat(
                [
                    mask[owners],
                    torch.tensor([[1] * len(f) + [0] * (tail_width - len(f)) for f in fed], device=device),
                ],
                dim=1,
            )
            offsets = torch.tensor([[start + len(suffixes[b])] for b, _, _ in long_tails], device=device)
            step = self.model(
                input_ids=torch.tensor([f + [pad] * (tail_width - len(f)) for f in fed], device=device),
                attention_mask=tail_mask,
                position_ids=offsets + torch.arange(tail_width, device=device),
                use_cache=True,
                **{self.cache_arg: cache},
            )
            lp = torch.log_softmax(step.logits.float(), dim=-1).cpu()
            for row, (b, j, _) in enumerate(long_tails):
                tail_lp[(b, j)] = lp[row]

        results = []
        for b, request in enumerate(requests):
            shared = request.shared
            values = []
            for j, sequence in enumerate(request.sequences):
                total = 0.0
                for pos in range(request.starts[j], len(sequence)):
                    k = pos - shared  # the token's index in the tail
                    dist = last[b] if k == 0 else tail_lp[(b, j)][k - 1]
                    total += float(dist[sequence[pos]])
                values.append(total)
            results.append(values)
        return results
