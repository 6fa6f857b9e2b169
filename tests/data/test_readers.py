import json
from pathlib import Path

import pandas as pd
import pytest

from socialens.core.errors import DataError
from socialens.core.types import Label, LabelSchema
from socialens.data.readers import read_examples

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"
STANCE = LabelSchema(
    [Label("favor", aliases=("support",)), Label("against"), Label("none")],
)


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def read_csv(path: Path, **kwargs):
    kwargs.setdefault("schema", STANCE)
    return read_examples(path, text="text", label="stance", **kwargs)


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# --- column mapping, normalisation, formats -------------------------------------------------


def test_column_mapping_and_label_normalisation():
    result = read_examples(
        FIXTURES / "stance.csv", text="text", label="stance", id="id", metadata={"t": "topic"}, schema=STANCE
    )
    assert [ex.id for ex in result.examples] == ["1", "2", "3"]
    assert [ex.label for ex in result.examples] == ["favor", "against", "none"]
    assert result.examples[1].text == "A quoted, multi-line\ntext"
    assert result.examples[2].metadata == {"t": "health"}
    assert result.n_dropped == 0


def test_text_from_several_columns_and_generated_ids(tmp_path):
    path = write(tmp_path, "news.csv", "title,body,label\nHeadline,Body text,a\n,Only body,b\n")
    result = read_examples(path, text=["title", "body"], label="label", split="train")
    assert [ex.text for ex in result.examples] == ["Headline\n\nBody text", "Only body"]
    assert [ex.id for ex in result.examples] == ["train-1", "train-2"]


