"""Entity metrics computed from prediction records only (never from a model).

Conventions:

* ``gold`` and ``predicted`` are IOB2 tag lists, one tag per token. Entities are read from them by
  seqeval in strict IOB2 mode (``seqeval.scheme.Entities(..., IOB2)``), so every number here is
  seqeval's ``mode="strict", scheme=IOB2``: an ``I-`` that does not continue an entity of its type
  opens none, and a predicted entity counts only with exactly the gold boundaries and type.
* Records whose gold is ``None`` are not scored (``n_unlabelled``). A gold that is not a list of
  ``O`` / ``B-X`` / ``I-X`` tags is a ValueError naming the record.
* A record that is not ``ok`` (refused, invalid, error) predicts no entity: every gold entity of
  its sentence is missed. An ``ok`` record whose prediction is not a tag list of the sentence's
  length is counted as ``invalid``. ``status`` gives the counts and rates of the four statuses.
* micro P/R/F1 over all entities; ``per_class`` per type (the schema's types, then any other type
  the records hold); ``macro_f1`` the mean F1 over the types that occur in gold or predictions
  (seqeval's ``average="macro"``).
* ``hallucination_rate``: entities a prompted LLM listed that are nowhere in the sentence
  (``details["hallucinated"]``), over all entities it listed that were tagged or hallucinated;
  None when there are none (its interval leaves out resamples without any). ``entities`` holds
  the totals behind it, with the listed entities whose type is not in the schema
  (``invalid_type``) and those dropped for overlapping a kept one (``overlapping``).
* Confidence intervals: percentile bootstrap over sentences with a fixed seed. Per-sentence
  true-positive / predicted / gold counts per type are computed once; a resample is a vector of
  sentence weights, so each resample's totals are one matrix product.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from socialens.core.types import PredictionRecord, Status
from socialens.tasks.tags import OUTSIDE

SCALAR_METRICS = ("micro_f1", "micro_precision", "micro_recall", "macro_f1", "hallucination_rate")
STATUS_NAMES = [status.value for status in Status]
MISSING_SLICE_VALUE = "(missing)"
_CHUNK_CELLS = 4_000_000  # resample weights held in memory at once (resamples x sentences)
_DETAIL_COUNTS = ("hallucinated", "invalid_type", "overlapping")


@dataclass
class SentenceCounts:
    """Per-sentence entity counts of scored records: ``tp`` / ``gold`` / ``pred`` of shape
    (sentences, types), the detail counts of shape (sentences,), and each record's status after
    the malformed-prediction rule."""

    types: list[str]
    tp: np.ndarray
    gold: np.ndarray
    pred: np.ndarray
    hallucinated: np.ndarray
    invalid_type: np.ndarray
    overlapping: np.ndarray
    status: list[str]
    gold_entities: list[list[tuple[str, int, int]]]
    pred_entities: list[list[tuple[str, int, int]]]


def is_tag_list(value: Any, length: int | None = None) -> bool:
    """Whether ``value`` is a list of ``O`` / ``B-X`` / ``I-X`` tags (of ``length`` tags)."""
    if not isinstance(value, list | tuple) or (length is not None and len(value) != length):
        return False
    return all(
        isinstance(tag, str) and (tag == OUTSIDE or (tag[:2] in ("B-", "I-") and len(tag) > 2))
        for tag in value
    )


def strict_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """``(type, start, end)`` of the entities seqeval's strict IOB2 mode reads in ``tags``."""
    from seqeval.scheme import IOB2, Entities

    return [(e.tag, e.start, e.end) for e in Entities([list(tags)], IOB2).entities[0]]


