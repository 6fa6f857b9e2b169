"""The Classifier protocol every family implements, the model-directory format they share, and the
family lookup (the registry itself is ``socialens.core.registry.FAMILIES``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

from socialens.core.errors import ConfigError, SocialensError
from socialens.core.progress import EstimateHook, ProgressHook
from socialens.core.registry import FAMILIES, TASKS
from socialens.core.types import Example, LabelSchema, PredictionRecord, Status


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


@runtime_checkable
class Classifier(Protocol):
    """What every family implements, with one signature, so the bench drives them all alike.

    ``progress`` and ``estimate`` are hooks a family calls while it works (a family that fits in
    seconds never calls them); ``stopped_`` says why the last ``predict`` stopped sending texts
    (an LLM server that stopped answering), else None. ``task`` is the dataset's task description
    (LLM prompts use it), ``task_type`` the kind of target (``socialens.core.registry.TASKS``);
    a family raises a ConfigError for a task type it does not support (``task_types``)."""

    family: ClassVar[str]
    task_types: ClassVar[tuple[str, ...]]
    Params: ClassVar[type[BaseModel]]
    schema: LabelSchema | None
    task_type: str
    progress: ProgressHook | None
    estimate: EstimateHook | None
    stopped_: str | None

    def __init__(
        self,
        params: BaseModel | None = None,
        seed: int = 0,
        *,
        progress: ProgressHook | None = None,
        estimate: EstimateHook | None = None,
    ) -> None: ...

    def fit(
        self,
        train: list[Example],
        dev: list[Example] | None = None,
        *,
        schema: LabelSchema | None = None,
        task: str = "",
        task_type: str = "classification",
    ) -> Classifier: ...

    def predict(self, examples: list[Example]) -> list[PredictionRecord]: ...

    def save(self, directory: str | Path) -> None: ...

    @classmethod
    def load(
        cls, directory: str | Path, *, trust: Trust | None = None, progress: ProgressHook | None = None
    ) -> Classifier: ...


# Every registered family, by name (a lazy registry: a family's module is imported on first use).
REGISTRY = FAMILIES


def get_family(family: str) -> type:
    return FAMILIES.get(family)


def check_task_type(classifier: Classifier, task_type: str) -> str:
    """``task_type`` if the classifier's family supports it, else a one-line ConfigError."""

    TASKS.get(task_type)  # an unknown task type names the known ones
    if task_type not in classifier.task_types:
        raise ConfigError(
            f"model family '{classifier.family}' does not handle the task type '{task_type}'; "
            f"expected one of: {', '.join(classifier.task_types)}"
        )
    return task_type


MODEL_INFO_FILE = "socialens_model.json"


@dataclass(frozen=True)
class Trust:
    """What the user allows a model directory to do beyond the safe default (docs/security.md).

    A model directory is a file someone may have shared: by default loading it runs no code of
    its author's (no pickle) and sends no text and no secret anywhere it chose. ``pickle`` allows
    a pickle file (an old TF-IDF ``pipeline.joblib``, ``*.bin`` torch weights); ``endpoints`` and
    ``key_envs`` are the endpoint URLs and API-key environment variables the user confirmed."""

    pickle: bool = False
    endpoints: frozenset[str] = frozenset()
    key_envs: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        trust_pickle: bool = False,
        allow_endpoints: Iterable[str] = (),
        allow_key_envs: Iterable[str] = (),
    ) -> Trust:
        return cls(
            pickle=bool(trust_pickle),
            endpoints=frozenset(normalise_endpoint(url) for url in allow_endpoints or ()),
            key_envs=frozenset(allow_key_envs or ()),
        )


def normalise_endpoint(url: str) -> str:
    """The form endpoint URLs are compared in: as written, without trailing slashes."""
    return url.strip().rstrip("/")


def refuse_pickle(path: Path, trust: Trust | None, what: str = "a pickle") -> None:
    """Raise a one-line ConfigError about loading ``path`` unless the user passed --trust-pickle."""
    if trust is not None and trust.pickle:
        return
    raise ConfigError(
        f"{path}: refused to load {what}: unpickling runs any code its author put in the file; "
        "if you trust whoever made this model directory, pass --trust-pickle (trust_pickle=True)"
    )


# Weight files of transformers models and peft adapters: safetensors, or pickles (torch.save).
SAFE_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")
PICKLED_WEIGHT_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "adapter_model.bin")


