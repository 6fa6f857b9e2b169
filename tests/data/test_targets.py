"""Targets other than one label, read from JSONL/CSV through a dataset YAML: tokens + tags, text +
character spans, several labels per text, a reference summary; the task_type field itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from socialens.core.errors import ConfigError, DataError
from socialens.core.types import Example
from socialens.data.datasets import load_dataset, load_dataset_config
from socialens.data.targets import class_counts, fallback_stratify_key, stratify_key


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def dataset(tmp_path: Path, body: str, name: str = "dataset.yaml") -> Path:
    path = tmp_path / name
    path.write_text("name: toy\npath: .\n" + body, encoding="utf-8")
    return path


NER = "task_type: token_classification\nformat: jsonl\nfile: data.jsonl\nschema:\n  labels: [PER, LOC]\n"


def test_task_type_defaults_to_classification_and_is_checked(tmp_path):
    config = load_dataset_config(dataset(tmp_path, "format: csv\nfile: a.csv\nschema: {labels: [a, b]}\n"))
    assert config.task_type == "classification"
    bad = dataset(tmp_path, "task_type: regression\nformat: csv\nfile: a.csv\nschema: {labels: [a]}\n")
    with pytest.raises(ConfigError) as info:
        load_dataset_config(bad)
    message = str(info.value)
    assert "task_type: unknown task type 'regression'; expected one of classification" in message
    for known in ("multilabel", "summarisation", "token_classification"):
        assert known in message


def test_schema_still_required_except_for_summaries(tmp_path):
    with pytest.raises(ConfigError, match=r"dataset\.yaml: schema: Field required"):
        load_dataset_config(dataset(tmp_path, "format: csv\nfile: a.csv\n"))
    config = load_dataset_config(
        dataset(tmp_path, "task_type: summarisation\nformat: jsonl\nfile: a.jsonl\n")
    )
    schema = config.to_schema()
    assert schema.name == "summary" and schema.names == ["summary"] and schema.labels[0].description


# --- token classification: tokens + tags ------------------------------------------------------


def test_jsonl_tokens_and_tags(tmp_path):
    jsonl(
        tmp_path / "data.jsonl",
        [
            {"tokens": ["Ann", "in", "Rome"], "tags": ["B-PER", "O", "B-LOC"]},
            {"tokens": ["Rome", "", "again"], "tags": ["I-LOC", "O", "O"]},
        ],
    )
    raw = load_dataset(dataset(tmp_path, NER + "columns: {tokens: tokens, label: tags}\n"))
    rows = raw.splits["all"]
    assert [ex.tokens for ex in rows] == [["Ann", "in", "Rome"], ["Rome", "again"]]
    assert [ex.text for ex in rows] == ["Ann in Rome", "Rome again"]
    assert [ex.label for ex in rows] == [["B-PER", "O", "B-LOC"], ["B-LOC", "O"]]
    assert dict(raw.repaired["all"]) == {"orphan_i_tag": 1, "empty_token": 1}


def test_jsonl_bioes_tags(tmp_path):
    jsonl(tmp_path / "data.jsonl", [{"tokens": ["New", "York", "Ann"], "tags": ["B-LOC", "E-LOC", "S-PER"]}])
    raw = load_dataset(
        dataset(tmp_path, NER + "columns: {tokens: tokens, label: tags}\noptions: {tag_scheme: bioes}\n")
    )
    assert raw.splits["all"][0].label == ["B-LOC", "I-LOC", "B-PER"]


def test_jsonl_fewer_tags_than_tokens(tmp_path):
    jsonl(
        tmp_path / "data.jsonl",
        [{"tokens": ["a", "b"], "tags": ["O", "O"]}, {"tokens": ["a", "b", "c"], "tags": ["O"]}],
    )
    with pytest.raises(
        DataError,
        match=r"data\.jsonl:2: 1 tags in column 'tags' for 3 tokens in column 'tokens'; expected one tag per token",
    ):
        load_dataset(dataset(tmp_path, NER + "columns: {tokens: tokens, label: tags}\n"))


def test_jsonl_bad_tag_and_unknown_type(tmp_path):
    config = dataset(tmp_path, NER + "columns: {tokens: tokens, label: tags}\n")
    jsonl(tmp_path / "data.jsonl", [{"tokens": ["a"], "tags": ["PER"]}])
    with pytest.raises(
        DataError, match=r"data\.jsonl:1: malformed tag in column 'tags'; expected O or B-/I-/E-/S-"
    ):
        load_dataset(config)
    jsonl(tmp_path / "data.jsonl", [{"tokens": ["a"], "tags": ["B-ORG"]}])
    with pytest.raises(
        DataError, match=r"data\.jsonl:1: unknown entity type in column 'tags'; expected one of PER, LOC$"
    ):
        load_dataset(config)


# --- token classification: text + character spans ---------------------------------------------


def test_character_spans_become_tokens_and_iob2(tmp_path):
    jsonl(
        tmp_path / "data.jsonl",
        [
            {
                "text": "Ann Lee lives in New York.",
                "entities": [{"start": 0, "end": 7, "type": "PER"}, [17, 25, "LOC"]],
            },
            {"text": "Nothing here.", "entities": []},
        ],
    )
    raw = load_dataset(dataset(tmp_path, NER + "columns: {text: text, label: entities}\n"))
    first, second = raw.splits["all"]
    assert first.tokens == ["Ann", "Lee", "lives", "in", "New", "York", "."]
    assert first.label == ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "O"]
    assert first.text == "Ann Lee lives in New York ."
    assert second.label == ["O", "O", "O"]


def test_span_off_token_boundaries(tmp_path):
    jsonl(tmp_path / "data.jsonl", [{"text": "Ann Lee lives here", "entities": [[0, 5, "PER"]]}])
    with pytest.raises(
        DataError,
        match=r"data\.jsonl:1: entity span 1 \(0-5\) in column 'entities' does not fall on token boundaries",
    ):
        load_dataset(dataset(tmp_path, NER + "columns: {text: text, label: entities}\n"))


def test_overlapping_and_malformed_spans(tmp_path):
    config = dataset(tmp_path, NER + "columns: {text: text, label: entities}\n")
    jsonl(tmp_path / "data.jsonl", [{"text": "New York City", "entities": [[0, 8, "LOC"], [4, 13, "LOC"]]}])
    with pytest.raises(DataError, match=r"data\.jsonl:1: overlapping entity spans in column 'entities'"):
        load_dataset(config)
    jsonl(tmp_path / "data.jsonl", [{"text": "New York", "entities": [{"start": 0, "type": "LOC"}]}])
    with pytest.raises(DataError, match=r"data\.jsonl:1: entity span 1 in column 'entities' is malformed"):
        load_dataset(config)
    jsonl(tmp_path / "data.jsonl", [{"text": "New York", "entities": [[0, 8, "GPE"]]}])
    with pytest.raises(DataError, match=r"data\.jsonl:1: unknown entity type in span 1 of column 'entities'"):
        load_dataset(config)


# --- multilabel ---------------------------------------------------------------------------------

ML = "task_type: multilabel\nschema:\n  labels: [hate, offensive, {name: defamation, aliases: [defame]}]\n"


def test_multilabel_csv_cells(tmp_path):
    (tmp_path / "data.csv").write_text(
        'text,labels\none post,"offensive,hate"\nanother post,\nthird post,defame\nfourth,"hate, hate"\n',
        encoding="utf-8",
    )
    raw = load_dataset(dataset(tmp_path, ML + "format: csv\nfile: data.csv\ncolumns: {label: labels}\n"))
    assert [ex.label for ex in raw.splits["all"]] == [["hate", "offensive"], [], ["defamation"], ["hate"]]


def test_multilabel_other_delimiter_and_unknown_label(tmp_path):
    (tmp_path / "data.tsv").write_text(
        "text\tlabels\na post\thate|offensive\nb post\tspam\n", encoding="utf-8"
    )
    config = dataset(
        tmp_path,
        ML + "format: tsv\nfile: data.tsv\ncolumns: {label: labels}\noptions: {label_delimiter: '|'}\n",
    )
    with pytest.raises(
        DataError,
        match=r"data\.tsv:3: unknown label in column 'labels'; expected labels of hate, offensive, defamation$",
    ):
        load_dataset(config)
    raw = load_dataset(config, drop_invalid=True)
    assert [ex.label for ex in raw.splits["all"]] == [["hate", "offensive"]]
    assert dict(raw.dropped["all"]) == {"unknown_label": 1}


def test_multilabel_jsonl_lists_empty_and_missing(tmp_path):
    jsonl(
        tmp_path / "data.jsonl",
        [
            {"text": "a", "labels": ["offensive", "HATE"]},
            {"text": "b", "labels": []},
            {"text": "c", "labels": None},
        ],
    )
    config = dataset(tmp_path, ML + "format: jsonl\nfile: data.jsonl\ncolumns: {label: labels}\n")
    with pytest.raises(
        DataError, match=r"data\.jsonl:3: no labels in column 'labels'; expected a list of labels"
    ):
        load_dataset(config)
    raw = load_dataset(config, drop_invalid=True)
    assert [ex.label for ex in raw.splits["all"]] == [["hate", "offensive"], []]


# --- summaries ----------------------------------------------------------------------------------


def test_summaries_without_schema(tmp_path):
    jsonl(
        tmp_path / "data.jsonl",
        [
            {"id": "a1", "text": "A long article.", "summary": " Short. "},
            {"id": "a2", "text": "Another.", "summary": "S."},
        ],
    )
    body = "task_type: summarisation\nformat: jsonl\nfile: data.jsonl\ncolumns: {text: text, label: summary, id: id}\n"
    raw = load_dataset(dataset(tmp_path, body))
    assert raw.task_type == "summarisation" and raw.schema.names == ["summary"]
    assert [(ex.id, ex.text, ex.label) for ex in raw.splits["all"]] == [
        ("a1", "A long article.", "Short."),
        ("a2", "Another.", "S."),
    ]


def test_empty_summary(tmp_path):
    jsonl(tmp_path / "data.jsonl", [{"text": "An article.", "summary": ""}])
    body = "task_type: summarisation\nformat: jsonl\nfile: data.jsonl\ncolumns: {label: summary}\n"
    with pytest.raises(
        DataError, match=r"data\.jsonl:1: empty summary in column 'summary'; expected a reference summary"
    ):
        load_dataset(dataset(tmp_path, body))


# --- stratification keys and class counts ---------------------------------------------------------


def test_stratify_keys_per_target_form():
    assert fallback_stratify_key(Example("1", "t", "hate")) == "hate"
    assert fallback_stratify_key(Example("1", "t", ["offensive", "hate"])) == "hate+offensive"
    assert fallback_stratify_key(Example("1", "a b", ["B-PER", "B-LOC"], tokens=["a", "b"])) == "LOC+PER"
    assert fallback_stratify_key(Example("1", "a b", ["O", "O"], tokens=["a", "b"])) == "O"
    assert fallback_stratify_key(Example("1", "t", None)) is None
    assert stratify_key("summarisation")(Example("1", "text", "a summary")) is None
    ner = Example("1", "a b", ["B-PER", "I-PER"], tokens=["a", "b"])
    assert stratify_key("token_classification")(ner) == "PER"
    assert stratify_key("classification")(Example("1", "t", "x")) == "x"


def test_class_counts_per_task():
    ner = [
        Example("1", "a b c", ["B-PER", "I-PER", "B-LOC"], tokens=["a", "b", "c"]),
        Example("2", "d", ["B-PER"], tokens=["d"]),
    ]
    assert class_counts(ner, "token_classification") == {"LOC": 1, "PER": 2}
    multi = [Example("1", "t", ["hate", "offensive"]), Example("2", "u", ["hate"]), Example("3", "v", [])]
    assert class_counts(multi, "multilabel") == {"hate": 2, "offensive": 1}
    assert class_counts([Example("1", "t", "a summary")], "summarisation") == {}
    assert class_counts([Example("1", "t", "a"), Example("2", "u", None)]) == {"": 1, "a": 1}
