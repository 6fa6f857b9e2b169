"""Group-aware splits (data/splits.py): whole groups on one side, stratified where possible, and
the groups two splits share counted."""

from collections import Counter

import pytest

from socialens.core.errors import DataError
from socialens.core.types import Example
from socialens.data.splits import describe_leakage, group_leakage, grouped_split


def threads(n_threads: int, per_thread: int = 6) -> list[Example]:
    """Threads whose replies are mostly of one label (as real threads are), a few of another."""
    rows = []
    for t in range(n_threads):
        for r in range(per_thread):
            label = ["a", "b", "c"][t % 3] if r < per_thread - 1 else ["a", "b", "c"][(t + 1) % 3]
            rows.append(Example(f"t{t}-{r}", f"reply {r} in thread {t}", label, {"thread": f"T{t}"}))
    return rows


def groups(rows: list[Example]) -> set[str]:
    return {ex.metadata["thread"] for ex in rows}


def test_no_group_on_both_sides_and_about_the_fraction_held_out():
    rows = threads(60)
    kept, out, how = grouped_split(rows, 0.2, seed=0, group_by="thread")
    assert not groups(kept) & groups(out)
    assert len(kept) + len(out) == len(rows)
    assert len(groups(out)) == 12  # 2 of 10 group folds
    assert how == "stratified, grouped by thread"
    shares = Counter(ex.label for ex in out)
    assert all(abs(shares[label] / len(out) - 1 / 3) < 0.1 for label in "abc")
    assert [ex.id for ex in kept] == [ex.id for ex in rows if ex in kept]  # input order kept


def test_same_seed_same_split_other_seed_differs():
    rows = threads(40)
    first = grouped_split(rows, 0.1, seed=1, group_by="thread")[1]
    again = grouped_split(rows, 0.1, seed=1, group_by="thread")[1]
    other = grouped_split(rows, 0.1, seed=2, group_by="thread")[1]
    assert [ex.id for ex in first] == [ex.id for ex in again]
    assert groups(first) != groups(other)


def test_examples_without_a_group_are_their_own_groups():
    rows = threads(10) + [Example(f"loose{i}", f"no thread {i}", "a") for i in range(20)]
    kept, out, _ = grouped_split(rows, 0.3, seed=0, group_by="thread")
    assert len(kept) + len(out) == 80
    assert not groups([ex for ex in kept if "thread" in ex.metadata]) & groups(
        [ex for ex in out if "thread" in ex.metadata]
    )


def test_one_class_is_grouped_without_stratifying():
    rows = [Example(f"{i}", f"text {i}", "a", {"thread": str(i // 3)}) for i in range(30)]
    kept, out, how = grouped_split(rows, 0.2, seed=0, group_by="thread")
    assert how == "grouped by thread" and len(out) == 6 and not groups(kept) & groups(out)


def test_a_single_group_cannot_be_split():
    rows = [Example(f"{i}", f"text {i}", "ab"[i % 2], {"thread": "same"}) for i in range(10)]
    with pytest.raises(
        DataError, match=r"split.group_by 'thread': 1 group in 10 examples; expected at least 2"
    ):
        grouped_split(rows, 0.2, seed=0, group_by="thread")


def test_leakage_counts_groups_shared_between_splits():
    def ex(i: int, thread: str | None) -> Example:
        return Example(str(i), f"text {i}", "a", {} if thread is None else {"thread": thread})

    parts = {
        "train": [ex(1, "A"), ex(2, "B"), ex(3, "C")],
        "dev": [ex(4, "C"), ex(5, "D")],
        "test": [ex(6, "A"), ex(7, "A"), ex(8, "E"), ex(9, None)],
    }
    leakage = group_leakage(parts, "thread")
    assert leakage["groups"] == {"train": 3, "dev": 2, "test": 2}
    assert leakage["shared"] == {
        "train-dev": {"groups": 1, "dev_examples": 1},
        "train-test": {"groups": 1, "test_examples": 2},
        "dev-test": {"groups": 0, "test_examples": 0},
    }
    assert leakage["leaked_groups"] == 2 and leakage["test_examples_in_train_groups"] == 2
    assert describe_leakage(leakage) == (
        "groups by thread: train 3, dev 2, test 2; shared between splits: 2 (train-dev 1, train-test 1, "
        "dev-test 0; 2 test examples in groups also in train); 1 examples without a thread (each its own group)"
    )
    clean = group_leakage({"train": [ex(1, "A")], "dev": [ex(2, "B")], "test": [ex(3, "C")]}, "thread")
    assert describe_leakage(clean) == "groups by thread: train 1, dev 1, test 1; shared between splits: 0"
