"""Output of batch prediction: one flat row per input row, appended chunk by chunk and made durable.

A sink writes a chunk, then ``commit()`` flushes and fsyncs it and returns a mark (bytes written
for JSONL/CSV, part files written for Parquet) that the caller records in its progress sidecar.
``open_sink(..., resume_mark=m)`` throws away anything after mark ``m`` (what a killed run wrote
without committing), so the finished file is byte-identical to one from an uninterrupted run.
Parquet cannot be appended to, so each chunk is a part file and ``finish()`` joins the parts, one
row group each, into the output file.

A classification model's row is flat: ``label``, a ``p_<label>`` column per label. A model of
another task (``socialens.tasks.responses``) has the task's response fields instead (entities
with character offsets, labels, a summary): nested in JSONL, a JSON-encoded cell in CSV and
Parquet where the value is a list or a dict (``json_columns``: those fields and ``gold``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

from socialens.core.errors import DataError
from socialens.core.types import PredictionRecord
from socialens.tasks.responses import TaskResponse

OUTPUT_FORMATS = (".jsonl", ".csv", ".parquet")
# Families whose records carry the model's own answer text: an LLM's invalid or refused row is
# only understandable next to what it said.
RAW_OUTPUT_FAMILIES = ("prompted", "instruct")


def has_raw_output(classifier) -> bool:
    return getattr(classifier, "family", None) in RAW_OUTPUT_FAMILIES


def output_columns(
    labels: list[str],
    with_gold: bool,
    metadata: list[str],
    raw_output: bool = False,
    task_fields: tuple[str, ...] | None = None,
) -> list[str]:
    """The output columns; ``task_fields`` (a task's response fields) replace ``label`` and the
    ``p_<label>`` columns for a model whose task is not classification."""
    answer = ["label", *(f"p_{name}" for name in labels)] if task_fields is None else list(task_fields)
    return [
        "id",
        *answer,
        "status",
        "error",
        *(["raw_output"] if raw_output else []),
        *(["gold"] if with_gold else []),
        *metadata,
    ]


def output_row(
    record: PredictionRecord,
    labels: list[str],
    with_gold: bool,
    metadata: dict[str, Any],
    raw_output: bool = False,
    task: TaskResponse | None = None,
) -> dict[str, Any]:
    """The flat output row of one record; metadata values are the input's (None when empty).
    With ``raw_output``, a row that is not ok carries the model's answer (an ok row's label says
    it already, and leaving it out keeps a large output small). With ``task`` (a model whose task
    is not classification) the task's response fields take the place of the label and scores."""
    row: dict[str, Any] = {"id": record.id}
    if task is None:
        row["label"] = record.predicted
        scores = record.scores or {}
        for name in labels:
            value = scores.get(name)
            row[f"p_{name}"] = None if value is None else float(value)
    else:
        row.update(task.values(record))
    row["status"] = record.status.value
    row["error"] = record.error
    if raw_output:
        row["raw_output"] = None if record.status.value == "ok" else (record.raw_output or None)
    if with_gold:
        row["gold"] = record.gold
    row.update(metadata)
    return row


def output_task(task: TaskResponse) -> TaskResponse | None:
    """The task ``output_row`` / ``output_columns`` shape rows by: None (the flat label layout)
    for a classification model."""
    return None if task.label_layout else task


def json_columns(task: TaskResponse | None) -> tuple[str, ...]:
    """The columns whose list or dict values are JSON text in CSV and Parquet."""
    return () if task is None else (*task.fields, "gold")