def test_inferred_schema_merges_case_variants(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\na,FALSE\nb,false\nc,false\nd, True \n")
    result = read_examples(path, label="label")
    assert result.schema.names == ["false", "True"]
    assert [ex.label for ex in result.examples] == ["false", "false", "false", "True"]


def test_schema_given_as_names(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\nx,B\n")
    assert read_examples(path, label="label", schema=["a", "b"]).examples[0].label == "b"


def test_unlabelled_input(tmp_path):
    path = write(tmp_path, "d.csv", "text\nhello\nworld\n")
    result = read_examples(path)
    assert [ex.label for ex in result.examples] == [None, None]
    # a label column that may be absent or empty when require_labels=False
    assert read_examples(path, label="label", require_labels=False).examples[0].label is None
    path2 = write(tmp_path, "e.csv", "text,label\nhello,\nworld,b\n")
    labels = [ex.label for ex in read_examples(path2, label="label", require_labels=False).examples]
    assert labels == [None, "b"]


def test_jsonl_and_parquet(tmp_path):
    rows = [{"id": "a", "text": "one", "stance": "FAVOR"}, {"id": "b", "text": "two", "stance": "none"}]
    jsonl = write(tmp_path, "d.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    parquet = tmp_path / "d.parquet"
    pd.DataFrame(rows).to_parquet(parquet)
    for path in (jsonl, parquet):
        result = read_csv(path, id="id")
        assert [(ex.id, ex.label) for ex in result.examples] == [("a", "favor"), ("b", "none")]


def test_headerless_tsv_with_bare_quotes(tmp_path):
    path = write(tmp_path, "d.tsv", 'x1\tfavor\tHe said "no" twice\n')
    result = read_examples(
        path,
        text="s",
        label="l",
        id="i",
        header=False,
        column_names=["i", "l", "s"],
        quoting="none",
        schema=STANCE,
    )
    assert result.examples[0].text == 'He said "no" twice'


def test_glued_rows_are_split():
    result = read_examples(
        FIXTURES / "glued.tsv",
        text="Text",
        label="class_label",
        id="Sentence_id",
        quoting="none",
        glued_rows={"id_pattern": r"\d+"},
        schema=["Yes", "No"],
    )
    assert [(ex.id, ex.text, ex.label) for ex in result.examples] == [
        ("10", 'A "bare" quote here.', "Yes"),
        ("11", "First glued.", "No"),
        ("12", "Second glued.", "No"),
        ("13", "Last one.", "Yes"),
    ]


def test_glued_rows_are_malformed_without_the_option():
    with pytest.raises(DataError, match=r"glued.tsv:3: malformed row: 5 fields, expected 3") as exc:
        read_examples(FIXTURES / "glued.tsv", text="Text", label="class_label", quoting="none")
    one_line(exc)


def test_tweeteval_folder():
    result = read_examples(FIXTURES / "tweeteval_tiny", format="tweeteval", label="label", split="train")
    assert [(ex.id, ex.text, ex.label) for ex in result.examples] == [
        ("train-1", "first tweet", "not-hate"),
        ("train-2", "second tweet", "hate"),
        ("train-3", "", "not-hate"),
    ]


def test_tweeteval_line_count_mismatch(tmp_path):
    folder = tmp_path / "task"
    folder.mkdir()
    (folder / "mapping.txt").write_text("0\ta\n1\tb\n")
    (folder / "train_text.txt").write_text("one\ntwo\n")
    (folder / "train_labels.txt").write_text("0\n")
    with pytest.raises(DataError, match="1 labels but train_text.txt has 2 lines"):
        read_examples(folder, format="tweeteval", label="label", split="train")


def test_hf_reader_reads_a_hub_style_dataset_folder(tmp_path):
    # load_dataset takes a local folder laid out like a hub repo through the same code path as a hub id
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    repo = tmp_path / "org-sst"
    (repo / "data").mkdir(parents=True)
    data = datasets.Dataset.from_dict(
        {"sentence": ["bad film", "good film"], "label": [0, 1]}, features=features
    )
    data.to_parquet(str(repo / "data" / "validation-00000-of-00001.parquet"))
    result = read_examples(
        str(repo), format="hf", text="sentence", label="label", split="validation", id_prefix="dev"
    )
    assert [(ex.id, ex.text, ex.label) for ex in result.examples] == [
        ("dev-1", "bad film", "neg"),
        ("dev-2", "good film", "pos"),
    ]


# --- bad input: one error each, one line naming the file and the line -----------------------


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.csv: file not found") as exc:
        read_csv(tmp_path / "nope.csv")
    one_line(exc)


def test_missing_column_even_with_drop_invalid(tmp_path):
    path = write(tmp_path, "d.csv", "body,stance\nx,favor\n")
    with pytest.raises(DataError) as exc:
        read_csv(path, drop_invalid=True)
    assert one_line(exc) == (
        f"{path}: missing column 'text' (none of the file's 2 columns has that name); "
        "expected columns: text, stance"
    )


def test_unknown_label(tmp_path):
    path = write(tmp_path, "data.csv", "text,stance\n" + "fine,favor\n" * 5 + "hmm,maybe\n")
    with pytest.raises(DataError) as exc:
        read_csv(path)
    assert one_line(exc) == (
        f"{path}:7: unknown label in column 'stance'; expected one of favor, against, none"
    )


def test_line_numbers_count_multiline_fields(tmp_path):
    path = write(tmp_path, "d.csv", 'text,stance\n"two\nlines",favor\nbad,maybe\n')
    with pytest.raises(DataError, match=r"d.csv:4: unknown label in column 'stance'"):
        read_csv(path)


@pytest.mark.parametrize("content", ["text,stance\nx,\n", "text,stance\nx,   \n"])
def test_empty_label(tmp_path, content):
    with pytest.raises(DataError, match=r"d.csv:2: empty label in column 'stance'"):
        read_csv(write(tmp_path, "d.csv", content))


def test_nan_label_in_parquet(tmp_path):
    path = tmp_path / "d.parquet"
    pd.DataFrame({"text": ["a", "b"], "stance": ["favor", None]}).to_parquet(path)
    with pytest.raises(DataError, match=r"d.parquet, row 2: empty label in column 'stance'"):
        read_csv(path)


def test_malformed_row(tmp_path):
    path = write(tmp_path, "d.csv", "text,stance\nok,favor\ntoo,many,fields\n")
    with pytest.raises(DataError, match=r"d.csv:3: malformed row: 3 fields, expected 2") as exc:
        read_csv(path)
    one_line(exc)


def test_malformed_jsonl_line(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"text": "a", "stance": "favor"}\n{"text": broken\n')
    with pytest.raises(DataError, match=r"d.jsonl:2: malformed row: invalid JSON"):
        read_csv(path)


def test_non_utf8(tmp_path):
    path = write(tmp_path, "d.csv", b"text,stance\nok,favor\ncaf\xe9,none\n")
    with pytest.raises(DataError, match=r"d.csv:3: byte 0xe9 is not valid utf-8") as exc:
        read_csv(path)
    one_line(exc)


def test_duplicate_id(tmp_path):
    path = write(tmp_path, "d.csv", "id,text,stance\n1,a,favor\n2,b,none\n1,c,none\n")
    with pytest.raises(DataError, match=r"d.csv:4: duplicate id in column 'id' \(first at .*d.csv:2\)"):
        read_csv(path, id="id")


@pytest.mark.parametrize("content", ["", "text,stance\n", "text,stance\n\n\n"])
def test_empty_dataset(tmp_path, content):
    with pytest.raises(DataError, match="d.csv: empty dataset"):
        read_csv(write(tmp_path, "d.csv", content))


def test_text_over_max_length(tmp_path):
    path = write(tmp_path, "d.csv", "text,stance\nshort,favor\n" + "x" * 1_000_000 + ",none\n")
    with pytest.raises(
        DataError, match=r"d.csv:3: text of 1,000,000 characters .* expected at most 100,000"
    ) as exc:
        read_csv(path)
    one_line(exc)
    assert len(read_csv(path, max_chars=2_000_000).examples) == 2


def test_unknown_extension(tmp_path):
    with pytest.raises(DataError, match="cannot tell the format"):
        read_csv(write(tmp_path, "d.xlsx", "x"))


def test_drop_invalid_counts_every_reason(tmp_path):
    content = (
        b"id,text,stance\n"
        b"1,good,favor\n"
        b"2,unknown,maybe\n"
        b"3,empty,\n"
        b"4,too,many,fields\n"
        b"5,caf\xe9,none\n"
        b"1,duplicate,none\n"
        b"6," + b"x" * 200 + b",none\n"
        b"7,also good,AGAINST\n"
    )
    result = read_csv(write(tmp_path, "d.csv", content), id="id", drop_invalid=True, max_chars=100)
    assert [ex.id for ex in result.examples] == ["1", "7"]
    assert dict(result.dropped) == {
        "unknown_label": 1,
        "empty_label": 1,
        "malformed_row": 1,
        "non_utf8": 1,
        "duplicate_id": 1,
        "text_too_long": 1,
    }
    report = result.report()
    assert "2 examples read, 6 rows dropped" in report and "unknown label in column 'stance'" in report


def test_drop_invalid_with_nothing_left(tmp_path):
    path = write(tmp_path, "d.csv", "text,stance\na,maybe\n")
    with pytest.raises(DataError, match=r"empty dataset \(all 1 rows were invalid\)"):
        read_csv(path, drop_invalid=True)


# --- errors name the file, line and column, never what the file holds (docs/security.md) ------

SECRET = "hunter2-s3cr3t"


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "expected"),
    [
        # the first line of a file that is not the data it was taken for (/etc/passwd style)
        ("passwd", f"root:{SECRET}:0:0:root:/root:/bin/bash\n", {"format": "csv"}, "missing column 'text'"),
        # a header listed in a field-count error
        (
            "d.tsv",
            f"text\t{SECRET}\nonly one field\na\tb\n",
            {"label": None},
            "d.tsv:2: malformed row: 1 fields",
        ),
        (
            "d.csv",
            f"text,stance\nfine,favor\nhmm,{SECRET}\n",
            {"label": "stance", "schema": STANCE},
            "d.csv:3: unknown label in column 'stance'",
        ),
        (
            "d.csv",
            f"id,text\n{SECRET},a\n{SECRET},b\n",
            {"id": "id", "label": None},
            "d.csv:3: duplicate id in column 'id'",
        ),
        (
            "d.jsonl",
            f'{{"text": "x", "stance": "{SECRET}"}}\n{{"text": "y", "stance": "none"}}\n',
            {"label": "stance", "schema": STANCE},
            "d.jsonl:1: unknown label in column 'stance'",
        ),
    ],
)
def test_errors_never_echo_file_contents(tmp_path, name, content, kwargs, expected):
    path = write(tmp_path, name, content)
    kwargs = {"text": "text", **kwargs}
    with pytest.raises(DataError) as exc:
        read_examples(path, **kwargs)
    message = one_line(exc)
    assert SECRET not in message
    assert expected in message and str(path) in message
    if "missing column" not in expected:  # the --drop-invalid report quotes the same messages
        assert SECRET not in read_examples(path, drop_invalid=True, **kwargs).report()


# --- rows merged by unbalanced double quotes (issue 16) -------------------------------------

OFFENSIVE = ["OFF", "NOT_OFF"]


def olid_like(n: int, quoted: dict[int, str]) -> str:
    """A TSV of n tweets, one per line, never quoted by a CSV writer; ``quoted`` replaces some
    tweets by texts holding bare double quotes. The label is NOT_OFF except on every 10th row."""
    lines = ["id\ttweet\tsubtask_a"]
    for i in range(1, n + 1):
        text = quoted.get(i, f"tweet {i} about the match")
        lines.append(f"{i}\t{text}\t{'OFF' if i % 10 == 0 else 'NOT_OFF'}")
    return "\n".join(lines) + "\n"


def test_rows_merged_by_unbalanced_quotes_stop_with_the_line_where_the_quote_opened(tmp_path):
    # tweet 12 opens a quote that only the quote of tweet 19 closes: tweets 13-18 would vanish
    # into tweet 12's text (one label for all); tweet 40 opens one that tweet 41 closes
    quoted = {12: '"@user you said it', 19: 'so "true" lol', 40: '"OMG', 41: 'she said "no'}
    path = write(tmp_path, "olid.tsv", olid_like(100, quoted))
    for drop_invalid in (False, True):  # a file-level problem: dropping rows would not help
        with pytest.raises(DataError) as exc:
            read_examples(path, text="tweet", label="subtask_a", schema=OFFENSIVE, drop_invalid=drop_invalid)
        assert one_line(exc) == (
            f"{path}:13: a quoted field opens on this line and runs to line 20, taking in 7 more line(s) "
            "that look like rows of their own (92 rows read from 100 lines): if the double quotes are "
            "part of the texts, set quoting: none (in the dataset YAML's options, or --quoting none)"
        )
    result = read_examples(path, text="tweet", label="subtask_a", id="id", schema=OFFENSIVE, quoting="none")
    assert len(result.examples) == 100
    by_id = {ex.id: ex for ex in result.examples}
    assert by_id["12"].text == '"@user you said it' and by_id["15"].label == "NOT_OFF"
    assert by_id["19"].text == 'so "true" lol' and by_id["20"].label == "OFF"


def test_a_single_merged_pair_in_a_small_file_is_noticed(tmp_path):
    path = write(tmp_path, "d.tsv", olid_like(5, {2: '"quoted start', 3: 'end quote" here'}))
    with pytest.raises(DataError, match=r"d\.tsv:3: a quoted field opens on this line and runs to line 4"):
        read_examples(path, text="tweet", label="subtask_a")


def test_a_consistently_quoted_csv_with_many_multiline_fields_is_read_as_written(tmp_path):
    import csv
    import io

    rows = []
    for i in range(60):
        lines = [f"comment {i}, first line", f'it said "{i}", then', "last, line"][: 1 + i % 3]
        rows.append([str(i), "\n".join(lines), "favor" if i % 2 else "against"])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "text", "stance"])
    writer.writerows(rows)
    path = write(tmp_path, "comments.csv", buffer.getvalue())
    result = read_examples(path, text="text", label="stance", id="id", schema=STANCE)
    assert [(ex.id, ex.text, ex.label) for ex in result.examples] == [tuple(row) for row in rows]


