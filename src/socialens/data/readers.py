"""Readers: CSV, TSV, JSONL, Parquet, CoNLL, Hugging Face datasets and TweetEval folders -> Examples.

Every reader first turns its file into raw rows (a location such as ``data.csv:7`` plus a dict of
column values, or a row-level error); one shared function then applies the column mapping, checks
every row and normalises gold labels. A bad row raises :class:`DataError` with one line naming the
file, the line (or data row) and what was expected; with ``drop_invalid=True`` it is dropped and
counted per reason instead. Missing files and missing columns always raise.

Targets other than one label (entity tags, several labels, a summary) are read by a
``socialens.data.targets`` row reader passed as ``target``; CoNLL files by ``socialens.data.conll``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from socialens.core.errors import DataError
from socialens.core.types import Example, Label, LabelSchema, is_blank_text, normalise_label_text
from socialens.data.archives import archive_kind, archive_message, display_name, read_member
from socialens.data.targets import TargetReader
from socialens.data.text_io import ReadResult, read_text

DEFAULT_MAX_CHARS = 100_000
FORMATS = ("csv", "tsv", "jsonl", "parquet", "conll", "hf", "tweeteval")
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".conll": "conll",
}
QUOTING = {"minimal": csv.QUOTE_MINIMAL, "all": csv.QUOTE_MINIMAL, "none": csv.QUOTE_NONE}
SURROGATE = re.compile("[\udc80-\udcff]")
TWEETEVAL_SPLITS = {"train": "train", "dev": "val", "test": "test"}

# Row-level reasons (droppable with drop_invalid=True).
REASONS = (
    "malformed_row",
    "non_utf8",
    "empty_label",
    "unknown_label",
    "empty_id",
    "duplicate_id",
    "text_too_long",
    "empty_text",
    "text_not_string",
    # targets other than one label (socialens.data.targets, socialens.data.conll)
    "malformed_tag",
    "missing_tag",
    "span_not_on_tokens",
    "overlapping_spans",
)


@dataclass
class Row:
    """One raw row of a file: its location, its column values, or a row-level error."""

    loc: str  # "file:LINE" or "file, row N"
    values: dict[str, Any] | None = None
    error: tuple[str, str] | None = None  # (reason, message)


def missing_column_message(
    source: str | Path, column: str, columns: Sequence[str], required: Sequence[str]
) -> str:
    """One line naming the file and the missing column, never the file's own column names: a
    header is file content, and no error message echoes what a file holds (docs/security.md)."""
    wanted = ", ".join(dict.fromkeys(required))
    return (
        f"{source}: missing column '{column}' (none of the file's {len(columns)} columns has that name); "
        f"expected columns: {wanted}"
    )


def non_utf8_row(loc: str, encoding: str) -> Row:
    return Row(
        loc, error=("non_utf8", f"{loc}: bytes that are not valid {encoding}; expected {encoding} text")
    )


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def as_text(value: Any) -> str:
    return "" if is_missing(value) else str(value).strip()


def detect_format(path: str | Path, member: str | None = None) -> str:
    """The format from the extension (of ``member`` inside an archive, when given); a folder is
    a TweetEval task folder."""
    path = Path(path)
    if member is None and path.is_dir():
        return "tweeteval"
    suffix = PurePosixPath(member).suffix if member is not None else path.suffix
    fmt = _EXTENSIONS.get(suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(_EXTENSIONS))
        raise DataError(
            f"{display_name(path, member)}: cannot tell the format from the extension '{suffix}'; "
            f"expected one of {known} (or pass format=csv|tsv|jsonl|parquet|hf|tweeteval)"
        )
    return fmt


# ---------------------------------------------------------------------------------------------
# decoding


# ---------------------------------------------------------------------------------------------
# sources: each returns (column names, raw rows)


def _split_glued(fields: list[str], n: int, id_pattern: str) -> list[list[str]] | None:
    """Split a row holding k records glued together ("...<TAB>No29286<TAB>...") into k rows.

    The boundary field is "<last field of record i><first field (id) of record i+1>"."""
    if n < 2 or len(fields) <= n or (len(fields) - n) % (n - 1):
        return None
    pattern = re.compile(rf"^(.*?)({id_pattern})$", re.DOTALL)
    records, rest = [], list(fields)
    while len(rest) > n:
        match = pattern.match(rest[n - 1])
        if match is None:
            return None
        records.append(rest[: n - 1] + [match.group(1)])
        rest = [match.group(2)] + rest[n:]
    records.append(rest)
    return records


class LineTap:
    """Hands lines to ``csv.reader`` and keeps those of the record being read in ``taken`` (the
    reader never reads ahead of the record it returns); the caller empties it after each record."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = iter(lines)
        self.taken: list[str] = []

    def __iter__(self) -> LineTap:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.taken.append(line)
        return line