def cell_text(value: Any) -> Any:
    """A list or dict as its JSON text (a CSV or Parquet cell); anything else as it is."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict) else value


def check_output_path(out: Path) -> None:
    if out.suffix not in OUTPUT_FORMATS:
        raise DataError(
            f"{out}: unsupported output format '{out.suffix}'; expected one of {', '.join(OUTPUT_FORMATS)}"
        )


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _TextSink:
    """JSONL or CSV appended to the output file itself; the mark is its committed size in bytes."""

    def __init__(
        self, out: Path, columns: list[str], resume_mark: int | None, json_columns: tuple[str, ...] = ()
    ) -> None:
        self.out, self.columns = out, columns
        self.json_columns = frozenset(json_columns)
        if resume_mark is None:
            self.handle = out.open("wb")
            if out.suffix == ".csv":
                self.handle.write(self._csv_text([dict(zip(columns, columns, strict=True))]))
        else:
            if not out.is_file() or out.stat().st_size < resume_mark:
                raise DataError(
                    f"{out}: shorter than the {resume_mark} bytes its progress file records as written; "
                    "expected the partial output of the interrupted run (pass --force to start over)"
                )
            self.handle = out.open("r+b")
            self.handle.truncate(resume_mark)
            self.handle.seek(resume_mark)

    def _csv_text(self, rows: list[dict[str, Any]]) -> bytes:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        for row in rows:
            writer.writerow(
                [
                    "" if row[c] is None else (cell_text(row[c]) if c in self.json_columns else row[c])
                    for c in self.columns
                ]
            )
        return buffer.getvalue().encode("utf-8")

    def write(self, rows: list[dict[str, Any]]) -> None:
        if self.out.suffix == ".csv":
            self.handle.write(self._csv_text(rows))
        else:
            text = "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in rows)
            self.handle.write(text.encode("utf-8"))

    def commit(self) -> int:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        return self.handle.tell()

    def finish(self) -> None:
        self.commit()
        self.handle.close()

    def cleanup(self) -> None:
        pass

    def close(self) -> None:
        self.handle.close()


def parquet_schema(columns: list[str]):
    import pyarrow as pa

    return pa.schema([(name, pa.float64() if name.startswith("p_") else pa.string()) for name in columns])


def rows_to_table(rows: list[dict[str, Any]], columns: list[str], json_columns: tuple[str, ...] = ()):
    """A fixed-schema table: probabilities as float64, everything else (metadata too) as strings,
    so chunks with different metadata types or all-empty columns still join into one file; a list
    or dict in ``json_columns`` is its JSON text."""
    import pyarrow as pa

    data = {}
    for name in columns:
        values = [row.get(name) for row in rows]
        if name in json_columns:
            values = [None if v is None else str(cell_text(v)) for v in values]
        elif not name.startswith("p_"):
            values = [None if v is None else str(v) for v in values]
        data[name] = values
    return pa.Table.from_pydict(data, schema=parquet_schema(columns))


class _ParquetSink:
    """Each chunk a part file in ``<out>.parts/``; the mark is the number of committed parts."""

    def __init__(
        self, out: Path, columns: list[str], resume_mark: int | None, json_columns: tuple[str, ...] = ()
    ) -> None:
        self.out, self.columns = out, columns
        self.json_columns = json_columns
        self.parts = out.with_name(out.name + ".parts")
        if resume_mark is None:
            shutil.rmtree(self.parts, ignore_errors=True)
            resume_mark = 0
        self.parts.mkdir(parents=True, exist_ok=True)
        for stale in self.parts.iterdir():  # written after the last commit of a killed run
            if (
                not stale.name.startswith("part-")
                or int(stale.stem.split("-")[1].split(".")[0]) >= resume_mark
            ):
                stale.unlink()
        self.count = resume_mark

    def _part(self, index: int) -> Path:
        return self.parts / f"part-{index:08d}.parquet"

    def write(self, rows: list[dict[str, Any]]) -> None:
        import pyarrow.parquet as pq

        target = self._part(self.count)
        tmp = target.with_suffix(".tmp")
        pq.write_table(rows_to_table(rows, self.columns, self.json_columns), tmp)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        tmp.replace(target)
        self.count += 1

    def commit(self) -> int:
        _fsync_dir(self.parts)
        return self.count

    def finish(self) -> None:
        import pyarrow.parquet as pq

        tmp = self.out.with_name(self.out.name + ".tmp")
        schema = parquet_schema(self.columns)
        with pq.ParquetWriter(tmp, schema) as writer:
            for index in range(self.count):
                writer.write_table(pq.read_table(self._part(index), schema=schema))
            if self.count == 0:
                writer.write_table(schema.empty_table())
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        tmp.replace(self.out)

    def cleanup(self) -> None:
        """Remove the parts; called only once the progress file is gone, so a kill while removing
        them can never leave a resumable state that points at missing parts."""
        shutil.rmtree(self.parts, ignore_errors=True)

    def close(self) -> None:
        pass


def open_sink(
    out: Path, columns: list[str], resume_mark: int | None = None, json_columns: tuple[str, ...] = ()
):
    """A sink for ``out`` (format from its extension); ``resume_mark`` continues a killed run;
    ``json_columns`` hold lists or dicts written as JSON text in CSV and Parquet."""
    check_output_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        return _ParquetSink(out, columns, resume_mark, json_columns)
    return _TextSink(out, columns, resume_mark, json_columns)


def read_output_records(out: Path) -> list[PredictionRecord]:
    """The id, gold, label and status of every row of a finished output file, for scoring it."""
    from socialens.core.types import Status

    wanted = ["id", "gold", "label", "status"]
    if out.suffix == ".jsonl":
        with out.open(encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
    elif out.suffix == ".csv":
        with out.open(encoding="utf-8", newline="") as handle:
            rows = [{k: (v or None) for k, v in row.items()} for row in csv.DictReader(handle)]
    else:
        import pyarrow.parquet as pq

        rows = pq.read_table(out, columns=wanted).to_pylist()
    return [PredictionRecord(r["id"], r.get("gold"), r["label"], Status(r["status"])) for r in rows]
