"""The HASOC 2019 Hindi and ArSarcasm-v2 YAMLs against the real files and their READMEs' quirks
(class counts are in test_datasets.py). Skipped without ../shared/datasets."""

from collections import Counter
from pathlib import Path

import pytest

from socialens.data.datasets import load_dataset
from socialens.data.prepare import prepare

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "datasets"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hasoc():
    root = Path(__file__).resolve().parents[3] / "shared" / "datasets"
    if not (root / "hasoc2019_hi").is_dir():
        pytest.skip(f"real datasets not available at {root}")
    return {task: load_dataset(CONFIGS / f"hasoc2019_hi-{task}.yaml", data_root=root) for task in "abc"}


def test_hasoc_quoted_test_texts_are_read_as_csv(hasoc):
    test = hasoc["a"].splits["test"]
    assert len(test) == 1318 and len({ex.id for ex in test}) == 1318
    # README: 71 test texts are CSV-quoted with doubled inner quotes; a plain split on tabs keeps the
    # quotes, normal CSV reading (ours) does not: the two differ on exactly those rows
    path = Path(hasoc["a"].config.base_dir()) / "hasoc2019_hi_test_gold_2919.tsv"
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    plain = {fields[0]: fields[1].strip() for fields in (line.split("\t") for line in lines)}
    assert sum(plain[ex.id] != ex.text for ex in test) == 71


def test_hasoc_train_has_no_final_newline_and_keeps_its_last_record(hasoc):
    train = hasoc["a"].splits["train"]
    assert len(train) == 4665
    last = train[-1]
    assert last.id.startswith("hasoc_hi_") and last.text and last.label in {"offensive", "not offensive"}


def test_hasoc_texts_keep_no_break_and_zero_width_spaces(hasoc):
    train = hasoc["a"].splits["train"]
    assert sum("\u00a0" in ex.text for ex in train) > 200  # README: 294 rows (some only at an edge)
    assert sum(("\u200c" in ex.text) or ("\u200d" in ex.text) for ex in train) >= 15  # README: 22


def test_hasoc_b_and_c_are_exactly_the_hof_rows(hasoc):
    for split in ("train", "test"):
        hof = {ex.id for ex in hasoc["a"].splits[split] if ex.label == "offensive"}
        assert {ex.id for ex in hasoc["b"].splits[split]} == hof
        assert {ex.id for ex in hasoc["c"].splits[split]} == hof
    # the excluded NONE rows are the NOT rows, counted
    not_rows = Counter(ex.label for ex in hasoc["a"].splits["train"])["not offensive"]
    assert hasoc["b"].dropped["train"]["label_excluded"] == not_rows == 2196


def test_hasoc_metadata_keeps_the_other_subtasks(hasoc):
    example = hasoc["b"].splits["train"][0]
    assert example.metadata["language"] == "hi"
    assert example.metadata["offence_target"] in {"TIN", "UNT"}


def test_hasoc_prepare_counts_what_it_drops(hasoc):
    split = prepare(hasoc["b"])
    stats = split.stats
    assert stats["reader_dropped"] == {"train": {"label_excluded": 2196}, "test": {"label_excluded": 713}}
    assert len(split.train) + len(split.dev) == 2469 - sum(stats["duplicates_dropped"]["train"].values())
    assert set(split.schema.names) == {"hate", "offensive", "profane"}
