"""Preparation as in the LlamaLens recipe: drop short texts and duplicates, remove test texts seen in
train, create missing splits (stratified), cap train (stratified), all with fixed seeds.

Every task type goes the same way: what a split keeps in proportion is the task's stratify key
(``socialens.data.targets.stratify_key``: a label; the labels of a multi-label example joined; the
entity types of a sentence; nothing for a summary, which makes the split plain random), and
duplicates are found on the text (for tokens, the tokens joined by spaces)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from socialens.core.errors import DataError
from socialens.core.types import Example, LabelSchema, Split
from socialens.data.datasets import RawDataset
from socialens.data.normalise import normalise_text
from socialens.data.splits import describe_leakage, group_leakage, grouped_split
from socialens.data.targets import CLASSIFICATION, LABEL, REPAIRS, check_target, stratify_key, target_form
from socialens.data.targets import class_counts as target_class_counts


def _labels(examples: list[Example], task_type: str | None = None) -> list[str]:
    """The stratification key of each example (``""`` where it has none)."""
    key = stratify_key(task_type)
    return ["" if (value := key(ex)) is None else value for ex in examples]


def _proportional_take(labels: list[str], n: int, rng: np.random.Generator) -> list[int]:
    """Indices of ``n`` items whose class proportions follow ``labels`` (largest remainder)."""
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    total = len(labels)
    quotas = {c: n * len(idx) / total for c, idx in by_class.items()}
    counts = {c: int(q) for c, q in quotas.items()}
    for c in sorted(quotas, key=lambda c: (-(quotas[c] - counts[c]), c))[: n - sum(counts.values())]:
        counts[c] += 1
    chosen: list[int] = []
    for c in sorted(by_class):
        idx = by_class[c]
        chosen.extend(int(i) for i in rng.permutation(idx)[: counts[c]])
    return chosen


def stratified_split(
    examples: list[Example], held_out: float | int, seed: int, *, task_type: str | None = None
) -> tuple[list[Example], list[Example]]:
    """Split into (kept, held_out) with class proportions preserved; ``held_out`` is a fraction or
    a count. Classes with a single member stay on the kept side. Each side keeps the input order.
    The classes are the stratify keys of ``task_type`` (without one, read from the targets' form:
    see ``socialens.data.targets.stratify_key``); examples without a key form one class."""
    n = len(examples)
    k = round(held_out * n) if isinstance(held_out, float) else int(held_out)
    k = max(0, min(n, k))
    if k == 0 or n == 0:
        return list(examples), []
    if k == n:
        return [], list(examples)
    from sklearn.model_selection import train_test_split

    labels = _labels(examples, task_type)
    counts = Counter(labels)
    multi = [i for i, label in enumerate(labels) if counts[label] > 1]
    single = [i for i, label in enumerate(labels) if counts[label] == 1]
    k_multi = min(k, len(multi))
    try:
        if k_multi == len(multi):
            raise ValueError("everything held out")
        _, taken = train_test_split(
            multi, test_size=k_multi, stratify=[labels[i] for i in multi], random_state=seed
        )
    except ValueError:  # fewer held-out rows than classes, and similar corner cases
        rng = np.random.default_rng(seed)
        sub = _proportional_take([labels[i] for i in multi], k_multi, rng)
        taken = [multi[i] for i in sub]
    taken_set = set(taken)
    if len(taken_set) < k:  # only singletons left to take
        taken_set.update(single[: k - len(taken_set)])
    kept = [ex for i, ex in enumerate(examples) if i not in taken_set]
    out = [ex for i, ex in enumerate(examples) if i in taken_set]
    return kept, out


def class_counts(examples: list[Example], task_type: str | None = None) -> dict[str, int]:
    """Examples per label (classification, the default), entities per type (token
    classification), examples per label (multilabel); {} for summaries."""
    return target_class_counts(examples, task_type)


def prepare(
    raw: RawDataset,
    *,
    seed: int = 0,
    cap: int | None = None,
    min_chars: int = 3,
    dev_fraction: float = 0.2,
    split_ratios: tuple[float, float, float] = (0.7, 0.2, 0.1),
    keep_given_test: bool = False,
) -> Split:
    """Clean and split a raw dataset. The same inputs and seed always give the identical Split.

    ``keep_given_test`` leaves a dataset's own test split exactly as given (for comparison with
    published numbers on an official test set): its short texts, duplicates and texts also in
    train are counted but not dropped."""
    if abs(sum(split_ratios) - 1.0) > 1e-6 or any(r < 0 for r in split_ratios):
        raise ValueError(f"split_ratios must be three non-negative numbers summing to 1, got {split_ratios}")
    if cap is not None and cap < 1:  # a cap of 0 or less would empty the training set
        raise DataError(f"cap {cap}: expected a positive number of training examples")
    stats: dict[str, Any] = {
        "seed": seed,
        "cap": cap,
        "min_chars": min_chars,
        "rows_before": {name: len(rows) for name, rows in raw.splits.items()},
        "reader_dropped": {name: dict(c) for name, c in raw.dropped.items() if c},
        "short_dropped": {},
        "duplicates_dropped": {},
    }
    task_type = raw.task_type
    script_options = raw.config.normalise if raw.config is not None else None
    group_by = raw.config.split.group_by if raw.config is not None else None
    if raw.filtered:
        stats["where_dropped"] = dict(raw.filtered)
        stats["where"] = dict(raw.config.where) if raw.config is not None else {}
    repaired = {name: dict(c) for name, c in raw.repaired.items() if c}
    if repaired:
        stats["reader_repaired"] = repaired
    # 1. short texts and duplicates, split by split (first occurrence wins)
    cleaned: dict[str, list[Example]] = {}
    for name, rows in raw.splits.items():
        if keep_given_test and name == "test":
            cleaned[name] = list(rows)
            stats["short_dropped"][name] = 0
            stats["duplicates_dropped"][name] = {"exact": 0, "normalised": 0}
            continue
        kept = [ex for ex in rows if len(ex.text.strip()) >= min_chars]
        stats["short_dropped"][name] = len(rows) - len(kept)
        exact_seen: set[str] = set()
        norm_seen: set[str] = set()
        exact = norm = 0
        unique = []
        for ex in kept:
            if ex.text in exact_seen:
                exact += 1
                continue
            key = normalise_text(ex.text, script_options)
            if key in norm_seen:
                norm += 1
                continue
            exact_seen.add(ex.text)
            norm_seen.add(key)
            unique.append(ex)
        stats["duplicates_dropped"][name] = {"exact": exact, "normalised": norm}
        cleaned[name] = unique

    # 2. the three splits (whole groups on one side when the YAML says split.group_by)
    train_r, dev_r, test_r = split_ratios
    present = set(cleaned)
    how = "stratified"

    def carve(examples: list[Example], fraction: float) -> tuple[list[Example], list[Example]]:
        nonlocal how
        if group_by is None:
            return stratified_split(examples, fraction, seed, task_type=task_type)
        kept, out, how = grouped_split(examples, fraction, seed, group_by, task_type=task_type)
        return kept, out

    if {"train", "dev", "test"} <= present:
        train, dev, test = cleaned["train"], cleaned["dev"], cleaned["test"]
        created = "given"
    elif {"train", "test"} <= present:
        train, dev = carve(cleaned["train"], dev_fraction)
        test = cleaned["test"]
        created = f"dev carved from train ({dev_fraction:.0%}, {how})"
    elif "train" in present or "all" in present:
        pool = cleaned.get("all", []) + cleaned.get("train", [])
        if "dev" in present:  # train + dev: carve the test split from train
            train, test = carve(pool, test_r / (train_r + test_r))
            dev = cleaned["dev"]
            created = f"test carved from train ({how})"
        else:
            rest, test = carve(pool, test_r)
            train, dev = carve(rest, dev_r / (train_r + dev_r))
            created = f"{how} {train_r:.0%}/{dev_r:.0%}/{test_r:.0%} split"
    else:
        raise DataError(f"dataset '{raw.name}': no train split (found: {', '.join(sorted(present))})")
    stats["splits_created"] = created

    # 3. test texts that also appear in train (exact or normalised) are dropped from test
    train_keys = {normalise_text(ex.text, script_options) for ex in train}
    test_before = len(test)
    overlapping = sum(1 for ex in test if normalise_text(ex.text, script_options) in train_keys)
    if keep_given_test and "test" in raw.splits:
        stats["test_kept_as_given"] = True
        stats["test_in_train_kept"] = overlapping
    else:
        test = [ex for ex in test if normalise_text(ex.text, script_options) not in train_keys]
    stats["test_in_train_dropped"] = test_before - len(test)
    stats["dev_in_train"] = sum(1 for ex in dev if normalise_text(ex.text, script_options) in train_keys)

    # 4. cap train, stratified
    stats["capped"] = 0
    if cap is not None and len(train) > cap:
        rest, train = stratified_split(train, int(cap), seed, task_type=task_type)
        stats["capped"] = len(rest)

    parts = {"train": train, "dev": dev, "test": test}
    if group_by is not None:
        stats["group_leakage"] = group_leakage(parts, group_by)
    stats["rows_after"] = {name: len(rows) for name, rows in parts.items()}
    stats["class_counts"] = {name: class_counts(rows, task_type) for name, rows in parts.items()}
    task = raw.config.task if raw.config is not None and raw.config.task else ""
    return Split(
        train=train,
        dev=dev,
        test=test,
        schema=raw.schema,
        name=raw.name,
        stats=stats,
        task=task,
        task_type=task_type,
    )


def describe_stats(stats: dict[str, Any]) -> list[str]:
    """What ``prepare`` did, as plain lines for a terminal: every dropped row counted by reason,
    how the splits were made, and the cap (or that there was none)."""

    def per_split(counts: dict[str, int]) -> str:
        total = sum(counts.values())
        parts = [f"{name} {n:,}" for name, n in counts.items() if n]
        return f"{total:,}" + (f" ({', '.join(parts)})" if len(counts) > 1 and parts else "")

    lines = []
    for split, reasons in stats.get("reader_dropped", {}).items():
        for reason, count in sorted(reasons.items()):
            if reason == "label_excluded":  # asked for by the YAML, not a fault in the file
                lines.append(f"rows left out by the YAML's exclude_labels from {split}: {count:,}")
            else:
                lines.append(f"bad rows dropped from {split}: {count:,} ({reason})")
    for split, count in stats.get("where_dropped", {}).items():
        kept = "; ".join(
            f"{column} in {', '.join(values)}" for column, values in stats.get("where", {}).items()
        )
        lines.append(f"rows left out by the YAML's where ({kept}) from {split}: {count:,}")
    for split, kinds in stats.get("reader_repaired", {}).items():
        for kind, count in sorted(kinds.items()):
            lines.append(f"repaired in {split}: {count:,} ({REPAIRS.get(kind, kind)})")
    lines.append(
        f"short texts dropped (under {stats.get('min_chars', 3)} characters): "
        + per_split(stats.get("short_dropped", {}))
    )
    duplicates = stats.get("duplicates_dropped", {})
    exact = sum(d.get("exact", 0) for d in duplicates.values())
    normalised = sum(d.get("normalised", 0) for d in duplicates.values())
    by_split = per_split({name: d.get("exact", 0) + d.get("normalised", 0) for name, d in duplicates.items()})
    lines.append(
        f"duplicates dropped (the first one kept): {by_split} = {exact:,} exact + {normalised:,} "
        "differing only in case, punctuation or spacing"
    )
    if stats.get("test_kept_as_given"):
        lines.append(
            f"test split kept as given: {stats.get('test_in_train_kept', 0):,} of its texts are also in train"
        )
    else:
        lines.append(
            f"test texts also in train, dropped from test: {stats.get('test_in_train_dropped', 0):,}"
        )
    lines.append(f"dev texts also in train (kept): {stats.get('dev_in_train', 0):,}")
    lines.append(f"splits: {stats.get('splits_created', 'given')}, seed {stats.get('seed', 0)}")
    if "group_leakage" in stats:
        lines.append(describe_leakage(stats["group_leakage"]))
    cap = stats.get("cap")
    if cap is None:
        lines.append("cap: none (the whole training split is used)")
    else:
        lines.append(f"cap: {cap:,} training examples, stratified ({stats.get('capped', 0):,} left out)")
    return lines


def write_split(split: Split, out_dir: str | Path) -> Path:
    """Write train/dev/test.jsonl (one Example.to_dict per line), schema.json and stats.json."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise DataError(
            f"{out}: exists and is not a folder; expected a folder for train/dev/test.jsonl"
        ) from None
    for name, rows in split.parts().items():
        with (out / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
            for ex in rows:
                handle.write(json.dumps(ex.to_dict(), ensure_ascii=False) + "\n")
    (out / "schema.json").write_text(
        json.dumps(split.schema.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8"
    )
    stats = {"name": split.name, "task": split.task, **split.stats}
    if split.task_type != CLASSIFICATION:  # a classification split's stats.json stays as it was
        stats = {"name": split.name, "task": split.task, "task_type": split.task_type, **split.stats}
    (out / "stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False), encoding="utf-8")
    return out


def read_split(directory: str | Path) -> Split:
    """Read back what write_split wrote; a damaged file is a one-line DataError naming it (and the
    line, for the JSONL parts)."""
    directory = Path(directory)
    if not (directory / "schema.json").is_file():
        raise DataError(
            f"{directory}: not a split folder (missing schema.json); expected the output of write_split"
        )
    schema_path = directory / "schema.json"
    try:
        schema = LabelSchema.from_dict(_read_json_object(schema_path))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(
            f"{schema_path}: not a label schema ({_short(exc)}); expected the schema.json `data split` writes"
        ) from None
    stats_path = directory / "stats.json"
    stats = _read_json_object(stats_path) if stats_path.is_file() else {}
    task_type = str(stats.get("task_type", CLASSIFICATION))
    parts = {
        name: _read_examples_jsonl(directory / f"{name}.jsonl", schema, task_type)
        for name in ("train", "dev", "test")
    }
    name = stats.pop("name", directory.name)
    task = stats.pop("task", "")
    task_type = stats.pop("task_type", CLASSIFICATION)
    return Split(**parts, schema=schema, name=name, stats=stats, task=task, task_type=task_type)


def _short(exc: BaseException) -> str:
    return f"missing field {exc}" if isinstance(exc, KeyError) else " ".join(str(exc).split())[:200]


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(
            f"{path}: unreadable ({_short(exc)}); expected the JSON `data split` writes"
        ) from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: a JSON {type(data).__name__}; expected the JSON object `data split` writes")
    return data


def _read_examples_jsonl(path: Path, schema: LabelSchema, task_type: str = CLASSIFICATION) -> list[Example]:
    """One split part, checked line by line: a truncated or edited file names its line."""
    if not path.is_file():
        return []
    rows = []
    expected = 'expected one example per line ({"id", "text", "label", "metadata"}) as `data split` writes'
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            try:
                data = json.loads(raw.decode("utf-8"))
                if not isinstance(data, dict):
                    raise ValueError(f"a JSON {type(data).__name__}")
                example = Example.from_dict(data)
                if not isinstance(example.text, str):
                    raise ValueError("field 'text' is not a string")
            except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else _short(exc)
                raise DataError(f"{path}:{number}: malformed example ({reason}); {expected}") from None
            if example.label is not None and target_form(task_type) == LABEL:
                label = schema.normalise(example.label)
                if label is None:
                    raise DataError(
                        f"{path}:{number}: label not in the split's schema.json; expected one of "
                        f"{', '.join(schema.names)}"
                    )
                example.label = label
            elif example.label is not None:
                try:
                    example.label = check_target(task_type, example, schema)
                except ValueError as exc:
                    raise DataError(f"{path}:{number}: malformed target ({exc}); {expected}") from None
            rows.append(example)
    return rows
