"""Chunked readers: the same checks as the whole-file readers, restartable at any chunk end."""

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from socialens.core.errors import DataError
from socialens.core.types import Example, LabelSchema
from socialens.data.readers import read_examples
from socialens.data.stream import Position, Rejected, RowStream

TINY = Path(__file__).resolve().parents[1] / "fixtures" / "bench" / "tiny.csv"
SCHEMA = LabelSchema.from_names(["belief", "debunk", "other"])


def items(stream: RowStream, chunk_rows: int = 3, start: Position | None = None) -> list:
    return [item for chunk in stream.chunks(chunk_rows, start=start) for item in chunk.items]


def test_csv_stream_matches_the_whole_file_reader_and_uses_the_id_column():
    whole = read_examples(TINY, label="label", id="id", metadata={"topic": "topic"}, schema=SCHEMA)
    stream = RowStream(TINY, label="label", metadata={"topic": "topic"}, schema=SCHEMA)
    assert stream.id == "id"  # picked up without --id
    streamed = items(stream, chunk_rows=7)
    assert streamed == whole.examples
    assert len(streamed) == 90


def test_without_an_id_column_ids_are_row_numbers(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("text\nfirst\nsecond\n")
    assert [ex.id for ex in items(RowStream(path))] == ["row-1", "row-2"]


@pytest.mark.parametrize("chunk_rows", [1, 2, 5, 100])
def test_restarting_at_any_chunk_end_reads_the_rest_exactly(tmp_path, chunk_rows):
    path = tmp_path / "in.csv"
    # quoted newlines, a blank line, a BOM: byte offsets must still land on row starts
    path.write_bytes(
        b'\xef\xbb\xbfid,text\na,"one\nline two"\n\nb,plain\nc,"x, ""quoted"""\nd,\xc3\xa9t\xc3\xa9\ne,last\n'
    )
    stream = RowStream(path)
    full = items(stream, chunk_rows)
    assert [ex.id for ex in full] == ["a", "b", "c", "d", "e"]
    assert full[0].text == "one\nline two" and full[2].text == 'x, "quoted"' and full[3].text == "été"
    for chunk in stream.chunks(chunk_rows):
        rest = items(RowStream(path), chunk_rows, start=chunk.end)
        assert full[chunk.end.rows :] == rest


def test_bad_rows_become_rejected_items_in_place(tmp_path):
    path = tmp_path / "in.jsonl"
    lines = [
        json.dumps({"id": "1", "text": "fine", "label": "belief"}),
        "{not json",
        json.dumps({"id": "3", "text": "   ", "label": "belief"}),
        json.dumps({"id": "4", "text": "ok", "label": "maybe"}),
        json.dumps(["a list"]),
        "",
        json.dumps({"id": "", "text": "no id"}),
        json.dumps({"id": "7", "text": "unlabelled"}),
    ]
    path.write_text("\n".join(lines) + "\n")
    got = items(RowStream(path, label="label", schema=SCHEMA))
    assert len(got) == 7  # the blank line is not a row
    assert isinstance(got[0], Example) and got[0].label == "belief"
    reasons = [(g.id, g.reason) for g in got if isinstance(g, Rejected)]
    assert reasons == [
        ("row-2", "malformed_row"),
        ("3", "empty_text"),
        ("4", "unknown_label"),
        ("row-5", "malformed_row"),
        ("row-6", "empty_id"),
    ]
    assert got[1].message.startswith(f"{path}:2: malformed row: invalid JSON")
    assert f"{path}:3: empty text in column 'text'" in got[2].message
    assert "unknown label in column 'label'" in got[3].message and "belief, debunk, other" in got[3].message
    assert "maybe" not in got[3].message  # errors name the line and column, never echo the cell
    assert isinstance(got[-1], Example) and got[-1].label is None  # unlabelled rows are still examples


def test_non_utf8_and_malformed_csv_rows(tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes(b"id,text\n1,good\n2,bad \xff byte\n3,too,many\n4,fine\n")
    got = items(RowStream(path))
    assert [type(g).__name__ for g in got] == ["Example", "Rejected", "Rejected", "Example"]
    assert got[1].reason == "non_utf8" and f"{path}:3" in got[1].message
    assert got[2].reason == "malformed_row" and "3 fields, expected 2" in got[2].message


def test_parquet_in_row_groups_restarts_mid_group(tmp_path):
    path = tmp_path / "in.parquet"
    frame = pd.DataFrame({"id": [f"x{i}" for i in range(25)], "text": [f"text {i}" for i in range(25)]})
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=10)
    stream = RowStream(path)
    full = items(stream, 4)
    assert [ex.id for ex in full] == list(frame["id"])
    assert items(stream, 4, start=Position(13)) == full[13:]
    assert [p.rows for p in stream.boundaries(8)] == [0, 8, 16, 24, 25]
    assert stream.size == 25


def test_boundaries_of_a_text_file_are_restart_points(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"text": f"t{i}"}) + "\n" for i in range(10)))
    stream = RowStream(path)
    bounds = stream.boundaries(4)
    assert [b.rows for b in bounds] == [0, 4, 8, 10]
    shards = [
        [ex.text for c in stream.chunks(b.rows - a.rows, start=a, stop_rows=b.rows) for ex in c.items]
        for a, b in zip(bounds, bounds[1:], strict=False)
    ]
    assert shards == [["t0", "t1", "t2", "t3"], ["t4", "t5", "t6", "t7"], ["t8", "t9"]]