@dataclass
class QuotingCheck:
    """Notices data rows merged by unbalanced double quotes in a delimited file.

    A text that starts with ``"`` but was never quoted by a CSV writer opens a quoted field that
    runs, over tabs and newlines, to the next quote: every row in between is swallowed into one
    text with one label, and nothing fails. Fed every record with the physical lines it was read
    from, this compares the rows read with the lines they took. A record is suspect when a field
    of it holds the delimiter or a newline and either it spans several lines each of which
    splits, without quoting, into exactly the header's number of fields (rows of their own), or
    its quotes are not a CSV writer's (a strict parse of its lines fails: a closing quote not
    followed by the delimiter or the line end). The file is suspect when it has such a record,
    when most multi-line records are suspect and when the records holding the delimiter or a
    newline are few (at most ``max(5, 1%)`` of the lines): a file whose quoting is consistent
    (many rows with quoted newlines or delimiters) is not."""

    delimiter: str
    n_fields: int
    records: int = 0
    lines: int = 0
    holding: int = 0  # records with a field holding the delimiter or a newline
    spanning: int = 0  # records read from several physical lines
    suspect: int = 0
    first: tuple[int, int] | None = None  # (first line, last line) of the first suspect record

    def swallows_rows(self, lines: Sequence[str]) -> bool:
        """Whether a record read from these physical lines spans several, each of which splits
        (without quoting) into exactly the header's number of fields (never for one column: any
        line without the delimiter would look like a row)."""
        if len(lines) < 2 or self.n_fields < 2:
            return False
        for line in lines:
            line = line.rstrip("\r\n")
            if line.strip() and len(line.split(self.delimiter)) != self.n_fields:
                return False
        return True

    def holds_delimiter(self, fields: Sequence[str]) -> bool:
        return any(self.delimiter in value or "\n" in value or "\r" in value for value in fields)

    def writer_quoted(self, lines: Sequence[str]) -> bool:
        """Whether these lines parse with strict quoting (as a CSV writer writes it)."""
        try:
            for _ in csv.reader(lines, delimiter=self.delimiter, strict=True):
                pass
        except csv.Error:
            return False
        return True

    def is_suspect(self, fields: Sequence[str], lines: Sequence[str]) -> bool:
        """One record (its fields and raw lines): see the class docstring."""
        if not self.holds_delimiter(fields):
            return False
        return self.swallows_rows(lines) or not self.writer_quoted(lines)

    def add(self, fields: Sequence[str], lines: Sequence[str], start: int) -> None:
        """One parsed record, ``lines`` its raw physical lines, ``start`` the first one's number."""
        self.records += 1
        self.lines += len(lines)
        self.spanning += len(lines) > 1
        if not self.holds_delimiter(fields):
            return
        self.holding += 1
        if self.is_suspect(fields, lines):
            self.suspect += 1
            if self.first is None:
                self.first = (start, start + len(lines) - 1)

    def problem(self, where: str) -> str | None:
        """The one-line error for a suspect file (``where`` names it), or None."""
        if not self.suspect or self.first is None or 2 * self.suspect < self.spanning:
            return None
        if self.holding > max(5, self.lines // 100):
            return None
        start, end = self.first
        counts = f"{self.records:,} rows read from {self.lines:,} lines"
        if end > start:
            what = (
                f"a quoted field opens on this line and runs to line {end}, taking in {end - start} "
                f"more line(s) that look like rows of their own ({counts})"
            )
        else:
            what = f"a quoted field opens on this line and takes in the delimiter, unlike any CSV writer ({counts})"
        return (
            f"{where}:{start}: {what}: if the double quotes are part of the texts, set quoting: none "
            "(in the dataset YAML's options, or --quoting none)"
        )


def quoted_delimiter_hint(fields: Sequence[str], delimiter: str, quoting: str) -> str:
    """For a malformed row: a hint when a quoted field holds the delimiter or a newline."""
    if quoting == "none" or not any(delimiter in value or "\n" in value for value in fields):
        return ""
    return "; a quoted field holds the delimiter or a newline: if the double quotes are part of the texts, set quoting: none"


def _delimited_source(
    path: Path,
    *,
    delimiter: str,
    quoting: str,
    header: bool,
    column_names: Sequence[str] | None,
    encoding: str,
    glued_rows: Mapping[str, Any] | None,
    drop_invalid: bool,
    member: str | None = None,
) -> tuple[list[str], list[Row]]:
    text, lossy = read_text(path, encoding, drop_invalid, member)
    where = display_name(path, member)
    if quoting not in QUOTING:
        raise DataError(f"{where}: unknown quoting '{quoting}'; expected one of minimal, none")
    csv.field_size_limit(2**31 - 1)  # long texts are checked against max_chars instead
    tap = LineTap(io.StringIO(text, newline=""))
    reader = csv.reader(tap, delimiter=delimiter, quoting=QUOTING[quoting])
    sep = "tab" if delimiter == "\t" else repr(delimiter)
    names: list[str] | None = list(column_names) if column_names else None
    header_pending = header
    rows: list[Row] = []
    check: QuotingCheck | None = None
    while True:
        start = reader.line_num + 1
        tap.taken.clear()
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            message = f"{where}:{start}: malformed row ({exc}); expected {sep}-separated fields"
            if not drop_invalid:
                raise DataError(message) from None
            rows.append(Row(f"{where}:{start}", error=("malformed_row", message)))
            continue
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue  # blank line
        if header_pending:  # the header row: its names are used unless column_names override them
            header_pending = False
            names = names or [name.strip() for name in fields]
            continue
        if names is None:
            names = [str(i) for i in range(len(fields))]
        if check is None and quoting != "none":
            check = QuotingCheck(delimiter, len(names))
        if check is not None:
            check.add(fields, tap.taken, start)
        loc = f"{where}:{start}"
        if lossy and any(SURROGATE.search(value) for value in fields):
            rows.append(non_utf8_row(loc, encoding))
            continue
        records = [fields]
        if len(fields) != len(names) and glued_rows:
            records = _split_glued(fields, len(names), str(glued_rows.get("id_pattern", r"\d+"))) or records
        for record in records:
            if len(record) != len(names):
                quote_note = ", quoting none" if quoting == "none" else ""
                message = (
                    f"{loc}: malformed row: {len(record)} fields, expected {len(names)} "
                    f"({sep}-separated{quote_note})" + quoted_delimiter_hint(record, delimiter, quoting)
                )
                rows.append(Row(loc, error=("malformed_row", message)))
            else:
                rows.append(Row(loc, dict(zip(names, record, strict=True))))
    problem = check.problem(where) if check is not None else None
    if problem is not None:  # rows were merged: a file-level error, whatever drop_invalid says
        raise DataError(problem)
    return names or [], rows


def _jsonl_source(
    path: Path, encoding: str, drop_invalid: bool, member: str | None = None
) -> tuple[list[str], list[Row]]:
    text, lossy = read_text(path, encoding, drop_invalid, member)
    where = display_name(path, member)
    names: dict[str, None] = {}
    rows: list[Row] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        loc = f"{where}:{number}"
        if lossy and SURROGATE.search(line):
            rows.append(non_utf8_row(loc, encoding))
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            rows.append(
                Row(
                    loc,
                    error=(
                        "malformed_row",
                        f"{loc}: malformed row: invalid JSON ({exc.msg}); expected one JSON object per line",
                    ),
                )
            )
            continue
        if not isinstance(record, dict):
            rows.append(
                Row(
                    loc,
                    error=(
                        "malformed_row",
                        f"{loc}: malformed row: a JSON {type(record).__name__}; expected one JSON object per line",
                    ),
                )
            )
            continue
        names.update(dict.fromkeys(record))
        rows.append(Row(loc, record))
    return list(names), rows


def _parquet_source(path: Path, member: str | None = None) -> tuple[list[str], list[Row]]:
    import pandas as pd

    where = display_name(path, member)
    if member is None and not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        frame = pd.read_parquet(io.BytesIO(read_member(path, member)) if member is not None else path)
    except DataError:
        raise
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise DataError(
            f"{where}: cannot read as Parquet ({type(exc).__name__}: {exc}); expected a Parquet file"
        ) from None
    names = [str(c) for c in frame.columns]
    records = frame.to_dict("records")
    return names, [
        Row(f"{where}, row {i}", {str(k): v for k, v in rec.items()}) for i, rec in enumerate(records, 1)
    ]


def _hf_source(
    hub_id: str, split: str, name: str | None, label_column: str | None
) -> tuple[list[str], list[Row]]:
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"{hub_id}: reading a Hugging Face dataset needs the optional package 'datasets'; "
            "install it with: pip install 'socialens[hf]'"
        ) from None
    try:
        data = datasets.load_dataset(hub_id, name, split=split)
    except Exception as exc:  # network, missing dataset, bad split...
        raise DataError(
            f"{hub_id}[{split}]: cannot load the Hugging Face dataset ({type(exc).__name__}: {exc})"
        ) from None
    names = list(data.column_names)
    feature = data.features.get(label_column) if label_column else None
    to_name = feature.int2str if isinstance(feature, datasets.ClassLabel) else None
    rows = []
    for i, record in enumerate(data, 1):
        if to_name is not None and isinstance(record.get(label_column), int) and record[label_column] >= 0:
            record = {**record, label_column: to_name(record[label_column])}
        rows.append(Row(f"{hub_id}[{split}], row {i}", record))
    return names, rows