def weights_are_safetensors(directory: Path, trust: Trust | None, *, required: bool = True) -> bool:
    """Whether the model or adapter folder ``directory`` holds its weights as safetensors. With only
    pickled weights (a torch ``*.bin``) it refuses unless ``trust.pickle``, and then returns False
    (load the pickle). No weights at all: a ConfigError when ``required``, else True (nothing
    pickled to refuse: a hub id, a GGUF file, or a folder the loader will complain about)."""
    directory = Path(directory)
    if any((directory / name).is_file() for name in SAFE_WEIGHT_FILES):
        return True
    for name in PICKLED_WEIGHT_FILES:
        if (directory / name).is_file():
            refuse_pickle(directory / name, trust, "pickled torch weights")
            return False
    if required:
        raise ConfigError(f"{directory}: no model.safetensors or adapter_model.safetensors (the weights)")
    return True


def check_referenced_weights(reference: str | None, trust: Trust | None) -> None:
    """A base model or adapter that a saved model names by a local folder (not ``builtin:`` or a
    hub id) loads under the same rule as the directory itself: safetensors, or --trust-pickle."""
    if reference and not reference.startswith("builtin:"):
        folder = Path(reference).expanduser()
        if folder.is_dir():
            weights_are_safetensors(folder, trust, required=False)


def load_classifier(
    directory: str | Path,
    *,
    trust_pickle: bool = False,
    allow_endpoints: Iterable[str] = (),
    allow_key_envs: Iterable[str] = (),
) -> Classifier:
    """Load any saved model directory by reading the family it records.

    Safe by default for a directory someone else made: no pickle is loaded unless
    ``trust_pickle``, and a model that sends texts to an endpoint (a prompted model on an
    OpenAI-compatible server) loads only when that endpoint URL is in ``allow_endpoints`` and the
    environment variable it reads the API key from is in ``allow_key_envs``."""
    directory = Path(directory)
    info_path = directory / MODEL_INFO_FILE
    if not info_path.is_file():
        raise ConfigError(f"{directory}: not a socialens model directory (missing {MODEL_INFO_FILE})")
    info = read_model_info(directory)
    check_model_info(directory, info)
    trust = Trust.of(trust_pickle, allow_endpoints, allow_key_envs)
    family = get_family(info["family"])
    try:
        return family.load(directory, trust=trust)
    except SocialensError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken or incomplete directory, one line
        raise ConfigError(
            f"{directory}: cannot load this {info['family']} model ({one_line(exc)}); expected a complete, "
            "intact model directory as `socialens train` writes it (copy it again or retrain)"
        ) from None


def model_digest(directory: str | Path) -> str:
    """SHA-256 (hex) over every file under a model directory: each file's relative path, size and
    full content, in sorted order. It is the model's version: the served ``/v1/model`` version
    (its first 12 characters) and the model fingerprint ``predict`` records for a resume, so
    changing any file a model loads (weights, tokenizer, ONNX export, info) changes it."""
    directory = Path(directory)
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        content = hashlib.sha256()
        size = 0
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(2**20), b""):
                content.update(block)
                size += len(block)
        digest.update(f"{path.relative_to(directory).as_posix()}\0{size}\0{content.hexdigest()}\n".encode())
    return digest.hexdigest()


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
    """The model's ``socialens_model.json``; a missing, unreadable or non-object file is a one-line
    ConfigError naming it."""
    path = Path(directory) / MODEL_INFO_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{Path(directory)}: not a socialens model directory (missing {MODEL_INFO_FILE})"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"{path}: unreadable ({one_line(exc)}); expected the JSON object `socialens train` writes"
        ) from None
    if not isinstance(info, dict):
        raise ConfigError(
            f"{path}: a JSON {type(info).__name__}; expected the JSON object `socialens train` writes"
        )
    return info


def check_model_info(directory: str | Path, info: dict[str, Any]) -> LabelSchema:
    """The label schema of a model's info, after checking the fields every family reads
    (``family``: a string, ``schema``: at least one label); else a one-line ConfigError."""
    path = Path(directory) / MODEL_INFO_FILE
    if not isinstance(info.get("family"), str):
        raise ConfigError(
            f"{path}: field 'family' is missing or not a string; expected a family name such as tfidf"
        )
    if "schema" not in info:
        raise ConfigError(
            f"{path}: field 'schema' is missing; expected the model's labels ({{\"labels\": [...]}})"
        )
    try:
        return LabelSchema.from_dict(info["schema"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(
            f"{path}: field 'schema' is malformed ({one_line(exc)}); "
            'expected {"labels": [{"name": ...}, ...]} with at least one label'
        ) from None


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one short line: its type and message, whitespace collapsed."""
    errors = getattr(exc, "errors", None)
    if isinstance(exc, KeyError):
        text = f"missing field {exc}"
    elif isinstance(exc, ValueError) and callable(errors):  # pydantic: the first bad field
        first = errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "value"
        text = f"field '{where}': {first.get('msg', 'invalid value')}"
    else:
        text = " ".join(str(exc).split()) or type(exc).__name__
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
