"""Classification metrics computed from prediction records only (never from a model).

Conventions (every report relies on them):

* Records whose gold is ``None`` are not scored; they are counted as ``n_unlabelled``.
* A record that is not ``ok`` (refused, invalid, error) counts as WRONG for every metric. It is
  mapped to a sentinel prediction that is not one of ``labels``: it lowers the recall of its gold
  class (and accuracy) but is not a class of its own in macro averaging. An ``ok`` record whose
  predicted label is not one of ``labels`` (or is None) is treated as ``invalid``.
* F1 uses ``labels=labels`` and ``zero_division=0``: a schema class with no support and no
  predictions contributes an F1 of 0 to the macro average (scikit-learn's behaviour with an
  explicit label list). Micro precision therefore ignores non-ok records (they are no class), so
  ``micro_f1`` can differ from ``accuracy`` when there are refusals; ``accuracy`` counts them wrong.
* The confusion matrix has one row per gold label (schema order) and the columns
  ``labels + ["refused", "invalid", "error"]`` (always all three), so a reader sees how many of each
  gold class were refused, unparseable or failed.
* Confidence intervals are percentile bootstrap intervals over examples with a fixed seed,
  computed vectorised from per-resample confusion counts.
* ``collapse``: the label predicted most often and its share of all the records (unlabelled ones
  too; a non-ok record predicts no label). A model predicting one label for more than
  ``COLLAPSE_SHARE`` of a test set is ``collapsed`` (it has stopped telling texts apart, e.g. an
  English-only model on Arabic); the gold share of that label says how much that costs.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from socialens.core.errors import ConfigError
from socialens.core.types import PredictionRecord, Status

NON_OK_COLUMNS = [Status.REFUSED.value, Status.INVALID.value, Status.ERROR.value]
STATUS_NAMES = [Status.OK.value, *NON_OK_COLUMNS]
SCALAR_METRICS = ["accuracy", "macro_f1", "micro_f1", "weighted_f1", "macro_precision", "macro_recall"]
MISSING_SLICE_VALUE = "(missing)"
COLLAPSE_SHARE = 0.95  # one label predicted for more than this share of a test set: collapsed
# Upper bound on resample-index cells held in memory at once (rows x examples).
_BOOTSTRAP_CHUNK_CELLS = 4_000_000


def compute_metrics(
    records: Iterable[PredictionRecord],
    labels: Sequence[str],
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    slice_keys: Sequence[str] | None = None,
    slice_bootstrap: int | None = None,
) -> dict[str, Any]:
    """All metrics of one run as a JSON-serialisable dict (see the module docstring).

    ``slice_keys`` names ``record.metadata`` keys (e.g. topic, language); each value gets the same
    metrics without the confusion matrix, with ``slice_bootstrap`` resamples (default
    ``min(n_bootstrap, 200)``)."""
    labels = list(labels)
    if not labels:
        raise ValueError("compute_metrics needs at least one label")
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate labels: {labels}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    records = list(records)
    scored = [r for r in records if r.gold is not None]
    result = _metrics_block(scored, labels, n_bootstrap=n_bootstrap, seed=seed, ci=ci, confusion=True)
    result = {
        "labels": labels,
        "n": result.pop("n"),
        "n_total": len(records),
        "n_unlabelled": len(records) - len(scored),
        **result,
        "collapse": prediction_collapse(records),
    }
    if slice_keys:
        n_slice_boot = min(n_bootstrap, 200) if slice_bootstrap is None else slice_bootstrap
        slices: dict[str, dict[str, Any]] = {}
        for key in slice_keys:
            groups: dict[str, list[PredictionRecord]] = {}
            for record in scored:
                groups.setdefault(slice_value(record.metadata.get(key)), []).append(record)
            slices[key] = {
                value: _metrics_block(
                    groups[value], labels, n_bootstrap=n_slice_boot, seed=seed, ci=ci, confusion=False
                )
                for value in sorted(groups)
            }
        result["slices"] = slices
    return result


def prediction_collapse(records: Sequence[PredictionRecord]) -> dict[str, Any]:
    """The most predicted label, its share of ``records`` and its share of their gold labels;
    ``collapsed`` when that share exceeds COLLAPSE_SHARE (ties: the label first in sort order)."""
    predicted = Counter(
        r.predicted for r in records if Status(r.status) is Status.OK and r.predicted is not None
    )
    if not records or not predicted:
        return {"label": None, "share": None, "gold_share": None, "collapsed": False}
    label, count = min(predicted.items(), key=lambda item: (-item[1], str(item[0])))
    share = count / len(records)
    golds = [r.gold for r in records if r.gold is not None]
    gold_share = sum(g == label for g in golds) / len(golds) if golds else None
    return {"label": label, "share": share, "gold_share": gold_share, "collapsed": share > COLLAPSE_SHARE}


def slice_value(value: Any) -> str:
    """The slice a metadata value falls in: its text, or MISSING_SLICE_VALUE for None / NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING_SLICE_VALUE
    return str(value)


