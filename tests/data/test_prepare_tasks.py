"""prepare for every task type: stratified splits on the task's key, the cap, the stratified test
sample bench takes, duplicates, repairs in the stats, and a split folder read back."""

from __future__ import annotations

import json
import random
from collections import Counter
from types import SimpleNamespace

import pytest

from socialens.core.errors import DataError
from socialens.core.types import Example, LabelSchema
from socialens.data.datasets import RawDataset
from socialens.data.prepare import describe_stats, prepare, read_split, stratified_split, write_split
from socialens.data.targets import fallback_stratify_key, summary_schema

TYPES = LabelSchema.from_names(["PER", "LOC"])
LABELS = LabelSchema.from_names(["hate", "offensive"])


def sentences(n: int) -> list[Example]:
    """Sentences with a person (1 in 2), a location (1 in 4) or neither; texts all distinct."""
    rows = []
    for i in range(n):
        tokens = [f"w{i}", "met", f"x{i}"]
        tags = ["O", "O", "O"]
        if i % 2 == 0:
            tags[0] = "B-PER"
        if i % 4 == 1:
            tags[2] = "B-LOC"
        rows.append(Example(f"s{i}", " ".join(tokens), tags, tokens=tokens))
    return rows


def multilabel(n: int) -> list[Example]:
    sets = [["hate"], ["hate", "offensive"], [], ["offensive"]]
    return [Example(f"m{i}", f"post number {i}", sets[i % 4]) for i in range(n)]


def summaries(n: int) -> list[Example]:
    return [Example(f"a{i}", f"article number {i} " * 3, f"summary {i}") for i in range(n)]


def keys(rows: list[Example]) -> Counter:
    return Counter(fallback_stratify_key(ex) for ex in rows)


def test_token_classification_split_is_stratified_on_entity_types():
    raw = RawDataset("ner", TYPES, {"all": sentences(400)}, task_type="token_classification")
    split = prepare(raw, seed=0)
    assert split.task_type == "token_classification"
    assert split.stats["rows_after"] == {"train": 280, "dev": 80, "test": 40}
    for part, n in (("train", 280), ("dev", 80), ("test", 40)):
        assert keys(getattr(split, part)) == {"PER": n // 2, "LOC": n // 4, "O": n // 4}
    assert split.stats["class_counts"]["test"] == {"LOC": 10, "PER": 20}  # entities per type
    assert all(ex.tokens is not None for ex in split.train)


def test_multilabel_split_and_cap():
    raw = RawDataset("ml", LABELS, {"train": multilabel(400), "test": multilabel(40)}, task_type="multilabel")
    split = prepare(raw, seed=1, cap=100)
    assert split.task_type == "multilabel"
    assert keys(split.train) == {"hate": 25, "hate+offensive": 25, "": 25, "offensive": 25}
    assert split.stats["capped"] == 320 - 100
    assert split.stats["class_counts"]["train"] == {"hate": 50, "offensive": 50}


def test_summaries_split_at_random_same_seed_same_split():
    raw = RawDataset("sum", summary_schema(), {"all": summaries(100)}, task_type="summarisation")
    first, again, other = prepare(raw, seed=0), prepare(raw, seed=0), prepare(raw, seed=1)
    assert first.stats["rows_after"] == {"train": 70, "dev": 20, "test": 10}
    assert [ex.id for ex in first.test] == [ex.id for ex in again.test]
    assert [ex.id for ex in first.test] != [ex.id for ex in other.test]
    assert [ex.id for ex in first.test] != [f"a{i}" for i in range(10)]  # not the first ten
    assert first.stats["class_counts"]["test"] == {}


def test_stratified_sample_of_a_summary_split_is_random():
    rows = summaries(50)
    _, sample = stratified_split(rows, 5, seed=0, task_type="summarisation")
    assert len(sample) == 5 and [ex.id for ex in sample] != [ex.id for ex in rows[:5]]


def test_classification_is_unchanged_by_the_task_type():
    rows = [Example(f"c{i}", f"text {i}", random.Random(i).choice("abc")) for i in range(300)]
    plain = stratified_split(rows, 0.2, seed=3)
    typed = stratified_split(rows, 0.2, seed=3, task_type="classification")
    assert [ex.id for ex in plain[1]] == [ex.id for ex in typed[1]]


def test_duplicates_and_test_in_train_for_sentences():
    train = sentences(40)
    dup = Example("dup", train[0].text, train[0].label, tokens=list(train[0].tokens))
    test = [Example("t0", train[1].text, train[1].label, tokens=list(train[1].tokens)), *sentences(45)[40:]]
    dev = sentences(50)[45:]
    raw = RawDataset(
        "ner", TYPES, {"train": [*train, dup], "dev": dev, "test": test}, task_type="token_classification"
    )
    split = prepare(raw, seed=0)
    assert split.stats["duplicates_dropped"]["train"] == {"exact": 1, "normalised": 0}
    assert split.stats["test_in_train_dropped"] == 1
    assert "t0" not in [ex.id for ex in split.test]


def test_bench_test_sample_for_token_classification(tmp_path):
    from socialens.bench import load_split

    lines = []
    for ex in sentences(200):
        lines += [f"{token} {tag}" for token, tag in zip(ex.tokens, ex.label, strict=True)] + [""]
    (tmp_path / "train.conll").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "test.conll").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = tmp_path / "dataset.yaml"
    config.write_text(
        "name: toy-ner\ntask_type: token_classification\nformat: conll\npath: .\n"
        "files: {train: train.conll, test: test.conll}\nschema: {labels: [PER, LOC]}\n",
        encoding="utf-8",
    )
    entry = SimpleNamespace(
        config=str(config),
        drop_invalid=False,
        split_seed=0,
        cap=50,
        official_test=True,
        official_metric=None,
        test_sample=40,
    )
    split = load_split(entry, str(tmp_path))
    assert split.task_type == "token_classification"
    assert len(split.train) == 50 and len(split.test) == 40
    assert keys(split.test) == {"PER": 20, "LOC": 10, "O": 10}
    assert split.stats["class_counts"]["test"] == {"LOC": 10, "PER": 20}
    assert split.stats["class_counts"]["test_before_sample"] == {"LOC": 50, "PER": 100}