def test_one_legitimately_quoted_multiline_text_is_no_alarm(tmp_path):
    content = 'id\ttext\tlabel\n1\t"first line\nsecond line"\tfavor\n2\tplain\tnone\n'
    result = read_examples(write(tmp_path, "d.tsv", content), label="label", schema=STANCE)
    assert [ex.text for ex in result.examples] == ["first line\nsecond line", "plain"]


def test_a_quote_that_takes_in_a_delimiter_on_one_line_is_noticed(tmp_path):
    # 4 tab-separated fields in the file, read as the header's 3 because of the quotes
    path = write(tmp_path, "d.tsv", 'id\ttext\tlabel\n1\tfine\tnone\n2\t"a\tb" c\tfavor\n')
    with pytest.raises(DataError) as exc:
        read_examples(path, label="label", schema=STANCE)
    assert one_line(exc) == (
        f"{path}:3: a quoted field opens on this line and takes in the delimiter, unlike any CSV writer "
        "(2 rows read from 2 lines): if the double quotes are part of the texts, set quoting: none "
        "(in the dataset YAML's options, or --quoting none)"
    )


def test_a_malformed_row_holding_a_quoted_delimiter_suggests_quoting_none(tmp_path):
    rows = "".join(f'"text {i}, with a comma",favor\n' for i in range(10))  # consistent quoting
    path = write(tmp_path, "d.csv", f'text,label\n{rows}"one, more",favor,extra\n')
    with pytest.raises(DataError) as exc:
        read_examples(path, label="label", schema=STANCE)
    assert one_line(exc).startswith(f"{path}:12: malformed row: 3 fields, expected 2")
    assert str(exc.value).endswith(
        "; a quoted field holds the delimiter or a newline: if the double quotes are part of the texts, "
        "set quoting: none"
    )