def read_tweeteval_mapping(folder: Path) -> dict[str, str]:
    """mapping.txt (id<TAB>name), looked up in the folder, then its parent (stance/<target>/)."""
    for candidate in (folder / "mapping.txt", folder.parent / "mapping.txt"):
        if candidate.is_file():
            mapping = {}
            text, _ = read_text(candidate, "utf-8", False)
            for number, line in enumerate(text.split("\n"), 1):
                if not line.strip():
                    continue
                parts = line.strip().split("\t")
                if len(parts) != 2:
                    raise DataError(f"{candidate}:{number}: malformed mapping line; expected id<TAB>name")
                mapping[parts[0].strip()] = parts[1].strip()
            return mapping
    raise DataError(
        f"{folder}: mapping.txt not found here or in the parent folder; expected id<TAB>name lines"
    )


def _lines(path: Path, drop_invalid: bool) -> tuple[list[str], bool]:
    text, lossy = read_text(path, "utf-8", drop_invalid)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines], lossy


def _tweeteval_source(folder: Path, prefix: str, drop_invalid: bool) -> tuple[list[str], list[Row]]:
    if not folder.is_dir():
        raise DataError(
            f"{folder}: folder not found; expected a TweetEval task folder with {prefix}_text.txt"
        )
    mapping = read_tweeteval_mapping(folder)
    text_file, label_file = folder / f"{prefix}_text.txt", folder / f"{prefix}_labels.txt"
    texts, lossy = _lines(text_file, drop_invalid)
    labels = _lines(label_file, drop_invalid)[0] if label_file.is_file() else None
    if labels is not None and len(labels) != len(texts):
        raise DataError(
            f"{label_file}: {len(labels)} labels but {text_file.name} has {len(texts)} lines; expected one label per text line"
        )
    rows = []
    for number, line in enumerate(texts, 1):
        loc = f"{text_file}:{number}"
        if lossy and SURROGATE.search(line):
            rows.append(non_utf8_row(loc, "utf-8"))
            continue
        values: dict[str, Any] = {"text": line}
        if labels is not None:
            raw = labels[number - 1].strip()
            values["label"] = mapping.get(raw, raw)
        rows.append(Row(loc, values))
    return (["text", "label"] if labels is not None else ["text"]), rows


