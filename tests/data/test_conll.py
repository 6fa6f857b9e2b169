"""The CoNLL reader: column layouts, tag schemes, sentence boundaries, line ranges, counted repairs
and one-line errors (file:line, never a cell's content)."""

from __future__ import annotations

from pathlib import Path

import pytest

from socialens.core.errors import ConfigError, DataError
from socialens.core.types import LabelSchema
from socialens.data.conll import parse_line_range, read_conll, split_fields
from socialens.data.datasets import load_dataset, load_dataset_config
from socialens.data.readers import read_examples

SCHEMA = LabelSchema.from_names(["PER", "LOC", "ORG"])


def write(tmp_path: Path, text: str, name: str = "data.conll") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_whitespace_columns_blank_lines_and_docstart(tmp_path):
    path = write(
        tmp_path,
        "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nLondon NNP B-NP B-LOC\n\n"
        "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n",
    )
    result = read_conll(path, schema=SCHEMA, column_names=["token", "pos", "chunk", "ner"], tag_column="ner")
    assert [ex.tokens for ex in result.examples] == [["EU", "rejects", "London"], ["Peter", "Blackburn"]]
    assert [ex.label for ex in result.examples] == [["B-ORG", "O", "B-LOC"], ["B-PER", "I-PER"]]
    assert [ex.text for ex in result.examples] == ["EU rejects London", "Peter Blackburn"]
    assert [ex.id for ex in result.examples] == ["sentence-1", "sentence-2"]
    assert result.repaired == {}


def test_defaults_are_first_and_last_column(tmp_path):
    path = write(tmp_path, "EU NNP B-NP B-ORG\nvisits VBZ B-VP O\n")
    (example,) = read_conll(path, schema=SCHEMA).examples
    assert example.tokens == ["EU", "visits"] and example.label == ["B-ORG", "O"]


def test_token_and_tag_columns_by_name(tmp_path):
    path = write(tmp_path, "B-ORG EU x\nO visits y\n")
    (example,) = read_conll(
        path, schema=SCHEMA, column_names=["tag", "token", "other"], token_column="token", tag_column="tag"
    ).examples
    assert example.tokens == ["EU", "visits"] and example.label == ["B-ORG", "O"]


def test_a_column_not_in_column_names_is_an_error(tmp_path):
    path = write(tmp_path, "EU B-ORG\n")
    with pytest.raises(
        DataError, match=r"data\.conll: tag column 'ner' is not one of column_names \(token, tag\)"
    ):
        read_conll(path, schema=SCHEMA, column_names=["token", "tag"], tag_column="ner")


def test_tab_delimiter_keeps_spaces_in_tokens(tmp_path):
    path = write(tmp_path, "New York\tB-LOC\nis\tO\n")
    (example,) = read_conll(path, schema=SCHEMA, column_names=["token", "tag"], delimiter="\t").examples
    assert example.tokens == ["New York", "is"]


def test_rsplit_on_the_last_separator_anercorp_style(tmp_path):
    # a token holding a space, two spaces before a tag, an empty token (" O")
    path = write(tmp_path, "الصالحية ونايفة O\n,  O\n O\nالمفرق B-LOC\n")
    result = read_conll(path, schema=SCHEMA, column_names=["token", "tag"], delimiter=" ")
    (example,) = result.examples
    assert example.tokens == ["الصالحية ونايفة", ",", "المفرق"]
    assert example.label == ["O", "O", "B-LOC"]
    assert result.repaired == {"empty_token": 1}


def test_whitespace_split_reads_a_leading_space_as_an_empty_token():
    assert split_fields(" O", None, 2) == ["", "O"]
    assert split_fields("a  b O", None, 2) == ["a  b", "O"]
    assert split_fields("EU NNP B-NP B-ORG", None, None) == ["EU", "NNP", "B-NP", "B-ORG"]
    assert split_fields("New York\tB-LOC", "\t", 2) == ["New York", "B-LOC"]


@pytest.mark.parametrize(
    ("scheme", "tags", "iob2"),
    [
        ("iob1", ["I-PER", "I-PER", "B-PER", "O", "I-LOC"], ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]),
        ("bioes", ["B-PER", "E-PER", "S-LOC", "O", "S-ORG"], ["B-PER", "I-PER", "B-LOC", "O", "B-ORG"]),
        ("auto", ["B-PER", "E-PER", "S-LOC", "O", "S-ORG"], ["B-PER", "I-PER", "B-LOC", "O", "B-ORG"]),
        ("iob2", ["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-PER", "I-PER", "O", "B-LOC", "O"]),
    ],
)
def test_tag_schemes_become_iob2(tmp_path, scheme, tags, iob2):
    path = write(tmp_path, "".join(f"w{i} {tag}\n" for i, tag in enumerate(tags)))
    result = read_conll(path, schema=SCHEMA, tag_scheme=scheme)
    assert result.examples[0].label == iob2
    assert result.repaired == {}  # an opening I- is IOB1's scheme, not an error