def sentence_counts(records: Sequence[PredictionRecord], labels: Sequence[str]) -> SentenceCounts:
    """Count, per scored record (gold not None), gold, predicted and matched entities per type."""
    from seqeval.scheme import IOB2, Entities

    golds, preds, statuses, extra = [], [], [], {name: [] for name in _DETAIL_COUNTS}
    for record in records:
        if not is_tag_list(record.gold):
            raise ValueError(
                f"record {record.id!r}: gold {str(record.gold)[:80]!r} is not a list of IOB2 tags (O, B-X, I-X)"
            )
        gold = list(record.gold)
        status = Status(record.status).value
        if status == Status.OK.value and not is_tag_list(record.predicted, len(gold)):
            status = Status.INVALID.value  # an ok record without a usable prediction
        ok = status == Status.OK.value
        golds.append(gold)
        preds.append(list(record.predicted) if ok else [OUTSIDE] * len(gold))
        statuses.append(status)
        details = record.details or {}
        for name in _DETAIL_COUNTS:
            value = details.get(name, 0) if ok else 0
            extra[name].append(
                int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0
            )
    gold_entities = (
        [[(e.tag, e.start, e.end) for e in s] for s in Entities(golds, IOB2).entities] if golds else []
    )
    pred_entities = (
        [[(e.tag, e.start, e.end) for e in s] for s in Entities(preds, IOB2).entities] if preds else []
    )
    seen = {kind for sentence in gold_entities + pred_entities for kind, _, _ in sentence}
    types = list(labels) + sorted(seen - set(labels))
    column = {kind: i for i, kind in enumerate(types)}
    n, t = len(golds), len(types)
    tp, gold_n, pred_n = (np.zeros((n, t), dtype=np.int64) for _ in range(3))
    for i, (gold, pred) in enumerate(zip(gold_entities, pred_entities, strict=True)):
        for kind, _, _ in gold:
            gold_n[i, column[kind]] += 1
        for kind, _, _ in pred:
            pred_n[i, column[kind]] += 1
        for kind, _, _ in set(gold) & set(pred):
            tp[i, column[kind]] += 1
    return SentenceCounts(
        types=types,
        tp=tp,
        gold=gold_n,
        pred=pred_n,
        hallucinated=np.array(extra["hallucinated"], dtype=np.int64),
        invalid_type=np.array(extra["invalid_type"], dtype=np.int64),
        overlapping=np.array(extra["overlapping"], dtype=np.int64),
        status=statuses,
        gold_entities=gold_entities,
        pred_entities=pred_entities,
    )