# ---------------------------------------------------------------------------------------------
# rows -> examples


def infer_label_schema(labels: Sequence[str]) -> LabelSchema:
    """A schema from observed label strings: spellings that differ only in case or spacing become
    one label (the most frequent spelling is its name, the others its aliases)."""
    groups: dict[str, Counter] = defaultdict(Counter)
    for value in labels:
        groups[normalise_label_text(value)][value] += 1
    built = []
    for key in sorted(groups):
        spellings = [s for s, _ in sorted(groups[key].items(), key=lambda kv: (-kv[1], kv[0]))]
        built.append(Label(spellings[0], aliases=tuple(spellings[1:])))
    return LabelSchema(built)


def read_examples(
    path: str | Path,
    *,
    text: str | Sequence[str] = "text",
    label: str | None = None,
    id: str | None = None,  # noqa: A002 - mirrors the column mapping keys
    metadata: Mapping[str, str] | None = None,
    schema: LabelSchema | Sequence[str] | None = None,
    format: str | None = None,  # noqa: A002
    drop_invalid: bool = False,
    delimiter: str | None = None,
    header: bool = True,
    quoting: str = "minimal",
    encoding: str = "utf-8",
    column_names: Sequence[str] | None = None,
    glued_rows: Mapping[str, Any] | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
    require_labels: bool = True,
    split: str | None = None,
    id_prefix: str | None = None,
    constant_metadata: Mapping[str, Any] | None = None,
    hf_name: str | None = None,
    member: str | None = None,
    require_text: bool = False,
    target: TargetReader | None = None,
    conll_options: Mapping[str, Any] | None = None,
) -> ReadResult:
    """Read one file (or TweetEval folder, or Hugging Face dataset split) into Examples.

    ``text`` is a column or a list of columns joined with a blank line (empty parts skipped);
    ``label=None`` reads unlabelled input; with ``require_labels=False`` a missing label column or
    an empty label gives ``label=None`` instead of an error. Without ``id`` the ids are
    ``<id_prefix or split or 'row'>-<n>``. ``metadata`` maps output name -> column;
    ``constant_metadata`` is added to every example. ``schema`` (a LabelSchema or label names)
    normalises gold labels; without one the label set is inferred from the data.
    ``split`` is the TweetEval file prefix (train/dev/test) or the Hugging Face split name.
    ``member`` names the file to read inside a zip or tar archive ``path`` (read in memory, never
    extracted); an archive read without one is an error that lists its members.
    ``require_text`` makes an empty or whitespace-only text a bad row (reason ``empty_text``);
    otherwise it is kept, for preparation to drop and count as a short text.
    ``target`` reads a target other than one label (``socialens.data.targets.target_reader``);
    its repairs are counted in ``repaired``. A CoNLL file (format ``conll``) is read by
    ``socialens.data.conll.read_conll``: ``text`` names its token column, ``label`` its tag
    column, ``schema`` (required) its entity types, ``conll_options`` the rest.
    """
    fmt = (format or "auto").lower()
    if fmt != "hf" and member is None:
        kind = archive_kind(path)
        if kind is not None:
            raise DataError(archive_message(path, kind))
    if fmt == "auto":
        fmt = detect_format(path, member)
    if fmt not in FORMATS:
        raise DataError(f"{path}: unknown format '{format}'; expected one of {', '.join(FORMATS)}")
    if member is not None and fmt in ("hf", "tweeteval"):
        raise DataError(f"{path}: member '{member}' given, but format {fmt} does not read archives")
    if isinstance(schema, Sequence) and not isinstance(schema, str):
        schema = LabelSchema.from_names([str(s).strip() for s in schema])
    source_name = display_name(path, member)
    if fmt == "conll":
        from socialens.data.conll import read_conll

        if not isinstance(schema, LabelSchema):
            raise DataError(
                f"{source_name}: a CoNLL file needs its entity types; expected a schema (--labels PER,LOC,...)"
            )
        return read_conll(
            path,
            schema=schema,
            token_column=text if isinstance(text, str) else text[0],
            tag_column=label,
            column_names=column_names,
            delimiter=delimiter,
            encoding=encoding,
            drop_invalid=drop_invalid,
            id_prefix=id_prefix or split or "sentence",
            constant_metadata=dict(constant_metadata or {}),
            member=member,
            labelled=label is not None,
            **dict(conll_options or {}),
        )
    if fmt == "hf":
        columns, rows = _hf_source(str(path), split or "train", hf_name, label)
    else:
        path = Path(path)
        if fmt in ("csv", "tsv"):
            columns, rows = _delimited_source(
                path,
                delimiter=delimiter or ("\t" if fmt == "tsv" else ","),
                quoting=quoting,
                header=header,
                column_names=column_names,
                encoding=encoding,
                glued_rows=glued_rows,
                drop_invalid=drop_invalid,
                member=member,
            )
        elif fmt == "jsonl":
            columns, rows = _jsonl_source(path, encoding, drop_invalid, member)
        elif fmt == "parquet":
            columns, rows = _parquet_source(path, member)
        else:
            prefix = TWEETEVAL_SPLITS.get(split or "train", split or "train")
            columns, rows = _tweeteval_source(path, prefix, drop_invalid)
    return _to_examples(
        source_name,
        columns,
        rows,
        text_columns=[text] if isinstance(text, str) else list(text),
        label=label,
        id_column=id,
        metadata=dict(metadata or {}),
        schema=schema,
        drop_invalid=drop_invalid,
        max_chars=max_chars,
        require_labels=require_labels,
        id_prefix=id_prefix or split or "row",
        constant_metadata=dict(constant_metadata or {}),
        require_text=require_text,
        target=target,
    )


