"""The experiment file: pydantic models, and errors that name the file, the field, the value and
what was expected (in the spirit of spaCy's config errors)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from socialens.errors import ConfigError
from socialens.paths import safe_name

M = TypeVar("M", bound=BaseModel)

_BOOL_TAG = "tag:yaml.org,2002:bool"


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans: only ``true`` / ``false`` (also ``True``,
    ``TRUE``, ``False``, ``FALSE``) are booleans. YAML 1.1's other boolean words (``yes``, ``no``,
    ``on``, ``off``, ``y``, ``n`` in any case) stay strings, so a label written ``OFF`` or ``no`` is
    the label it looks like. Numbers and ``null`` are resolved as before; where a string is
    expected (label names, aliases, column names) such a value is an error naming the field."""


ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ConfigLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml_text(text: str) -> Any:
    """Parse YAML text with :class:`ConfigLoader` (every config file of socialens is read so)."""
    return yaml.load(text, Loader=ConfigLoader)  # noqa: S506 - ConfigLoader is a SafeLoader


def not_a_string_hint(value: Any) -> str:
    """The message for a number, boolean or null where a YAML field needs a string."""
    if isinstance(value, bool):
        kind = f"the boolean {value}"
    elif value is None:
        kind = "null"
    elif isinstance(value, int | float):
        kind = f"the number {value!r}"
    else:
        kind = f"a {type(value).__name__}"
    return f"expected a string, got {kind}; put the value in quotes in the YAML"


class DatasetEntry(BaseModel):
    """One dataset of the grid: a dataset YAML (path or ``builtin:<name>``) plus preparation options."""

    model_config = ConfigDict(extra="forbid")

    config: str
    cap: int | None = Field(default=None, gt=0, description="stratified cap on the training set")
    test_sample: int | None = Field(
        default=None, gt=0, description="evaluate on a stratified sample of this many test examples"
    )
    split_seed: int = Field(default=0, ge=0)  # numpy and scikit-learn take seeds from 0 to 2**32 - 1
    official_test: bool = Field(
        default=False,
        description="keep the dataset's own test split exactly as given (no duplicate, short-text or "
        "train-overlap removal) to compare with published numbers",
    )
    drop_invalid: bool = False
    official_metric: str | None = None


class ModelEntry(BaseModel):
    """One model of the grid: an id, a registered family, and that family's parameters."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    id: str
    family: str

    @field_validator("id")
    @classmethod
    def _safe_id(cls, value: str) -> str:
        return safe_name(value)  # bench writes runs/<experiment>/<dataset>/<model id>/

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def plain_strings_are_configs(value: Any) -> Any:
    """A ``datasets:`` list may name a dataset config by its path alone: ``- configs/x.yaml``
    stands for ``- {config: configs/x.yaml}``."""
    if isinstance(value, list):
        return [{"config": item} if isinstance(item, str) else item for item in value]
    return value


class EnergySettings(BaseModel):
    """codecarbon around every fit and predict (offline: no network); ``country`` (ISO 3166 alpha-3)
    picks the grid carbon intensity that turns kWh into CO2."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    country: str = Field(default="USA", pattern=r"^[A-Z]{3}$")

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str) -> str:
        from socialens.evaluation.energy import known_countries

        known = known_countries()
        if known is not None and value not in known:
            raise ValueError(
                f"no grid carbon intensity for country '{value}' "
                "(expected an ISO 3166 alpha-3 code such as USA, FRA, IND)"
            )
        return value


class Experiment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    data_root: str | None = None
    output_dir: str = "runs"
    datasets: list[DatasetEntry] = Field(min_length=1)
    models: list[ModelEntry] = Field(min_length=1)
    seeds: list[Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: [0], min_length=1)
    bootstrap: int = Field(default=1000, ge=0)
    slice_by: list[str] = Field(default_factory=lambda: ["topic", "language"])
    energy: EnergySettings = Field(default_factory=lambda: EnergySettings())
    # the experiment file it was loaded from (set by load_experiment; None when built in code):
    # the folder its paths may point into
    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        return self._source

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        return safe_name(value)  # bench writes <output_dir>/<name>/

    @field_validator("datasets", mode="before")
    @classmethod
    def _plain_strings_are_configs(cls, value: Any) -> Any:
        return plain_strings_are_configs(value)

    @model_validator(mode="after")
    def _unique_ids(self) -> Experiment:
        seen: set[str] = set()
        for entry in self.models:
            if entry.id in seen:
                raise ValueError(
                    f"model id '{entry.id}' appears twice; ids name output folders and must be unique"
                )
            seen.add(entry.id)
        return self


def format_validation_error(error: ValidationError, source: str, prefix: str = "") -> str:
    """One line per problem: ``file: field 'a.b[2].c' = 'value': expected ...``."""
    lines = []
    for item in error.errors():
        loc = prefix
        for part in item["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        value = item.get("input")
        shown = "" if isinstance(value, dict) or value is None else f" = {value!r}"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        elif item["type"] == "missing":
            message = "required field is missing"
        elif item["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        elif item["type"] == "string_type":
            message = not_a_string_hint(value)
        lines.append(f"{source}: field '{loc or '<root>'}'{shown}: {message}")
    return "\n".join(lines)


def validate_model_params(entry: ModelEntry, index: int, source: str) -> BaseModel:
    """Validate a model entry's extra fields against its family's Params model."""
    from socialens.classifiers.base import get_family

    try:
        family = get_family(entry.family)
    except ConfigError as exc:
        raise ConfigError(f"{source}: field 'models[{index}].family' = {entry.family!r}: {exc}") from None
    try:
        return family.Params(**entry.params)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, prefix=f"models[{index}]")) from None


def read_yaml(path: Path) -> Any:
    """Parse a YAML file with :class:`ConfigLoader`; a syntax error or non-UTF-8 file is a one-line
    ConfigError with the line."""
    try:
        return load_yaml_text(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{line}: not valid YAML ({problem})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; expected a YAML file") from None


def load_model_file(path: str | Path, model: type[M], kind: str, top_level: str) -> M:
    """A YAML file validated into ``model``; every problem is a one-line ConfigError naming the file
    (``kind`` says what file was expected, ``top_level`` which keys it holds)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {kind} file not found")
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with {top_level} at the top level")
    try:
        return model(**raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from None
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def load_experiment(path: str | Path) -> Experiment:
    path = Path(path)
    experiment = load_model_file(path, Experiment, "experiment", "name, datasets and models")
    experiment._source = path
    for index, entry in enumerate(experiment.models):
        validate_model_params(entry, index, str(path))
    return experiment
