"""Streaming, resumable batch prediction of a file with a trained model.

The input is read in chunks (socialens.data.stream) and every input row yields exactly one output
row: ok (or refused) with its label and probabilities, ``invalid`` when the row cannot be an
example (empty text, malformed line, unknown gold label...), ``error`` when the model failed on
that row. Memory stays flat whatever the file size. A model whose task is not classification
(its model info records ``task_type``) writes the task's response fields (entities with character
offsets, labels, a summary) in place of the label and probability columns.

After each chunk is written and fsynced, ``<out>.progress.json`` records the input position and
the output mark. A run killed at any point and restarted with the same arguments truncates the
output to the last commit and carries on from there, so the final file is byte-identical to an
uninterrupted run. The sidecar also records a fingerprint of the input, the model and the options:
a restart with anything different is refused (``force=True`` starts over). A finished run leaves
``<out>.run.json`` with the same fingerprint instead, so a later run into the same file with other
arguments (or into a file no run record describes) is refused too, rather than overwriting it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from socialens.classifiers.base import model_digest, read_model_info
from socialens.core.errors import DataError, SocialensError
from socialens.core.progress import PlainProgress, PlainTask, about_duration, progress_display
from socialens.core.types import Example, PredictionRecord, Status
from socialens.data.stream import Position, Rejected, RowStream
from socialens.predict_output import (
    check_output_path,
    has_raw_output,
    json_columns,
    open_sink,
    output_columns,
    output_row,
    output_task,
)
from socialens.tasks.responses import TaskResponse, model_task_type

PROGRESS_SUFFIX = ".progress.json"
RUN_RECORD_SUFFIX = ".run.json"
_INPUT_SAMPLE = 2**20


@dataclass
class PredictSummary:
    rows: int = 0
    statuses: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    resumed_from: int = 0  # input rows already done by an earlier, interrupted run
    first_problem: dict[str, str] = field(default_factory=dict)  # status -> "id: error" of its first row

    @property
    def rows_per_s(self) -> float:
        done = self.rows - self.resumed_from
        return done / self.seconds if self.seconds > 0 else 0.0


def progress_path(out: Path) -> Path:
    return out.with_name(out.name + PROGRESS_SUFFIX)


def run_record_path(out: Path) -> Path:
    return out.with_name(out.name + RUN_RECORD_SUFFIX)


def _file_digest(path: Path, whole: bool) -> str:
    digest = hashlib.sha256()
    size = path.stat().st_size
    with path.open("rb") as handle:
        if whole or size <= 2 * _INPUT_SAMPLE:
            for block in iter(lambda: handle.read(2**20), b""):
                digest.update(block)
        else:  # a large input: its size plus first and last MiB catch a replaced or edited file
            digest.update(handle.read(_INPUT_SAMPLE))
            handle.seek(size - _INPUT_SAMPLE)
            digest.update(handle.read(_INPUT_SAMPLE))
    return f"{size}:{digest.hexdigest()}"


def run_fingerprint(stream: RowStream, model_dir: Path, options: dict[str, Any]) -> dict[str, Any]:
    """What must not change between a killed run and its resume."""
    return {
        "input": str(stream.path.resolve()),
        "input_digest": _file_digest(stream.path, whole=False),
        "model": str(Path(model_dir).resolve()),
        "model_digest": model_digest(model_dir),  # the model's version: a hash of every file in it
        "options": {
            "text": stream.text_columns,
            "id": stream.id,
            "label": stream.label,
            "metadata": stream.metadata_map,
            "format": stream.format,
            **({"quoting": stream.quoting} if stream.quoting != "minimal" else {}),  # older runs: minimal
            **options,
        },
    }


def _write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def _load_checkpoint(sidecar: Path, fingerprint: dict[str, Any], force: bool) -> dict[str, Any] | None:
    if force or not sidecar.is_file():
        return None
    try:
        saved = json.loads(sidecar.read_text(encoding="utf-8"))
        previous, position, mark = saved["fingerprint"], Position.from_dict(saved["position"]), saved["mark"]
    except (ValueError, KeyError, TypeError):
        raise DataError(
            f"{sidecar}: unreadable progress file; expected the JSON a killed `socialens predict` leaves "
            "(pass --force to start over)"
        ) from None
    if previous != fingerprint:
        changed = [key for key in fingerprint if previous.get(key) != fingerprint[key]]
        changed += [
            f"options.{k}"
            for k in fingerprint["options"]
            if previous.get("options", {}).get(k) != fingerprint["options"][k]
        ]
        what = ", ".join(k for k in changed if k != "options") or "arguments"
        raise DataError(
            f"{sidecar}: an unfinished run with a different {what} wrote this output; rerun with the same "
            "arguments to resume it, or pass --force to start over"
        )
    return {"position": position, "mark": int(mark), "statuses": Counter(saved.get("statuses", {}))}


# How a fingerprint key is set on the command line, for messages.
_ARGUMENTS = {
    "input": "input file",
    "input_digest": "input file's contents",
    "model": "model directory",
    "model_digest": "model's files",
    "text": "--text",
    "id": "--id",
    "label": "--label",
    "metadata": "--metadata",
    "format": "input format",
    "quoting": "--quoting",
    "chunk_rows": "--chunk-size",
    "batch_size": "--batch-size",
    "out": "output format",
    "raw_output": "raw_output column",
}


def describe_changes(previous: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Each argument that differs between two run fingerprints, with its values where they are short."""
    changes = []
    pairs = [(k, previous.get(k), current.get(k)) for k in current if k != "options"]
    old_options, new_options = previous.get("options", {}), current.get("options", {})
    pairs += [(k, old_options.get(k), new_options.get(k)) for k in {**old_options, **new_options}]
    for key, before, now in pairs:
        if before == now:
            continue
        name = _ARGUMENTS.get(key, key)
        shown = f" ({before!r} before, {now!r} now)"
        changes.append(name if key.endswith("digest") or len(shown) > 160 else name + shown)
    return changes


