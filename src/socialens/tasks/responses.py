"""The task-shaped answer of ``predict`` and the HTTP service, for any task.

A saved model records its task in ``socialens_model.json`` as ``task_type`` (absent: a model saved
before tasks existed, so ``classification``). The task's ``response(record)`` gives the
task-shaped part of one answer (``{"label", "scores"}`` for classification, ``{"entities",
"tags"}`` for token classification, ...). ``predict`` and serving put it between the id and the
status; nothing there names a task.

What both need to know before any record exists (CSV columns, the OpenAPI response model) is the
fields ``response`` returns: they are read from the response to a record that is not ok
(``blank_record``), which every task must answer, with the same keys as an ok record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from socialens.core.errors import ConfigError
from socialens.core.registry import TASKS
from socialens.core.types import PredictionRecord, Status
from socialens.tasks.base import Task

DEFAULT_TASK_TYPE = "classification"  # a model info without task_type was saved before tasks existed
# the response fields of classification, whose answers keep the layout they always had
# (predict: ``label`` plus a ``p_<label>`` column per label; serving: /v1/classify)
LABEL_FIELDS = ("label", "scores")


def model_task_type(info: dict[str, Any]) -> str:
    """The task a model info records (``task_type``), ``classification`` when it records none."""
    task_type = info.get("task_type") or DEFAULT_TASK_TYPE
    if not isinstance(task_type, str) or task_type not in TASKS:
        raise ConfigError(
            f"model info: task_type {task_type!r} is not a known task; expected one of {', '.join(TASKS.names())}"
        )
    return task_type


def blank_record(record_id: str = "", error: str | None = None) -> PredictionRecord:
    """A record that is not ok (no prediction, no scores, no details): what a task answers for an
    invalid row, and how its response fields are found."""
    return PredictionRecord(id=record_id, gold=None, predicted=None, status=Status.INVALID, error=error)


@dataclass(frozen=True)
class TaskResponse:
    """One task's answer shape: its name, the task object and the fields ``response`` returns."""

    task_type: str
    task: Task
    fields: tuple[str, ...]

    @classmethod
    def of(cls, task_type: str) -> TaskResponse:
        task = TASKS.get(task_type)()
        try:
            blank = task.response(blank_record())
        except Exception as exc:  # a task must answer a record that is not ok
            raise ConfigError(
                f"task '{task_type}': response() fails on a record that is not ok "
                f"({type(exc).__name__}: {exc}); expected the task's fields, each None"
            ) from None
        if not isinstance(blank, dict) or not blank:
            raise ConfigError(f"task '{task_type}': response() returned {blank!r}; expected a dict of fields")
        return cls(task_type, task, tuple(blank))

    @property
    def label_layout(self) -> bool:
        """Whether answers keep classification's layout (a label and per-label scores)."""
        return self.fields == LABEL_FIELDS

    def values(self, record: PredictionRecord) -> dict[str, Any]:
        """The task-shaped part of ``record``'s answer, always with exactly ``fields``."""
        answer = self.task.response(record)
        return {name: answer.get(name) for name in self.fields}

    def blank(self) -> dict[str, Any]:
        return self.values(blank_record())
