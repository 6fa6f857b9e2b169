"""Paired significance tests of two models scored on the same test examples.

* ``paired_bootstrap``: resample the test examples with replacement (one resample shared by both
  models and by every seed of each), score both through the task's own metric function on each
  resample and take the percentile interval of the difference. With several seeds each model's
  value on a resample is the mean over its seeds, so the interval is that of the difference of the
  seed means the table shows. Single-label classification goes through confusion counts
  (``f1_from_counts``: the same formulas as ``compute_metrics``), every other task through
  ``Task.metrics`` on the resampled records.
* ``mcnemar``: the exact (binomial) McNemar test on the examples one model got right and the other
  wrong, with the continuity-corrected chi-square statistic beside it (scipy.stats).

Resample indices are drawn exactly as ``classification_metrics.bootstrap_counts`` draws them
(``default_rng(seed).integers(0, n, size=(chunk, n))`` per chunk), so a direct numpy loop with the
same seed reproduces every interval.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from socialens.core.registry import TASKS
from socialens.core.types import PredictionRecord, Status
from socialens.tasks.classification_metrics import encode, f1_from_counts, official_metric

RESAMPLE_CHUNK_CELLS = 4_000_000  # rows x examples of resample indices held at once
# Task.metrics once per resample is slow for a task that scores each text anew (ROUGE); these
# tasks get at most this many resamples (the result records how many were used)
GENERIC_MAX_BOOTSTRAP = 300
ALPHA = 0.05


@dataclass
class PairedModel:
    """One model's records on a test set: one list per seed, each in any order (paired by id)."""

    name: str
    seeds: dict[int, list[PredictionRecord]]


def resample_chunks(n: int, n_bootstrap: int, seed: int) -> Iterator[np.ndarray]:
    """Index arrays of shape (rows, n), ``n_bootstrap`` rows in all, from ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    chunk = max(1, RESAMPLE_CHUNK_CELLS // max(n, 1))
    for start in range(0, n_bootstrap, chunk):
        yield rng.integers(0, n, size=(min(chunk, n_bootstrap - start), n))


def common_ids(models: Sequence[PairedModel]) -> list[str]:
    """Ids of the scored (gold not None) examples every seed of every model has, in the first
    seed's order: the examples a paired test can use."""
    first = next(iter(models[0].seeds.values()))
    ids = [r.id for r in first if r.gold is not None]
    keep = set(ids)
    for model in models:
        for records in model.seeds.values():
            keep &= {r.id for r in records if r.gold is not None}
    return [i for i in ids if i in keep]


def aligned(records: list[PredictionRecord], ids: Sequence[str]) -> list[PredictionRecord]:
    by_id = {r.id: r for r in records}
    return [by_id[i] for i in ids]


def classification_values(name: str, labels: Sequence[str]) -> Callable:
    """``values(records, idx)``: the metric ``name`` on each resample (rows of ``idx``) of a
    single-label task's records, from confusion counts."""
    labels = list(labels)
    k = len(labels)

    def values(records: list[PredictionRecord], idx: np.ndarray) -> np.ndarray:
        gold, pred = encode(records, labels)
        codes = gold * (k + 1) + np.where(pred < k, pred, k)  # not ok: the sentinel column k
        cells = k * (k + 1)
        rows = idx.shape[0]
        flat = codes[idx] + (np.arange(rows, dtype=np.int64) * cells)[:, None]
        counts = np.bincount(flat.ravel(), minlength=rows * cells).reshape(rows, k, k + 1)
        found = f1_from_counts(counts)
        tp = np.diagonal(counts[:, :, :k], axis1=-2, axis2=-1).sum(axis=-1)
        predicted = counts[:, :, :k].sum(axis=(-2, -1))
        n = counts.sum(axis=(-2, -1))
        with np.errstate(divide="ignore", invalid="ignore"):
            micro = np.where(n + predicted > 0, 2.0 * tp / (n + predicted), 0.0)
        out = np.empty(rows)
        for row in range(rows):
            metrics = {
                "labels": labels,
                "accuracy": float(found["accuracy"][row]),
                "macro_f1": float(found["macro_f1"][row]),
                "micro_f1": float(micro[row]),
                "weighted_f1": float(found["weighted_f1"][row]),
                "macro_precision": float(found["precision"][row].mean()),
                "macro_recall": float(found["recall"][row].mean()),
                "per_class": {
                    label: {
                        "f1": float(found["per_class_f1"][row, i]),
                        "precision": float(found["precision"][row, i]),
                        "recall": float(found["recall"][row, i]),
                    }
                    for i, label in enumerate(labels)
                },
            }
            out[row] = official_metric(metrics, name)
        return out

    return values


def task_values(task_type: str, name: str, labels: Sequence[str]) -> Callable:
    """``values(records, idx)`` for any task: its own ``metrics`` on each resample's records."""
    task = TASKS.get(task_type)()
    scalars = list(task.scalar_metrics)

    def values(records: list[PredictionRecord], idx: np.ndarray) -> np.ndarray:
        out = np.empty(idx.shape[0])
        for row, picks in enumerate(idx):
            metrics = task.metrics([records[i] for i in picks], labels, n_bootstrap=0)
            metrics.setdefault("scalar_metrics", scalars)
            value = official_metric(metrics, name)
            out[row] = np.nan if value is None else value
        return out

    return values