def check_finished_output(out: Path, fingerprint: dict[str, Any]) -> None:
    """Refuse to overwrite an existing ``out`` unless a finished run with this same fingerprint
    wrote it (running it again then gives the same file)."""
    if not out.exists():
        return
    record = run_record_path(out)
    try:
        previous = json.loads(record.read_text(encoding="utf-8"))["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        raise DataError(
            f"{out}: exists, and no {record.name} says which predict run wrote it; pass --force to "
            "overwrite it, or choose another --out"
        ) from None
    changes = describe_changes(previous, fingerprint)
    if changes:
        raise DataError(
            f"{out}: a finished output of a run with a different {', '.join(changes)}; pass --force "
            "to overwrite it, or choose another --out"
        )


def interrupted_message(out: Path) -> str:
    """What an interrupted predict leaves behind, in one line."""
    try:
        rows = json.loads(progress_path(out).read_text(encoding="utf-8"))["position"]["rows"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"interrupted before any prediction was committed to {out}"
    return (
        f"interrupted: {rows:,} input rows committed to {out}; run the same command again to resume "
        f"from there ({progress_path(out).name})"
    )


def _error_record(example: Example, exc: BaseException) -> PredictionRecord:
    message = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
    return PredictionRecord(example.id, example.label, None, Status.ERROR, error=message)


def _predict_batch(classifier, examples: list[Example]) -> list[PredictionRecord]:
    records = classifier.predict(examples)
    if len(records) != len(examples) or any(r.id != ex.id for r, ex in zip(records, examples, strict=True)):
        raise RuntimeError(f"the model returned {len(records)} records for {len(examples)} examples")
    return records


def predict_examples(classifier, examples: list[Example], batch_size: int) -> list[PredictionRecord]:
    """One record per example. A batch whose prediction raises is retried row by row, so only the
    rows the model really fails on become ``error`` records (each with its exception)."""
    records: list[PredictionRecord] = []
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        try:
            records.extend(_predict_batch(classifier, batch))
        except SocialensError:
            raise  # the model cannot run at all (e.g. its native probe crashed): one line, not N rows
        except Exception:  # noqa: BLE001 - isolated per row below
            for example in batch:
                try:
                    records.extend(_predict_batch(classifier, [example]))
                except Exception as exc:  # noqa: BLE001 - the row's record carries the error
                    records.append(_error_record(example, exc))
    return records


def predict_items(
    classifier, items: list[Example | Rejected], batch_size: int
) -> list[tuple[PredictionRecord, dict[str, Any]]]:
    """(record, metadata) for every chunk item, in input order; rejected rows become ``invalid``."""
    examples = [item for item in items if isinstance(item, Example)]
    predicted = iter(predict_examples(classifier, examples, batch_size))
    out = []
    for item in items:
        if isinstance(item, Rejected):
            record = PredictionRecord(item.id, None, None, Status.INVALID, error=item.message)
            out.append((record, item.metadata))
        else:
            out.append((next(predicted), item.metadata))
    return out


def _progress(console: Console | None) -> Progress | PlainProgress:
    return progress_display(
        console or Console(stderr=True),
        TextColumn("predict"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn("{task.fields[rows]:,} rows, {task.fields[rate]:,.0f} rows/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=True,
        line=plain_progress_line,
    )


def plain_progress_line(task: PlainTask) -> str:
    """A progress line where no bar can be drawn (the percentage is of the input's bytes)."""
    return (
        f"predict: {task.fields['rows']:,} rows ({task.percentage:.0f}% of the input), "
        f"{task.fields['rate']:,.0f} rows/s, {about_duration(task.elapsed)} elapsed"
    )


ChunkSource = Callable[[Position], Iterator[tuple[list[dict[str, Any]], Position]]]


class DuplicateIds:
    """Marks an output row ``invalid`` when an earlier row of the same input had its id, so the
    ids of the ``ok`` rows are unique whatever the input holds. Ids seen are kept as a sorted
    array of 64-bit hashes (8 bytes per row, so memory stays small for files of any size)."""

    def __init__(self, column: str, blank: dict[str, Any] | None = None) -> None:
        import numpy as np

        self.column = column
        self.blank = blank  # a task's response fields for a row without a prediction (None: label layout)
        self.seen = np.empty(0, dtype=np.uint64)

    @staticmethod
    def _hash(value: Any) -> int:
        return hash(str(value)) & 0xFFFFFFFFFFFFFFFF

    def _add(self, hashes: list[int]) -> None:
        import numpy as np

        new = np.unique(np.array(hashes, dtype=np.uint64))
        if len(new):
            self.seen = np.insert(self.seen, np.searchsorted(self.seen, new), new)

    def remember(self, stream: RowStream, until: Position) -> None:
        """Take in the ids of the rows an interrupted run already wrote (a resume)."""
        hashes = []
        for row, end in stream.rows(stream.data_start):
            if end.rows > until.rows:
                break
            hashes.append(self._hash(stream.check(row, end.rows).id))
        self._add(hashes)

    def flag(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        import numpy as np

        hashes = [self._hash(row["id"]) for row in rows]
        found = np.searchsorted(self.seen, np.array(hashes, dtype=np.uint64))
        earlier = set()
        out = []
        for row, key, at in zip(rows, hashes, found.tolist(), strict=True):
            if key in earlier or (at < len(self.seen) and int(self.seen[at]) == key):
                if self.blank is None:
                    row = {k: (None if k == "label" or k.startswith("p_") else v) for k, v in row.items()}
                else:
                    row = {**row, **self.blank}
                row["status"] = Status.INVALID.value
                row["error"] = (
                    f"duplicate id in column '{self.column}': an earlier row has the same id; expected "
                    "unique ids (this row gets no label)"
                )
            earlier.add(key)
            out.append(row)
        self._add(hashes)
        return out


def check_not_input(stream: RowStream, out: Path) -> None:
    """Refuse an output path that is the input itself: writing it would destroy what is read."""
    if out.exists() and out.resolve() == stream.path.resolve():
        raise DataError(
            f"{out}: this is the input file; expected a different --out path (writing it would overwrite "
            "the rows being read)"
        )


def model_output_task(model_dir: str | Path) -> TaskResponse | None:
    """The task shaping a model's output rows: None for a classification model (the label layout)."""
    return output_task(TaskResponse.of(model_task_type(read_model_info(model_dir))))


def local_chunks(
    classifier,
    stream: RowStream,
    chunk_rows: int,
    batch_size: int,
    with_gold: bool,
    task: TaskResponse | None = None,
) -> ChunkSource:
    """Output rows chunk by chunk from any input position, predicted in this process."""
    labels = classifier.schema.names
    raw = has_raw_output(classifier)

    def chunks(position: Position) -> Iterator[tuple[list[dict[str, Any]], Position]]:
        for chunk in stream.chunks(chunk_rows, start=position):
            pairs = predict_items(classifier, chunk.items, batch_size)
            rows = [output_row(record, labels, with_gold, meta, raw, task) for record, meta in pairs]
            yield rows, chunk.end

    return chunks


def write_resumable(
    stream: RowStream,
    out: Path,
    columns: list[str],
    chunks: ChunkSource,
    fingerprint: dict[str, Any],
    *,
    force: bool = False,
    console: Console | None = None,
    task: TaskResponse | None = None,
) -> PredictSummary:
    """Write the output rows ``chunks`` yields into ``out``, committing after each chunk, resuming
    from ``out``'s progress sidecar when an earlier run with the same fingerprint was killed.
    ``task``: the rows carry that task's response fields (``model_output_task``)."""
    check_output_path(out)
    check_not_input(stream, out)
    sidecar = progress_path(out)
    checkpoint = _load_checkpoint(sidecar, fingerprint, force)
    if checkpoint is None and not force:
        check_finished_output(out, fingerprint)
    position = checkpoint["position"] if checkpoint else stream.data_start
    summary = PredictSummary(rows=position.rows, resumed_from=position.rows)
    if checkpoint:
        summary.statuses = checkpoint["statuses"]
    blank = task.blank() if task is not None else None
    duplicates = DuplicateIds(stream.id, blank) if stream.id else None  # row-number ids are unique
    if duplicates is not None and checkpoint:
        duplicates.remember(stream, position)
    sink = open_sink(out, columns, checkpoint["mark"] if checkpoint else None, json_columns(task))
    if checkpoint is None:
        _write_json_atomically(
            sidecar, {"fingerprint": fingerprint, "position": position.to_dict(), "mark": 0, "statuses": {}}
        )
        run_record_path(out).unlink(missing_ok=True)  # it described the file being overwritten
    start = time.perf_counter()
    try:
        with _progress(console) as progress:
            task = progress.add_task(
                "predict",
                total=stream.size,
                completed=stream.progress_of(position),
                rows=position.rows,
                rate=0,
            )
            for rows, end in chunks(position):
                if duplicates is not None:
                    rows = duplicates.flag(rows)
                for row in rows:
                    if row["status"] not in ("ok", *summary.first_problem):
                        summary.first_problem[row["status"]] = f"{row['id']}: {row['error']}"
                sink.write(rows)
                mark = sink.commit()
                summary.rows = end.rows
                summary.statuses.update(row["status"] for row in rows)
                state = {"position": end.to_dict(), "mark": mark, "statuses": dict(summary.statuses)}
                _write_json_atomically(sidecar, {"fingerprint": fingerprint, **state})
                elapsed = time.perf_counter() - start
                rate = (summary.rows - summary.resumed_from) / max(elapsed, 1e-9)
                progress.update(task, completed=stream.progress_of(end), rows=summary.rows, rate=rate)
        sink.finish()
    finally:
        sink.close()
    record = {"fingerprint": fingerprint, "rows": summary.rows, "statuses": dict(summary.statuses)}
    _write_json_atomically(run_record_path(out), record)
    sidecar.unlink(missing_ok=True)
    sink.cleanup()
    summary.seconds = time.perf_counter() - start
    return summary


def output_options(chunk_rows: int, batch_size: int, out: Path, raw_output: bool) -> dict[str, Any]:
    """The fingerprint options that shape the output (raw_output only when on: older runs lack it)."""
    options = {"chunk_rows": chunk_rows, "batch_size": batch_size, "out": out.suffix}
    return {**options, **({"raw_output": True} if raw_output else {})}


def predict_stream(
    classifier,
    stream: RowStream,
    out: str | Path,
    *,
    model_dir: str | Path,
    chunk_rows: int = 4096,
    batch_size: int = 256,
    force: bool = False,
    console: Console | None = None,
) -> PredictSummary:
    """Predict every row of ``stream`` into ``out`` (.jsonl, .csv or .parquet), resumably."""
    out = Path(out)
    check_output_path(out)
    with_gold = stream.label is not None
    raw = has_raw_output(classifier)
    task = model_output_task(model_dir)
    fields = task.fields if task is not None else None
    columns = output_columns(classifier.schema.names, with_gold, list(stream.metadata_map), raw, fields)
    fingerprint = run_fingerprint(stream, Path(model_dir), output_options(chunk_rows, batch_size, out, raw))
    chunks = local_chunks(classifier, stream, chunk_rows, batch_size, with_gold, task)
    return write_resumable(stream, out, columns, chunks, fingerprint, force=force, console=console, task=task)
