"""Chunked readers for files of any size: CSV/TSV, JSONL and Parquet -> chunks of checked rows.

Each row goes through the same check as the whole-file readers (:func:`readers.check_row`), but a
bad row does not stop the stream: it comes out as a :class:`Rejected` item in its place, so a
caller that must answer every input row (batch prediction) can. Every chunk ends at a
:class:`Position` (data rows consumed, byte offset and line of the next row) from which reading
can restart without re-parsing what came before, which is what makes a killed prediction run
resumable and lets Ray workers each read their own shard of a file.

Text files are read as bytes split on b"\\n", so the encoding must keep b"\\n" a newline
(UTF-8, Latin-1, cp1252: the ones the files we meet use).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from socialens.core.errors import DataError
from socialens.core.types import Example, LabelSchema
from socialens.data.archives import archive_kind, archive_message
from socialens.data.readers import (
    DEFAULT_MAX_CHARS,
    QUOTING,
    SURROGATE,
    LineTap,
    QuotingCheck,
    Row,
    as_text,
    check_row,
    detect_format,
    is_missing,
    missing_column_message,
    non_utf8_row,
    quoted_delimiter_hint,
)

STREAM_FORMATS = ("csv", "tsv", "jsonl", "parquet")


@dataclass(frozen=True)
class Position:
    """Where the next data row starts: rows consumed so far, its byte offset (text formats) and
    its 1-based physical line (for messages). For Parquet, offset is unused (rows is enough)."""

    rows: int = 0
    offset: int = 0
    line: int = 1

    def to_dict(self) -> dict[str, int]:
        return {"rows": self.rows, "offset": self.offset, "line": self.line}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Position:
        return cls(rows=int(data["rows"]), offset=int(data["offset"]), line=int(data["line"]))


@dataclass
class Rejected:
    """A row that cannot be an Example; it keeps its place in the stream."""

    id: str
    reason: str
    message: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Chunk:
    items: list[Example | Rejected]
    end: Position


class _Counter:
    """Byte offset and line number of what the line iterator has handed out so far."""

    def __init__(self, start: Position) -> None:
        self.offset = start.offset
        self.line = start.line


@dataclass
class RowStream:
    """One input file opened for chunked reading with a column mapping.

    ``id=None`` uses a column named ``id`` when the file has one, else row numbers (``row-<n>``).
    ``metadata`` maps output name -> column. Missing columns raise DataError at open time."""

    path: Path
    text: str | Sequence[str] = "text"
    label: str | None = None
    id: str | None = None  # noqa: A003 - mirrors the column mapping keys
    metadata: Mapping[str, str] | None = None
    schema: LabelSchema | None = None
    format: str | None = None  # noqa: A003
    delimiter: str | None = None
    quoting: str = "minimal"
    encoding: str = "utf-8"
    max_chars: int = DEFAULT_MAX_CHARS
    columns: list[str] = field(init=False, default_factory=list)
    data_start: Position = field(init=False, default_factory=Position)
    _quoting_scanned: bool = field(init=False, default=False, repr=False)
    _quoting_problem: str | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.path.is_file():
            raise DataError(
                f"{self.path}: file not found" + (" (it is a folder)" if self.path.is_dir() else "")
            )
        kind = archive_kind(self.path)
        if kind is not None:  # streamed by byte offset: a member of an archive is not
            raise DataError(archive_message(self.path, kind, streamed=True))
        self.format = (self.format or detect_format(self.path)).lower()
        if self.format not in STREAM_FORMATS:
            raise DataError(
                f"{self.path}: format '{self.format}' cannot be streamed; expected one of {', '.join(STREAM_FORMATS)}"
            )
        if self.quoting not in QUOTING:
            raise DataError(f"{self.path}: unknown quoting '{self.quoting}'; expected one of minimal, none")
        self._codec = (
            "utf-8" if self.encoding.lower().replace("_", "-") in ("utf-8", "utf8") else self.encoding
        )
        self.columns, self.data_start = self._open_columns()
        if not self.columns:
            jsonl = self.format == "jsonl"
            what = "no JSON object" if jsonl and self.path.stat().st_size else "empty file"
            expected = "one JSON object per line" if jsonl else "a header row, then data rows"
            raise DataError(f"{self.path}: {what}; expected {expected} with column '{self.text_columns[0]}'")
        if self.id is None and "id" in self.columns:
            self.id = "id"
        required = [*self.text_columns, *filter(None, [self.id, self.label]), *self.metadata_map.values()]
        for column in required:
            if column not in self.columns:
                raise DataError(missing_column_message(self.path, column, self.columns, required))
        if self.format == "parquet":
            self._check_parquet_text_types()

    def _check_parquet_text_types(self) -> None:
        """A text column must hold strings: numbers would be labelled as the digits they print as."""
        import pyarrow as pa

        schema = self._parquet().schema_arrow
        for column in self.text_columns:
            kind = schema.field(column).type
            if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)):
                raise DataError(
                    f"{self.path}: column '{column}' holds {kind} values; expected a string column of texts "
                    "(cast it to string first if the values really are texts)"
                )

    @property
    def text_columns(self) -> list[str]:
        return [self.text] if isinstance(self.text, str) else list(self.text)

    @property
    def metadata_map(self) -> dict[str, str]:
        return dict(self.metadata or {})

    @property
    def size(self) -> int:
        """Progress total: bytes for text formats, rows for Parquet."""
        if self.format == "parquet":
            return self._parquet().metadata.num_rows
        return self.path.stat().st_size

    def progress_of(self, position: Position) -> int:
        return position.rows if self.format == "parquet" else position.offset

    # -- columns --------------------------------------------------------------------------------
    def _open_columns(self) -> tuple[list[str], Position]:
        if self.format == "parquet":
            return [str(name) for name in self._parquet().schema_arrow.names], Position()
        if self.format == "jsonl":  # the first object's keys stand for the columns
            for row, _ in self._jsonl_rows(Position()):
                if row.values is not None:
                    return list(row.values), Position()
            return [], Position()
        counter = _Counter(Position())
        with self.path.open("rb") as handle:
            reader = self._csv_reader(self._decoded_lines(handle, counter))
            for fields in reader:
                if fields and not (len(fields) == 1 and not fields[0].strip()):
                    return [name.strip() for name in fields], Position(0, counter.offset, counter.line)
        return [], Position(0, counter.offset, counter.line)

    def _parquet(self):
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(self.path)
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise DataError(
                f"{self.path}: cannot read as Parquet ({type(exc).__name__}: {exc}); expected a Parquet file"
            ) from None

    # -- raw rows -------------------------------------------------------------------------------
    def _decoded_lines(self, handle, counter: _Counter) -> Iterator[str]:
        handle.seek(counter.offset)
        for raw in handle:
            if counter.offset == 0 and raw.startswith(b"\xef\xbb\xbf") and self._codec == "utf-8":
                raw_text = raw[3:].decode(self._codec, errors="surrogateescape")
            else:
                raw_text = raw.decode(self._codec, errors="surrogateescape")
            counter.offset += len(raw)
            counter.line += 1
            yield raw_text

    @property
    def _delimiter(self) -> str:
        return self.delimiter or ("\t" if self.format == "tsv" else ",")

    def _merged_rows(self, fields: list[str], lines: list[str]) -> str | None:
        """For a suspect record (readers.QuotingCheck: a quoted delimiter or newline, over lines
        that look like rows of their own or with quotes no CSV writer writes): the whole file's
        verdict on rows merged by unbalanced quotes, the same as the whole-file reader's, read
        once, from the data start, on the first such record."""
        if not QuotingCheck(self._delimiter, len(self.columns)).is_suspect(fields, lines):
            return None
        if not self._quoting_scanned:
            check = QuotingCheck(self._delimiter, len(self.columns))
            counter = _Counter(self.data_start)
            with self.path.open("rb") as handle:
                tap = LineTap(self._decoded_lines(handle, counter))
                reader = self._csv_reader(tap)
                while True:
                    start = counter.line
                    tap.taken.clear()
                    try:
                        fields = next(reader)
                    except StopIteration:
                        break
                    except csv.Error:
                        continue
                    if fields and not (len(fields) == 1 and not fields[0].strip()):
                        check.add(fields, tap.taken, start)
            self._quoting_problem = check.problem(str(self.path))
            self._quoting_scanned = True
        return self._quoting_problem

    def _csv_reader(self, lines: Iterator[str]):
        csv.field_size_limit(2**31 - 1)  # long texts are checked against max_chars instead
        delimiter = self.delimiter or ("\t" if self.format == "tsv" else ",")
        return csv.reader(lines, delimiter=delimiter, quoting=QUOTING[self.quoting])

    def _unterminated_quote(self, handle, offset: int) -> bool:
        """Whether the record starting at byte ``offset`` and running to the end of the file does
        so only because a quoted field in it is never closed (the non-strict reader takes the rest
        of the file into that field without a word)."""
        handle.seek(offset)
        text = handle.read().decode(self._codec, errors="surrogateescape")
        delimiter = self.delimiter or ("\t" if self.format == "tsv" else ",")
        try:
            for _ in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True):
                pass
        except csv.Error as exc:
            return "unexpected end of data" in str(exc)
        return False

    def _csv_rows(self, start: Position) -> Iterator[tuple[Row, Position]]:
        rows = start.rows
        sep = "tab" if (self.delimiter or ("\t" if self.format == "tsv" else ",")) == "\t" else "','"
        size = self.path.stat().st_size
        with self.path.open("rb") as handle:
            while True:  # one pass, restarted once per unterminated quote
                restart = yield from self._csv_pass(handle, start, rows, sep, size)
                if restart is None:
                    return
                start, rows = restart, restart.rows

    def _csv_pass(self, handle, start: Position, rows: int, sep: str, size: int):
        """Rows from ``start`` until the end of the file (returns None) or until a quoted field
        that never closes: that record's first line is yielded as a malformed row and the
        position after that line is returned, to read the lines it had swallowed as rows."""
        counter = _Counter(start)
        tap = LineTap(self._decoded_lines(handle, counter))  # the raw lines of each record
        reader = self._csv_reader(tap)
        while True:
            first_line, first_offset = counter.line, counter.offset
            loc = f"{self.path}:{counter.line}"
            tap.taken.clear()
            try:
                fields = next(reader)
            except StopIteration:
                return None
            except csv.Error as exc:
                rows += 1
                message = f"{loc}: malformed row ({exc}); expected {sep}-separated fields"
                yield (
                    Row(loc, error=("malformed_row", message)),
                    Position(rows, counter.offset, counter.line),
                )
                continue
            spanned = counter.line - first_line  # physical lines this record took
            if spanned > 1 and self.quoting != "none":
                # A quote opened on the record's first line (its newline is inside quotes). If it
                # never closes, or closes so late that the row has the wrong number of fields, it
                # swallowed the lines after it: that line is a malformed row, and those lines are
                # read again as rows of their own, so none of them is lost.
                why = None
                if counter.offset >= size and self._unterminated_quote(handle, first_offset):
                    why = "never closes"
                elif len(fields) != len(self.columns):
                    why = (
                        f"closes only {spanned - 1} line(s) later, leaving {len(fields)} fields where "
                        f"{len(self.columns)} are expected"
                    )
                if why is not None:
                    handle.seek(first_offset)
                    after = Position(rows + 1, first_offset + len(handle.readline()), first_line + 1)
                    message = (
                        f"{loc}: unterminated quote: a quoted field opened on this line {why}; expected "
                        "a closing '\"' on this line (the lines after it are read as rows of their own)"
                    )
                    yield Row(loc, error=("malformed_row", message)), after
                    return after
            if self.quoting != "none" and (merged := self._merged_rows(fields, tap.taken)):
                raise DataError(merged)
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # a blank line is not a row
            rows += 1
            end = Position(rows, counter.offset, counter.line)
            if any(SURROGATE.search(value) for value in fields):
                yield non_utf8_row(loc, self.encoding), end
            elif len(fields) != len(self.columns):
                message = (
                    f"{loc}: malformed row: {len(fields)} fields, expected {len(self.columns)} "
                    f"({sep}-separated, as in the header)"
                ) + quoted_delimiter_hint(fields, self._delimiter, self.quoting)
                yield Row(loc, error=("malformed_row", message)), end
            else:
                yield Row(loc, dict(zip(self.columns, fields, strict=True))), end

    def _jsonl_rows(self, start: Position) -> Iterator[tuple[Row, Position]]:
        counter = _Counter(start)
        rows = start.rows
        with self.path.open("rb") as handle:
            for line in self._decoded_lines(handle, counter):
                if not line.strip():
                    continue
                rows += 1
                end = Position(rows, counter.offset, counter.line)
                loc = f"{self.path}:{counter.line - 1}"
                if SURROGATE.search(line):
                    yield non_utf8_row(loc, self.encoding), end
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    message = (
                        f"{loc}: malformed row: invalid JSON ({exc.msg}); expected one JSON object per line"
                    )
                    yield Row(loc, error=("malformed_row", message)), end
                    continue
                if not isinstance(record, dict):
                    message = f"{loc}: malformed row: a JSON {type(record).__name__}; expected one JSON object per line"
                    yield Row(loc, error=("malformed_row", message)), end
                    continue
                yield Row(loc, record), end

    def _parquet_rows(self, start: Position, batch_rows: int) -> Iterator[tuple[Row, Position]]:
        parquet = self._parquet()
        first_group, skip = 0, start.rows
        while (
            first_group < parquet.num_row_groups and skip >= parquet.metadata.row_group(first_group).num_rows
        ):
            skip -= parquet.metadata.row_group(first_group).num_rows
            first_group += 1
        groups = list(range(first_group, parquet.num_row_groups))
        rows = start.rows - skip
        if not groups:
            return
        for batch in parquet.iter_batches(batch_size=batch_rows, row_groups=groups):
            for values in batch.to_pylist():
                rows += 1
                if rows <= start.rows:
                    continue
                yield Row(f"{self.path}, row {rows}", values), Position(rows, 0, 1)

    def rows(self, start: Position | None = None, batch_rows: int = 4096) -> Iterator[tuple[Row, Position]]:
        """Raw rows from ``start`` (default: the first data row), each with the position after it."""
        start = start or self.data_start
        if self.format == "parquet":
            return self._parquet_rows(start, batch_rows)
        if self.format == "jsonl":
            return self._jsonl_rows(start)
        return self._csv_rows(start)

    # -- checked chunks -------------------------------------------------------------------------
    def check(self, row: Row, number: int) -> Example | Rejected:
        checked = check_row(
            row,
            number,
            text_columns=self.text_columns,
            label=self.label,
            id_column=self.id,
            metadata=self.metadata_map,
            schema=self.schema,
            max_chars=self.max_chars,
            require_labels=False,  # an unlabelled row is still predicted; only a wrong label is not
            id_prefix="row",
            constant_metadata={},
            require_text=True,
        )
        if isinstance(checked, Example):
            return checked
        values = row.values or {}
        row_id = (as_text(values.get(self.id)) if self.id else "") or f"row-{number}"
        metadata = {}
        for name, column in self.metadata_map.items():  # as check_row would have kept them
            value = values.get(column)
            metadata[name] = (
                None if is_missing(value) else (value.strip() if isinstance(value, str) else value)
            )
        return Rejected(row_id, checked[0], checked[1], metadata)

    def chunks(
        self, chunk_rows: int, start: Position | None = None, stop_rows: int | None = None
    ) -> Iterator[Chunk]:
        """Chunks of ``chunk_rows`` checked rows from ``start``; ``stop_rows`` ends the stream once
        that many data rows (counted from the file's start) have been read."""
        if chunk_rows < 1:
            raise DataError(f"chunk size {chunk_rows}: expected at least 1 row per chunk")
        items: list[Example | Rejected] = []
        end = start or self.data_start
        if stop_rows is not None and end.rows >= stop_rows:
            return
        for row, end in self.rows(start, batch_rows=chunk_rows):
            items.append(self.check(row, end.rows))
            if len(items) == chunk_rows or (stop_rows is not None and end.rows >= stop_rows):
                yield Chunk(items, end)
                items = []
                if stop_rows is not None and end.rows >= stop_rows:
                    return
        if items:
            yield Chunk(items, end)

    def boundaries(self, every: int, start: Position | None = None) -> list[Position]:
        """Positions from ``start`` every ``every`` data rows, ending with the end of the file: the
        shards a parallel engine hands out (found by reading raw rows, without checking them)."""
        start = start or self.data_start
        found = [start]
        if self.format == "parquet":
            total = self._parquet().metadata.num_rows
            found += [Position(rows, 0, 1) for rows in range(start.rows + every, total, every)]
            if total > start.rows:
                found.append(Position(total, 0, 1))
            return found
        end = start
        for _, end in self.rows(start):
            if (end.rows - start.rows) % every == 0:
                found.append(end)
        if end != found[-1]:
            found.append(end)
        return found
