"""What every multi-label family shares: records from per-label probabilities and a decision
threshold, and the threshold tuned on dev (one global value that maximises dev micro-F1)."""

from __future__ import annotations

from socialens.core.types import Example, PredictionRecord, Status

DEFAULT_THRESHOLD = 0.5  # a label is predicted when its probability reaches this
# thresholds tried on dev: the one with the best micro-F1 wins (ties: the nearest to 0.5)
THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))


def tune_threshold(probabilities, gold) -> tuple[float, float]:
    """(threshold, micro-F1) of the THRESHOLD_GRID value whose "probability >= threshold" gives
    the best micro-F1 against the boolean ``gold`` matrix; ties go to the value nearest 0.5."""
    import numpy as np

    probabilities, gold = np.asarray(probabilities), np.asarray(gold, dtype=bool)
    scored = []
    for threshold in THRESHOLD_GRID:
        predicted = probabilities >= threshold
        tp = int((predicted & gold).sum())
        errors = int((predicted ^ gold).sum())
        f1 = 2 * tp / (2 * tp + errors) if tp + errors else 0.0
        scored.append(((f1, -abs(threshold - DEFAULT_THRESHOLD), -threshold), threshold, f1))
    _, threshold, f1 = max(scored)
    return float(threshold), float(f1)


def multilabel_records(
    examples: list[Example], names: list[str], probabilities, threshold: float, latency: float
) -> list[PredictionRecord]:
    """One ok record per example: the labels whose probability reaches ``threshold`` (schema
    order; ``[]`` when none does) and every label's probability as its score."""
    records = []
    for ex, row in zip(examples, probabilities, strict=True):
        scores = {name: float(value) for name, value in zip(names, row, strict=True)}
        records.append(
            PredictionRecord(
                id=ex.id,
                gold=ex.label,
                predicted=[name for name in names if scores[name] >= threshold],
                status=Status.OK,
                scores=scores,
                latency_s=latency,
                metadata=dict(ex.metadata),
            )
        )
    return records
