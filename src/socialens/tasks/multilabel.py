"""Multi-label classification: any number of the schema's labels per text (none included).

``Example.label`` is a list of schema label names in schema order (``[]``: no label applies;
None: unlabelled). A prompted LLM is asked for every label that applies, as a comma-separated
list (``serial``, "none" when no label applies) or as ``{"labels": [...]}`` (``json``; constrained
by a JSON schema where the backend can). ``parse`` reads an answer with the rules of
classification (``label_parsing``): refusals by ``is_refusal`` and only after the structured
forms, each answer item resolved like a short classification answer (case, aliases, Arabic and
Hindi words, typos), JSON read as leniently. An item that names no label is counted in
``details`` (``unknown``, ``n_unknown``), never guessed; an answer naming no label at all is
``invalid``, with the reason, unless it says that none applies (then it is ``ok`` with ``[]``).
Metrics are ``multilabel_metrics.compute_multilabel_metrics``.

The split key is the label set itself ("fake+hate", "none"): plain stratification over label
combinations (no iterative stratification), so a combination's share is kept where it has
enough examples.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from socialens.core.types import Example, LabelSchema, PredictionRecord, Status, normalise_label_text
from socialens.tasks.base import Generation, Messages, Parsed, ReportTable
from socialens.tasks.label_parsing import (
    LABEL_KEYS,
    clean_output,
    is_refusal,
    json_objects,
    loads_lenient,
    parse_label,
)
from socialens.tasks.multilabel_metrics import SCALAR_METRICS, compute_multilabel_metrics, label_set_key

# Answers that say no label applies (compared after normalise_label_text); a schema label of the
# same name wins over them.
NONE_ANSWERS = frozenset(
    {
        "none",
        "none of them",
        "none of these",
        "none of the above",
        "none of the labels",
        "no label",
        "no labels",
        "no label applies",
        "no labels apply",
        "nothing",
        "n/a",
        "na",
        "no",
        "null",
        "empty",
        "[]",
    }
)
MAX_ITEMS = 50  # answer items read per answer; an LLM listing more is rambling
_KEYS = ("labels", "label_list", "categories", "tags", "classes", *LABEL_KEYS)
_HARD_SPLIT = re.compile(r"[,;\n|،؛]")
_SOFT_SPLIT = re.compile(r"\s+(?:and|&|\+)\s+|\s*[+&/]\s*")
_BULLET = re.compile(r"^\s*(?:[-*•·>]+|\d{1,2}[.)])\s+")
_STRIP = " \t\r\"'`*_[](){}.!?:"
_CUE_LINE = re.compile(
    r"^[\s*#>_-]*(?:the\s+)?(?:final\s+|predicted\s+|applicable\s+|my\s+)?"
    r"(?:labels?|answer|categories|category|classes|tags)\b(?:\s+(?:that\s+apply|applied|are|is))*"
    r"\s*[*_]*\s*[:=]\s*(.*)$",
    re.IGNORECASE | re.MULTILINE,
)
_ARRAY = re.compile(r"\[[^\[\]]*\]")
_TRUE = {"true", "yes", "1", "1.0", "y"}
_FALSE = {"false", "no", "0", "0.0", "n", "none", "null"}
_REASONS = {
    "empty": "the answer is empty",
    "json-ambiguous": "the answer's JSON gives different label sets",
    "json-unknown-label": "the answer's JSON names none of {labels}",
    "no-match": "the answer names none of {labels} and does not say that none applies",
    "refusal": "the model refused to answer",
}


class _Reading:
    """What one answer (or one JSON value) names: labels (in the order met), whether it says
    "none", the items that named nothing, repeated labels, and how many labels were named exactly
    (an item that is a label name or alias) rather than found by the prose rules (``loose``)."""

    def __init__(self) -> None:
        self.labels: list[str] = []
        self.none = False
        self.unknown: list[str] = []
        self.duplicates = 0
        self.exact = 0
        self.loose = False

    def add(self, label: str) -> None:
        if label in self.labels:
            self.duplicates += 1
        else:
            self.labels.append(label)

    def merge(self, other: _Reading) -> None:
        for label in other.labels:
            self.add(label)
        self.duplicates += other.duplicates
        self.none = self.none or other.none
        self.unknown.extend(other.unknown)
        self.exact += other.exact
        self.loose = self.loose or other.loose

    @property
    def answered(self) -> bool:
        return bool(self.labels) or self.none


def _item(text: str, schema: LabelSchema, reading: _Reading) -> None:
    """One answer item: a label (exactly, or by the classification rules), "none", or unknown."""
    item = _BULLET.sub("", text).strip(_STRIP)
    if not item:
        return
    label = schema.normalise(item)
    if label is not None:
        reading.add(label)
        reading.exact += 1
        return
    if normalise_label_text(item) in NONE_ANSWERS:
        reading.none = True
        return
    parts = [p.strip(_STRIP) for p in _SOFT_SPLIT.split(item)]
    if len(parts) > 1 and all(schema.normalise(p) for p in parts if p):
        for part in parts:
            if part:
                reading.add(schema.normalise(part))
                reading.exact += 1
        return
    # the classification rules, on the item, else on its parts ("hate speech and offensive")
    parsed = parse_label(item, schema)
    hits = [parsed.label] if parsed.ok else []
    if parsed.method == "ambiguous" and len(parts) > 1:
        hits = [r.label for r in (parse_label(part, schema) for part in parts if part) if r.ok]
    if not hits:
        reading.unknown.append(item[:80])
        return
    for label in hits:
        reading.add(label)
    reading.loose = True


def _items(text: str, schema: LabelSchema) -> _Reading:
    reading = _Reading()
    for piece in _HARD_SPLIT.split(text)[:MAX_ITEMS]:
        _item(piece, schema, reading)
    return reading


def _json_value(value: Any, schema: LabelSchema) -> _Reading:
    """A JSON label value: a list of items, one item, a comma-separated string, or null (none)."""
    reading = _Reading()
    if value is None:
        reading.none = True
    elif isinstance(value, list | tuple):
        if not value:
            reading.none = True
        for entry in value[:MAX_ITEMS]:
            if isinstance(entry, dict):
                reading.merge(_json_object(entry, schema) or _Reading())
            elif isinstance(entry, str | int | float) and not isinstance(entry, bool):
                _item(str(entry), schema, reading)
            else:
                reading.unknown.append(str(entry)[:80])
    elif isinstance(value, dict):
        reading.merge(_json_object(value, schema) or _Reading())
    elif isinstance(value, str):
        reading.merge(_items(value, schema))
    else:
        reading.unknown.append(str(value)[:80])
    return reading


def _json_object(obj: dict, schema: LabelSchema, depth: int = 0) -> _Reading | None:
    """The labels an object gives under a label-like key (also nested), or as a map of labels to
    true / false; None when it gives none of these."""
    if depth > 3:
        return None
    keys = {re.sub(r"[\s\-]+", "_", str(k).strip().casefold()): v for k, v in obj.items()}
    for name in _KEYS:
        if name in keys:
            return _json_value(keys[name], schema)
    flags = {schema.normalise(k): v for k, v in obj.items() if schema.normalise(k) is not None}
    if flags and all(str(v).strip().casefold() in _TRUE | _FALSE for v in flags.values()):
        reading = _Reading()
        for label in schema.names:
            if label in flags and str(flags[label]).strip().casefold() in _TRUE:
                reading.add(label)
        reading.none = not reading.labels
        return reading
    for value in obj.values():
        if isinstance(value, dict):
            nested = _json_object(value, schema, depth + 1)
            if nested is not None:
                return nested
    return None


def _from_json(text: str, schema: LabelSchema) -> tuple[_Reading | None, str | None]:
    """(reading, failure method) from the answer's JSON objects, else its JSON arrays; (None,
    None) when it has no JSON that gives labels."""
    readings = []
    if "{" in text:
        readings = [r for r in (_json_object(o, schema) for o in json_objects(text)) if r is not None]
    if not readings and "[" in text:
        arrays = [loads_lenient(m.group(0)) for m in _ARRAY.finditer(text)]
        readings = [_json_value(a, schema) for a in arrays if isinstance(a, list)]
        readings = [r for r in readings if r.answered or r.unknown]
    if not readings:
        return None, None
    answered = [r for r in readings if r.answered]
    if len({frozenset(r.labels) for r in answered}) > 1:
        return None, "json-ambiguous"
    if not answered:
        return None, "json-unknown-label"
    merged = _Reading()
    for reading in readings:
        merged.merge(reading)
    merged.labels = list(answered[0].labels)
    return merged, None


def _cue(text: str, schema: LabelSchema) -> _Reading | None:
    """The items after a "Labels:" / "Answer:" cue (on its line, else the lines below it up to a
    blank line); None without a cue."""
    match = _CUE_LINE.search(text)
    if match is None:
        return None
    rest = match.group(1).strip()
    if not rest:
        rest = text[match.end() :].strip("\n").split("\n\n", 1)[0]
    return _items(rest, schema)


class MultilabelTask:
    name = "multilabel"
    # macro-F1 as for classification: every label counts as much as any other, so a model that
    # never finds a rare label (defamation next to offensive) cannot rank first on the common ones
    headline_metric = "macro_f1"
    scalar_metrics = SCALAR_METRICS
    output_formats = ("serial", "json")
    label_prompts = False
    target_form = "labels"
    stop_rules = ("eos",)

    def stratify_key(self, example: Example) -> str | None:
        return label_set_key(example.label)

    # -- prompting ---------------------------------------------------------------------------------
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
        ask = self._ask(schema, output_format, description)
        messages: Messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        for shot in shots:
            messages.append({"role": "user", "content": f"{ask}\n\nText: {shot.text}"})
            messages.append({"role": "assistant", "content": self.answer_text(shot, schema, output_format)})
        messages.append({"role": "user", "content": f"{ask}\n\nText: {example.text}"})
        return messages

    def _ask(self, schema: LabelSchema, output_format: str, description: str) -> str:
        lines = [
            f"Tag the text{f' ({description})' if description else ''} with every label below that "
            "applies to it. Several labels may apply, or none.",
            "Labels:",
        ]
        for label in schema.labels:
            lines.append(f"- {label.name}: {label.description}" if label.description else f"- {label.name}")
        if output_format == "json":
            example = json.dumps({"labels": schema.names[:2]}, ensure_ascii=False)
            lines.append(
                f"Answer with a JSON object listing the labels that apply, such as {example}, "
                'or {"labels": []} if none applies.'
            )
        else:
            lines.append(
                "Answer with the labels that apply, separated by commas, or none if no label applies."
            )
        return "\n".join(lines)

    def answer_text(self, example: Example, schema: LabelSchema, output_format: str) -> str:
        labels = self._gold(example, schema)
        if output_format == "json":
            return json.dumps({"labels": labels}, ensure_ascii=False)
        return ", ".join(labels) or "none"

    @staticmethod
    def _gold(example: Example, schema: LabelSchema) -> list[str]:
        if not isinstance(example.label, list | tuple):
            raise ValueError(
                f"example {example.id!r}: label {example.label!r} is not a list of labels "
                f"(expected some of {schema.names}, [] for none)"
            )
        names = {schema.normalise(label) for label in example.label}
        if None in names:
            raise ValueError(
                f"example {example.id!r}: labels {example.label!r} are not all in {schema.names}"
            )
        return [name for name in schema.names if name in names]

    def generation(self, schema: LabelSchema, output_format: str) -> Generation:
        # one token per character of the longest answer (every label listed) and some slack
        if output_format == "json":
            chars = len('{"labels": []}') + sum(len(name) + 4 for name in schema.names)
            json_schema = {
                "type": "object",
                "properties": {
                    "labels": {
                        "type": "array",
                        "items": {"type": "string", "enum": schema.names},
                        "maxItems": len(schema.names),
                    }
                },
                "required": ["labels"],
                "additionalProperties": False,
            }
            return Generation(max_tokens=16 + chars, json_schema=json.dumps(json_schema, ensure_ascii=False))
        return Generation(max_tokens=16 + sum(len(name) + 2 for name in schema.names))

    # -- reading answers -----------------------------------------------------------------------------
    def parse(self, raw: str, example: Example, schema: LabelSchema, output_format: str) -> Parsed:
        text = clean_output(raw)
        if not text.strip("\x00 \t\r\n\"'`*"):
            return self._failed(Status.INVALID, "empty", schema, None)
        if len(text) <= 200:  # the whole answer is one label, or says none applies
            item = _BULLET.sub("", text).strip(_STRIP)
            label = schema.normalise(item)
            if label is not None or normalise_label_text(item) in NONE_ANSWERS:
                whole = _Reading()
                if label is not None:
                    whole.add(label)
                return self._ok(whole, "exact", schema)

        reading, failure = _from_json(text, schema)
        if reading is not None:
            return self._ok(reading, "json", schema)
        if failure is not None:
            if is_refusal(text):
                return self._failed(Status.REFUSED, "refusal", schema, None)
            return self._failed(Status.INVALID, failure, schema, None)

        cued = _cue(text, schema)
        if cued is not None and cued.answered:
            return self._ok(cued, "cue", schema)

        # a refusal is read after the structured forms, and before labels found only in prose
        listed = _items(text, schema)
        if not listed.exact and is_refusal(text):
            return self._failed(Status.REFUSED, "refusal", schema, listed)
        if listed.answered:
            return self._ok(listed, "list+match" if listed.loose else "list", schema)
        return self._failed(Status.INVALID, "no-match", schema, listed)

    @staticmethod
    def _details(method: str, reading: _Reading | None) -> dict[str, Any]:
        unknown = reading.unknown if reading else []
        return {
            "method": method,
            "unknown": unknown[:10],
            "n_unknown": len(unknown),
            "duplicates": reading.duplicates if reading else 0,
        }

    def _ok(self, reading: _Reading, method: str, schema: LabelSchema) -> Parsed:
        found = set(reading.labels)
        labels = [name for name in schema.names if name in found]
        return Parsed(status=Status.OK, predicted=labels, details=self._details(method, reading))

    def _failed(self, status: Status, method: str, schema: LabelSchema, reading: _Reading | None) -> Parsed:
        reason = _REASONS[method].format(labels=", ".join(schema.names))
        if reading is not None and reading.unknown:
            shown = ", ".join(repr(u) for u in reading.unknown[:3])
            more = ", ..." if len(reading.unknown) > 3 else ""
            reason += (
                f" ({len(reading.unknown)} unknown item{'s' * (len(reading.unknown) > 1)}: {shown}{more})"
            )
        return Parsed(
            status=status, error=f"{status.value}: {reason}", details=self._details(method, reading)
        )

    # -- scoring and reporting ---------------------------------------------------------------------
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
        return compute_multilabel_metrics(
            records, labels, n_bootstrap=n_bootstrap, seed=seed, ci=ci, slice_keys=slice_keys
        )

    def report_tables(
        self, metrics: dict[str, Any], records: Sequence[PredictionRecord]
    ) -> list[ReportTable]:
        labels = list(metrics["labels"])
        per_label = ReportTable(
            "Per label",
            ["label", "support", "predicted", "precision", "recall", "F1", "F1 CI"],
        )
        intervals = (metrics.get("ci") or {}).get("per_class_f1") or {}
        for label in labels:
            row = metrics["per_class"][label]
            interval = intervals.get(label)
            per_label.rows.append(
                [
                    label,
                    row["support"],
                    row["predicted"],
                    _cell(row["precision"]),
                    _cell(row["recall"]),
                    _cell(row["f1"]),
                    f"[{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "",
                ]
            )
        gold = (metrics.get("cooccurrence") or {}).get("gold")
        together = ReportTable("Gold label co-occurrence (examples with both labels)", ["label", *labels])
        for label, row in zip(labels, gold or [], strict=False):
            together.rows.append([label, *row])
        worst = ReportTable(
            "Worst examples (most label errors; not ok counts every gold label missed)",
            ["id", "status", "gold", "predicted", "missed", "extra"],
        )
        scored = []
        for record in records:
            if not isinstance(record.gold, list | tuple):
                continue
            ok = Status(record.status) is Status.OK and isinstance(record.predicted, list | tuple)
            predicted = set(record.predicted) if ok else set()
            missed = [g for g in record.gold if g not in predicted]
            extra = [p for p in labels if p in predicted and p not in record.gold]
            errors = len(missed) + len(extra) + (0 if ok else 1)
            if errors:
                scored.append((errors, record, missed, extra, ok))
        scored.sort(key=lambda item: (-item[0], str(item[1].id)))
        for _, record, missed, extra, ok in scored[:10]:
            worst.rows.append(
                [
                    record.id,
                    Status(record.status).value,
                    ", ".join(record.gold) or "none",
                    (", ".join(record.predicted) or "none") if ok else "",
                    ", ".join(missed),
                    ", ".join(extra),
                ]
            )
        return [per_label, together, worst]

    def response(self, record: PredictionRecord) -> dict[str, Any]:
        labels = list(record.predicted) if isinstance(record.predicted, list | tuple) else None
        return {"labels": labels, "scores": record.scores}


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"
