"""Targets other than one label per text, as data files hold them: entity tags over tokens
(token + tag lists, or a raw text with character spans), several labels per text, a reference
summary. A reader turns one row's values into a :class:`Target` (text, tokens, label in the task's
form, see ``socialens.core.types.Example``) or a ``(reason, message)`` rejection, like
``readers.check_row`` does for a single label; what it repaired it counts in ``repaired``.

Error messages name the file, the line and the column, never a cell's content (docs/security.md).

Also here: the stratification key of a task type (``stratify_key``), with a fallback while a task
module does not exist yet, and the check of a stored target (``check_target``, for ``read_split``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from socialens.core.registry import TASKS
from socialens.core.types import Example, Label, LabelSchema
from socialens.tasks.tags import OUTSIDE, Span, entity_types, normalise_tags, tags_from_spans, tokenize

CLASSIFICATION = "classification"  # the default task type
# the forms a target takes (socialens.tasks.base: Task.target_form); readers branch on them
LABEL, LABELS, TAGS, TEXT = "label", "labels", "tags", "text"
SUMMARY_LABEL = "summary"
SUMMARY_DESCRIPTION = "A short summary of the text, as a reference for the model's one."

# repairs counted (RawDataset.repaired, prepare's stats "reader_repaired")
REPAIRS = {
    "orphan_i_tag": "I- tag without a B- before it, made B- (as seqeval's default mode reads it)",
    "empty_token": "empty token dropped",
    "long_sentence_cut": "sentence cut at the max_sentence_tokens cap",
}


def target_form(task_type: str | None) -> str:
    """The form of a task type's targets (its Task's ``target_form``); one label without a type."""
    if task_type is None:
        return LABEL
    return TASKS.get(task_type).target_form


def summary_schema() -> LabelSchema:
    """The one-label schema a summarisation dataset gets when its YAML has no ``schema:``."""
    return LabelSchema(labels=[Label(SUMMARY_LABEL, SUMMARY_DESCRIPTION)], name=SUMMARY_LABEL)


def summary_schema_config() -> dict[str, Any]:
    """``summary_schema`` as a dataset YAML's ``schema:`` block."""
    return {
        "name": SUMMARY_LABEL,
        "labels": [{"name": SUMMARY_LABEL, "description": SUMMARY_DESCRIPTION}],
    }


@dataclass
class Target:
    text: str
    label: Any
    tokens: list[str] | None = None


Rejection = tuple[str, str]  # (reason, one-line message)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _as_list(value: Any) -> list[Any] | None:
    """A JSON list, a tuple or a numpy array (Parquet list columns) as a list; None otherwise."""
    if isinstance(value, list | tuple):
        return list(value)
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        converted = value.tolist()
        return converted if isinstance(converted, list) else None
    return None


# ---------------------------------------------------------------------------------------------
# entity tags


class TagProblem(ValueError):
    """A tag that cannot be read: ``reason`` (a drop reason) and ``what`` (the message after the
    location; it never holds the tag itself)."""

    def __init__(self, reason: str, what: str, index: int = 0):
        super().__init__(what)
        self.reason = reason
        self.what = what
        self.index = index  # which tag of the sequence


def check_tag(tag: str, schema: LabelSchema, scheme: str, column: str) -> str:
    """One tag with its entity type in the schema's spelling (``B-per`` -> ``B-PER`` when ``per``
    is an alias of PER); a TagProblem for a malformed tag, an unknown type or a prefix the scheme
    does not have."""
    tag = tag.strip()
    if tag == OUTSIDE:
        return tag
    prefix, sep, kind = tag.partition("-")
    if not sep or not kind or prefix not in ("B", "I", "E", "S"):
        raise TagProblem(
            "malformed_tag",
            f"malformed tag in column '{column}'; expected O or B-/I-/E-/S- followed by an entity type",
        )
    if scheme in ("iob1", "iob2") and prefix in ("E", "S"):
        raise TagProblem(
            "malformed_tag",
            f"an E- or S- tag in column '{column}', but the tag scheme is {scheme}; "
            "expected B-/I- tags (or set tag_scheme: bioes, or auto)",
        )
    name = schema.normalise(kind)
    if name is None:
        raise TagProblem(
            "unknown_label",
            f"unknown entity type in column '{column}'; expected one of {', '.join(schema.names)}",
        )
    return f"{prefix}-{name}"


