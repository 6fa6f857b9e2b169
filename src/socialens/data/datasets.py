"""Dataset YAML files: a pydantic model of them, loading by path or ``builtin:<name>``, and reading
every split they name into a :class:`RawDataset`."""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from socialens.core.errors import ConfigError, DataError
from socialens.core.paths import confine, safe_name
from socialens.core.registry import TASKS
from socialens.core.types import Example, Label, LabelSchema
from socialens.core.yaml_io import not_a_string_hint, read_yaml
from socialens.data.conll import DOCUMENT_MARKER, parse_line_range
from socialens.data.normalise import NormaliseOptions
from socialens.data.readers import DEFAULT_MAX_CHARS, TWEETEVAL_SPLITS, read_examples
from socialens.data.targets import (
    CLASSIFICATION,
    LABEL,
    TAGS,
    TEXT,
    summary_schema_config,
    target_form,
    target_reader,
)

SPLITS = ("train", "dev", "test")
BUILTIN_ROOT = Path(__file__).parent / "builtin"
DATA_ROOT_ENV = "SOCIALENS_DATA_ROOT"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ColumnsConfig(_Model):
    text: str | list[str] = "text"
    label: str | None = "label"
    id: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    # token classification: the column of tokens (a CoNLL column among options.column_names, default
    # the first; a JSONL list of strings, ``label`` then the list of tags). Without it a JSONL
    # ``text`` is tokenized and ``label`` holds character spans.
    tokens: str | None = None

    @field_validator("text")
    @classmethod
    def _text_not_empty(cls, value: str | list[str]) -> str | list[str]:
        if not value:
            raise ValueError("expected a column name or a non-empty list of column names")
        return value


class ColumnsOverride(_Model):
    """Per-split column overrides: only the fields given replace the dataset's ``columns``."""

    text: str | list[str] | None = None
    label: str | None = None
    id: str | None = None
    metadata: dict[str, str] | None = None
    tokens: str | None = None


class GluedRowsConfig(_Model):
    """Repair rows holding two records glued together: a row with extra fields whose boundary field
    is "<last field><id>" (the id matching ``id_pattern``) is split into two records."""

    id_pattern: str = r"\d+"


class ReaderOptions(_Model):
    header: bool = True
    delimiter: str | None = None
    quoting: Literal["minimal", "none", "all"] = "minimal"
    encoding: str = "utf-8"
    column_names: list[str] | None = None
    glued_rows: GluedRowsConfig | None = None
    max_chars: int = Field(DEFAULT_MAX_CHARS, gt=0)
    hf_name: str | None = None  # the Hugging Face dataset configuration (subset) name
    # token classification (CoNLL and JSONL): the tag scheme, normalised to IOB2
    tag_scheme: Literal["auto", "iob1", "iob2", "bioes"] = "auto"
    # CoNLL: a line whose first field is this ends a sentence and is dropped (null: none)
    document_marker: str | None = DOCUMENT_MARKER
    # CoNLL: tokens that end a sentence (kept in it), for files without blank lines between sentences
    sentence_end: list[str] = Field(default_factory=list)
    # CoNLL: a sentence reaching this many tokens is cut there (counted as a repair)
    max_sentence_tokens: int | None = Field(None, gt=0)
    # multilabel: the separator of labels in one CSV/TSV cell ("hate,offensive")
    label_delimiter: str = Field(",", min_length=1)


class FileSpec(_Model):
    """One split's file; with ``member``, ``file`` is a zip or tar archive and ``member`` the path
    of the file to read inside it (read in memory, never extracted)."""

    file: str
    member: str | None = None
    columns: ColumnsOverride | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    # CoNLL: only these lines of the file, 1-based and inclusive ("1-125305", "125306-")
    lines: str | None = None

    @field_validator("lines")
    @classmethod
    def _line_range(cls, value: str | None) -> str | None:
        if value is not None:
            parse_line_range(value)
        return value

    def line_range(self) -> tuple[int, int | None] | None:
        return None if self.lines is None else parse_line_range(self.lines)