def scores_from_totals(tp: np.ndarray, gold: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    """Entity scores from totals per type of shape ``(..., types)``, with seqeval's formulas
    (zero division gives 0; F1 = 2PR / (P + R)); macro over the types present in gold or pred."""
    tp, gold, pred = (np.asarray(a, dtype=np.float64) for a in (tp, gold, pred))

    def prf(tp_, gold_, pred_):
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(pred_ > 0, tp_ / np.where(pred_ > 0, pred_, 1), 0.0)
            recall = np.where(gold_ > 0, tp_ / np.where(gold_ > 0, gold_, 1), 0.0)
            denom = precision + recall
            f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1), 0.0)
        return precision, recall, f1

    precision, recall, f1 = prf(tp, gold, pred)
    micro_p, micro_r, micro_f1 = prf(tp.sum(axis=-1), gold.sum(axis=-1), pred.sum(axis=-1))
    present = (gold + pred) > 0
    n_present = present.sum(axis=-1)
    macro = np.where(n_present > 0, (f1 * present).sum(axis=-1) / np.maximum(n_present, 1), 0.0)
    return {
        "micro_precision": micro_p,
        "micro_recall": micro_r,
        "micro_f1": micro_f1,
        "macro_f1": macro,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def _rate(numerator: float, denominator: float) -> float | None:
    return float(numerator / denominator) if denominator else None


def metrics_block(
    counts: SentenceCounts, rows: np.ndarray, *, n_bootstrap: int, seed: int, ci: float
) -> dict[str, Any]:
    """Metrics over the sentences ``rows`` of ``counts`` (see the module docstring)."""
    n = len(rows)
    tp, gold, pred = counts.tp[rows], counts.gold[rows], counts.pred[rows]
    hallucinated = counts.hallucinated[rows]
    status_n = {name: 0 for name in STATUS_NAMES}
    for i in rows:
        status_n[counts.status[i]] += 1
    block: dict[str, Any] = {"n": n}
    totals = (tp.sum(axis=0), gold.sum(axis=0), pred.sum(axis=0))
    n_pred, n_halluc = int(totals[2].sum()), int(hallucinated.sum())
    if n == 0:
        block.update(dict.fromkeys(SCALAR_METRICS))
        block["per_class"] = {
            kind: {"precision": None, "recall": None, "f1": None, "support": 0, "predicted": 0}
            for kind in counts.types
        }
    else:
        scores = scores_from_totals(*totals)
        block.update({name: float(scores[name]) for name in ("micro_f1", "micro_precision", "micro_recall")})
        block["macro_f1"] = float(scores["macro_f1"])
        block["hallucination_rate"] = _rate(n_halluc, n_pred + n_halluc)
        block["per_class"] = {
            kind: {
                "precision": float(scores["precision"][j]),
                "recall": float(scores["recall"][j]),
                "f1": float(scores["f1"][j]),
                "support": int(totals[1][j]),
                "predicted": int(totals[2][j]),
            }
            for j, kind in enumerate(counts.types)
        }
    block["status"] = {
        "counts": status_n,
        "rates": {name: (status_n[name] / n if n else None) for name in STATUS_NAMES},
    }
    invalid_type, overlapping = int(counts.invalid_type[rows].sum()), int(counts.overlapping[rows].sum())
    listed = n_pred + n_halluc + invalid_type + overlapping
    block["entities"] = {
        "gold": int(totals[1].sum()),
        "predicted": n_pred,
        "true_positive": int(totals[0].sum()),
        "hallucinated": n_halluc,
        "invalid_type": invalid_type,
        "overlapping": overlapping,
        "invalid_type_rate": _rate(invalid_type, listed),
    }
    block["ci"] = bootstrap_ci(
        tp, gold, pred, hallucinated, counts.types, n_bootstrap=n_bootstrap, seed=seed, ci=ci
    )
    return block


def resample_weights(n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """How often each of ``n`` sentences is drawn in each of ``n_resamples`` resamples with
    replacement: shape (n_resamples, n)."""
    idx = rng.integers(0, n, size=(n_resamples, n))
    flat = idx + (np.arange(n_resamples, dtype=np.int64) * n)[:, None]
    return np.bincount(flat.ravel(), minlength=n_resamples * n).reshape(n_resamples, n)


def bootstrap_ci(
    tp: np.ndarray,
    gold: np.ndarray,
    pred: np.ndarray,
    hallucinated: np.ndarray,
    types: Sequence[str],
    *,
    n_bootstrap: int,
    seed: int,
    ci: float,
) -> dict[str, Any]:
    """Percentile bootstrap intervals (over sentences) of the scalar metrics and per-type F1."""
    info: dict[str, Any] = {"level": ci, "method": "percentile", "n_bootstrap": n_bootstrap, "seed": seed}
    n = tp.shape[0]
    if n_bootstrap <= 0 or n == 0:
        info.update(dict.fromkeys(SCALAR_METRICS))
        info["per_class_f1"] = dict.fromkeys(types)
        return info
    rng = np.random.default_rng(seed)
    # one (sentences, 3 * types + 1) matrix: a resample's totals are weights @ columns
    columns = np.concatenate([tp, gold, pred, hallucinated[:, None]], axis=1).astype(np.float64)
    t = tp.shape[1]
    totals = np.empty((n_bootstrap, columns.shape[1]))
    chunk = max(1, _CHUNK_CELLS // n)
    for start in range(0, n_bootstrap, chunk):
        stop = min(start + chunk, n_bootstrap)
        totals[start:stop] = resample_weights(n, stop - start, rng) @ columns
    scores = scores_from_totals(totals[:, :t], totals[:, t : 2 * t], totals[:, 2 * t : 3 * t])
    q = [100 * (1 - ci) / 2, 100 * (1 + ci) / 2]
    for name in ("micro_f1", "micro_precision", "micro_recall", "macro_f1"):
        low, high = np.percentile(scores[name], q)
        info[name] = [float(low), float(high)]
    listed = totals[:, 2 * t : 3 * t].sum(axis=1) + totals[:, 3 * t]
    defined = listed > 0  # a resample in which no entity is predicted has no rate: left out
    if defined.any():
        low, high = np.percentile(totals[defined, 3 * t] / listed[defined], q)
        info["hallucination_rate"] = [float(low), float(high)]
    else:
        info["hallucination_rate"] = None
    per_type = np.percentile(scores["f1"], q, axis=0)
    info["per_class_f1"] = {
        kind: [float(per_type[0, j]), float(per_type[1, j])] for j, kind in enumerate(types)
    }
    return info


def slice_value(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING_SLICE_VALUE
    return str(value)


def compute_entity_metrics(
    records: Sequence[PredictionRecord],
    labels: Sequence[str],
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    slice_keys: Sequence[str] | None = None,
    slice_bootstrap: int | None = None,
) -> dict[str, Any]:
    """All entity metrics of one run as a JSON-serialisable dict (see the module docstring):
    ``labels``, ``n``, ``n_total``, ``n_unlabelled``, the scalar metrics, ``per_class``, ``status``,
    ``entities``, ``ci`` and, for ``slice_keys`` (``record.metadata`` keys), ``slices`` with the
    same block per value (``slice_bootstrap`` resamples, default ``min(n_bootstrap, 200)``)."""
    labels = list(labels)
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate entity types: {labels}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    records = list(records)
    scored = [r for r in records if r.gold is not None]
    counts = sentence_counts(scored, labels)
    block = metrics_block(counts, np.arange(len(scored)), n_bootstrap=n_bootstrap, seed=seed, ci=ci)
    result = {
        "labels": labels,
        "n": block.pop("n"),
        "n_total": len(records),
        "n_unlabelled": len(records) - len(scored),
        **block,
    }
    if slice_keys:
        n_slice = min(n_bootstrap, 200) if slice_bootstrap is None else slice_bootstrap
        slices: dict[str, dict[str, Any]] = {}
        for key in slice_keys:
            groups: dict[str, list[int]] = {}
            for i, record in enumerate(scored):
                groups.setdefault(slice_value(record.metadata.get(key)), []).append(i)
            slices[key] = {
                value: metrics_block(counts, np.array(groups[value]), n_bootstrap=n_slice, seed=seed, ci=ci)
                for value in sorted(groups)
            }
        result["slices"] = slices
    return result