def test_repairs_are_in_the_stats_and_shown():
    rows = sentences(20)
    raw = RawDataset(
        "ner",
        TYPES,
        {"all": rows},
        task_type="token_classification",
        repaired={"all": Counter({"orphan_i_tag": 3, "empty_token": 2})},
    )
    split = prepare(raw)
    assert split.stats["reader_repaired"] == {"all": {"orphan_i_tag": 3, "empty_token": 2}}
    lines = describe_stats(split.stats)
    assert (
        "repaired in all: 3 (I- tag without a B- before it, made B- (as seqeval's default mode reads it))"
        in lines
    )
    assert "repaired in all: 2 (empty token dropped)" in lines


def test_no_repairs_no_stats_key_for_classification():
    raw = RawDataset("c", LABELS, {"all": [Example(f"c{i}", f"text {i}", "hate") for i in range(20)]})
    assert "reader_repaired" not in prepare(raw).stats


@pytest.mark.parametrize(
    ("task_type", "schema", "rows"),
    [
        ("token_classification", TYPES, sentences(30)),
        ("multilabel", LABELS, multilabel(30)),
        ("summarisation", summary_schema(), summaries(30)),
    ],
)
def test_split_folder_round_trip(tmp_path, task_type, schema, rows):
    split = prepare(RawDataset("x", schema, {"all": rows}, task_type=task_type))
    back = read_split(write_split(split, tmp_path / "out"))
    assert back.task_type == task_type
    for part in ("train", "dev", "test"):
        assert [ex.to_dict() for ex in getattr(back, part)] == [ex.to_dict() for ex in getattr(split, part)]
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["task_type"] == task_type


def test_classification_split_folder_has_no_task_type_key(tmp_path):
    raw = RawDataset("c", LABELS, {"all": [Example(f"c{i}", f"text {i}", "hate") for i in range(20)]})
    write_split(prepare(raw), tmp_path / "out")
    assert "task_type" not in json.loads((tmp_path / "out" / "stats.json").read_text())
    assert read_split(tmp_path / "out").task_type == "classification"


def test_split_folder_with_a_bad_tag(tmp_path):
    split = prepare(RawDataset("x", TYPES, {"all": sentences(30)}, task_type="token_classification"))
    out = write_split(split, tmp_path / "out")
    lines = (out / "train.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["label"] = ["B-ORG"] * len(first["tokens"])
    (out / "train.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    with pytest.raises(
        DataError, match=r"train\.jsonl:1: malformed target \(unknown entity type in column 'label'"
    ):
        read_split(out)