def test_real_liar_train_with_default_quoting_is_stopped(shared_datasets):
    path = shared_datasets / "liar" / "train.tsv"
    names = ["id", "label", "statement", *[f"c{i}" for i in range(11)]]
    options = dict(format="tsv", header=False, column_names=names, text="statement", label="label")
    with pytest.raises(DataError) as exc:
        read_examples(path, **options)
    assert one_line(exc).startswith(f"{path}:1281: a quoted field opens on this line and runs to line 1293")
    assert "(10,240 rows read from 10,269 lines)" in str(exc.value)
    assert len(read_examples(path, quoting="none", **options).examples) == 10269


def test_real_files_with_quoted_fields_are_no_alarm(shared_datasets):
    # HASOC test: 71 quoted texts with doubled quotes; Constraint: 244 texts over several lines
    hasoc = shared_datasets / "hasoc2019_hi" / "hasoc2019_hi_test_gold_2919.tsv"
    assert len(read_examples(hasoc, text="text", label="task_1", id="text_id").examples) == 1318
    constraint = shared_datasets / "constraint_covid19_fakenews_en" / "Constraint_Train.csv"
    assert len(read_examples(constraint, text="tweet", label="label", id="id").examples) == 6420


def test_a_duplicate_id_error_names_the_way_through_and_drop_invalid_takes_it(tmp_path):
    path = write(tmp_path, "d.csv", "id,text,stance\n1,a,favor\n2,b,none\n1,c,none\n")
    with pytest.raises(DataError) as exc:
        read_csv(path, id="id")
    assert "--drop-invalid" in one_line(exc) and "drop_invalid: true" in one_line(exc)
    result = read_csv(path, id="id", drop_invalid=True)
    assert [ex.text for ex in result.examples] == ["a", "b"] and result.dropped == {"duplicate_id": 1}