def test_i_without_b_is_repaired_and_counted(tmp_path):
    path = write(tmp_path, "a O\nb I-PER\nc I-PER\n\nd I-LOC\n")
    result = read_conll(path, schema=SCHEMA, tag_scheme="iob2")
    assert [ex.label for ex in result.examples] == [["O", "B-PER", "I-PER"], ["B-LOC"]]
    assert result.repaired == {"orphan_i_tag": 2}


def test_entity_types_take_the_schema_spelling(tmp_path):
    schema = LabelSchema.from_dict({"labels": [{"name": "PER", "aliases": ["person"]}, {"name": "LOC"}]})
    path = write(tmp_path, "Ann B-person\nin O\nRome B-LOC\n")
    assert read_conll(path, schema=schema).examples[0].label == ["B-PER", "O", "B-LOC"]


def test_sentence_end_tokens_for_a_file_without_boundaries(tmp_path):
    path = write(tmp_path, "a O\nb B-PER\n. O\nc O\n. O\nd O\n")
    result = read_conll(path, schema=SCHEMA, sentence_end=["."], document_marker=None)
    assert [ex.tokens for ex in result.examples] == [["a", "b", "."], ["c", "."], ["d"]]


def test_sentence_cap_cuts_and_counts(tmp_path):
    path = write(tmp_path, "".join(f"w{i} O\n" for i in range(7)))
    result = read_conll(path, schema=SCHEMA, max_sentence_tokens=3)
    assert [len(ex.tokens) for ex in result.examples] == [3, 3, 1]
    assert result.repaired == {"long_sentence_cut": 2}


def test_line_ranges(tmp_path):
    path = write(tmp_path, "a O\nb O\n. O\nc B-PER\nd O\n. O\n")
    first = read_conll(path, schema=SCHEMA, sentence_end=["."], lines=(1, 3))
    rest = read_conll(path, schema=SCHEMA, sentence_end=["."], lines=(4, None))
    assert [ex.tokens for ex in first.examples] == [["a", "b", "."]]
    assert [ex.tokens for ex in rest.examples] == [["c", "d", "."]]
    assert parse_line_range("1-125305") == (1, 125305) and parse_line_range("125306-") == (125306, None)
    for bad in ("x-3", "5-2", "0-4", "12"):
        with pytest.raises(ValueError, match="lines"):
            parse_line_range(bad)
    with pytest.raises(DataError, match=r"data\.conll: lines 9-: the file has 6 lines"):
        read_conll(path, schema=SCHEMA, lines=(9, None))


def test_unlabelled_tokens_only(tmp_path):
    path = write(tmp_path, "EU\nvisits\n\nRome\n")
    result = read_conll(path, schema=SCHEMA, labelled=False)
    assert [ex.tokens for ex in result.examples] == [["EU", "visits"], ["Rome"]]
    assert all(ex.label is None for ex in result.examples)


# --- errors: one line naming file:line, never the tag itself --------------------------------


def test_malformed_tag_names_the_line(tmp_path):
    path = write(tmp_path, "a O\nb X-PER\n")
    with pytest.raises(DataError) as info:
        read_conll(path, schema=SCHEMA)
    message = str(info.value)
    assert message == (
        f"{path}:2: malformed tag in column 'tag'; expected O or B-/I-/E-/S- followed by an entity type"
    )
    assert "X-PER" not in message


def test_entity_type_not_in_schema(tmp_path):
    path = write(tmp_path, "a O\n\nb B-GPE\n")
    with pytest.raises(
        DataError, match=r"data\.conll:3: unknown entity type in column 'tag'; expected one of PER, LOC, ORG$"
    ):
        read_conll(path, schema=SCHEMA)


def test_bioes_prefix_in_an_iob2_file(tmp_path):
    path = write(tmp_path, "a S-PER\n")
    with pytest.raises(
        DataError, match=r"data\.conll:1: an E- or S- tag in column 'tag', but the tag scheme is iob2"
    ):
        read_conll(path, schema=SCHEMA, tag_scheme="iob2")


