"""Does a model's tokenizer cover a dataset's language? Measured before training, on training texts.

An English-only model on Arabic text trains without an error and predicts one class. What gives
it away beforehand is its tokenizer: text in a script it was not built for comes out as unknown
tokens or one token per letter. The measure is the share of such tokens (the unknown token, or
a piece that is a single letter once its word-piece marker is removed; punctuation and digits are
single characters in every language and do not count) over a fixed sample of the training texts.

Measured with builtin:minilm-l6 (all-MiniLM-L6-v2, uncased WordPiece) on 200 training texts each:
English 4-10% (TweetEval hate 6.8%, offensive 6.5%, emotion 8.5%, LIAR 4.1%, CT-FAN-22 4.7%,
CheckThat! 2024 5.1%, Constraint 10.3%, the builtin demo 6.7%), Hindi (HASOC 2019) 64.0%, Arabic
(ArSarcasm-v2) 84.7%. The threshold, 30%, sits between the two groups.

A family takes part by giving its class a ``coverage_tokenizer(params)`` static method (the
encoder family does); for the others the check answers None.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from socialens.core.types import Example

UNCOVERED_SHARE = 0.30  # more unknown / one-letter tokens than this: the language is not covered
SAMPLE_TEXTS = 200
MAX_CHARS = 2000  # of each sampled text (a long article says no more than its first page)
_MARKERS = ("##", "\u2581", "\u0120")  # WordPiece continuation, SentencePiece and byte-BPE word starts


def uncovered_share(tokenizer: Any, texts: Sequence[str]) -> tuple[float, int]:
    """(share of unknown or single-letter tokens, number of tokens) over ``texts``."""
    unk = getattr(tokenizer, "unk_token_id", None)
    total = uncovered = 0
    for text in texts:
        ids = tokenizer(text[:MAX_CHARS], add_special_tokens=False)["input_ids"]
        total += len(ids)
        for token_id, piece in zip(ids, tokenizer.convert_ids_to_tokens(ids), strict=True):
            if unk is not None and token_id == unk:
                uncovered += 1
                continue
            for marker in _MARKERS:
                piece = piece.removeprefix(marker)
            if len(piece) == 1 and piece.isalpha():
                uncovered += 1
    return (uncovered / total if total else 0.0), total


def sample_texts(examples: Sequence[Example], n: int = SAMPLE_TEXTS, seed: int = 0) -> list[str]:
    """A fixed sample of the non-empty texts (the same one on every run)."""
    texts = [ex.text for ex in examples if ex.text.strip()]
    if len(texts) <= n:
        return texts
    return random.Random(seed).sample(texts, n)


def language_coverage(family_class: type, params: Any, examples: Sequence[Example]) -> dict[str, Any] | None:
    """The measure for one model on one training set, or None where it cannot be taken (a family
    without a tokenizer to ask, a model that cannot be loaded: the cell itself reports that).
    The dict: language (the examples' ``language`` metadata, None without), model, share,
    threshold, texts, tokens, covered."""
    load = getattr(family_class, "coverage_tokenizer", None)
    texts = sample_texts(examples)
    if load is None or not texts:
        return None
    try:
        tokenizer = load(params)
    except Exception:  # noqa: BLE001 - a missing or unreachable model fails its cell with its own message
        return None
    share, tokens = uncovered_share(tokenizer, texts)
    languages = {ex.metadata.get("language") for ex in examples} - {None}
    return {
        "language": ", ".join(sorted(map(str, languages))) or None,
        "model": getattr(params, "model", None),
        "share": share,
        "threshold": UNCOVERED_SHARE,
        "texts": len(texts),
        "tokens": tokens,
        "covered": share <= UNCOVERED_SHARE,
    }


def coverage_warning(dataset: str, model_id: str, coverage: dict[str, Any]) -> str:
    """The one line bench prints before training a model whose tokenizer misses the language."""
    language = f"language {coverage['language']}" if coverage.get("language") else "these texts"
    return (
        f"warning: {dataset} / {model_id}: {coverage['share']:.0%} of the tokens of {coverage['texts']} "
        f"training texts are unknown or single letters to the tokenizer of {coverage['model']} "
        f"(over {coverage['threshold']:.0%}): it likely does not cover {language}; expect a model "
        "that predicts one class (choose a model that covers it)"
    )