def normalise_entity_tags(
    tags: Sequence[str], schema: LabelSchema, scheme: str = "auto", column: str = "tags"
) -> tuple[list[str], int]:
    """A sentence's tags in IOB2 with the schema's type names, and how many ``I-`` tags were
    repaired into ``B-``. A TagProblem (its ``index`` says which tag) for a bad tag."""
    checked = []
    for index, tag in enumerate(tags):
        if not isinstance(tag, str):
            raise TagProblem(
                "malformed_tag",
                f"a tag that is not a string in column '{column}'; expected O or B-/I- tags",
                index,
            )
        try:
            checked.append(check_tag(tag, schema, scheme, column))
        except TagProblem as problem:
            problem.index = index
            raise
    return normalise_tags(checked, scheme)


class TargetReader:
    """Base of the row readers: ``required`` columns, ``repaired`` counts."""

    required: list[str]

    def __init__(self) -> None:
        self.repaired: Counter = Counter()
        self.required = []

    def read(
        self, values: Mapping[str, Any], loc: str, text: str, require_labels: bool
    ) -> Target | Rejection:
        raise NotImplementedError


class TokenTagsReader(TargetReader):
    """A row with a list of tokens and a list of tags (one per token)."""

    def __init__(self, tokens: str, label: str | None, schema: LabelSchema, scheme: str = "auto"):
        super().__init__()
        self.tokens, self.label, self.schema, self.scheme = tokens, label, schema, scheme
        self.required = [tokens]

    def read(self, values, loc, text, require_labels):
        tokens = _as_list(values.get(self.tokens))
        if tokens is None or not all(isinstance(token, str) for token in tokens):
            return (
                "malformed_row",
                f"{loc}: column '{self.tokens}' is not a list of strings; expected the tokens",
            )
        raw_tags = _as_list(values.get(self.label)) if self.label else None
        if self.label and raw_tags is None:
            if _missing(values.get(self.label)):
                if require_labels:
                    return (
                        "empty_label",
                        f"{loc}: no tags in column '{self.label}'; expected one tag per token",
                    )
            else:
                return (
                    "malformed_row",
                    f"{loc}: column '{self.label}' is not a list; expected one tag per token",
                )
        keep = [i for i, token in enumerate(tokens) if token.strip()]
        if raw_tags is not None and len(raw_tags) != len(tokens):
            return (
                "missing_tag",
                f"{loc}: {len(raw_tags)} tags in column '{self.label}' for {len(tokens)} tokens in column "
                f"'{self.tokens}'; expected one tag per token",
            )
        self.repaired["empty_token"] += len(tokens) - len(keep)
        tokens = [tokens[i].strip() for i in keep]
        if not tokens:
            return "empty_text", f"{loc}: no tokens in column '{self.tokens}'; expected at least one token"
        label = None
        if raw_tags is not None:
            try:
                label, repaired = normalise_entity_tags(
                    [raw_tags[i] for i in keep], self.schema, self.scheme, self.label
                )
            except TagProblem as problem:
                return problem.reason, f"{loc}: {problem.what}"
            self.repaired["orphan_i_tag"] += repaired
        return Target(text=" ".join(tokens), label=label, tokens=tokens)


def _span_fields(item: Any) -> tuple[Any, Any, Any] | None:
    if isinstance(item, Mapping):
        if not {"start", "end", "type"} <= set(item):
            return None
        return item["start"], item["end"], item["type"]
    item = _as_list(item)
    if item is None or len(item) != 3:
        return None
    return item[0], item[1], item[2]