def metric_values(task_type: str, name: str, labels: Sequence[str]) -> tuple[Callable, bool]:
    """The resample scorer for a task and whether it is the vectorised single-label one."""
    if task_type == "classification":
        return classification_values(name, labels), True
    return task_values(task_type, name, labels), False


def resampled_values(
    model: PairedModel,
    ids: Sequence[str],
    values: Callable,
    *,
    n_bootstrap: int,
    seed: int,
    cache: dict | None = None,
) -> tuple[float, np.ndarray]:
    """(the seed-mean metric on ``ids``, its value on each resample); ``cache`` keeps them per
    model and example set, so a model compared with several others is scored once."""
    key = (model.name, hash(tuple(ids)), n_bootstrap, seed)
    if cache is not None and key in cache:
        return cache[key]
    records = [aligned(seed_records, ids) for seed_records in model.seeds.values()]

    def seed_mean(idx: np.ndarray) -> np.ndarray:
        return np.mean([values(seed_records, idx) for seed_records in records], axis=0)

    observed = float(seed_mean(np.arange(len(ids))[None, :])[0])
    chunks = [seed_mean(idx) for idx in resample_chunks(len(ids), n_bootstrap, seed)]
    found = (observed, np.concatenate(chunks) if chunks else np.empty(0))
    if cache is not None:
        cache[key] = found
    return found


def paired_bootstrap(
    a: PairedModel,
    b: PairedModel,
    *,
    task_type: str,
    metric: str,
    labels: Sequence[str],
    n_bootstrap: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    cache: dict | None = None,
) -> dict[str, Any]:
    """The difference ``metric(a) - metric(b)`` (seed means) on the examples both models scored,
    its percentile bootstrap interval and a two-sided bootstrap p-value (twice the smaller share of
    resampled differences on either side of 0). ``cache`` (a dict kept across calls with the same
    task, metric and labels) saves scoring a model again against another one."""
    ids = common_ids([a, b])
    values, vectorised = metric_values(task_type, metric, labels)
    if not vectorised:
        n_bootstrap = min(n_bootstrap, GENERIC_MAX_BOOTSTRAP)
    n_bootstrap = max(n_bootstrap, 0)
    result: dict[str, Any] = {
        "n": len(ids),
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "level": ci,
        "seeds": {a.name: sorted(a.seeds), b.name: sorted(b.seeds)},
    }
    if not ids:
        return result | {"difference": None, "ci": None, "p": None}
    options = {"n_bootstrap": n_bootstrap, "seed": seed, "cache": cache}
    a_value, a_resampled = resampled_values(a, ids, values, **options)
    b_value, b_resampled = resampled_values(b, ids, values, **options)
    result["difference"] = a_value - b_value
    if n_bootstrap == 0:
        return result | {"ci": None, "p": None}
    diffs = a_resampled - b_resampled
    diffs = diffs[~np.isnan(diffs)]
    low, high = np.percentile(diffs, [100 * (1 - ci) / 2, 100 * (1 + ci) / 2])
    p = min(1.0, 2 * min(float(np.mean(diffs <= 0)), float(np.mean(diffs >= 0))))
    return result | {"ci": [float(low), float(high)], "p": p}


def correct(record: PredictionRecord) -> bool:
    """A single-label prediction is right: ok and equal to the gold label."""
    return Status(record.status) is Status.OK and record.predicted == record.gold


def mcnemar(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> dict[str, Any]:
    """McNemar's test of paired right/wrong outcomes: ``b`` examples only model a got right, ``c``
    only model b; exact two-sided binomial p-value (scipy.stats.binomtest, p = 0.5 over b + c)
    and the continuity-corrected chi-square statistic with its p-value (1 degree of freedom)."""
    a_correct, b_correct = np.asarray(a_correct, bool), np.asarray(b_correct, bool)
    if a_correct.shape != b_correct.shape:
        raise ValueError(f"paired outcomes differ in length: {a_correct.shape} vs {b_correct.shape}")
    only_a = int(np.sum(a_correct & ~b_correct))
    only_b = int(np.sum(~a_correct & b_correct))
    discordant = only_a + only_b
    if discordant == 0:
        return {"b": 0, "c": 0, "p_exact": 1.0, "chi2": 0.0, "p_chi2": 1.0}
    exact = float(stats.binomtest(min(only_a, only_b), discordant, 0.5).pvalue)
    chi2 = (abs(only_a - only_b) - 1) ** 2 / discordant
    return {
        "b": only_a,
        "c": only_b,
        "p_exact": min(1.0, exact),
        "chi2": float(chi2),
        "p_chi2": float(stats.chi2.sf(chi2, 1)),
    }


def paired_mcnemar(a: PairedModel, b: PairedModel) -> dict[str, Any] | None:
    """McNemar on the first seed both models have (a pooled test over seeds would count one
    example several times); None when they share no seed or no example."""
    shared = sorted(set(a.seeds) & set(b.seeds))
    ids = common_ids([a, b])
    if not shared or not ids:
        return None
    seed = shared[0]
    result = mcnemar(
        [correct(r) for r in aligned(a.seeds[seed], ids)], [correct(r) for r in aligned(b.seeds[seed], ids)]
    )
    return result | {"seed": seed, "n": len(ids)}
