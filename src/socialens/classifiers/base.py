"""The Classifier protocol, the PredictionRecord every family emits, and the family registry."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from socialens.data.schema import Example, LabelSchema
from socialens.errors import ConfigError


class Status(StrEnum):
    OK = "ok"
    REFUSED = "refused"
    INVALID = "invalid"
    ERROR = "error"


@dataclass
class PredictionRecord:
    """One prediction for one input example: the source of truth for every metric and report.

    ``predicted`` is None unless status is ok; a refused or unparseable answer is never replaced
    by a guess."""

    id: str
    gold: str | None
    predicted: str | None
    status: Status = Status.OK
    scores: dict[str, float] | None = None
    raw_output: str | None = None
    latency_s: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    error: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PredictionRecord:
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["status"] = Status(kwargs.get("status", "ok"))
        return cls(**kwargs)


def probability_records(
    examples: list[Example], names: list[str], probabilities, latencies: list[float]
) -> list[PredictionRecord]:
    """One ok record per example from a row of per-label probabilities (in ``names`` order);
    the predicted label is the most probable one, the first on ties."""
    records = []
    for ex, row, latency in zip(examples, probabilities, latencies, strict=True):
        row = [float(v) for v in row]
        best = max(range(len(row)), key=row.__getitem__)
        records.append(
            PredictionRecord(
                id=ex.id,
                gold=ex.label,
                predicted=names[best],
                status=Status.OK,
                scores=dict(zip(names, row, strict=True)),
                latency_s=latency,
                metadata=dict(ex.metadata),
            )
        )
    return records


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


class FamilyParams(BaseModel):
    """Base of each family's hyper-parameter model; unknown fields are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


@runtime_checkable
class Classifier(Protocol):
    family: ClassVar[str]
    schema: LabelSchema | None

    def fit(self, train: list[Example], dev: list[Example] | None = None) -> Classifier: ...

    def predict(self, examples: list[Example]) -> list[PredictionRecord]: ...

    def save(self, directory: str | Path) -> None: ...

    @classmethod
    def load(cls, directory: str | Path) -> Classifier: ...


REGISTRY: dict[str, type] = {}


def register(family: str):
    """Class decorator adding a classifier family to the registry under ``family``."""

    def decorate(cls):
        cls.family = family
        REGISTRY[family] = cls
        return cls

    return decorate


def get_family(family: str) -> type:
    _import_builtin_families()
    try:
        return REGISTRY[family]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise ConfigError(f"unknown model family '{family}': expected one of {known}") from None


def _import_builtin_families() -> None:
    # Importing the modules runs their @register decorators; heavy imports stay inside methods.
    from socialens.classifiers import encoder, instruct, llm_head, prompted, tfidf  # noqa: F401


MODEL_INFO_FILE = "socialens_model.json"


def load_classifier(directory: str | Path) -> Classifier:
    """Load any saved model directory by reading the family it records."""
    directory = Path(directory)
    info_path = directory / MODEL_INFO_FILE
    if not info_path.is_file():
        raise ConfigError(f"{directory}: not a socialens model directory (missing {MODEL_INFO_FILE})")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    return get_family(info["family"]).load(directory)


def software_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("socialens", "torch", "transformers", "scikit-learn", "numpy"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def write_model_info(
    directory: str | Path,
    family: str,
    schema: LabelSchema,
    params: BaseModel,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write the self-describing part of a model directory: family, labels, params, versions."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    info = {
        "family": family,
        "schema": schema.to_dict(),
        "params": params.model_dump(mode="json"),
        "versions": software_versions(),
        **(extra or {}),
    }
    (directory / MODEL_INFO_FILE).write_text(json.dumps(info, indent=2, ensure_ascii=False), encoding="utf-8")


def read_model_info(directory: str | Path) -> dict[str, Any]:
    return json.loads((Path(directory) / MODEL_INFO_FILE).read_text(encoding="utf-8"))


def update_model_info(directory: str | Path, **fields: Any) -> dict[str, Any]:
    """Add or replace top-level fields of a saved model's info (e.g. ``onnx`` after an export)."""
    info = {**read_model_info(directory), **fields}
    path = Path(directory) / MODEL_INFO_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, indent=2, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
    return info


def infer_schema(examples: list[Example]) -> LabelSchema:
    """Labels in sorted order, for callers that fit without a schema (as scikit-learn infers classes_)."""
    names = sorted({ex.label for ex in examples if ex.label is not None})
    if not names:
        raise ValueError("cannot fit: no training example has a label")
    return LabelSchema.from_names(names)
