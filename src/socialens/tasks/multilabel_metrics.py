"""Multi-label metrics computed from prediction records only (never from a model).

A record's ``gold`` and ``predicted`` are lists of schema label names (``[]``: no label applies).

Conventions:

* Records whose gold is ``None`` are not scored; they are counted as ``n_unlabelled``.
* A record that is not ``ok`` (refused, invalid, error) counts as WRONG. For the label-wise scores
  (per-label, micro and macro P/R/F1) it predicts no label, so it loses every gold label it has;
  for the example-wise scores it is wrong outright: its samples-F1 and subset accuracy are 0 and
  its Hamming loss is 1 (every label decision wrong), even when its gold is ``[]``. An ``ok``
  record whose prediction is not a list of names in ``labels`` is treated as ``invalid``.
* Label-wise F1 follows scikit-learn with ``zero_division=0`` (a label without support and without
  predictions scores 0 in the macro average, as in classification). ``samples_f1`` is
  scikit-learn's ``average="samples"`` with ``zero_division=1``: a correct "none" answer (gold and
  prediction both empty) is a perfect example.
* Confidence intervals are percentile bootstrap intervals over examples with a fixed seed,
  computed vectorised: per example and label tp / fp / fn are counted once, and each resample is
  a row of example weights, so its counts are one matrix product.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from socialens.core.types import PredictionRecord, Status
from socialens.tasks.base import status_counts
from socialens.tasks.classification_metrics import (
    COLLAPSE_SHARE,
    slice_value,
)

SCALAR_METRICS = (
    "micro_f1",
    "macro_f1",
    "samples_f1",
    "subset_accuracy",
    "hamming_loss",
    "micro_precision",
    "micro_recall",
    "macro_precision",
    "macro_recall",
)
# Upper bound on resample-weight cells held in memory at once (rows x examples).
BOOTSTRAP_CHUNK_CELLS = 4_000_000


def label_set_key(labels: Sequence[str] | None) -> str | None:
    """One string for a label set: the names sorted and joined by "+", "none" for ``[]``."""
    if labels is None:
        return None
    return "+".join(sorted(labels)) or "none"


def indicators(
    records: Sequence[PredictionRecord], labels: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Gold and predicted indicator matrices ``(n, K)`` (bool, columns in ``labels`` order) and each
    record's effective status (an ok record with a malformed prediction reads as invalid; a non-ok
    record predicts nothing). A gold that is not a list of names in ``labels`` is a ValueError."""
    index = {name: i for i, name in enumerate(labels)}
    n, k = len(records), len(labels)
    gold = np.zeros((n, k), dtype=bool)
    pred = np.zeros((n, k), dtype=bool)
    statuses: list[str] = []
    for i, record in enumerate(records):
        if not isinstance(record.gold, list | tuple) or any(g not in index for g in record.gold):
            raise ValueError(
                f"record {record.id!r}: gold {record.gold!r} is not a list of labels from {list(labels)}"
            )
        gold[i, [index[g] for g in record.gold]] = True
        status = Status(record.status).value
        if status == Status.OK.value:
            predicted = record.predicted
            if isinstance(predicted, list | tuple) and all(
                isinstance(p, str) and p in index for p in predicted
            ):
                pred[i, [index[p] for p in predicted]] = True
            else:
                status = Status.INVALID.value
        statuses.append(status)
    return gold, pred, statuses


def scores_from_counts(
    tp: np.ndarray,
    fp: np.ndarray,
    fn: np.ndarray,
    n: np.ndarray | int,
    samples_f1_sum: np.ndarray | float,
    exact_sum: np.ndarray | float,
    hamming_sum: np.ndarray | float,
) -> dict[str, np.ndarray]:
    """Every scalar metric and the per-label P/R/F1 from label counts of shape ``(..., K)`` and
    example-wise sums of shape ``(...)`` (one resample per leading index), ``zero_division=0``."""
    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
        stp, sfp, sfn = tp.sum(axis=-1), fp.sum(axis=-1), fn.sum(axis=-1)
        micro_p = np.where(stp + sfp > 0, stp / (stp + sfp), 0.0)
        micro_r = np.where(stp + sfn > 0, stp / (stp + sfn), 0.0)
        micro_f1 = np.where(2 * stp + sfp + sfn > 0, 2 * stp / (2 * stp + sfp + sfn), 0.0)
        per_example = {
            name: np.where(n > 0, np.asarray(value, dtype=np.float64) / n, 0.0)
            for name, value in (
                ("samples_f1", samples_f1_sum),
                ("subset_accuracy", exact_sum),
                ("hamming_loss", hamming_sum),
            )
        }
    return {
        "micro_f1": micro_f1,
        "macro_f1": f1.mean(axis=-1),
        **per_example,
        "micro_precision": micro_p,
        "micro_recall": micro_r,
        "macro_precision": precision.mean(axis=-1),
        "macro_recall": recall.mean(axis=-1),
        "per_class_f1": f1,
        "precision": precision,
        "recall": recall,
    }


