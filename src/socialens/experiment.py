"""The experiment file: the datasets x models x seeds grid as pydantic models, validated with
errors that name the file, the field, the value and what was expected."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from socialens.core.errors import ConfigError
from socialens.core.paths import safe_name
from socialens.core.registry import FAMILIES
from socialens.core.yaml_io import format_validation_error, load_model_file, plain_strings_are_configs


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
    # which trained models bench keeps in their cell folders: none, the recommended one per
    # dataset (its seed 0, else its first seed), or every cell's
    save_models: Literal["none", "best", "all"] = "best"
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


def validate_model_params(entry: ModelEntry, index: int, source: str) -> BaseModel:
    """Validate a model entry's extra fields against its family's Params model."""
    try:
        family = FAMILIES.get(entry.family)
    except ConfigError as exc:
        raise ConfigError(f"{source}: field 'models[{index}].family' = {entry.family!r}: {exc}") from None
    try:
        return family.Params(**entry.params)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, prefix=f"models[{index}]")) from None


def load_experiment(path: str | Path) -> Experiment:
    path = Path(path)
    experiment = load_model_file(path, Experiment, "experiment", "name, datasets and models")
    experiment._source = path
    for index, entry in enumerate(experiment.models):
        validate_model_params(entry, index, str(path))
    return experiment
