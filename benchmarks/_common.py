"""Shared helpers for the speed benchmarks: data loading without the data layer, result lines."""

from __future__ import annotations

import csv
import json
import os
import platform
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = REPO_ROOT / ".." / "shared" / "datasets"
DEMO_CSV = REPO_ROOT / "src" / "socialens" / "data" / "builtin" / "reddit_misinfo_demo" / "comments.csv"

TEXT_COLUMNS = ("text", "comment", "body", "content", "sentence")
LABEL_COLUMNS = ("label", "labels", "class", "category")


def read_tweeteval(root: Path, task: str, split: str) -> tuple[list[str], list[str]]:
    """Read tweeteval/<task>/{split}_text.txt and {split}_labels.txt; labels named via mapping.txt."""
    folder = root / "tweeteval" / task
    texts = (folder / f"{split}_text.txt").read_text(encoding="utf-8").splitlines()
    labels = [x.strip() for x in (folder / f"{split}_labels.txt").read_text(encoding="utf-8").splitlines()]
    names = {}
    mapping = folder / "mapping.txt"
    if mapping.is_file():
        for line in mapping.read_text(encoding="utf-8").splitlines():
            if line.strip():
                key, value = line.split("\t", 1)
                names[key.strip()] = value.strip()
    if len(texts) != len(labels):
        raise ValueError(
            f"{folder}: {split}_text.txt has {len(texts)} lines, {split}_labels.txt {len(labels)}"
        )
    return [t.strip() for t in texts], [names.get(label, label) for label in labels]


def read_demo_csv(path: Path = DEMO_CSV) -> tuple[list[str], list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ValueError(f"{path}: no rows")
    columns = {c.lower(): c for c in rows[0]}
    text_col = next((columns[c] for c in TEXT_COLUMNS if c in columns), None)
    label_col = next((columns[c] for c in LABEL_COLUMNS if c in columns), None)
    if text_col is None or label_col is None:
        raise ValueError(f"{path}: need a text column {TEXT_COLUMNS} and a label column {LABEL_COLUMNS}")
    rows = [r for r in rows if r[text_col] and r[label_col]]
    return [r[text_col] for r in rows], [r[label_col] for r in rows]


def load_benchmark_data(
    data_root: str | Path, n_train: int, n_test: int, task: str = "hate"
) -> tuple[str, tuple[list[str], list[str]], tuple[list[str], list[str]]]:
    """(dataset name, (train texts, labels), (test texts, labels)); tweeteval/<task> if present,
    else the built-in demo CSV split in two."""
    root = Path(data_root)
    if (root / "tweeteval" / task / "train_text.txt").is_file():
        train = read_tweeteval(root, task, "train")
        test = read_tweeteval(root, task, "test")
        name = f"tweeteval/{task}"
    elif DEMO_CSV.is_file():
        texts, labels = read_demo_csv()
        cut = max(1, len(texts) * 2 // 3)
        train, test = (texts[:cut], labels[:cut]), (texts[cut:], labels[cut:])
        name = "builtin:reddit_misinfo_demo"
    else:
        raise SystemExit(f"no benchmark data: neither {root}/tweeteval/{task} nor {DEMO_CSV} exists")
    return name, (train[0][:n_train], train[1][:n_train]), (test[0][:n_test], test[1][:n_test])


def machine_info() -> dict[str, object]:
    import torch

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def result_line(name: str, ours: float, baseline: float, unit: str) -> str:
    ratio = ours / baseline if baseline else float("inf")
    return f"RESULT {name} ours={ours:.2f} baseline={baseline:.2f} ratio={ratio:.2f} unit={unit}"


def write_json(path: str | Path | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2), encoding="utf-8")