def _to_examples(
    source: str,
    columns: list[str],
    rows: list[Row],
    *,
    text_columns: list[str],
    label: str | None,
    id_column: str | None,
    metadata: dict[str, str],
    schema: LabelSchema | None,
    drop_invalid: bool,
    max_chars: int,
    require_labels: bool,
    id_prefix: str,
    constant_metadata: dict[str, Any],
    require_text: bool = False,
    target: TargetReader | None = None,
) -> ReadResult:
    result = ReadResult(examples=[], file=source)
    if not columns and not rows:
        raise DataError(f"{source}: empty dataset (empty file); expected a header and at least one example")
    required = [*text_columns, *([id_column] if id_column else []), *metadata.values()]
    if target is not None:
        required.extend(target.required)
    if label and (require_labels or label in columns):
        required.append(label)
    for column in required:
        if column not in columns:
            raise DataError(missing_column_message(source, column, columns, required))
    if label and label not in columns:
        label = None

    def reject(reason: str, message: str) -> None:
        result.reject(reason, message, drop_invalid=drop_invalid)

    seen_ids: dict[str, str] = {}
    raw_labels: list[str] = []
    for number, row in enumerate(rows, 1):
        checked = check_row(
            row,
            number,
            text_columns=text_columns,
            label=label,
            id_column=id_column,
            metadata=metadata,
            schema=schema,
            max_chars=max_chars,
            require_labels=require_labels,
            id_prefix=id_prefix,
            constant_metadata=constant_metadata,
            require_text=require_text,
            target=target,
        )
        if isinstance(checked, tuple):
            reject(*checked)
            continue
        if checked.id in seen_ids:
            reject(
                "duplicate_id",
                f"{row.loc}: duplicate id in column '{id_column}' (first at {seen_ids[checked.id]}); expected unique ids "
                "(--drop-invalid, or drop_invalid: true in the experiment's dataset entry, keeps the first "
                "and drops and counts the repeats)",
            )
            continue
        seen_ids[checked.id] = row.loc
        result.examples.append(checked)
        if checked.label is not None and target is None:
            raw_labels.append(checked.label)
    if not result.examples:
        why = f"all {result.n_dropped} rows were invalid" if result.n_dropped else "no data rows"
        raise DataError(f"{source}: empty dataset ({why}); expected at least one example")
    if target is not None:
        result.repaired = Counter({kind: n for kind, n in target.repaired.items() if n})
    if schema is None and raw_labels:
        schema = infer_label_schema(raw_labels)
        for example in result.examples:
            if example.label is not None:
                example.label = schema.normalise(example.label)
    result.schema = schema
    return result


