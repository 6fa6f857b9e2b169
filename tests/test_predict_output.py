"""Output sinks of batch prediction: committed marks, truncation on resume, Parquet parts."""

import pyarrow.parquet as pq
import pytest

from socialens.core.errors import DataError
from socialens.core.types import PredictionRecord, Status
from socialens.predict_output import open_sink, output_columns, output_row, read_output_records

COLUMNS = output_columns(["a", "b"], with_gold=True, metadata=["topic"])


def rows(start: int, n: int) -> list[dict]:
    out = []
    for i in range(start, start + n):
        record = PredictionRecord(
            f"r{i}", "a", "a" if i % 2 else None, Status.OK if i % 2 else Status.INVALID
        )
        if i % 2:
            record.scores = {"a": 0.75, "b": 0.25}
        else:
            record.error = f"bad row {i}, with a comma"
        out.append(output_row(record, ["a", "b"], True, {"topic": i if i % 3 else None}))
    return out


def test_output_row_has_every_column_in_order():
    row = rows(1, 1)[0]
    assert list(row) == COLUMNS == ["id", "label", "p_a", "p_b", "status", "error", "gold", "topic"]
    assert row == {
        "id": "r1", "label": "a", "p_a": 0.75, "p_b": 0.25, "status": "ok", "error": None, "gold": "a", "topic": 1
    }  # fmt: skip


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_resuming_from_a_mark_drops_uncommitted_writes(tmp_path, suffix):
    reference = tmp_path / f"reference{suffix}"
    sink = open_sink(reference, COLUMNS)
    for start in (0, 4, 8):
        sink.write(rows(start, 4))
        sink.commit()
    sink.finish()
    sink.cleanup()

    out = tmp_path / f"out{suffix}"
    sink = open_sink(out, COLUMNS)
    sink.write(rows(0, 4))
    mark = sink.commit()
    sink.write(rows(4, 4))  # written but never committed: the run is killed here
    sink.close()
    sink = open_sink(out, COLUMNS, resume_mark=mark)
    for start in (4, 8):
        sink.write(rows(start, 4))
        sink.commit()
    sink.finish()
    sink.cleanup()
    assert out.read_bytes() == reference.read_bytes()
    records = read_output_records(out)
    assert [r.id for r in records] == [f"r{i}" for i in range(12)]
    assert [r.status for r in records[:2]] == [Status.INVALID, Status.OK] and records[1].gold == "a"
    if suffix == ".parquet":
        assert pq.ParquetFile(out).num_row_groups == 3
        assert not (tmp_path / "out.parquet.parts").exists()


def test_resume_mark_beyond_the_file_is_refused(tmp_path):
    out = tmp_path / "out.csv"
    out.write_text("id\n")
    with pytest.raises(DataError, match="shorter than the 999 bytes"):
        open_sink(out, COLUMNS, resume_mark=999)
    with pytest.raises(DataError, match="unsupported output format '.txt'"):
        open_sink(tmp_path / "out.txt", COLUMNS)


def test_raw_output_is_written_for_rows_that_are_not_ok():
    columns = output_columns(["a", "b"], with_gold=False, metadata=[], raw_output=True)
    assert columns == ["id", "label", "p_a", "p_b", "status", "error", "raw_output"]
    ok = PredictionRecord("r1", None, "a", Status.OK, raw_output="a")
    invalid = PredictionRecord("r2", None, None, Status.INVALID, raw_output="The", error="invalid: why")
    refused = PredictionRecord("r3", None, None, Status.REFUSED, raw_output="I can't", error="refused: why")
    failed = PredictionRecord("r4", None, None, Status.ERROR, raw_output="", error="HTTP 500")
    rows = [output_row(r, ["a", "b"], False, {}, raw_output=True) for r in (ok, invalid, refused, failed)]
    assert all(list(row) == columns for row in rows)
    assert [row["raw_output"] for row in rows] == [None, "The", "I can't", None]
    assert [row["error"] for row in rows] == [None, "invalid: why", "refused: why", "HTTP 500"]
    assert "raw_output" not in output_row(invalid, ["a", "b"], False, {})  # families without raw answers