def encode(records: Sequence[PredictionRecord], labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Gold indices in ``[0, K)`` and prediction columns in ``[0, K + 3)``: a label index for an ok
    prediction in the schema, else ``K + i`` for the i-th of refused / invalid / error."""
    index = {name: i for i, name in enumerate(labels)}
    k = len(labels)
    gold = np.empty(len(records), dtype=np.int64)
    pred = np.empty(len(records), dtype=np.int64)
    for i, record in enumerate(records):
        if record.gold not in index:
            raise ValueError(f"record {record.id!r}: gold label {record.gold!r} is not one of {list(labels)}")
        gold[i] = index[record.gold]
        status = Status(record.status)
        if status is Status.OK:
            pred[i] = index.get(record.predicted, k + 1) if record.predicted is not None else k + 1
        else:
            pred[i] = k + NON_OK_COLUMNS.index(status.value)
    return gold, pred


def _metrics_block(
    records: list[PredictionRecord],
    labels: list[str],
    *,
    n_bootstrap: int,
    seed: int,
    ci: float,
    confusion: bool,
) -> dict[str, Any]:
    k = len(labels)
    gold, pred = encode(records, labels)
    n = len(records)
    status_counts = np.bincount(np.clip(pred - k + 1, 0, None), minlength=4)
    status = {
        "counts": {name: int(c) for name, c in zip(STATUS_NAMES, status_counts, strict=True)},
        "rates": {
            name: (float(c / n) if n else None) for name, c in zip(STATUS_NAMES, status_counts, strict=True)
        },
    }
    block: dict[str, Any] = {"n": n}
    if n == 0:
        block.update({name: None for name in SCALAR_METRICS})
        block["per_class"] = {
            label: {"precision": None, "recall": None, "f1": None, "support": 0, "predicted": 0}
            for label in labels
        }
    else:
        # Everything that is not an ok in-schema prediction becomes the sentinel index k, which is
        # not in label_idx: it is wrong for its gold class but no class of its own.
        label_idx = list(range(k))
        gi, pi = gold, np.where(pred < k, pred, k)
        precision, recall, f1, support = precision_recall_fscore_support(
            gi, pi, labels=label_idx, average=None, zero_division=0
        )
        predicted = np.bincount(pi, minlength=k + 1)[:k]
        block.update(
            {
                "accuracy": float(accuracy_score(gi, pi)),
                "macro_f1": float(f1_score(gi, pi, labels=label_idx, average="macro", zero_division=0)),
                "micro_f1": float(f1_score(gi, pi, labels=label_idx, average="micro", zero_division=0)),
                "weighted_f1": float(f1_score(gi, pi, labels=label_idx, average="weighted", zero_division=0)),
                "macro_precision": float(np.mean(precision)),
                "macro_recall": float(np.mean(recall)),
            }
        )
        block["per_class"] = {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
                "predicted": int(predicted[i]),
            }
            for i, label in enumerate(labels)
        }
    block["status"] = status
    if confusion:
        columns = [*labels, *NON_OK_COLUMNS]
        matrix = (
            confusion_matrix(gold, pred, labels=list(range(len(columns))))[:k]
            if n
            else np.zeros((k, len(columns)))
        )
        block["confusion"] = {
            "rows": list(labels),
            "columns": columns,
            "matrix": [[int(v) for v in row] for row in matrix],
        }
    block["ci"] = bootstrap_ci(gold, pred, k, n_bootstrap=n_bootstrap, seed=seed, ci=ci, labels=labels)
    return block


def f1_from_counts(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics from confusion counts of shape ``(..., K, C)`` with ``C >= K`` (columns beyond K are
    not-ok predictions), following scikit-learn's formulas with ``zero_division=0``."""
    k = counts.shape[-2]
    counts = counts.astype(np.float64)
    tp = np.diagonal(counts[..., :, :k], axis1=-2, axis2=-1)
    support = counts.sum(axis=-1)
    predicted = counts[..., :, :k].sum(axis=-2)
    n = support.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        denom = 1.0 * support + predicted
        f1 = np.where(denom > 0, 2.0 * tp / denom, 0.0)
        accuracy = np.where(n > 0, tp.sum(axis=-1) / n, 0.0)
        weighted = np.where(n > 0, (f1 * support).sum(axis=-1) / n, 0.0)
    return {
        "accuracy": accuracy,
        "macro_f1": f1.mean(axis=-1),
        "weighted_f1": weighted,
        "per_class_f1": f1,
        "precision": precision,
        "recall": recall,
    }


def bootstrap_counts(
    gold: np.ndarray, pred: np.ndarray, k: int, n_columns: int, *, n_bootstrap: int, seed: int
) -> np.ndarray:
    """Confusion counts ``(n_bootstrap, k, n_columns)`` of resamples (with replacement) of the
    examples, one ``np.bincount`` per chunk of resamples on ``row * k * C + gold * C + pred``."""
    n = len(gold)
    cells = k * n_columns
    codes = gold * n_columns + pred
    rng = np.random.default_rng(seed)
    out = np.empty((n_bootstrap, cells), dtype=np.int64)
    chunk = max(1, _BOOTSTRAP_CHUNK_CELLS // max(n, 1))
    for start in range(0, n_bootstrap, chunk):
        stop = min(start + chunk, n_bootstrap)
        idx = rng.integers(0, n, size=(stop - start, n))
        flat = codes[idx] + (np.arange(stop - start, dtype=np.int64) * cells)[:, None]
        out[start:stop] = np.bincount(flat.ravel(), minlength=(stop - start) * cells).reshape(
            stop - start, cells
        )
    return out.reshape(n_bootstrap, k, n_columns)


def bootstrap_ci(
    gold: np.ndarray,
    pred: np.ndarray,
    k: int,
    *,
    n_bootstrap: int,
    seed: int,
    ci: float,
    labels: Sequence[str],
) -> dict[str, Any]:
    """Percentile bootstrap intervals for accuracy, macro/weighted F1 and per-class F1."""
    info: dict[str, Any] = {"level": ci, "method": "percentile", "n_bootstrap": n_bootstrap, "seed": seed}
    names = ["accuracy", "macro_f1", "weighted_f1"]
    if n_bootstrap <= 0 or len(gold) == 0:
        info.update({name: None for name in names})
        info["per_class_f1"] = {label: None for label in labels}
        return info
    pred_sentinel = np.where(pred < k, pred, k)
    counts = bootstrap_counts(gold, pred_sentinel, k, k + 1, n_bootstrap=n_bootstrap, seed=seed)
    stats = f1_from_counts(counts)
    q = [100 * (1 - ci) / 2, 100 * (1 + ci) / 2]
    for name in names:
        low, high = np.percentile(stats[name], q)
        info[name] = [float(low), float(high)]
    per_class = np.percentile(stats["per_class_f1"], q, axis=0)
    info["per_class_f1"] = {
        label: [float(per_class[0, i]), float(per_class[1, i])] for i, label in enumerate(labels)
    }
    return info


def scalar_metric_names(metrics: dict[str, Any]) -> list[str]:
    """The scalar metrics of a metrics dict (or of a seed aggregate): its own ``scalar_metrics``
    list where its task adds one, else the classification list."""
    return list(metrics.get("scalar_metrics") or SCALAR_METRICS)


def aggregate_seeds(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation (ddof=1 with several seeds, else 0) over the metric dicts of
    several seeds of any task: its scalar metrics (``scalar_metric_names``), per-class F1 where the
    task has classes, status rates and the prediction collapse. A dict that names its own
    ``scalar_metrics`` passes that list on, so ``official_metric`` reads the aggregate alike."""
    if not runs:
        raise ValueError("aggregate_seeds needs at least one metrics dict")
    labels = list(runs[0]["labels"])
    for run in runs[1:]:
        if list(run["labels"]) != labels:
            raise ValueError(f"cannot aggregate runs with different labels: {labels} vs {run['labels']}")
    names = scalar_metric_names(runs[0])

    def summary(values: list[float | None]) -> dict[str, Any]:
        present = [v for v in values if v is not None]
        if not present:
            return {"mean": None, "std": None, "values": values}
        std = float(np.std(present, ddof=1)) if len(present) > 1 else 0.0
        return {"mean": float(np.mean(present)), "std": std, "values": values}

    result: dict[str, Any] = {"labels": labels, "n_seeds": len(runs), "n": [run["n"] for run in runs]}
    if "scalar_metrics" in runs[0]:
        result["scalar_metrics"] = names
    for name in names:
        result[name] = summary([run.get(name) for run in runs])
    classes = list(dict.fromkeys(c for run in runs for c in run.get("per_class") or {}))
    result["per_class_f1"] = {
        label: summary([(run.get("per_class") or {}).get(label, {}).get("f1") for run in runs])
        for label in classes
    }
    result["status_rates"] = {
        name: summary([run["status"]["rates"][name] for run in runs]) for name in STATUS_NAMES
    }
    collapses = [run.get("collapse") for run in runs]  # None: metrics written before it existed
    result["collapse"] = {
        "seeds": sum(bool(c and c["collapsed"]) for c in collapses),
        "labels": sorted({c["label"] for c in collapses if c and c["collapsed"]}),
        "share": summary([c["share"] if c else None for c in collapses]),
    }
    return result


def official_metric(metrics: dict[str, Any], name: str) -> float | None:
    """The value of a named metric from a ``compute_metrics`` dict, or the mean over seeds from an
    ``aggregate_seeds`` dict. Names: accuracy, macro_f1, micro_f1, weighted_f1, macro_precision,
    macro_recall, ``f1_<label>``, ``precision_<label>``, ``recall_<label>`` and
    ``mean_f1_<a>_<b>[_<c>...]`` (mean F1 of several classes; labels may contain underscores); for
    another task its own scalar metrics (``scalar_metric_names``) and its classes' F1 alike."""
    labels = list(metrics["labels"])
    aggregated = "n_seeds" in metrics
    scalars = scalar_metric_names(metrics)

    def class_metric(kind: str, label: str) -> float | None:
        if aggregated:
            if kind != "f1":
                raise ConfigError(f"metric '{name}': seed aggregates only keep per-class F1")
            return metrics["per_class_f1"][label]["mean"]
        return metrics["per_class"][label][kind]

    if name in scalars:
        value = metrics[name]
        return value["mean"] if aggregated else value
    if name.startswith("mean_f1_"):
        parts = _split_labels(name[len("mean_f1_") :], labels)
        if parts:
            values = [class_metric("f1", label) for label in parts]
            return None if any(v is None for v in values) else float(np.mean(values))
    for kind in ("f1", "precision", "recall"):
        prefix = f"{kind}_"
        if name.startswith(prefix) and name[len(prefix) :] in labels:
            return class_metric(kind, name[len(prefix) :])
    raise ConfigError(
        f"unknown metric '{name}': expected one of {', '.join(scalars)}, f1_<label>, "
        f"precision_<label>, recall_<label> or mean_f1_<label>_<label>... with labels {labels}"
    )


def check_metric_name(name: str, labels: Sequence[str], scalar_metrics: Sequence[str] | None = None) -> None:
    """Raise ConfigError unless ``official_metric`` can compute ``name`` for these labels (and a
    task's own ``scalar_metrics``; default: the classification ones)."""
    zeros = {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    scalars = list(scalar_metrics or SCALAR_METRICS)
    official_metric(
        {"labels": list(labels), "per_class": {label: zeros for label in labels}, "scalar_metrics": scalars}
        | dict.fromkeys(scalars, 0.0),
        name,
    )


def _split_labels(text: str, labels: Sequence[str]) -> list[str] | None:
    """Split ``a_b_c`` into a sequence of known labels joined by underscores (labels may contain
    underscores themselves); None when no split exists."""
    if text in labels:
        return [text]
    for label in sorted(labels, key=len, reverse=True):
        if text.startswith(label + "_"):
            rest = _split_labels(text[len(label) + 1 :], labels)
            if rest is not None:
                return [label, *rest]
    return None