class SubsetConfig(_Model):
    """One part of a combined dataset (e.g. one stance target): its own folder and metadata; the
    dataset's ``files`` are read inside each subset's folder and the ids get its name as prefix."""

    path: str
    name: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class LabelConfig(_Model):
    """One label; its name and aliases must be YAML strings (a number, boolean or null is an error
    naming the field, never silently turned into text)."""

    name: str
    description: str = ""
    aliases: list[str] = Field(default_factory=list)


class SchemaConfig(_Model):
    name: str = "universal"
    labels: list[LabelConfig] = Field(min_length=1)
    wordings: dict[str, dict[str, str]] = Field(default_factory=dict)

    @field_validator("labels", mode="before")
    @classmethod
    def _plain_items_are_names(cls, value: Any) -> Any:
        """``- OFF`` stands for ``- {name: OFF}`` (so a non-string item is reported as its name)."""
        if isinstance(value, list):
            return [item if isinstance(item, dict | LabelConfig) else {"name": item} for item in value]
        return value

    def to_schema(self) -> LabelSchema:
        labels = [Label(lab.name, lab.description, tuple(lab.aliases)) for lab in self.labels]
        return LabelSchema(labels=labels, name=self.name, wordings=dict(self.wordings))


class SplitConfig(_Model):
    """How ``prepare`` makes the splits a dataset does not ship. ``group_by`` names a metadata
    field (a key of ``columns.metadata``): every example of one value (a thread, a user, a claim)
    goes to one split, and groups shared between splits are counted (also for given splits)."""

    group_by: str | None = None


