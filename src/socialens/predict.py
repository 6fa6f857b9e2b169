"""Batch prediction of a file with a trained model; every input example yields one output record."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from socialens.classifiers.base import PredictionRecord
from socialens.data.schema import Example
from socialens.errors import DataError

OUTPUT_FORMATS = (".jsonl", ".csv", ".parquet")


def flat_row(record: PredictionRecord, labels: list[str]) -> dict:
    row = {"id": record.id, "label": record.predicted, "status": record.status.value}
    if record.gold is not None:
        row["gold"] = record.gold
    for name in labels:
        row[f"p_{name}"] = (record.scores or {}).get(name)
    return row


def predict_file(
    classifier,
    examples: list[Example],
    out: str | Path,
    *,
    batch_size: int = 256,
    console: Console | None = None,
) -> list[PredictionRecord]:
    out = Path(out)
    if out.suffix not in OUTPUT_FORMATS:
        raise DataError(
            f"{out}: unsupported output format '{out.suffix}'; expected one of {', '.join(OUTPUT_FORMATS)}"
        )
    records: list[PredictionRecord] = []
    columns = (TextColumn("predict"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console or Console(stderr=True), transient=True) as progress:
        task = progress.add_task("predict", total=len(examples))
        for start in range(0, len(examples), batch_size):
            batch = examples[start : start + batch_size]
            records.extend(classifier.predict(batch))
            progress.advance(task, len(batch))
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".jsonl":
        with out.open("w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
    else:
        import pandas as pd

        frame = pd.DataFrame([flat_row(r, classifier.schema.names) for r in records])
        frame.to_csv(out, index=False) if out.suffix == ".csv" else frame.to_parquet(out, index=False)
    return records
