"""Group-aware splits: every example of a group (a thread, a user, a claim) lands in one split, so a
model is never tested on replies to a thread it was trained on; and the leakage of a split that
was made some other way (a dataset's own files) counted, group by group.

The group of an example is ``example.metadata[group_by]``; an example without one is its own group
(counted as ``ungrouped``). Splits are stratified where scikit-learn can
(``StratifiedGroupKFold``: the held-out fold keeps the class proportions as far as whole groups
allow), else plain grouped (``GroupShuffleSplit``)."""

from __future__ import annotations

import warnings
from itertools import combinations
from typing import Any

from socialens.core.errors import DataError
from socialens.core.types import Example
from socialens.data.targets import stratify_key

SPLIT_NAMES = ("train", "dev", "test")
MAX_FOLDS = 10


def group_of(example: Example, group_by: str) -> str | None:
    value = example.metadata.get(group_by)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return str(value)


def group_ids(examples: list[Example], group_by: str) -> list[str]:
    """One group id per example; an example without a group gets one of its own."""
    ids = []
    for index, ex in enumerate(examples):
        group = group_of(ex, group_by)
        ids.append(f"group={group}" if group is not None else f"ungrouped={index}:{ex.id}")
    return ids


def grouped_split(
    examples: list[Example],
    held_out: float,
    seed: int,
    group_by: str,
    *,
    task_type: str | None = None,
) -> tuple[list[Example], list[Example], str]:
    """Split into (kept, held_out, how) with whole groups on one side; ``held_out`` is the wanted
    fraction of examples. Stratified over the task's stratify key when every class has at least
    there is more than one class (scikit-learn's StratifiedGroupKFold over at most 10 folds),
    else grouped at random (GroupShuffleSplit). Each side keeps the input order."""
    if not 0 < held_out < 1:
        raise ValueError(f"held_out must be a fraction between 0 and 1, got {held_out}")
    if not examples:
        return [], [], "empty"
    import numpy as np
    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

    groups = group_ids(examples, group_by)
    n_groups = len(set(groups))
    if n_groups < 2:
        raise DataError(
            f"split.group_by {group_by!r}: {n_groups} group in {len(examples):,} examples; "
            "expected at least 2 groups to split by"
        )
    key = stratify_key(task_type)
    labels = ["" if (value := key(ex)) is None else value for ex in examples]
    positions = np.arange(len(examples))
    if len(set(labels)) > 1:
        # held out: the first ``take`` of ``folds`` group folds, so a fraction such as 0.22 is not
        # rounded to a quarter
        folds = min(n_groups, MAX_FOLDS)
        take = min(folds - 1, max(1, round(held_out * folds)))
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        with warnings.catch_warnings():  # "the least populated class has only n members": fine here
            warnings.simplefilter("ignore", UserWarning)
            fold_sets = [test for _, test in splitter.split(positions, labels, groups)]
        taken = np.concatenate(fold_sets[:take])
        how = f"stratified, grouped by {group_by}"
    else:
        splitter = GroupShuffleSplit(n_splits=1, test_size=held_out, random_state=seed)
        _, taken = next(splitter.split(positions, labels, groups))
        how = f"grouped by {group_by}"
    taken_set = {int(i) for i in taken}
    kept = [ex for i, ex in enumerate(examples) if i not in taken_set]
    out = [ex for i, ex in enumerate(examples) if i in taken_set]
    return kept, out, how


def group_leakage(parts: dict[str, list[Example]], group_by: str) -> dict[str, Any]:
    """Groups seen in more than one split: per pair of splits, how many groups they share and how
    many examples of the later split belong to those groups. Examples without a group are counted
    as ``ungrouped`` and never leak."""
    members: dict[str, set[str]] = {}
    ungrouped: dict[str, int] = {}
    for name, rows in parts.items():
        found = [group_of(ex, group_by) for ex in rows]
        members[name] = {g for g in found if g is not None}
        ungrouped[name] = sum(1 for g in found if g is None)
    shared: dict[str, dict[str, int]] = {}
    for first, second in combinations([name for name in SPLIT_NAMES if name in parts], 2):
        common = members[first] & members[second]
        shared[f"{first}-{second}"] = {
            "groups": len(common),
            f"{second}_examples": sum(1 for ex in parts[second] if group_of(ex, group_by) in common),
        }
    leaked = (
        set().union(*(members[a] & members[b] for a, b in combinations(members, 2))) if members else set()
    )
    return {
        "group_by": group_by,
        "groups": {name: len(groups) for name, groups in members.items()},
        "ungrouped": ungrouped,
        "shared": shared,
        "leaked_groups": len(leaked),
        "test_examples_in_train_groups": shared.get("train-test", {}).get("test_examples", 0),
    }


def describe_leakage(leakage: dict[str, Any]) -> str:
    """One line: how many groups each split has and how many groups two splits share."""
    column = leakage.get("group_by", "?")
    groups = leakage.get("groups", {})
    counts = ", ".join(f"{name} {groups[name]:,}" for name in SPLIT_NAMES if name in groups)
    shared = leakage.get("shared", {})
    pairs = ", ".join(f"{pair} {value.get('groups', 0):,}" for pair, value in shared.items())
    line = f"groups by {column}: {counts}; shared between splits: {leakage.get('leaked_groups', 0):,}"
    if leakage.get("leaked_groups"):
        line += (
            f" ({pairs}; {leakage.get('test_examples_in_train_groups', 0):,} test examples "
            "in groups also in train)"
        )
    ungrouped = sum(leakage.get("ungrouped", {}).values())
    if ungrouped:
        line += f"; {ungrouped:,} examples without a {column} (each its own group)"
    return line
