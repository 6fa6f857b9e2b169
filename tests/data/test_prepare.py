import json
from collections import Counter

import pytest

from socialens.core.errors import DataError
from socialens.core.types import Example, LabelSchema
from socialens.data.datasets import RawDataset
from socialens.data.prepare import (
    describe_stats,
    normalise_text,
    prepare,
    read_split,
    stratified_split,
    write_split,
)

SCHEMA = LabelSchema.from_names(["a", "b", "c"])


def make(n_per_class: dict[str, int], prefix: str = "x") -> list[Example]:
    rows = []
    for label, n in n_per_class.items():
        rows += [Example(f"{prefix}{label}{i}", f"{prefix} text {label} number {i}", label) for i in range(n)]
    return rows


def raw(**splits: list[Example]) -> RawDataset:
    return RawDataset(name="toy", schema=SCHEMA, splits=splits)


def ids(rows: list[Example]) -> list[str]:
    return [ex.id for ex in rows]


def test_normalise_text():
    assert normalise_text("  Hello,   WORLD!! ") == normalise_text("hello world") == "hello world"


def test_single_split_is_stratified_70_20_10():
    split = prepare(raw(all=make({"a": 600, "b": 300, "c": 100})))
    assert split.stats["rows_after"] == {"train": 700, "dev": 200, "test": 100}
    for part, size in (("train", 700), ("dev", 200), ("test", 100)):
        counts = split.stats["class_counts"][part]
        assert counts == {"a": size * 6 // 10, "b": size * 3 // 10, "c": size // 10}
    all_ids = ids(split.train) + ids(split.dev) + ids(split.test)
    assert len(set(all_ids)) == 1000


def test_same_seed_same_split_other_seed_differs():
    data = make({"a": 60, "b": 30, "c": 10})
    first, second = prepare(raw(all=data), seed=3), prepare(raw(all=data), seed=3)
    assert (ids(first.train), ids(first.dev), ids(first.test)) == (
        ids(second.train),
        ids(second.dev),
        ids(second.test),
    )
    assert ids(prepare(raw(all=data), seed=4).test) != ids(first.test)


def test_dev_carved_from_train_when_only_train_and_test():
    split = prepare(
        raw(train=make({"a": 80, "b": 20}), test=make({"a": 5, "b": 5}, prefix="t")), dev_fraction=0.2
    )
    assert split.stats["class_counts"]["dev"] == {"a": 16, "b": 4}
    assert len(split.train) == 80 and len(split.test) == 10
    assert "dev carved" in split.stats["splits_created"]


def test_cap_keeps_proportions():
    train = make({"a": 500, "b": 400, "c": 100})
    split = prepare(raw(train=train, dev=make({"a": 3}, "d"), test=make({"b": 3}, "t")), cap=100)
    assert split.stats["class_counts"]["train"] == {"a": 50, "b": 40, "c": 10}
    assert split.stats["capped"] == 900


def test_cap_with_single_member_classes():
    train = make({"a": 50, "b": 1, "c": 1})
    split = prepare(raw(train=train, dev=make({"a": 3}, "d"), test=make({"a": 3}, "t")), cap=10)
    assert len(split.train) == 10
    kept, out = stratified_split(train, 2, seed=0)
    assert len(out) == 2 and len(kept) == 50


def test_duplicates_overlaps_and_short_texts_are_counted():
    train = [
        Example("1", "Same text here", "a"),
        Example("2", "Same text here", "b"),  # exact duplicate
        Example("3", "same TEXT, here!", "a"),  # normalised duplicate
        Example("4", "ok", "a"),  # short
        Example("5", "another train text", "b"),
    ]
    dev = [Example("d1", "a dev text", "a")]
    test = [Example("t1", "Another train text.", "b"), Example("t2", "a fresh test text", "a")]
    split = prepare(raw(train=train, dev=dev, test=test), min_chars=3)
    stats = split.stats
    assert stats["short_dropped"] == {"train": 1, "dev": 0, "test": 0}
    assert stats["duplicates_dropped"]["train"] == {"exact": 1, "normalised": 1}
    assert stats["test_in_train_dropped"] == 1
    assert ids(split.train) == ["1", "5"] and ids(split.test) == ["t2"]
    assert stats["rows_before"] == {"train": 5, "dev": 1, "test": 2}
    assert stats["rows_after"] == {"train": 2, "dev": 1, "test": 1}
    assert describe_stats(stats) == [
        "short texts dropped (under 3 characters): 1 (train 1)",
        "duplicates dropped (the first one kept): 2 (train 2) = 1 exact + 1 differing only in case, "
        "punctuation or spacing",
        "test texts also in train, dropped from test: 1",
        "dev texts also in train (kept): 0",
        "splits: given, seed 0",
        "cap: none (the whole training split is used)",
    ]


def test_describe_stats_says_what_the_cap_and_the_reader_left_out():
    dataset = raw(all=make({"a": 40, "b": 20}))
    dataset.dropped = {"all": Counter({"empty_text": 2})}
    lines = describe_stats(prepare(dataset, cap=12).stats)
    assert lines[0] == "bad rows dropped from all: 2 (empty_text)"
    assert "splits: stratified 70%/20%/10% split, seed 0" in lines
    assert lines[-1] == "cap: 12 training examples, stratified (30 left out)"
    assert not any("None" in line for line in lines)


def test_describe_stats_counts_excluded_labels_apart_from_bad_rows():
    dataset = raw(all=make({"a": 40, "b": 20}))
    dataset.dropped = {"all": Counter({"empty_text": 1, "label_excluded": 5})}
    lines = describe_stats(prepare(dataset).stats)
    assert "bad rows dropped from all: 1 (empty_text)" in lines
    assert "rows left out by the YAML's exclude_labels from all: 5" in lines
    assert not any("label_excluded" in line for line in lines)


def test_keep_given_test_leaves_the_official_test_split_untouched():
    train = [Example("1", "another train text", "b"), Example("2", "a second train text", "a")]
    test = [
        Example("t1", "Another train text.", "b"),  # also in train
        Example("t2", "dup test text", "a"),
        Example("t3", "dup test text", "a"),  # duplicate within test
        Example("t4", "no", "b"),  # short
    ]
    split = prepare(raw(train=train, dev=[Example("d", "dev text", "a")], test=test), keep_given_test=True)
    assert ids(split.test) == ["t1", "t2", "t3", "t4"]
    assert split.stats["test_kept_as_given"] is True
    assert split.stats["test_in_train_kept"] == 1 and split.stats["test_in_train_dropped"] == 0


def test_reader_drops_are_carried_into_stats():
    data = raw(all=make({"a": 20, "b": 10}))
    data.dropped = {"all": Counter({"unknown_label": 2})}
    assert prepare(data).stats["reader_dropped"] == {"all": {"unknown_label": 2}}


def test_write_and_read_split(tmp_path):
    split = prepare(raw(all=make({"a": 20, "b": 10})))
    write_split(split, tmp_path / "out")
    for name in ("train.jsonl", "dev.jsonl", "test.jsonl", "schema.json", "stats.json"):
        assert (tmp_path / "out" / name).is_file()
    first = json.loads((tmp_path / "out" / "train.jsonl").read_text().splitlines()[0])
    assert set(first) == {"id", "text", "label", "metadata"}
    back = read_split(tmp_path / "out")
    assert ids(back.train) == ids(split.train) and back.schema.names == ["a", "b", "c"]
    assert back.stats["rows_after"] == split.stats["rows_after"]


def test_bad_ratios():
    with pytest.raises(ValueError, match="split_ratios"):
        prepare(raw(all=make({"a": 10})), split_ratios=(0.5, 0.2, 0.1))


def test_a_cap_below_one_is_refused_not_an_empty_training_set():
    with pytest.raises(DataError, match=r"cap -5: expected a positive number of training examples"):
        prepare(raw(all=make({"a": 20, "b": 10})), cap=-5)


def test_a_damaged_split_folder_names_the_file_and_line(tmp_path):
    out = write_split(prepare(raw(all=make({"a": 20, "b": 10}))), tmp_path / "out")
    train = out / "train.jsonl"
    lines = train.read_text().splitlines()
    train.write_text("\n".join(lines[:3]) + "\n" + lines[3][:25])  # cut in the middle of line 4
    with pytest.raises(DataError, match=r"out/train.jsonl:4: malformed example \(Unterminated string"):
        read_split(out)
    edited = json.loads(lines[0])
    edited["label"] = "zzz"
    train.write_text("\n".join([*lines[:1], json.dumps(edited), *lines[2:]]) + "\n")
    with pytest.raises(
        DataError, match=r"train.jsonl:2: label not in the split's schema.json; expected one of a, b, c"
    ):
        read_split(out)
    train.write_text(json.dumps({"id": "x", "label": "a"}) + "\n")
    with pytest.raises(DataError, match=r"train.jsonl:1: malformed example \(missing field 'text'\)"):
        read_split(out)
    (out / "schema.json").write_text('{"labels": [')
    with pytest.raises(DataError, match=r"schema.json: unreadable"):
        read_split(out)


def test_writing_a_split_over_a_file_is_refused(tmp_path):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(DataError, match=r"taken: exists and is not a folder"):
        write_split(prepare(raw(all=make({"a": 20, "b": 10}))), tmp_path / "taken")


# --- group-aware splits (split.group_by) and the YAML's where ------------------------------------


def thread_csv(tmp_path, extra_yaml: str = "", files: dict[str, list[int]] | None = None):
    """40 threads of 5 replies (labels a/b/c, veracity F for even threads); one file, or one file
    per split holding the listed threads."""
    from socialens.data.datasets import load_dataset

    def rows(thread_numbers, part: str = "") -> str:
        lines = ["id,text,label,thread,veracity"]
        for t in thread_numbers:
            for r in range(5):
                label = "abc"[(t + (r == 4)) % 3]
                text = f"{part} reply {r} to thread {t} says {label}"
                lines.append(f"{part}t{t}r{r},{text},{label},T{t},{'FT'[t % 2]}")
        return "\n".join(lines) + "\n"

    if files is None:
        (tmp_path / "d.csv").write_text(rows(range(40)), encoding="utf-8")
        where = "file: d.csv"
    else:
        for split, numbers in files.items():
            (tmp_path / f"{split}.csv").write_text(rows(numbers, split), encoding="utf-8")
        where = "files: {" + ", ".join(f"{s}: {s}.csv" for s in files) + "}"
    (tmp_path / "dataset.yaml").write_text(
        f"name: threads\nformat: csv\n{where}\n"
        "columns: {text: text, label: label, id: id, metadata: {thread: thread, veracity: veracity}}\n"
        f"{extra_yaml}schema: {{labels: [a, b, c]}}\n",
        encoding="utf-8",
    )
    return load_dataset(tmp_path / "dataset.yaml")


def thread_set(rows: list[Example]) -> set[str]:
    return {ex.metadata["thread"] for ex in rows}


def test_group_by_keeps_every_thread_in_one_split(tmp_path):
    split = prepare(thread_csv(tmp_path, "split: {group_by: thread}\n"), seed=0)
    train, dev, test = (thread_set(part) for part in (split.train, split.dev, split.test))
    assert not (train & dev or train & test or dev & test)
    assert len(train | dev | test) == 40 and len(test) == 4 and len(dev) == 8
    assert split.stats["splits_created"] == "stratified, grouped by thread 70%/20%/10% split"
    leakage = split.stats["group_leakage"]
    assert leakage["groups"] == {"train": 28, "dev": 8, "test": 4} and leakage["leaked_groups"] == 0
    assert "groups by thread: train 28, dev 8, test 4; shared between splits: 0" in describe_stats(
        split.stats
    )
    # without group_by the same rows are split by example: threads end up in several splits
    plain = prepare(thread_csv(tmp_path), seed=0)
    assert thread_set(plain.train) & thread_set(plain.test)
    assert "group_leakage" not in plain.stats


def test_given_splits_are_kept_and_their_shared_groups_counted(tmp_path):
    raw = thread_csv(
        tmp_path, "split: {group_by: thread}\n", files={"train": list(range(20)), "test": [18, 19, 20, 21]}
    )
    split = prepare(raw, seed=0)
    assert thread_set(split.test) == {"T18", "T19", "T20", "T21"}  # a given test split stays as given
    assert not thread_set(split.train) & thread_set(split.dev)  # the dev carved from train is grouped
    assert split.stats["splits_created"] == "dev carved from train (20%, stratified, grouped by thread)"
    leakage = split.stats["group_leakage"]
    assert leakage["shared"]["train-test"]["groups"] + leakage["shared"]["dev-test"]["groups"] == 2
    assert leakage["leaked_groups"] == 2
    line = [text for text in describe_stats(split.stats) if text.startswith("groups by thread")][0]
    assert "shared between splits: 2" in line and "test examples in groups also in train" in line


def test_where_keeps_matching_rows_and_counts_the_rest(tmp_path):
    raw = thread_csv(tmp_path, "where: {veracity: [F]}\nsplit: {group_by: thread}\n")
    assert raw.filtered == {"all": 100}
    split = prepare(raw, seed=0)
    assert {ex.metadata["veracity"] for ex in split.train + split.dev + split.test} == {"F"}
    assert split.stats["where_dropped"] == {"all": 100}
    assert "rows left out by the YAML's where (veracity in F) from all: 100" in describe_stats(split.stats)