def example_counts(gold: np.ndarray, pred: np.ndarray, ok: np.ndarray) -> dict[str, np.ndarray]:
    """Per example: tp / fp / fn per label ``(n, K)`` and the example-wise scores ``(n,)``
    (samples-F1, exact match, Hamming loss; a non-ok example scores 0 / 0 / 1)."""
    k = gold.shape[1]
    tp = (gold & pred).astype(np.int64)
    fp = (~gold & pred).astype(np.int64)
    fn = (gold & ~pred).astype(np.int64)
    stp, errors = tp.sum(axis=1), fp.sum(axis=1) + fn.sum(axis=1)
    denom = 2 * stp + errors
    with np.errstate(divide="ignore", invalid="ignore"):
        sample_f1 = np.where(denom > 0, 2 * stp / np.maximum(denom, 1), 1.0)
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "samples_f1": np.where(ok, sample_f1, 0.0),
        "exact": np.where(ok, errors == 0, False).astype(np.float64),
        "hamming": np.where(ok, errors / max(k, 1), 1.0),
    }


def bootstrap_weights(n: int, n_bootstrap: int, seed: int) -> Iterable[np.ndarray]:
    """Resamples with replacement of ``n`` examples as chunks of weight rows ``(rows, n)``: how
    often each example was drawn, one row per resample (fixed seed)."""
    rng = np.random.default_rng(seed)
    chunk = max(1, BOOTSTRAP_CHUNK_CELLS // max(n, 1))
    for start in range(0, n_bootstrap, chunk):
        rows = min(chunk, n_bootstrap - start)
        idx = rng.integers(0, n, size=(rows, n)) + (np.arange(rows, dtype=np.int64) * n)[:, None]
        yield np.bincount(idx.ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)


def bootstrap_ci(
    counts: dict[str, np.ndarray], labels: Sequence[str], *, n_bootstrap: int, seed: int, ci: float
) -> dict[str, Any]:
    """Percentile bootstrap intervals for every scalar metric and the per-label F1."""
    info: dict[str, Any] = {"level": ci, "method": "percentile", "n_bootstrap": n_bootstrap, "seed": seed}
    n = len(counts["samples_f1"])
    if n_bootstrap <= 0 or n == 0:
        info.update(dict.fromkeys(SCALAR_METRICS))
        info["per_class_f1"] = dict.fromkeys(labels)
        return info
    per_label = np.stack([counts["tp"], counts["fp"], counts["fn"]], axis=0).astype(np.float64)  # (3, n, K)
    per_example = np.stack([counts["samples_f1"], counts["exact"], counts["hamming"]], axis=1)  # (n, 3)
    chunks: dict[str, list[np.ndarray]] = {}
    for weights in bootstrap_weights(n, n_bootstrap, seed):
        tp, fp, fn = (weights @ part for part in per_label)
        sums = weights @ per_example
        stats = scores_from_counts(tp, fp, fn, n, sums[:, 0], sums[:, 1], sums[:, 2])
        for name in (*SCALAR_METRICS, "per_class_f1"):
            chunks.setdefault(name, []).append(stats[name])
    q = [100 * (1 - ci) / 2, 100 * (1 + ci) / 2]
    for name in SCALAR_METRICS:
        low, high = np.percentile(np.concatenate(chunks[name]), q)
        info[name] = [float(low), float(high)]
    per_class = np.percentile(np.concatenate(chunks["per_class_f1"], axis=0), q, axis=0)
    info["per_class_f1"] = {
        label: [float(per_class[0, i]), float(per_class[1, i])] for i, label in enumerate(labels)
    }
    return info


def _block(
    records: list[PredictionRecord], labels: list[str], *, n_bootstrap: int, seed: int, ci: float
) -> dict[str, Any]:
    gold, pred, statuses = indicators(records, labels)
    ok = np.array([s == Status.OK.value for s in statuses], dtype=bool)
    counts = example_counts(gold, pred, ok)
    n = len(records)
    block: dict[str, Any] = {"n": n}
    if n == 0:
        block.update(dict.fromkeys(SCALAR_METRICS))
        block["per_class"] = {
            label: {"precision": None, "recall": None, "f1": None, "support": 0, "predicted": 0}
            for label in labels
        }
    else:
        stats = scores_from_counts(
            counts["tp"].sum(axis=0),
            counts["fp"].sum(axis=0),
            counts["fn"].sum(axis=0),
            n,
            counts["samples_f1"].sum(),
            counts["exact"].sum(),
            counts["hamming"].sum(),
        )
        block.update({name: float(stats[name]) for name in SCALAR_METRICS})
        support, predicted = gold.sum(axis=0), pred.sum(axis=0)
        block["per_class"] = {
            label: {
                "precision": float(stats["precision"][i]),
                "recall": float(stats["recall"][i]),
                "f1": float(stats["per_class_f1"][i]),
                "support": int(support[i]),
                "predicted": int(predicted[i]),
            }
            for i, label in enumerate(labels)
        }
    block["status"] = status_counts(statuses)
    n_ok = int(ok.sum())
    block["cardinality"] = {
        "gold": float(gold.sum() / n) if n else None,
        "predicted": float(pred[ok].sum() / n_ok) if n_ok else None,
    }
    block["none_share"] = {
        "gold": float((~gold.any(axis=1)).mean()) if n else None,
        "predicted": float((~pred[ok].any(axis=1)).mean()) if n_ok else None,
    }
    block["ci"] = bootstrap_ci(counts, labels, n_bootstrap=n_bootstrap, seed=seed, ci=ci)
    return block


def label_set_collapse(records: Sequence[PredictionRecord]) -> dict[str, Any]:
    """The label set predicted most often (as ``label_set_key`` writes it), its share of the
    records and of their gold sets; ``collapsed`` above COLLAPSE_SHARE (a model answering "none"
    to everything has stopped telling texts apart)."""
    predicted = Counter(
        label_set_key(r.predicted)
        for r in records
        if Status(r.status) is Status.OK and isinstance(r.predicted, list | tuple)
    )
    if not records or not predicted:
        return {"label": None, "share": None, "gold_share": None, "collapsed": False}
    key, count = min(predicted.items(), key=lambda item: (-item[1], item[0]))
    share = count / len(records)
    golds = [label_set_key(r.gold) for r in records if isinstance(r.gold, list | tuple)]
    gold_share = sum(g == key for g in golds) / len(golds) if golds else None
    return {"label": key, "share": share, "gold_share": gold_share, "collapsed": share > COLLAPSE_SHARE}


def cooccurrence(label_sets: Iterable[Sequence[str]], labels: Sequence[str]) -> list[list[int]]:
    """``matrix[i][j]``: how many label sets hold both labels i and j (the diagonal: label i)."""
    index = {name: i for i, name in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for label_set in label_sets:
        present = sorted({index[name] for name in label_set if name in index})
        matrix[np.ix_(present, present)] += 1
    return matrix.tolist()


def compute_multilabel_metrics(
    records: Iterable[PredictionRecord],
    labels: Sequence[str],
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    slice_keys: Sequence[str] | None = None,
    slice_bootstrap: int | None = None,
) -> dict[str, Any]:
    """All multi-label metrics of one run as a JSON-serialisable dict (see the module docstring):
    ``labels``, ``n``, ``n_total``, ``n_unlabelled``, each of SCALAR_METRICS, ``per_class``,
    ``status``, ``ci``, ``cardinality``, ``none_share``, ``cooccurrence`` (gold, and predicted by
    ok records), ``unknown_labels`` (answer items that named no label, from parse details),
    ``collapse`` and, with ``slice_keys``, ``slices`` (``slice_bootstrap`` resamples, default
    ``min(n_bootstrap, 200)``)."""
    labels = list(labels)
    if not labels:
        raise ValueError("compute_multilabel_metrics needs at least one label")
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate labels: {labels}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    records = list(records)
    scored = [r for r in records if r.gold is not None]
    block = _block(scored, labels, n_bootstrap=n_bootstrap, seed=seed, ci=ci)
    ok_predictions = [
        r.predicted for r in scored if Status(r.status) is Status.OK and isinstance(r.predicted, list | tuple)
    ]
    unknown = [int((r.details or {}).get("n_unknown", 0) or 0) for r in records]
    result: dict[str, Any] = {
        "labels": labels,
        "n": block.pop("n"),
        "n_total": len(records),
        "n_unlabelled": len(records) - len(scored),
        **block,
        "cooccurrence": {
            "labels": labels,
            "gold": cooccurrence((r.gold for r in scored), labels),
            "predicted": cooccurrence(ok_predictions, labels),
        },
        "unknown_labels": {"records": sum(u > 0 for u in unknown), "items": sum(unknown)},
        "collapse": label_set_collapse(records),
    }
    if slice_keys:
        n_slice_boot = min(n_bootstrap, 200) if slice_bootstrap is None else slice_bootstrap
        slices: dict[str, dict[str, Any]] = {}
        for key in slice_keys:
            groups: dict[str, list[PredictionRecord]] = {}
            for record in scored:
                groups.setdefault(slice_value(record.metadata.get(key)), []).append(record)
            slices[key] = {
                value: _block(groups[value], labels, n_bootstrap=n_slice_boot, seed=seed, ci=ci)
                for value in sorted(groups)
            }
        result["slices"] = slices
    return result
