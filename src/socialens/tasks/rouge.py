"""ROUGE-1/2/L for summaries in any script, with ``rouge-score`` doing the counting.

``rouge-score``'s default tokenizer lowercases and replaces every character outside ``[a-z0-9]``
with a space, so an Arabic or Hindi summary has no tokens at all and scores 0 against anything,
its own copy included. :func:`tokenize` keeps words of every script instead:

* NFKC-normalised (Arabic presentation forms become plain letters), case-folded, the Arabic
  tatweel (``ـ``, a stretching stroke, not a letter) removed;
* a word is a run of letters, combining marks and digits (``[\\p{L}\\p{M}\\p{N}]+``): Devanagari
  vowel signs and viramas and Arabic harakat are marks (``\\p{M}``) and stay inside their word,
  where Python's ``re`` ``\\w`` would cut it; punctuation separates words and is no token;
* no stemming, in any language. rouge-score stems only inside its own (English-only) tokenizer;
  a Porter stem of an Arabic or Hindi word is noise, and stemming English alone would make the
  English column of a per-language table not comparable to the others. English scores are
  therefore a little lower than with ``use_stemmer=True`` (XL-Sum's own scorer stems English).

Scores per pair are precision / recall / F1 from ``rouge_scorer.RougeScorer`` given this
tokenizer; :func:`bootstrap_mean_ci` gives percentile intervals of per-example means.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import numpy as np
import regex

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
TOKENIZER_NOTE = "NFKC, casefold, words [\\p{L}\\p{M}\\p{N}]+, no stemming"

_WORD = regex.compile(r"[\p{L}\p{M}\p{N}]+")
_TATWEEL = "\u0640"
# Upper bound on resample-index cells held in memory at once (resamples x examples).
_BOOTSTRAP_CHUNK_CELLS = 4_000_000


def tokenize(text: str) -> list[str]:
    """The words ROUGE counts in ``text`` (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text or "").casefold().replace(_TATWEEL, "")
    return _WORD.findall(text)


def word_count(text: str) -> int:
    return len(tokenize(text))


class ScriptTokenizer:
    """The tokenizer interface ``rouge_score.rouge_scorer.RougeScorer`` takes: ``tokenize(text)``."""

    def tokenize(self, text: str) -> list[str]:
        return tokenize(text)


@lru_cache(maxsize=1)
def scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=ScriptTokenizer())


def rouge(prediction: str, reference: str) -> dict[str, dict[str, float]]:
    """``{rouge_type: {"precision", "recall", "f1"}}`` of ``prediction`` against ``reference``."""
    scores = scorer().score(reference, prediction)  # rouge-score takes (target, prediction)
    return {
        name: {"precision": s.precision, "recall": s.recall, "f1": s.fmeasure}
        for name, s in ((name, scores[name]) for name in ROUGE_TYPES)
    }


def bootstrap_mean_ci(
    values: np.ndarray, *, n_bootstrap: int, seed: int, ci: float
) -> list[list[float]] | None:
    """Percentile bootstrap intervals of the column means of ``values`` (examples x metrics),
    every column resampled with the same example indices; None without examples or resamples."""
    values = np.asarray(values, dtype=float)
    n = values.shape[0]
    if n == 0 or n_bootstrap <= 0:
        return None
    rng = np.random.default_rng(seed)
    means = np.empty((n_bootstrap, values.shape[1]))
    rows = max(1, _BOOTSTRAP_CHUNK_CELLS // n)
    for start in range(0, n_bootstrap, rows):
        stop = min(n_bootstrap, start + rows)
        index = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[index].mean(axis=1)
    low, high = np.percentile(means, [100 * (1 - ci) / 2, 100 * (1 + ci) / 2], axis=0)
    return [[float(lo), float(hi)] for lo, hi in zip(low, high, strict=True)]
