"""Single-label classification: one label of the schema per text.

A prompted LLM answers with a label (``label_prompts``): the prompted family builds the prompt
with its label prompt builder (styles, wordings, templates) and reads the answer with
``label_parsing``; ``messages`` and ``parse`` here are the same path in task form. Metrics are
``classification_metrics.compute_metrics`` (per-class scores, CIs, confusion matrix)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from socialens.core.types import Example, LabelSchema, PredictionRecord, Status
from socialens.tasks.base import Generation, Messages, Parsed, ReportTable
from socialens.tasks.classification_metrics import SCALAR_METRICS, compute_metrics
from socialens.tasks.label_parsing import failure_reason, parse_label


class ClassificationTask:
    name = "classification"
    headline_metric = "macro_f1"
    scalar_metrics = tuple(SCALAR_METRICS)
    table_metrics = ("macro_f1", "accuracy")  # what the bench summary and the report's table show
    output_formats = ("serial", "json")
    label_prompts = True
    target_form = "label"
    stop_rules = ("eos",)

    def stratify_key(self, example: Example) -> str | None:
        return example.label

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
        labels = ", ".join(schema.names)
        ask = f"Classify the text{f' ({description})' if description else ''}. Answer with one of: {labels}."
        messages: Messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        for shot in shots:
            messages.append({"role": "user", "content": f"{ask}\n\nText: {shot.text}"})
            messages.append({"role": "assistant", "content": self.answer_text(shot, schema, output_format)})
        messages.append({"role": "user", "content": f"{ask}\n\nText: {example.text}"})
        return messages

    def answer_text(self, example: Example, schema: LabelSchema, output_format: str) -> str:
        import json

        return json.dumps({"label": example.label}) if output_format == "json" else str(example.label)

    def generation(self, schema: LabelSchema, output_format: str) -> Generation:
        return Generation(max_tokens=20)

    def parse(self, raw: str, example: Example, schema: LabelSchema, output_format: str) -> Parsed:
        parsed = parse_label(raw, schema, style=output_format)
        return Parsed(
            status=Status(parsed.status),
            predicted=parsed.label,
            error=failure_reason(parsed, schema.names),
        )

    def metrics(
        self,
        records: Sequence[PredictionRecord],
        labels: Sequence[str],
        *,
        n_bootstrap: int = 1000,
        seed: int = 0,
        ci: float = 0.95,
        slice_keys: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        return compute_metrics(
            records, labels, n_bootstrap=n_bootstrap, seed=seed, ci=ci, slice_keys=slice_keys
        )

    def report_tables(
        self, metrics: dict[str, Any], records: Sequence[PredictionRecord]
    ) -> list[ReportTable]:
        return []  # the report's per-class columns and confusion matrix are classification's own

    def response(self, record: PredictionRecord) -> dict[str, Any]:
        return {"label": record.predicted, "scores": record.scores}
