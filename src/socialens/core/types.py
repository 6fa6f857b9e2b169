"""Core data types: label schemas, examples, splits and the prediction record every family emits."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


def normalise_label_text(value: str) -> str:
    """Case-fold, NFKC-normalise and collapse whitespace, underscores and hyphens so that
    'Partially False', 'partially_false' and ' PARTIALLY-false ' compare equal."""
    text = unicodedata.normalize("NFKC", str(value)).casefold().strip()
    return re.sub(r"[\s_\-]+", " ", text)


def is_blank_text(text: str) -> bool:
    """The one rule for a text that cannot be classified: empty, or nothing but whitespace (any
    Unicode whitespace, as ``str.strip`` sees it). ``predict`` gives such a row status ``invalid``,
    and so does the HTTP service, without sending it to the model."""
    return not text.strip()


@dataclass(frozen=True)
class Label:
    name: str
    description: str = ""
    aliases: tuple[str, ...] = ()


@dataclass
class LabelSchema:
    """An ordered label set. ``wordings`` holds alternative label wordings (e.g. topic-specific
    ones) keyed by wording name, then by label name; prompts use them, gold labels never do."""

    labels: list[Label]
    name: str = "universal"
    wordings: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.labels:
            raise ValueError("a label schema needs at least one label")
        self._lookup: dict[str, str] = {}
        for label in self.labels:
            for key in (label.name, *label.aliases):
                norm = normalise_label_text(key)
                owner = self._lookup.get(norm)
                if owner is not None and owner != label.name:
                    raise ValueError(
                        f"label alias '{key}' is ambiguous: it matches both '{owner}' and '{label.name}'"
                    )
                self._lookup[norm] = label.name

    @property
    def names(self) -> list[str]:
        return [label.name for label in self.labels]

    def index(self, name: str) -> int:
        return self.names.index(name)

    def normalise(self, raw: Any) -> str | None:
        """Map a raw gold label (any case, spacing or alias) to its canonical name, or None."""
        if raw is None or (isinstance(raw, float) and math.isnan(raw)):
            return None
        if isinstance(raw, float) and raw.is_integer():
            raw = int(raw)
        return self._lookup.get(normalise_label_text(str(raw)))

    def description(self, name: str) -> str:
        return next(label.description for label in self.labels if label.name == name)

    @classmethod
    def from_names(cls, names: list[str], name: str = "universal") -> LabelSchema:
        return cls(labels=[Label(n) for n in names], name=name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "labels": [
                {"name": lab.name, "description": lab.description, "aliases": list(lab.aliases)}
                for lab in self.labels
            ],
            "wordings": self.wordings,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelSchema:
        labels = [
            Label(
                name=str(item["name"]),
                description=item.get("description", "") or "",
                aliases=tuple(str(a) for a in item.get("aliases", []) or []),
            )
            for item in data["labels"]
        ]
        return cls(labels=labels, name=data.get("name", "universal"), wordings=data.get("wordings", {}) or {})


@dataclass
class Example:
    """One input text and its target. ``label`` is the target in the task's own form (see
    ``socialens.tasks``): a label name (classification), a list of label names (multilabel), one
    IOB2 tag per token (token classification; ``tokens`` then holds the tokens and ``text`` is them
    joined by single spaces) or a reference summary (summarisation); None when unlabelled."""

    id: str
    text: str
    label: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    tokens: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {"id": self.id, "text": self.text, "label": self.label, "metadata": self.metadata}
        if self.tokens is not None:
            data["tokens"] = self.tokens
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Example:
        return cls(
            id=str(data["id"]),
            text=data["text"],
            label=data.get("label"),
            metadata=data.get("metadata") or {},
            tokens=data.get("tokens"),
        )


@dataclass
class Split:
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    schema: LabelSchema
    name: str = "dataset"
    stats: dict[str, Any] = field(default_factory=dict)
    task: str = ""  # the dataset's task description, used in LLM prompts
    task_type: str = "classification"  # the kind of target: a name in socialens.core.registry.TASKS

    def parts(self) -> dict[str, list[Example]]:
        return {"train": self.train, "dev": self.dev, "test": self.test}


class Status(StrEnum):
    OK = "ok"
    REFUSED = "refused"
    INVALID = "invalid"
    ERROR = "error"


@dataclass
class PredictionRecord:
    """One prediction for one input example: the source of truth for every metric and report.

    ``predicted`` is None unless status is ok; a refused or unparseable answer is never replaced
    by a guess. ``gold`` and ``predicted`` take the task's form of a target (see ``Example``);
    ``details`` holds what a task adds to a prediction (entities with character offsets, the
    number of hallucinated entities), None for classification."""

    id: str
    gold: Any
    predicted: Any
    status: Status = Status.OK
    scores: dict[str, float] | None = None
    raw_output: str | None = None
    latency_s: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    error: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        if data["details"] is None:  # classification records keep the fields they always had
            del data["details"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PredictionRecord:
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["status"] = Status(kwargs.get("status", "ok"))
        return cls(**kwargs)


def write_records(path: str | Path, records: Iterable[PredictionRecord]) -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
    tmp.replace(path)


def read_records(path: str | Path) -> list[PredictionRecord]:
    with Path(path).open(encoding="utf-8") as handle:
        return [PredictionRecord.from_dict(json.loads(line)) for line in handle if line.strip()]


def error_records(examples, message: str) -> list[PredictionRecord]:
    """A model that failed still accounts for every example: one error record each."""
    return [
        PredictionRecord(
            id=ex.id,
            gold=ex.label,
            predicted=None,
            status=Status.ERROR,
            error=message,
            metadata=dict(ex.metadata),
        )
        for ex in examples
    ]