class SpanReader(TargetReader):
    """A row with a raw text and character spans ``{start, end, type}`` or ``[start, end, type]``
    (``end`` exclusive), turned into tokens (``tasks.tags.tokenize``) and IOB2 tags."""

    def __init__(self, label: str | None, schema: LabelSchema):
        super().__init__()
        self.label, self.schema = label, schema

    def read(self, values, loc, text, require_labels):
        found = tokenize(text)
        if not found:
            return "empty_text", f"{loc}: a text without tokens; expected a non-empty text"
        tokens = [token for token, _, _ in found]
        if not self.label:
            return Target(text=" ".join(tokens), label=None, tokens=tokens)
        raw = values.get(self.label)
        items = _as_list(raw)
        if items is None:
            if _missing(raw):
                if require_labels:
                    return (
                        "empty_label",
                        f"{loc}: no entity spans in column '{self.label}'; expected a list (may be empty)",
                    )
                return Target(text=" ".join(tokens), label=None, tokens=tokens)
            return (
                "malformed_row",
                f"{loc}: column '{self.label}' is not a list; expected a list of entity spans",
            )
        starts = {start: i for i, (_, start, _) in enumerate(found)}
        ends = {end: i for i, (_, _, end) in enumerate(found)}
        spans: list[Span] = []
        for number, item in enumerate(items, 1):
            fields = _span_fields(item)
            if fields is None:
                return (
                    "malformed_row",
                    f"{loc}: entity span {number} in column '{self.label}' is malformed; expected "
                    "{start, end, type} or [start, end, type]",
                )
            start, end, kind = fields
            if not (isinstance(start, int) and isinstance(end, int) and isinstance(kind, str)):
                return (
                    "malformed_row",
                    f"{loc}: entity span {number} in column '{self.label}': expected integer start and end "
                    "and a string type",
                )
            name = self.schema.normalise(kind)
            if name is None:
                return (
                    "unknown_label",
                    f"{loc}: unknown entity type in span {number} of column '{self.label}'; expected one of "
                    f"{', '.join(self.schema.names)}",
                )
            if start not in starts or end not in ends or ends[end] < starts[start]:
                return (
                    "span_not_on_tokens",
                    f"{loc}: entity span {number} ({start}-{end}) in column '{self.label}' does not fall on "
                    "token boundaries; expected character offsets where tokens start and end",
                )
            spans.append(Span(starts[start], ends[end] + 1, name))
        spans.sort(key=lambda span: span.start)
        for before, after in zip(spans, spans[1:], strict=False):
            if after.start < before.end:
                return (
                    "overlapping_spans",
                    f"{loc}: overlapping entity spans in column '{self.label}'; expected spans that do not overlap",
                )
        return Target(text=" ".join(tokens), label=tags_from_spans(len(tokens), spans), tokens=tokens)


class MultilabelReader(TargetReader):
    """A row whose label column holds several labels: a list (JSONL, Parquet) or a delimited
    string (a CSV cell ``"hate,offensive"``). An empty list or an empty cell is ``[]`` (none of
    the labels applies); a missing value (no key, JSON null) is unlabelled (``None``). The label
    is the list of label names in schema order, each once."""

    def __init__(self, label: str, schema: LabelSchema, delimiter: str = ","):
        super().__init__()
        self.label, self.schema, self.delimiter = label, schema, delimiter

    def read(self, values, loc, text, require_labels):
        if self.label not in values or _missing(values[self.label]):
            if require_labels:
                return (
                    "empty_label",
                    f"{loc}: no labels in column '{self.label}'; expected a list of labels "
                    f"(empty when none applies) of {', '.join(self.schema.names)}",
                )
            return Target(text=text, label=None)
        raw = values[self.label]
        items = _as_list(raw)
        if items is None:
            if not isinstance(raw, str):
                items = [raw]
            else:
                items = [part for part in raw.split(self.delimiter) if part.strip()]
        names = set()
        for item in items:
            name = self.schema.normalise(item)
            if name is None:
                return (
                    "unknown_label",
                    f"{loc}: unknown label in column '{self.label}'; expected labels of {', '.join(self.schema.names)}",
                )
            names.add(name)
        return Target(text=text, label=[name for name in self.schema.names if name in names])


class SummaryReader(TargetReader):
    """A row with a text and its reference summary (a string)."""

    def __init__(self, label: str | None):
        super().__init__()
        self.label = label

    def read(self, values, loc, text, require_labels):
        if not self.label:
            return Target(text=text, label=None)
        raw = values.get(self.label)
        if _missing(raw) or (isinstance(raw, str) and not raw.strip()):
            if require_labels:
                return (
                    "empty_label",
                    f"{loc}: empty summary in column '{self.label}'; expected a reference summary",
                )
            return Target(text=text, label=None)
        if not isinstance(raw, str):
            return (
                "text_not_string",
                f"{loc}: a value of type {type(raw).__name__} in summary column '{self.label}'; expected a string",
            )
        return Target(text=text, label=raw.strip())


