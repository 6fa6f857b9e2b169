"""The Task protocol: everything that depends on what an example's target is.

A family asks its task; nothing else branches on the task by name. A new task is one module in
``socialens/tasks/`` implementing this protocol plus one line in ``socialens.core.registry.TASKS``.

Conventions every task keeps:

* ``Example.label`` and ``PredictionRecord.gold`` / ``predicted`` hold the target in the task's
  own JSON-serialisable form (a label, a list of labels, IOB2 tags, a summary).
* An LLM answer that cannot be read is ``invalid`` and a refusal ``refused``: never replaced by a
  guess; ``parse`` says which, and why (``error``).
* ``metrics`` works from records only, and returns a JSON-serialisable dict with at least
  ``labels``, ``n``, ``n_total``, ``status`` (counts and rates of ok / refused / invalid / error),
  one value per name in ``scalar_metrics``, ``ci`` (a [low, high] interval per scalar metric it
  bootstraps) and, where the task has classes, ``per_class`` ({name: {precision, recall, f1,
  support}}), so seed aggregation, the bench summary and the report treat every task alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from socialens.core.types import Example, LabelSchema, PredictionRecord, Status

Messages = list[dict[str, str]]

TARGET_FORMS = ("label", "labels", "tags", "text")


@dataclass
class Parsed:
    """What an LLM's answer says, as the task reads it. ``predicted`` is None unless ok."""

    status: Status
    predicted: Any = None
    error: str | None = None
    details: dict[str, Any] | None = None


@dataclass(frozen=True)
class Generation:
    """How a task wants its answers generated: token budget, stop strings and, for a JSON output
    format, the JSON schema an answer must follow where the backend can constrain to one."""

    max_tokens: int = 64
    stop: tuple[str, ...] = ()
    json_schema: str | None = None  # JSON text (hashable: it is part of the response cache key)


@dataclass
class ReportTable:
    """A table a task adds to the report for one run: a title, column headers and rows of cells."""

    title: str
    headers: list[str]
    rows: list[list[Any]] = field(default_factory=list)


@runtime_checkable
class Task(Protocol):
    name: ClassVar[str]
    # the metric the bench summary ranks by and the report leads with
    headline_metric: ClassVar[str]
    # every scalar metric of ``metrics``, in the order tables show them
    scalar_metrics: ClassVar[tuple[str, ...]]
    # answer formats an LLM can be asked for (the first is the default)
    output_formats: ClassVar[tuple[str, ...]]
    # True: a prompted LLM answers with one of the schema's labels, so the label prompt builder,
    # constrained decoding and label scoring apply; False: ``messages`` / ``parse`` below
    label_prompts: ClassVar[bool]
    # how a generated answer may be cut: "eos" (the model's whole turn) and, for a task that
    # generates free text, "first_sentence" (LlamaLens' rule for summaries); set on the instance
    # as ``stop_rule`` by the prompted family
    stop_rules: ClassVar[tuple[str, ...]]
    # the form of ``Example.label`` (what data readers read and check): "label" (one label name),
    # "labels" (a list of label names), "tags" (IOB2 tags over ``Example.tokens``) or "text" (a
    # free text such as a reference summary). Readers branch on the form, never on a task's name.
    target_form: ClassVar[str]

    def stratify_key(self, example: Example) -> str | None:
        """What a stratified split and a stratified sample keep in proportion (None: unlabelled)."""

    def messages(
        self,
        example: Example,
        shots: Sequence[Example],
        schema: LabelSchema,
        *,
        output_format: str,
        description: str = "",
        system_prompt: str | None = None,
    ) -> Messages:
        """The chat prompt asking for ``example``'s target, each shot a (user, assistant) turn."""

    def answer_text(self, example: Example, schema: LabelSchema, output_format: str) -> str:
        """``example``'s gold target written as the answer the prompt asks for (few-shot turns,
        instruction-tuning targets)."""

    def generation(self, schema: LabelSchema, output_format: str) -> Generation: ...

    def parse(self, raw: str, example: Example, schema: LabelSchema, output_format: str) -> Parsed: ...

    def metrics(
        self,
        records: Sequence[PredictionRecord],
        labels: Sequence[str],
        *,
        n_bootstrap: int = 1000,
        seed: int = 0,
        ci: float = 0.95,
        slice_keys: Sequence[str] | None = None,
    ) -> dict[str, Any]: ...

    def report_tables(
        self, metrics: dict[str, Any], records: Sequence[PredictionRecord]
    ) -> list[ReportTable]:
        """Tables the report shows for this task beyond the common ones (per-type scores, the
        worst examples); [] for none."""

    def response(self, record: PredictionRecord) -> dict[str, Any]:
        """The task-shaped part of a served or ``predict`` answer for one record."""


def status_counts(statuses: Iterable[Status | str]) -> dict[str, Any]:
    """``{"counts": {status: n}, "rates": {status: share}}`` over all four statuses (rates None
    when there are none), from each record's status (``r.status for r in records``)."""
    names = [status.value for status in Status]
    counts = dict.fromkeys(names, 0)
    for status in statuses:
        counts[Status(status).value] += 1
    total = sum(counts.values())
    return {"counts": counts, "rates": {name: (counts[name] / total if total else None) for name in names}}