def test_missing_column_and_missing_file_are_one_line_errors(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("body,label\nhello,belief\n")
    with pytest.raises(DataError, match=r"in.csv: missing column 'text' \(none of the file's 2 columns has"):
        RowStream(path)
    with pytest.raises(DataError, match="nope.jsonl: file not found"):
        RowStream(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="chunk size 0"):
        list(RowStream(path, text="body").chunks(0))


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ('id,text\na,first\nb,"second never closes\nc,third\nd,fourth\n', "never closes"),
        (
            'id,text\na,first\nb,"second closes late\nc,third\nd,"fourth, quoted"\n',
            "closes only 2 line(s) later, leaving 3 fields where 2 are expected",
        ),
    ],
)
def test_an_unbalanced_quote_is_one_malformed_row_and_the_lines_it_swallowed_are_rows(tmp_path, content, why):
    path = tmp_path / "in.csv"
    path.write_text(content)
    stream = RowStream(path)
    got = items(stream, chunk_rows=10)
    assert [(type(g).__name__, g.id) for g in got] == [
        ("Example", "a"),
        ("Rejected", "row-2"),
        ("Example", "c"),
        ("Example", "d"),
    ]
    assert got[1].reason == "malformed_row" and "\n" not in got[1].message
    assert got[1].message.startswith(
        f"{path}:3: unterminated quote: a quoted field opened on this line {why};"
    )
    for chunk in stream.chunks(1):  # every row end, inside the swallowed lines too, is a restart point
        assert items(RowStream(path), 1, start=chunk.end) == got[chunk.end.rows :]
    assert [b.rows for b in stream.boundaries(1)] == [0, 1, 2, 3, 4]


def test_a_quoted_multiline_field_that_closes_at_the_end_is_no_alarm(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('id,text\na,first\nb,"second\nspans two lines"')  # no final newline
    got = items(RowStream(path))
    assert [ex.text for ex in got] == ["first", "second\nspans two lines"]


def test_empty_files_and_non_text_columns_are_one_line_errors(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match=r"empty.csv: empty file; expected a header row, then data rows"):
        RowStream(empty)
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{cut\n")
    with pytest.raises(DataError, match=r"broken.jsonl: no JSON object; expected one JSON object per line"):
        RowStream(broken)
    numbers = tmp_path / "numbers.parquet"
    pd.DataFrame({"text": [1, 2], "note": ["a", "b"]}).to_parquet(numbers)
    with pytest.raises(DataError, match=r"column 'text' holds int64 values; expected a string column"):
        RowStream(numbers)
    assert [ex.text for ex in items(RowStream(numbers, text="note"))] == ["a", "b"]
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(json.dumps({"text": 5}) + "\n" + json.dumps({"text": ["a"]}) + "\n" + '{"text": "ok"}\n')
    got = items(RowStream(mixed))
    assert [getattr(g, "reason", "example") for g in got] == ["text_not_string", "text_not_string", "example"]
    assert got[0].message == f"{mixed}:1: a value of type int in text column 'text'; expected a string"


def olid_like(n: int, quoted: dict[int, str]) -> str:
    lines = ["id\ttweet\tlabel"]
    for i in range(1, n + 1):
        lines.append(f"{i}\t{quoted.get(i, f'tweet {i}')}\t{'OFF' if i % 10 == 0 else 'NOT'}")
    return "\n".join(lines) + "\n"


def test_rows_merged_by_unbalanced_quotes_stop_the_stream_as_they_stop_the_reader(tmp_path):
    path = tmp_path / "olid.tsv"
    path.write_text(olid_like(60, {30: '"so it begins', 35: 'and "ends'}), encoding="utf-8")
    with pytest.raises(DataError) as whole:
        read_examples(path, text="tweet", label="label")
    stream = RowStream(path, text="tweet", label="label")
    with pytest.raises(DataError) as streamed:
        items(stream, chunk_rows=10)
    assert str(streamed.value) == str(whole.value)
    assert str(streamed.value).startswith(f"{path}:31: a quoted field opens on this line and runs to line 36")
    with pytest.raises(DataError):  # the shards a parallel engine hands out are read the same way
        stream.boundaries(10)
    assert len(items(RowStream(path, text="tweet", label="label", quoting="none"))) == 60


def test_a_consistently_quoted_multiline_csv_streams_every_row(tmp_path):
    body = "".join(f'{i},"line one of {i}\nline, two",{"a" if i % 2 else "b"}\n' for i in range(40))
    path = tmp_path / "in.csv"
    path.write_text("id,text,label\n" + body, encoding="utf-8")
    streamed = items(RowStream(path, label="label"), chunk_rows=7)
    assert [ex.text for ex in streamed] == [f"line one of {i}\nline, two" for i in range(40)]
    assert streamed == read_examples(path, label="label", id="id").examples


def test_an_archive_is_not_streamed(tmp_path):
    import zipfile

    path = tmp_path / "in.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("in.csv", "text\nhello\n")
    with pytest.raises(DataError) as exc:
        RowStream(path)
    assert str(exc.value) == f"{path}: this is a zip archive with members in.csv; unzip it and name the file"