class DatasetConfig(_Model):
    name: str
    task: str = ""
    # the kind of target: a name in socialens.core.registry.TASKS
    task_type: str = CLASSIFICATION
    language: str = "en"
    source: str = ""
    notes: str = ""
    format: Literal["csv", "tsv", "jsonl", "parquet", "conll", "hf", "tweeteval"]
    path: str = "."
    # auto: the YAML's folder when it holds every file named, else the data root (base_candidates)
    path_base: Literal["auto", "config", "data_root"] = "auto"
    hub_id: str | None = None
    files: dict[str, str | FileSpec] | None = None
    file: str | FileSpec | None = None
    subsets: list[SubsetConfig] | None = None
    columns: ColumnsConfig = Field(default_factory=ColumnsConfig)
    options: ReaderOptions = Field(default_factory=ReaderOptions)
    metadata: dict[str, Any] = Field(default_factory=dict)
    official_metric: str | None = None
    label_schema: SchemaConfig = Field(alias="schema")
    # how the duplicate key treats Arabic and Devanagari (socialens.data.normalise)
    normalise: NormaliseOptions = Field(default_factory=NormaliseOptions)
    # gold values marking rows outside this task (HASOC's sub-task B/C column is NONE where sub-task
    # A is NOT): such rows are read, left out and counted per split as "label_excluded"
    exclude_labels: list[str] = Field(default_factory=list)
    split: SplitConfig = Field(default_factory=SplitConfig)
    # keep only the rows whose metadata field (a key of columns.metadata) holds one of these values
    where: dict[str, list[str]] = Field(default_factory=dict)

    # set by load_dataset_config: where the YAML was and whether it is a builtin one
    config_path: Path | None = Field(default=None, exclude=True)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        return safe_name(value)  # bench writes runs/<experiment>/<dataset name>/

    @field_validator("task_type")
    @classmethod
    def _known_task(cls, value: str) -> str:
        if value not in TASKS:
            raise ValueError(f"unknown task type '{value}'; expected one of {', '.join(TASKS.names())}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _summary_schema(cls, data: Any) -> Any:
        """A summarisation dataset needs no ``schema:``: it gets the one-label schema "summary"."""
        task_type = data.get("task_type") if isinstance(data, dict) else None
        if (
            isinstance(task_type, str)
            and task_type in TASKS
            and target_form(task_type) == TEXT
            and "schema" not in data
        ):
            data = {**data, "schema": summary_schema_config()}
        return data

    @field_validator("files")
    @classmethod
    def _split_names(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        for split in value or {}:
            if split not in SPLITS:
                raise ValueError(f"unknown split '{split}'; expected train, dev or test")
        if value is not None and not value:
            raise ValueError("expected at least one of train, dev, test")
        return value

    @model_validator(mode="after")
    def _files_or_file(self) -> DatasetConfig:
        if self.format == "tweeteval" and self.files is None and self.file is None:
            self.files = {"train": "train", "dev": "val", "test": "test"}
        if (self.files is None) == (self.file is None):
            raise ValueError(
                "expected exactly one of 'files' (split -> file) or 'file' (one file, no splits)"
            )
        if self.format == "hf" and not self.hub_id:
            raise ValueError("format 'hf' needs 'hub_id' (and files: split -> Hugging Face split name)")
        if self.format == "conll" and target_form(self.task_type) != TAGS:
            tagging = ", ".join(name for name in TASKS.names() if target_form(name) == TAGS)
            raise ValueError(
                f"format 'conll' holds token tags: expected task_type: {tagging} (got {self.task_type})"
            )
        if self.format == "tweeteval" and target_form(self.task_type) != LABEL:
            raise ValueError(
                f"format 'tweeteval' holds one label per text: expected task_type: {CLASSIFICATION}"
            )
        for split, spec in self.split_files().items():
            if spec.lines is not None and self.format != "conll":
                raise ValueError(
                    f"files.{split}.lines: a line range is read from CoNLL files only (format: conll)"
                )
        fields = self.metadata_fields()
        for field_name, column in [
            ("split.group_by", self.split.group_by),
            *[("where", k) for k in self.where],
        ]:
            if column is not None and column not in fields:
                known = ", ".join(sorted(fields)) or "none (add the column to columns.metadata)"
                raise ValueError(
                    f"{field_name}: unknown column {column!r}; expected a metadata field named in "
                    f"columns.metadata: {known}"
                )
        for column, values in self.where.items():
            if not values:
                raise ValueError(f"where.{column}: an empty list keeps no row; expected at least one value")
        try:
            schema = self.label_schema.to_schema()
        except ValueError as exc:
            raise ValueError(f"schema: {exc}") from None
        if self.exclude_labels and target_form(self.task_type) != LABEL:
            raise ValueError("exclude_labels: only a dataset with one label per text can exclude labels")
        for value in self.exclude_labels:
            if schema.normalise(value) is not None:
                raise ValueError(
                    f"exclude_labels: '{value}' is the schema label '{schema.normalise(value)}'; expected "
                    "a gold value outside the schema"
                )
        if self.official_metric:
            from socialens.tasks.classification_metrics import check_metric_name

            try:
                check_metric_name(
                    self.official_metric, schema.names, TASKS.get(self.task_type).scalar_metrics
                )
            except ConfigError as exc:
                raise ValueError(f"official_metric: {exc}") from None
        return self

    def to_schema(self) -> LabelSchema:
        return self.label_schema.to_schema()

    def reading_schema(self) -> LabelSchema:
        """The schema rows are read with: the labels, then each excluded value as one more label."""
        schema = self.to_schema()
        if not self.exclude_labels:
            return schema
        extra = [Label(value) for value in self.exclude_labels]
        return LabelSchema(labels=[*schema.labels, *extra], name=schema.name, wordings=schema.wordings)

    def metadata_fields(self) -> set[str]:
        """The metadata fields read from columns (``columns.metadata`` and per-split overrides)."""
        fields = set(self.columns.metadata)
        for spec in self.split_files().values():
            if spec.columns is not None and spec.columns.metadata:
                fields.update(spec.columns.metadata)
        return fields

    def split_files(self) -> dict[str, FileSpec]:
        """split -> FileSpec; a single ``file`` is the split 'all' (to be split by ``prepare``)."""
        raw = self.files if self.files is not None else {"all": self.file}
        return {
            split: spec if isinstance(spec, FileSpec) else FileSpec(file=spec) for split, spec in raw.items()
        }

    def base_candidates(self, data_root: str | Path | None = None) -> list[tuple[str, Path]]:
        """``(where, folder)`` pairs a relative ``path`` may resolve against, in the order tried:
        the dataset YAML's folder, then the data root (``path_base`` keeps only one of them). A
        YAML written beside its data file then reads it without a data root, and one of the shared
        configs (``path: liar``) still finds its folder under the data root."""
        path = Path(os.path.expanduser(self.path))
        if path.is_absolute():
            return [("the absolute path", path)]
        under_root = ("the data root", resolve_data_root(data_root) / path)
        if self.config_path is None or self.path_base == "data_root":
            return [under_root]
        beside = ("the dataset YAML's folder", self.config_path.parent / path)
        return [beside] if self.path_base == "config" else [beside, under_root]

    def base_dir(self, data_root: str | Path | None = None) -> Path:
        """The folder the files are read from: the first candidate that holds every file the YAML
        names; when none does, the last one (``load_dataset`` then says what is missing where)."""
        candidates = self.base_candidates(data_root)
        for _, folder in candidates:
            if not missing_files(self, folder):
                return folder
        return candidates[-1][1]


@dataclass
class RawDataset:
    name: str
    schema: LabelSchema
    splits: dict[str, list[Example]]
    dropped: dict[str, Counter] = field(default_factory=dict)  # split -> reason -> rows dropped
    config: DatasetConfig | None = None
    task_type: str = CLASSIFICATION  # a name in socialens.core.registry.TASKS
    repaired: dict[str, Counter] = field(default_factory=dict)  # split -> repair -> count
    filtered: dict[str, int] = field(default_factory=dict)  # split -> rows the YAML's ``where`` left out

    @property
    def n_dropped(self) -> int:
        return sum(sum(c.values()) for c in self.dropped.values())


def resolve_data_root(data_root: str | Path | None = None) -> Path:
    """The data root: the argument, else $SOCIALENS_DATA_ROOT, else ../shared/datasets from cwd."""
    if data_root is None:
        data_root = os.environ.get(DATA_ROOT_ENV) or Path.cwd().parent / "shared" / "datasets"
    return Path(data_root).expanduser()


def user_data_roots() -> list[tuple[str, Path]]:
    """The data roots the user (not a config) chose: $SOCIALENS_DATA_ROOT when set, and the default
    ../shared/datasets from the current folder. An experiment's or mix's own ``data_root`` must lie
    in one of these or in the config's folder."""
    roots = [("the default data root", Path.cwd().parent / "shared" / "datasets")]
    if os.environ.get(DATA_ROOT_ENV):
        roots.insert(0, (f"${DATA_ROOT_ENV}", Path(os.environ[DATA_ROOT_ENV]).expanduser()))
    return roots


def check_data_paths(config: DatasetConfig, data_root: str | Path | None = None) -> None:
    """Every folder and file ``config`` reads must resolve (symlinks followed) inside the data root
    or the dataset YAML's own folder (a builtin dataset's folder is in the package); else a
    one-line ConfigError naming the file, the field and its value. A data root given by the caller
    (``--data-root``) is the user's say, so an absolute path under it is fine."""
    if config.format == "hf":
        return
    places = [
        ("the data root", resolve_data_root(data_root)),
        ("the dataset YAML's folder", config.config_path.parent if config.config_path else None),
    ]
    source = config.config_path or f"dataset '{config.name}'"
    opt_in = (
        "data paths stay under the data root or the YAML's folder; pass --data-root to allow another folder"
    )

    def check(path: Path, field: str, value: object) -> None:
        confine(path, places, source=source, field=field, value=value, opt_in=opt_in)

    base = config.base_dir(data_root)
    check(base, "path", config.path)
    if config.subsets is not None:
        for index, subset in enumerate(config.subsets):
            check(base / subset.path, f"subsets[{index}].path", subset.path)
    for target in data_files(config, base):
        check(target.path, target.field, target.value)


@dataclass(frozen=True)
class DataFile:
    """One file a dataset YAML names: where it is under a base folder, and the field naming it."""

    path: Path
    field: str
    value: str
    folder: Path  # its subset's folder (a file itself when the dataset's path is an archive)

    @property
    def present(self) -> bool:
        return self.folder.is_file() or self.path.exists()


def data_files(config: DatasetConfig, base: Path) -> list[DataFile]:
    """Every file ``config`` reads when its ``path`` is ``base`` (none for a hub dataset)."""
    if config.format == "hf":
        return []
    files = []
    for subset in config.subsets or [SubsetConfig(path=".")]:
        folder = base / subset.path
        for split, spec in config.split_files().items():
            field = "file" if config.file is not None else f"files.{split}"
            if config.format == "tweeteval":  # the "file" is the split's file-name prefix
                name = f"{TWEETEVAL_SPLITS.get(spec.file, spec.file)}_text.txt"
            else:
                name = spec.file
            files.append(DataFile(folder / name, field, spec.file, folder))
    return files


def missing_files(config: DatasetConfig, base: Path) -> list[DataFile]:
    return [target for target in data_files(config, base) if not target.present]


def check_files_exist(config: DatasetConfig, data_root: str | Path | None = None) -> None:
    """A one-line DataError for a file the YAML names that is in none of the folders its ``path``
    may resolve against, naming where it was looked for in each."""
    candidates = config.base_candidates(data_root)
    missing = [missing_files(config, folder) for _, folder in candidates]
    if not all(missing):
        return
    first = missing[-1][0]
    looked = " and ".join(
        f"{where} ({str(found[0].path)!r})" for (where, _), found in zip(candidates, missing, strict=True)
    )
    expected = "expected it there" if len(candidates) == 1 else "expected it in one of them"
    if any(where == "the data root" for where, _ in candidates):
        expected += f" (--data-root or ${DATA_ROOT_ENV} sets the data root)"
    source = config.config_path or f"dataset '{config.name}'"
    raise DataError(
        f"{source}: field '{first.field}' = {first.value!r} (path {config.path!r}): file not found for "
        f"dataset '{config.name}', looked in {looked}; {expected}"
    )


def builtin_names() -> list[str]:
    if not BUILTIN_ROOT.is_dir():
        return []
    return sorted(p.parent.name.replace("_", "-") for p in BUILTIN_ROOT.glob("*/dataset.yaml"))


_UNION_TAG = re.compile(r"^(str|int|float|bool|(list|dict)\[.*\])$")  # pydantic names union members so


def _format_validation_error(source: str, error: ValidationError) -> str:
    lines = []
    items = error.errors()
    for item in items:
        parts = [part for part in item["loc"] if not (isinstance(part, str) and _UNION_TAG.match(part))]
        if item["type"] == "string_type" and isinstance(item.get("input"), list | dict):
            deeper = [other for other in items if len(other["loc"]) > len(item["loc"])]
            if any(other["loc"][: len(item["loc"]) - 1] == item["loc"][:-1] for other in deeper):
                continue  # the other member of a str | list union says what is wrong inside the list
        loc = ".".join(str(part) for part in parts) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        got = item.get("input")
        if item["type"] == "string_type":  # a label, alias or column written as a number/boolean/null
            message = not_a_string_hint(got)
        hide_got = isinstance(got, dict) or item["type"] in ("missing", "string_type")
        got_text = "" if hide_got else f" (got {got!r})"
        lines.append(f"{source}: {loc}: {message}{got_text}")
    return "\n".join(lines)


def load_dataset_config(
    ref: str | Path | DatasetConfig, data_root: str | Path | None = None
) -> DatasetConfig:
    """Load a dataset YAML from a path or ``builtin:<name>`` (paths in a builtin YAML are relative
    to its folder). Raises ConfigError naming the file, the field and what was expected."""
    if isinstance(ref, DatasetConfig):
        return ref
    ref_text = str(ref)
    builtin = ref_text.startswith("builtin:")
    if builtin:
        name = ref_text.removeprefix("builtin:")
        path = BUILTIN_ROOT / name.replace("-", "_") / "dataset.yaml"
        if not path.is_file():
            known = ", ".join(builtin_names()) or "none"
            raise ConfigError(f"unknown builtin dataset '{name}'; expected one of: {known}")
    else:
        path = Path(ref_text).expanduser()
        if not path.is_file():
            raise ConfigError(f"{path}: dataset config not found")
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of dataset fields, got {type(data).__name__}")
    try:
        config = DatasetConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(str(path), exc)) from None
    config.config_path = path.resolve()
    if builtin:
        config.path_base = "config"
    return config


def _text_columns(fmt: str, columns: ColumnsConfig) -> str | list[str]:
    """What ``read_examples`` reads as text: a CoNLL file's token column (``tokens``, else a
    ``text`` naming one); none for a JSONL token list (the tokens make the text)."""
    if fmt == "conll":
        return columns.tokens or (columns.text if isinstance(columns.text, str) else "text")
    return [] if columns.tokens else columns.text


def load_dataset(
    config: str | Path | DatasetConfig,
    data_root: str | Path | None = None,
    drop_invalid: bool = False,
) -> RawDataset:
    """Read every split a dataset config names (every subset, when it has subsets)."""
    config = load_dataset_config(config, data_root)
    schema = config.to_schema()
    reading_schema = config.reading_schema()
    excluded = {reading_schema.normalise(value) for value in config.exclude_labels}
    check_data_paths(config, data_root)
    check_files_exist(config, data_root)
    base = config.base_dir(data_root)
    subsets = config.subsets or [SubsetConfig(path=".")]
    constant = {"language": config.language, **config.metadata}
    splits: dict[str, list[Example]] = {}
    dropped: dict[str, Counter] = {}
    repaired: dict[str, Counter] = {}
    filtered: dict[str, int] = {}
    for split, spec in config.split_files().items():
        for subset in subsets:
            columns = config.columns.model_copy()
            if spec.columns is not None:
                columns = columns.model_copy(update=spec.columns.model_dump(exclude_none=True))
            prefix = split if config.subsets is None else f"{subset.name or subset.path}-{split}"
            member = spec.member
            if config.format == "hf":
                location: str | Path = str(config.hub_id)
            elif config.format == "tweeteval":  # the folder is the subset; the "file" is the split prefix
                location = base / subset.path
            elif member is None and (base / subset.path).is_file():
                # the dataset's path is an archive (path: data.zip): its files are members of it
                location, member = base / subset.path, spec.file
            else:
                location = base / subset.path / spec.file
            opts = config.options
            target = None
            if config.format != "conll":
                target = target_reader(
                    config.task_type,
                    label=columns.label,
                    schema=reading_schema,
                    tokens=columns.tokens,
                    tag_scheme=opts.tag_scheme,
                    label_delimiter=opts.label_delimiter,
                )
            conll_options = None
            if config.format == "conll":
                conll_options = {
                    "tag_scheme": opts.tag_scheme,
                    "document_marker": opts.document_marker,
                    "sentence_end": opts.sentence_end,
                    "max_sentence_tokens": opts.max_sentence_tokens,
                    "lines": spec.line_range(),
                }
            result = read_examples(
                location,
                text=_text_columns(config.format, columns),
                label=columns.label,
                id=columns.id,
                metadata=columns.metadata,
                schema=reading_schema,
                format=config.format,
                drop_invalid=drop_invalid,
                delimiter=opts.delimiter,
                header=opts.header,
                quoting=opts.quoting,
                encoding=opts.encoding,
                column_names=opts.column_names,
                glued_rows=opts.glued_rows.model_dump() if opts.glued_rows else None,
                max_chars=opts.max_chars,
                split=spec.file if config.format in ("hf", "tweeteval") else split,
                id_prefix=prefix,
                constant_metadata={**constant, **subset.metadata, **spec.metadata},
                hf_name=opts.hf_name,
                member=member,
                target=target,
                conll_options=conll_options,
            )
            if config.subsets is not None and columns.id:
                for example in result.examples:
                    example.id = f"{subset.name or subset.path}-{example.id}"
            kept = [ex for ex in result.examples if matches_where(ex, config.where)]
            if config.where:
                filtered[split] = filtered.get(split, 0) + len(result.examples) - len(kept)
            splits.setdefault(split, []).extend(kept)
            dropped.setdefault(split, Counter()).update(result.dropped)
            repaired.setdefault(split, Counter()).update(result.repaired)
            if excluded:
                before = len(splits[split])
                splits[split] = [ex for ex in splits[split] if ex.label not in excluded]
                if len(splits[split]) < before:
                    dropped[split]["label_excluded"] += before - len(splits[split])
    return RawDataset(
        name=config.name,
        schema=schema,
        splits=splits,
        dropped=dropped,
        config=config,
        task_type=config.task_type,
        repaired=repaired,
        filtered=filtered,
    )


def matches_where(example: Example, where: dict[str, list[str]]) -> bool:
    """Whether every field ``where`` names holds one of its values (compared as trimmed text)."""
    return all(str(example.metadata.get(column, "")).strip() in values for column, values in where.items())