def target_reader(
    task_type: str,
    *,
    label: str | None,
    schema: LabelSchema,
    tokens: str | None = None,
    tag_scheme: str = "auto",
    label_delimiter: str = ",",
) -> TargetReader | None:
    """The row reader of a task type's target form for a tabular file (None for one label: the
    readers' own label check)."""
    form = target_form(task_type)
    if form == TAGS:
        if tokens:
            return TokenTagsReader(tokens, label, schema, tag_scheme)
        return SpanReader(label, schema)
    if form == LABELS:
        # without a label column the text alone is read (SummaryReader without a column does that)
        return MultilabelReader(label, schema, label_delimiter) if label else SummaryReader(None)
    if form == TEXT:
        return SummaryReader(label)
    return None


# ---------------------------------------------------------------------------------------------
# stratification


def fallback_stratify_key(example: Example) -> str | None:
    """What to stratify on, read from the target's form: a label as is; a list of labels joined
    (``"hate+offensive"``); for tags over tokens the entity types present (``"LOC+PER"``, ``"O"``
    for none). A summary has no class: None."""
    label = example.label
    if label is None:
        return None
    if isinstance(label, str):
        return label
    if example.tokens is not None:
        return "+".join(entity_types(label)) or OUTSIDE
    return "+".join(sorted(str(item) for item in label))


def stratify_key(task_type: str | None) -> Callable[[Example], str | None]:
    """The task's ``stratify_key`` (``TASKS[task_type]().stratify_key``); without a task type,
    ``fallback_stratify_key``."""
    if task_type is None:
        return fallback_stratify_key
    return TASKS.get(task_type)().stratify_key


def class_counts(examples: Sequence[Example], task_type: str | None = None) -> dict[str, int]:
    """Per class, how many examples (classification: the label; ``""`` for unlabelled), entities
    (token classification: per entity type) or examples carrying it (multilabel); {} for
    summaries."""
    form = target_form(task_type)
    if form == LABEL:
        return dict(sorted(Counter("" if ex.label is None else ex.label for ex in examples).items()))
    counts: Counter = Counter()
    if form == TEXT:
        return {}
    for ex in examples:
        if ex.label is None:
            continue
        if form == TAGS:
            counts.update(tag[2:] for tag in ex.label if tag.startswith("B-"))
        else:
            counts.update(ex.label)
    return dict(sorted(counts.items()))


# ---------------------------------------------------------------------------------------------
# stored targets (a split folder read back)


def check_target(task_type: str, example: Example, schema: LabelSchema) -> Any:
    """``example.label`` checked against ``schema`` in the form of ``task_type`` and returned in
    canonical spelling; a ValueError saying what was expected."""
    label = example.label
    form = target_form(task_type)
    if form == TAGS:
        if not isinstance(label, list) or example.tokens is None or len(label) != len(example.tokens):
            raise ValueError("expected 'tokens' and one tag per token in 'label'")
        try:
            tags, _ = normalise_entity_tags(label, schema, "iob2", "label")
        except TagProblem as problem:
            raise ValueError(problem.what) from None
        return tags
    if form == LABELS:
        if not isinstance(label, list):
            raise ValueError("expected a list of labels")
        names = {schema.normalise(item) for item in label}
        if None in names:
            raise ValueError(
                f"a label not in the split's schema.json; expected labels of {', '.join(schema.names)}"
            )
        return [name for name in schema.names if name in names]
    if form == TEXT:
        if not isinstance(label, str):
            raise ValueError("expected a summary string")
        return label
    normalised = schema.normalise(label)
    if normalised is None:
        raise ValueError(f"label not in the split's schema.json; expected one of {', '.join(schema.names)}")
    return normalised


def n_entities(examples: Sequence[Example]) -> int:
    """Entities (B- tags) over the examples' IOB2 tags."""
    return sum(sum(1 for tag in ex.label or [] if tag.startswith("B-")) for ex in examples)


@dataclass
class TokenStats:
    sentences: int = 0
    tokens: int = 0
    entities: Counter = field(default_factory=Counter)


def token_stats(examples: Sequence[Example]) -> TokenStats:
    stats = TokenStats(sentences=len(examples))
    for ex in examples:
        stats.tokens += len(ex.tokens or [])
        stats.entities.update(tag[2:] for tag in ex.label or [] if tag.startswith("B-"))
    return stats
