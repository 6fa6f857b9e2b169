"""Warnings attached to a row of the comparison table (bench's summary and the report share them).

- ``collapsed``: the model predicted one label for more than 95% of a test set in some seed
  (computed from the prediction records: ``metrics.prediction_collapse``, summed over seeds by
  ``aggregate_seeds``), for every family.
- ``tokenizer``: before training, the model's tokenizer turned too many tokens of a sample of the
  training texts into unknown tokens or single letters (``classifiers.coverage``): the model
  likely does not cover the dataset's language.
"""

from __future__ import annotations

from typing import Any


def collapse_flag(aggregate: dict[str, Any]) -> str | None:
    """``collapsed: NOT for 100% of the test set`` (``in 2/3 seeds`` with several), or None."""
    collapse = aggregate.get("collapse")
    if not collapse or not collapse.get("seeds"):
        return None
    labels = "/".join(str(label) for label in collapse["labels"])
    n_seeds = aggregate.get("n_seeds", 1)
    if n_seeds > 1:
        return f"collapsed in {collapse['seeds']}/{n_seeds} seeds: predicts {labels}"
    share = collapse["share"]["mean"]
    return f"collapsed: predicts {labels} for {share:.0%} of the test set"


def coverage_flag(coverage: dict[str, Any] | None) -> str | None:
    """``tokenizer: 84% unknown or 1-letter tokens (ar)`` for a language the tokenizer does not
    cover, or None."""
    if not coverage or coverage.get("covered", True):
        return None
    language = f" ({coverage['language']})" if coverage.get("language") else ""
    return f"tokenizer: {coverage['share']:.0%} unknown or 1-letter tokens{language}"


def row_flags(aggregate: dict[str, Any] | None, coverage: dict[str, Any] | None = None) -> list[str]:
    """Every flag of one table row, tokenizer coverage first (it explains a collapse)."""
    flags = [coverage_flag(coverage), collapse_flag(aggregate or {})]
    return [flag for flag in flags if flag]
