"""Core data types: label schemas, examples and splits."""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
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
    id: str
    text: str
    label: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "label": self.label, "metadata": self.metadata}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Example:
        return cls(
            id=str(data["id"]),
            text=data["text"],
            label=data.get("label"),
            metadata=data.get("metadata") or {},
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

    def parts(self) -> dict[str, list[Example]]:
        return {"train": self.train, "dev": self.dev, "test": self.test}
