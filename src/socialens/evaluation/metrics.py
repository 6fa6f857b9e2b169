"""Metrics of a run, recomputed from its prediction records only: the run's task decides which
(``socialens.tasks``); seed aggregation and named metrics work on any task's metrics dict."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from socialens.core.registry import TASKS
from socialens.core.types import PredictionRecord
from socialens.tasks.classification_metrics import (
    NON_OK_COLUMNS,
    SCALAR_METRICS,
    STATUS_NAMES,
    aggregate_seeds,
    check_metric_name,
    official_metric,
    prediction_collapse,
)

__all__ = [
    "NON_OK_COLUMNS",
    "SCALAR_METRICS",
    "STATUS_NAMES",
    "aggregate_seeds",
    "check_metric_name",
    "compute_metrics",
    "official_metric",
    "prediction_collapse",
]


def compute_metrics(
    records: Iterable[PredictionRecord],
    labels: Sequence[str],
    *,
    task_type: str = "classification",
    **options: Any,
) -> dict[str, Any]:
    """The metrics dict of one run (``socialens.tasks.base``: what every task's dict holds). A task
    whose scalar metrics are not the classification ones has them named in the dict
    (``scalar_metrics``), so ``aggregate_seeds`` and ``official_metric`` read any task's dict."""
    task = TASKS.get(task_type)()
    metrics = task.metrics(list(records), labels, **options)
    if list(task.scalar_metrics) != SCALAR_METRICS:
        metrics.setdefault("scalar_metrics", list(task.scalar_metrics))
    return metrics
