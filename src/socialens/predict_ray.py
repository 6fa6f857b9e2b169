"""`predict --engine ray`: the same streaming prediction, with the model work spread over Ray Data.

The driver cuts the input into shards of ``chunk_rows`` rows (start positions found by one pass
over the raw rows). Ray Data maps a callable class over the shard list: each actor loads the model
once, reads its own shard straight from the file (the path must be readable where the actors
run: one machine, or a shared filesystem on a cluster) and predicts it with exactly the code the
local engine uses. Shards come back in input order and the driver writes them through the same
resumable writer, so the output is the local engine's, byte for byte, and a killed Ray run
resumes like a local one. ``ray.init()`` connects to ``RAY_ADDRESS`` when it is set, else starts
a local Ray. A model of another task than classification writes its task's fields as the local
engine does; they travel from the actors as JSON text and are decoded back on the driver.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from socialens.core.errors import ConfigError
from socialens.data.stream import Position, RowStream
from socialens.predict import (
    PredictSummary,
    model_output_task,
    output_options,
    predict_items,
    run_fingerprint,
    write_resumable,
)
from socialens.predict_output import (
    check_output_path,
    has_raw_output,
    json_columns,
    output_columns,
    output_row,
    rows_to_table,
)

SHARD_COLUMN = "_shard"


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--engine ray needs the optional package 'ray'; install it with: pip install 'socialens[ray]'"
        ) from None
    return ray


def stream_options(stream: RowStream) -> dict[str, Any]:
    """What an actor needs to reopen ``stream`` on its side."""
    return {
        "path": str(stream.path.resolve()),  # actors need not share the driver's working directory
        "text": stream.text,
        "label": stream.label,
        "id": stream.id,
        "metadata": stream.metadata_map,
        "schema": stream.schema.to_dict() if stream.schema else None,
        "format": stream.format,
        "delimiter": stream.delimiter,
        "quoting": stream.quoting,
        "encoding": stream.encoding,
        "max_chars": stream.max_chars,
    }


class ShardPredictor:
    """A Ray Data actor: loads the model once, then predicts whole shards read from the input."""

    def __init__(
        self,
        model_dir: str,
        options: dict[str, Any],
        batch_size: int,
        load_options: dict[str, Any] | None = None,
    ) -> None:
        from socialens.classifiers.base import load_classifier
        from socialens.core.types import LabelSchema

        self.classifier = load_classifier(model_dir, **(load_options or {}))
        schema = options.get("schema")
        self.stream = RowStream(**{**options, "schema": LabelSchema.from_dict(schema) if schema else None})
        self.batch_size = batch_size
        self.labels = self.classifier.schema.names
        self.with_gold = self.stream.label is not None
        self.raw = has_raw_output(self.classifier)
        metadata = list(self.stream.metadata_map)
        self.task = model_output_task(model_dir)
        fields = self.task.fields if self.task is not None else None
        self.columns = output_columns(self.labels, self.with_gold, metadata, self.raw, fields)
        self.json_columns = json_columns(self.task)

    def __call__(self, batch: dict[str, Any]):
        import pyarrow as pa

        tables = []
        for shard, rows, offset, line, stop in zip(
            batch["shard"], batch["rows"], batch["offset"], batch["line"], batch["stop"], strict=True
        ):
            start = Position(int(rows), int(offset), int(line))
            items = []
            for chunk in self.stream.chunks(int(stop) - int(rows), start=start, stop_rows=int(stop)):
                items.extend(chunk.items)
            pairs = predict_items(self.classifier, items, self.batch_size)
            out_rows = [
                output_row(record, self.labels, self.with_gold, meta, self.raw, self.task)
                for record, meta in pairs
            ]
            for row in out_rows:  # any JSON value, to the driver as text (decoded there)
                for name in self.json_columns:
                    if row.get(name) is not None:
                        row[name] = json.dumps(row[name], ensure_ascii=False)
            table = rows_to_table(out_rows, self.columns)
            tables.append(
                table.append_column(SHARD_COLUMN, pa.array([int(shard)] * len(out_rows), pa.int64()))
            )
        return pa.concat_tables(tables)


def init_ray(num_cpus: int | None = None) -> None:
    """Connect to RAY_ADDRESS when set, else start a local Ray (unless this process already has one)."""
    ray = _import_ray()
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if address is None and num_cpus:
        kwargs["num_cpus"] = num_cpus
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"RAY_ADDRESS={address}: cannot connect to the Ray cluster ({first_line}); expected the address "
            "of a running cluster (`ray start --head` prints it), or unset RAY_ADDRESS for a local Ray"
        ) from None


def predict_stream_ray(
    stream: RowStream,
    out: str | Path,
    *,
    model_dir: str | Path,
    labels: list[str],
    chunk_rows: int = 4096,
    batch_size: int = 256,
    actors: int = 2,
    force: bool = False,
    console: Console | None = None,
    load_options: dict[str, Any] | None = None,
    raw_output: bool = False,
) -> PredictSummary:
    """Predict every row of ``stream`` into ``out`` with ``actors`` Ray actors; same output as local.
    ``load_options`` are the keywords each actor passes to ``load_classifier`` (what the user
    trusted the model directory with: ``trust_pickle``, ``allow_endpoints``, ``allow_key_envs``);
    ``raw_output`` says whether the model's family writes that column (``has_raw_output``)."""
    ray = _import_ray()
    out = Path(out)
    check_output_path(out)
    if actors < 1:
        raise ConfigError(f"--ray-actors {actors}: expected at least 1 actor")
    init_ray(num_cpus=None)
    with_gold = stream.label is not None
    task = model_output_task(model_dir)
    fields = task.fields if task is not None else None
    columns = output_columns(labels, with_gold, list(stream.metadata_map), raw_output, fields)
    decode = json_columns(task)
    fingerprint = run_fingerprint(
        stream, Path(model_dir), output_options(chunk_rows, batch_size, out, raw_output)
    )
    options = stream_options(stream)

    def chunks(position: Position) -> Iterator[tuple[list[dict[str, Any]], Position]]:
        bounds = stream.boundaries(chunk_rows, start=position)
        shards = [
            {"shard": i, "rows": a.rows, "offset": a.offset, "line": a.line, "stop": b.rows}
            for i, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False))
        ]
        if not shards:
            return
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # shards come back in input order
        context.enable_progress_bars = False  # ours shows rows and rows/s; Ray's would interleave
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        dataset = ray.data.from_items(shards, override_num_blocks=len(shards)).map_batches(
            ShardPredictor,
            fn_constructor_args=(str(Path(model_dir).resolve()), options, batch_size, load_options),
            batch_size=1,
            concurrency=actors,
            batch_format="numpy",
        )
        pending: list[dict[str, Any]] = []
        expected = iter(zip(shards, bounds[1:], strict=True))
        shard, end = next(expected)
        for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            for row in batch.to_pylist():
                if shard is None or row.pop(SHARD_COLUMN) != shard["shard"]:
                    raise RuntimeError("Ray returned shard rows out of input order")
                for name in decode:
                    if row.get(name) is not None:
                        row[name] = json.loads(row[name])
                pending.append(row)
                if len(pending) == shard["stop"] - shard["rows"]:
                    yield pending, end
                    pending = []
                    shard, end = next(expected, (None, None))

    return write_resumable(stream, out, columns, chunks, fingerprint, force=force, console=console, task=task)