def test_token_without_tag(tmp_path):
    path = write(tmp_path, "a O\nb\nc O\n")
    with pytest.raises(
        DataError, match=r"data\.conll:2: a token but no tag; expected one token per line with its tag"
    ):
        read_conll(path, schema=SCHEMA)


def test_too_few_columns_for_column_names(tmp_path):
    path = write(tmp_path, "EU NNP B-ORG\n")
    with pytest.raises(
        DataError, match=r"data\.conll:1: 3 fields, expected 4; .*columns token, pos, chunk, ner"
    ):
        read_conll(path, schema=SCHEMA, column_names=["token", "pos", "chunk", "ner"], tag_column="ner")


def test_empty_file(tmp_path):
    for text in ("", "\n\n", "-DOCSTART- O\n\n"):
        path = write(tmp_path, text)
        with pytest.raises(DataError, match=r"data\.conll: empty file; expected one token per line"):
            read_conll(path, schema=SCHEMA)


def test_drop_invalid_drops_and_counts_whole_sentences(tmp_path):
    path = write(tmp_path, "a O\nb\n\nc B-GPE\n\nd B-PER\n")
    result = read_conll(path, schema=SCHEMA, drop_invalid=True)
    assert [ex.tokens for ex in result.examples] == [["d"]]
    assert result.examples[0].id == "sentence-3"
    assert result.dropped == {"missing_tag": 1, "unknown_label": 1}


# --- through a dataset YAML ------------------------------------------------------------------


def dataset_yaml(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "dataset.yaml"
    path.write_text(
        "name: toy-ner\ntask_type: token_classification\nformat: conll\npath: .\n"
        + body
        + "schema:\n  labels: [PER, LOC, ORG]\n",
        encoding="utf-8",
    )
    return path


def test_dataset_yaml_with_line_ranges(tmp_path):
    write(tmp_path, "a O\nb B-PER\n. O\nc B-LOC\n. O\nd I-ORG\n. O\n", "corpus.txt")
    config = dataset_yaml(
        tmp_path,
        "files:\n  train: {file: corpus.txt, lines: '1-3'}\n  dev: {file: corpus.txt, lines: '4-5'}\n"
        "  test: {file: corpus.txt, lines: '6-'}\n"
        "columns: {tokens: token, label: tag}\n"
        "options: {column_names: [token, tag], delimiter: ' ', sentence_end: ['.'], document_marker: null}\n",
    )
    raw = load_dataset(config)
    assert raw.task_type == "token_classification"
    assert {name: [ex.tokens for ex in rows] for name, rows in raw.splits.items()} == {
        "train": [["a", "b", "."]],
        "dev": [["c", "."]],
        "test": [["d", "."]],
    }
    assert raw.splits["test"][0].label == ["B-ORG", "O"]
    assert {name: dict(c) for name, c in raw.repaired.items()} == {
        "train": {},
        "dev": {},
        "test": {"orphan_i_tag": 1},
    }
    assert raw.splits["train"][0].metadata == {"language": "en"}


def test_read_examples_reads_conll_by_extension(tmp_path):
    path = write(tmp_path, "EU B-ORG\nvisits O\n")
    result = read_examples(path, label="tag", schema=["PER", "LOC", "ORG"])
    assert result.examples[0].label == ["B-ORG", "O"]
    with pytest.raises(DataError, match=r"data\.conll: a CoNLL file needs its entity types"):
        read_examples(path, label="tag")


def test_conll_needs_token_classification(tmp_path):
    path = tmp_path / "dataset.yaml"
    path.write_text("name: x\nformat: conll\nfile: a.conll\nschema: {labels: [PER]}\n", encoding="utf-8")
    with pytest.raises(
        ConfigError, match="format 'conll' holds token tags: expected task_type: token_classification"
    ):
        load_dataset_config(path)


def test_line_ranges_only_for_conll(tmp_path):
    path = tmp_path / "dataset.yaml"
    path.write_text(
        "name: x\nformat: csv\nfiles: {train: {file: a.csv, lines: '1-4'}}\nschema: {labels: [a, b]}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="files.train.lines: a line range is read from CoNLL files only"):
        load_dataset_config(path)


def test_bad_line_range_in_yaml(tmp_path):
    path = dataset_yaml(tmp_path, "files: {train: {file: c.txt, lines: '9-2'}}\n")
    with pytest.raises(
        ConfigError, match=r"files\.train\.FileSpec\.lines: lines '9-2': expected 1 <= FIRST <= LAST"
    ):
        load_dataset_config(path)
