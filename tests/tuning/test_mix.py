"""The multi-dataset instruction mix: config errors, caps, seeded determinism, the four training
orders, statistics, the `instruct build` command, and the real four-dataset mix."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from socialens.cli import app
from socialens.core.errors import ConfigError
from socialens.data.datasets import load_dataset
from socialens.data.prepare import prepare
from socialens.tuning.mix import (
    SHUFFLES,
    build_mix,
    count_runs,
    load_mix,
    order_records,
    print_stats,
    read_records,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_INSTRUCTIONS = REPO_ROOT / "configs" / "instructions" / "reddit-misinfo-demo.yaml"

# Tiny datasets beside the built-in demo: hate speech in two languages and French sarcasm, so the
# mix has two languages, three tasks, and a task spanning both languages.
TINY = {
    "hate-en": ("en", "hate_speech", ["none", "hate"], "Tweet {i} about the match and the weather"),
    "hate-fr": ("fr", "hate_speech", ["none", "hate"], "Message {i} sur le match et la météo"),
    "sarcasm-fr": ("fr", "sarcasm", ["literal", "sarcastic"], "Bravo {i}, encore une réunion, quelle joie"),
}


def _tiny_dataset(folder: Path, name: str, language: str, task: str, labels: list[str], text: str) -> Path:
    with (folder / f"{name}.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "label"])
        writer.writerows([i, text.format(i=i), labels[int(i % 3 == 0)]] for i in range(30))
    config = {
        "name": name,
        "task": f"{task.replace('_', ' ')} detection",
        "language": language,
        "format": "csv",
        "path": ".",
        "path_base": "config",
        "file": f"{name}.csv",
        "columns": {"text": "text", "label": "label", "id": "id"},
        "schema": {"labels": labels},
    }
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    instructions = {
        "dataset": name,
        "language": language,
        "task": task,
        "labels": labels,
        "instructions": [f"Label the text {labels[0]} or {labels[1]}.", f"Is it {labels[1]} or {labels[0]}?"],
    }
    (folder / "instructions").mkdir(exist_ok=True)
    (folder / "instructions" / f"{name}.yaml").write_text(yaml.safe_dump(instructions), encoding="utf-8")
    return folder / f"{name}.yaml"


@pytest.fixture(scope="module")
def mix_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mix")
    datasets = [{"config": "builtin:reddit-misinfo-demo", "instructions": str(DEMO_INSTRUCTIONS), "cap": 60}]
    for name, (language, task, labels, text) in TINY.items():
        datasets.append({"config": str(_tiny_dataset(folder, name, language, task, labels, text))})
    mix = {"name": "tiny", "seed": 0, "cap": 1000, "shuffle": "by_task", "datasets": datasets}
    (folder / "mix.yaml").write_text(yaml.safe_dump(mix), encoding="utf-8")
    return folder


def _build(mix_dir: Path, out: Path, **options) -> tuple[dict, list[dict]]:
    stats = build_mix(load_mix(mix_dir / "mix.yaml"), out, console=Console(quiet=True), **options)
    return stats, read_records(out / "train.jsonl")


@pytest.fixture(scope="module")
def orders(mix_dir, tmp_path_factory) -> dict[str, list[dict]]:
    return {s: _build(mix_dir, tmp_path_factory.mktemp(s), shuffle=s)[1] for s in SHUFFLES}


def test_same_seed_same_files_different_seed_different(mix_dir, tmp_path):
    _build(mix_dir, tmp_path / "a")
    _build(mix_dir, tmp_path / "b")
    _build(mix_dir, tmp_path / "c", seed=1)
    for name in ("train.jsonl", "dev.jsonl", "test.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    first, other = read_records(tmp_path / "a" / "train.jsonl"), read_records(tmp_path / "c" / "train.jsonl")
    assert [r["id"] for r in first] != [r["id"] for r in other]
    by_id = {r["id"]: r["instruction_index"] for r in other}
    shared = [r for r in first if r["id"] in by_id]
    assert any(r["instruction_index"] != by_id[r["id"]] for r in shared)


def test_cap_keeps_label_proportions(mix_dir, tmp_path):
    stats, records = _build(mix_dir, tmp_path)
    full = prepare(load_dataset("builtin:reddit-misinfo-demo"), seed=0).train
    counts = Counter(r["label"] for r in records if r["dataset"] == "reddit-misinfo-demo")
    assert sum(counts.values()) == 60
    assert stats["datasets"]["reddit-misinfo-demo"]["capped"] == len(full) - 60
    for label, n in Counter(ex.label for ex in full).items():
        assert abs(counts[label] - 60 * n / len(full)) <= 1, (label, counts, n)


def test_alphabetical_is_sorted_by_language_then_dataset(orders):
    keys = [(r["language"], r["dataset"]) for r in orders["alphabetical"]]
    assert keys == sorted(keys)
    assert count_runs(orders["alphabetical"], "dataset") == 4


def _is_grouped_in_order(records: list[dict], key: str) -> bool:
    blocks = [r[key] for i, r in enumerate(records) if i == 0 or r[key] != records[i - 1][key]]
    return blocks == sorted(set(blocks))


def test_within_language_keeps_language_blocks_and_shuffles_inside(orders):
    records = orders["within_language"]
    assert _is_grouped_in_order(records, "language")
    english = [r["id"] for r in records if r["language"] == "en"]
    alphabetical = [r["id"] for r in orders["alphabetical"] if r["language"] == "en"]
    assert sorted(english) == sorted(alphabetical) and english != alphabetical
    assert count_runs([r for r in records if r["language"] == "en"], "dataset") > 2  # datasets interleaved


def test_by_task_keeps_task_blocks_across_languages(orders):
    records = orders["by_task"]
    assert _is_grouped_in_order(records, "task")
    hate = [r for r in records if r["task"] == "hate_speech"]
    assert {r["language"] for r in hate} == {"en", "fr"}
    assert count_runs(hate, "language") > 2  # both languages mixed inside the task block


def test_random_is_a_permutation_differing_from_the_others(orders):
    ids = {s: [r["id"] for r in records] for s, records in orders.items()}
    assert sorted(ids["random"]) == sorted(ids["alphabetical"])
    assert len(set(ids["random"])) == len(ids["random"])
    for other in ("alphabetical", "within_language", "by_task"):
        assert ids["random"] != ids[other]
    assert count_runs(orders["random"], "task") > 10


def test_order_records_rejects_unknown_strategy():
    with pytest.raises(ConfigError, match="by_task"):
        order_records([], "sideways", 0)


def test_stats_match_records_and_print_as_tables(mix_dir, tmp_path):
    stats, records = _build(mix_dir, tmp_path)
    saved = json.loads((tmp_path / "stats.json").read_text(encoding="utf-8"))
    assert saved == json.loads(json.dumps(stats))
    train = saved["splits"]["train"]
    assert train["examples"] == len(records)
    assert train["by_dataset"] == dict(Counter(r["dataset"] for r in records))
    assert train["by_language"] == dict(Counter(r["language"] for r in records))
    assert train["by_task"] == {"hate_speech": 42, "misinformation_response": 60, "sarcasm": 21}
    assert train["by_label"]["sarcasm-fr"] == dict(
        Counter(r["label"] for r in records if r["dataset"] == "sarcasm-fr")
    )
    assert set(saved["splits"]) == {"train", "dev", "test"}
    test_records = read_records(tmp_path / "test.jsonl")
    assert all(r["messages"][-1]["role"] == "user" for r in test_records)  # prompts only, gold in "label"
    console = Console(record=True, width=150)
    print_stats(stats, console)
    text = console.export_text()
    for title in (
        "instruction mix (by_task order",
        "examples per language",
        "examples per task",
        "examples per label",
    ):
        assert title in text
    assert "sarcasm-fr" in text and "3 task block(s)" in text


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"shuffle": "sideways"}, "'shuffle'"),
        ({"cap": -5}, "'cap'"),
        ({"datasets": []}, "'datasets'"),
        ({"seeds": [1]}, "'seeds'"),
        ({"datasets": [{"config": "x.yaml", "instructons": "y.yaml"}]}, "'datasets[0].instructons'"),
    ],
)
def test_bad_mix_config_is_a_one_line_error_naming_the_field(tmp_path, change, field):
    path = tmp_path / "mix.yaml"
    path.write_text(yaml.safe_dump({"datasets": ["builtin:reddit-misinfo-demo"], **change}), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_mix(path)
    assert "\n" not in str(info.value)
    assert "mix.yaml" in str(info.value) and field in str(info.value)


def test_instruction_set_must_match_its_dataset(mix_dir, tmp_path):
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(
        yaml.safe_dump(
            {
                "dataset": "reddit-misinfo-demo",
                "task": "t",
                "labels": ["belief", "other"],
                "instructions": ["belief or other"],
            }
        ),
        encoding="utf-8",
    )
    mix = tmp_path / "mix.yaml"
    mix.write_text(
        yaml.safe_dump({"datasets": [{"config": "builtin:reddit-misinfo-demo", "instructions": str(wrong)}]}),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        build_mix(load_mix(mix), tmp_path / "out", console=Console(quiet=True))
    assert "wrong.yaml" in str(info.value) and "'labels'" in str(info.value) and "debunk" in str(info.value)


def test_cli_instruct_build(mix_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "instruct",
            "build",
            str(mix_dir / "mix.yaml"),
            "--out",
            str(out),
            "--shuffle",
            "random",
            "--cap",
            "10",
        ],
    )
    assert result.exit_code == 0, result.output
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert stats["shuffle"] == "random"
    assert stats["splits"]["train"]["by_dataset"]["reddit-misinfo-demo"] == 60  # the per-dataset cap wins
    assert stats["splits"]["train"]["by_dataset"]["hate-en"] == 10
    assert "examples per label" in result.output
    bad = runner.invoke(
        app, ["instruct", "build", str(mix_dir / "mix.yaml"), "--out", str(out), "--shuffle", "x"]
    )
    assert bad.exit_code == 2
    lines = [line for line in bad.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "alphabetical" in lines[0]


@pytest.mark.slow
def test_real_five_dataset_three_language_mix_in_every_order(shared_datasets, tmp_path):
    loaded = load_mix(REPO_ROOT / "configs" / "instruct-mix.yaml")
    seen = {}
    for shuffle in SHUFFLES:
        stats = build_mix(
            loaded,
            tmp_path / shuffle,
            shuffle=shuffle,
            cap=40,
            data_root=str(shared_datasets),
            console=Console(quiet=True),
        )
        train = stats["splits"]["train"]
        assert train["by_language"] == {"ar": 40, "en": 120, "hi": 40}
        assert set(train["by_task"]) == {"fake_news", "hate_speech", "offensive_language", "sarcasm"}
        assert train["by_label"]["ct_fan_22"].keys() == {"false", "partially false", "true", "other"}
        if shuffle == "by_task":  # one block per task: English and Hindi offensive language shuffled together
            assert train["runs"]["task"] == 4 and train["runs"]["language"] > 3
        if shuffle == "alphabetical":
            assert train["runs"]["language"] == 3 and train["runs"]["dataset"] == 5
        seen[shuffle] = [r["id"] for r in read_records(tmp_path / shuffle / "train.jsonl")]
    assert len({tuple(ids) for ids in seen.values()}) == 4
    assert all(sorted(ids) == sorted(seen["random"]) for ids in seen.values())


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"data_root": "{outside}"}, "data_root"),
        ({"datasets": ["{outside}/tiny.yaml"]}, "datasets[0].config"),
    ],
    ids=["data-root", "dataset-yaml"],
)
def test_a_mix_reads_only_in_its_place(tmp_path, entry, field):
    """A mix file is a shared config: its data_root and the dataset YAMLs it names stay under its
    folder, the current folder or a data root the user chose (docs/security.md)."""
    mine, outside = tmp_path / "mine", tmp_path / "outside"
    mine.mkdir()
    outside.mkdir()
    _tiny_dataset(outside, "tiny", "en", "hate_speech", ["hate", "not_hate"], "text {i}")
    mix = {
        "name": "m",
        "datasets": [str(_tiny_dataset(mine, "tiny", "en", "hate_speech", ["hate", "not_hate"], "t {i}"))],
    }
    mix.update(json.loads(json.dumps(entry).replace("{outside}", str(outside))))
    (mine / "mix.yaml").write_text(yaml.safe_dump(mix), encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        build_mix(load_mix(mine / "mix.yaml"), tmp_path / "out", console=Console(quiet=True))
    assert str(exc.value).startswith(f"{mine / 'mix.yaml'}: field '{field}' = '{outside}")
    assert "refused: " in str(exc.value) and not (tmp_path / "out").exists()