def test_require_text_rejects_empty_and_blank_texts(tmp_path):
    path = write(tmp_path, "d.csv", 'text,stance\n"",favor\n" \t ",none\nreal text,none\n')
    assert len(read_csv(path).examples) == 3  # kept by default: preparation drops and counts short texts
    with pytest.raises(DataError, match=r"d.csv:2: empty text in column 'text'; expected non-empty text"):
        read_csv(path, require_text=True)
    result = read_csv(path, require_text=True, drop_invalid=True)
    assert [ex.text for ex in result.examples] == ["real text"] and result.dropped == {"empty_text": 2}


def test_a_text_that_is_not_a_string_is_a_bad_row(tmp_path):
    path = tmp_path / "d.parquet"
    pd.DataFrame({"text": [7, 8], "stance": ["favor", "none"]}).to_parquet(path)
    with pytest.raises(DataError) as exc:
        read_csv(path)
    assert one_line(exc) == f"{path}, row 1: a value of type int in text column 'text'; expected a string"
    jsonl = write(tmp_path, "d.jsonl", '{"text": 1.5, "stance": "none"}\n{"text": "ok", "stance": "none"}\n')
    result = read_csv(jsonl, drop_invalid=True)
    assert [ex.text for ex in result.examples] == ["ok"] and result.dropped == {"text_not_string": 1}


def test_one_column_files_rely_on_the_quotes_alone(tmp_path):
    # every line of a one-column file looks like a row: a writer's quoted newline is fine...
    path = write(tmp_path, "in.csv", 'text\n"line one\nline two"\nnext\n')
    assert [ex.text for ex in read_examples(path).examples] == ["line one\nline two", "next"]
    # ...a quote no writer would write is not
    path = write(tmp_path, "bad.csv", 'text\na lovely day\n"an awful day\nhappy to hear\n')
    with pytest.raises(DataError, match=r"bad\.csv:3: a quoted field opens on this line and runs to line 4"):
        read_examples(path)