def check_row(
    row: Row,
    number: int,
    *,
    text_columns: list[str],
    label: str | None,
    id_column: str | None,
    metadata: Mapping[str, str],
    schema: LabelSchema | None,
    max_chars: int,
    require_labels: bool,
    id_prefix: str,
    constant_metadata: Mapping[str, Any],
    require_text: bool = False,
    target: TargetReader | None = None,
) -> Example | tuple[str, str]:
    """One raw row (the ``number``-th data row) -> an Example, or (reason, one-line message).

    Shared by the whole-file readers and the chunked ones (socialens.data.stream), so a row is
    judged the same way whether a file is read at once or streamed; duplicate ids are the caller's
    concern because only it sees every row. Without a schema the gold label is kept as written.
    With ``target`` the text, tokens and target come from it (see ``socialens.data.targets``)."""
    if row.error is not None:
        return row.error
    values = row.values or {}
    loc = row.loc
    for column in text_columns:  # a number or a list printed as text would be classified as such
        value = values.get(column)
        if not is_missing(value) and not isinstance(value, str):
            return (
                "text_not_string",
                f"{loc}: a value of type {type(value).__name__} in text column '{column}'; expected a string",
            )
    parts = [as_text(values.get(column)) for column in text_columns]
    text = "\n\n".join(part for part in parts if part)
    columns = "+".join(text_columns)
    tokens = None
    if target is not None:
        read = target.read(values, loc, text, require_labels)
        if isinstance(read, tuple):
            return read
        text, tokens = read.text, read.tokens
        columns = columns or "+".join(target.required)
    if require_text and is_blank_text(text):
        return "empty_text", f"{loc}: empty text in column '{columns}'; expected non-empty text"
    if len(text) > max_chars:
        return (
            "text_too_long",
            f"{loc}: text of {len(text):,} characters in column '{columns}'; "
            f"expected at most {max_chars:,} (raise the max_chars option)",
        )
    gold: Any = None
    if target is not None:
        gold = read.label
    elif label:
        expected = ", ".join(schema.names) if schema else "a non-empty label"
        raw = values.get(label)
        if is_missing(raw):
            if require_labels:
                return "empty_label", f"{loc}: empty label in column '{label}'; expected {expected}"
        elif schema is not None:
            gold = schema.normalise(raw)
            if gold is None:
                return (
                    "unknown_label",
                    f"{loc}: unknown label in column '{label}'; expected one of {expected}",
                )
        else:
            gold = str(raw).strip()
    if id_column:
        example_id = as_text(values.get(id_column))
        if not example_id:
            return "empty_id", f"{loc}: empty id in column '{id_column}'; expected a unique non-empty id"
    else:
        example_id = f"{id_prefix}-{number}"
    meta = dict(constant_metadata)
    for name, column in metadata.items():
        value = values.get(column)
        meta[name] = None if is_missing(value) else (value.strip() if isinstance(value, str) else value)
    return Example(id=example_id, text=text, label=gold, metadata=meta, tokens=tokens)
