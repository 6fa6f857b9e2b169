"""A multi-dataset instruction-tuning set, as in LlamaLens: several datasets and languages mixed,
each capped by stratified sampling, one sampled instruction per example, and one of four orders
of the training data:

- ``alphabetical``: by language, then dataset (each dataset in its file order);
- ``within_language``: languages in order, examples shuffled inside each language;
- ``by_task``: tasks in order, examples shuffled inside each task (the best order in LlamaLens);
- ``random``: fully shuffled.

The mix file (``configs/instruct-mix.yaml``) names the datasets and their instruction sets;
:func:`build_mix` writes train.jsonl, dev.jsonl, test.jsonl (prompts without answers) and stats.json.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from socialens.core.errors import ConfigError
from socialens.core.paths import confine, safe_name
from socialens.core.yaml_io import load_model_file, plain_strings_are_configs
from socialens.llm.prompts import DEFAULT_SYSTEM
from socialens.tuning.instructions import InstructionSet, build_records, load_instruction_set

SHUFFLES = ("alphabetical", "within_language", "by_task", "random")
Shuffle = Literal["alphabetical", "within_language", "by_task", "random"]


class MixDataset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: str = Field(description="dataset YAML path or builtin:<name>")
    instructions: str | None = Field(
        default=None,
        description="instruction YAML (default: instructions/<dataset name>.yaml beside the mix)",
    )
    cap: int | None = Field(default=None, gt=0, description="overrides the mix's cap for this dataset")


class InstructMix(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "instruct-mix"
    description: str = ""
    data_root: str | None = None
    seed: int = 0
    cap: int | None = Field(default=20000, gt=0, description="stratified cap on each dataset's train split")
    dev_cap: int | None = Field(default=None, gt=0, description="stratified cap on each dataset's dev split")
    test_sample: int | None = Field(
        default=None, gt=0, description="stratified sample of each dataset's test split (None: all of it)"
    )
    shuffle: Shuffle = "by_task"
    max_text_chars: int | None = Field(
        default=None, gt=0, description="cut longer texts to this many characters"
    )
    system: str | None = DEFAULT_SYSTEM
    datasets: list[MixDataset] = Field(min_length=1)

    @field_validator("datasets", mode="before")
    @classmethod
    def _plain_strings_are_configs(cls, value: Any) -> Any:
        return plain_strings_are_configs(value)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        return safe_name(value)


@dataclass
class LoadedMix:
    mix: InstructMix
    path: Path

    def resolve(self, ref: str) -> str:
        """A path as given when it exists from the working directory, else beside the mix file."""
        if ref.startswith("builtin:") or Path(ref).expanduser().exists():
            return ref
        beside = self.path.parent / ref
        return str(beside) if beside.exists() else ref

    def instruction_path(self, entry: MixDataset, dataset_name: str) -> str:
        if entry.instructions:
            return self.resolve(entry.instructions)
        return str(self.path.parent / "instructions" / f"{dataset_name}.yaml")

    def check_places(self, data_root: str | None) -> None:
        """The mix's ``data_root`` lies under its own folder or a data root the user chose (unless
        ``--data-root`` is given); each dataset YAML and instruction file it names under the current
        folder, the mix's folder or the data root (docs/security.md, "Configs and paths")."""
        from socialens.data.datasets import resolve_data_root, user_data_roots

        own = ("the mix's folder", self.path.parent)
        if data_root is None and self.mix.data_root is not None:
            confine(
                self.mix.data_root,
                [own, *user_data_roots()],
                source=self.path,
                field="data_root",
                value=self.mix.data_root,
                opt_in="pass --data-root to read data from another folder",
            )
        places = [
            ("the current folder", Path.cwd()),
            own,
            ("the data root", resolve_data_root(data_root or self.mix.data_root)),
        ]
        for index, entry in enumerate(self.mix.datasets):
            for name in ("config", "instructions"):
                ref = getattr(entry, name)
                if ref is None or ref.startswith("builtin:"):
                    continue
                confine(
                    self.resolve(ref),
                    places,
                    source=self.path,
                    field=f"datasets[{index}].{name}",
                    value=ref,
                    opt_in="copy the file into one of them, or pass --data-root",
                )


def load_mix(path: str | Path) -> LoadedMix:
    path = Path(path)
    mix = load_model_file(path, InstructMix, "instruction mix", "datasets, cap, seed and shuffle")
    return LoadedMix(mix=mix, path=path)


# ---------------------------------------------------------------------------- training orders


def order_records(records: list[dict[str, Any]], shuffle: str, seed: int) -> list[dict[str, Any]]:
    """The records in one of the four LlamaLens training orders (deterministic for a seed)."""
    if shuffle not in SHUFFLES:
        raise ConfigError(f"unknown shuffle '{shuffle}': expected one of {', '.join(SHUFFLES)}")
    rng = np.random.default_rng(seed)
    if shuffle == "alphabetical":
        return sorted(records, key=lambda r: (r["language"], r["dataset"]))
    if shuffle == "random":
        return [records[i] for i in rng.permutation(len(records))]
    key = "language" if shuffle == "within_language" else "task"
    ordered: list[dict[str, Any]] = []
    for group in sorted({r[key] for r in records}):
        block = [r for r in records if r[key] == group]
        ordered.extend(block[i] for i in rng.permutation(len(block)))
    return ordered


def count_runs(records: list[dict[str, Any]], key: str) -> int:
    """How many contiguous blocks of equal ``key`` the sequence has (1 per value when grouped)."""
    return sum(1 for i, r in enumerate(records) if i == 0 or r[key] != records[i - 1][key])


# ---------------------------------------------------------------------------- statistics


def split_stats(records: list[dict[str, Any]]) -> dict[str, Any]:
    by_label: dict[str, dict[str, int]] = {}
    instructions: dict[str, set[int]] = {}
    for r in records:
        by_label.setdefault(r["dataset"], Counter())[str(r["label"])] += 1
        instructions.setdefault(r["dataset"], set()).add(r["instruction_index"])
    return {
        "examples": len(records),
        "by_dataset": dict(Counter(r["dataset"] for r in records)),
        "by_language": dict(sorted(Counter(r["language"] for r in records).items())),
        "by_task": dict(sorted(Counter(r["task"] for r in records).items())),
        "by_label": {name: dict(sorted(c.items())) for name, c in by_label.items()},
        "instructions_used": {name: len(used) for name, used in instructions.items()},
        "runs": {key: count_runs(records, key) for key in ("dataset", "language", "task")},
    }


def print_stats(stats: dict[str, Any], console: Console) -> None:
    """Rich tables: examples per dataset, language, task and label (cells are Text: names, tasks and
    labels from configs and data are shown as they are, never read as rich markup)."""
    splits = [s for s in ("train", "dev", "test") if s in stats["splits"]]
    table = Table(title=f"instruction mix ({stats['shuffle']} order, seed {stats['seed']})")
    for column in ("dataset", "language", "task", *splits, "instructions", "capped"):
        table.add_column(column, justify="left" if column in ("dataset", "language", "task") else "right")
    for name, info in stats["datasets"].items():
        counts = [str(stats["splits"][s]["by_dataset"].get(name, 0)) for s in splits]
        used = stats["splits"]["train"]["instructions_used"].get(name, 0) if "train" in splits else 0
        table.add_row(
            Text(name),
            Text(str(info["language"])),
            Text(str(info["task"])),
            *counts,
            f"{used}/{info['instructions']}",
            str(info["capped"]),
        )
    console.print(table)
    for key in ("language", "task"):
        grouped = Table(title=f"examples per {key}")
        grouped.add_column(key)
        for s in splits:
            grouped.add_column(s, justify="right")
        values = sorted({v for s in splits for v in stats["splits"][s][f"by_{key}"]})
        for value in values:
            grouped.add_row(
                Text(str(value)), *(str(stats["splits"][s][f"by_{key}"].get(value, 0)) for s in splits)
            )
        console.print(grouped)
    labels = Table(title="examples per label")
    for column in ("dataset", "label", *splits, "train share"):
        labels.add_column(column, justify="left" if column in ("dataset", "label") else "right")
    for name in stats["datasets"]:
        train_counts = stats["splits"].get("train", {}).get("by_label", {}).get(name, {})
        total = sum(train_counts.values()) or 1
        names = sorted({lab for s in splits for lab in stats["splits"][s]["by_label"].get(name, {})})
        for label in names:
            counts = [str(stats["splits"][s]["by_label"].get(name, {}).get(label, 0)) for s in splits]
            labels.add_row(Text(name), Text(str(label)), *counts, f"{train_counts.get(label, 0) / total:.1%}")
    console.print(labels)
    if "train" in splits:
        runs = stats["splits"]["train"]["runs"]
        console.print(
            f"train order: {runs['dataset']} dataset block(s), {runs['language']} language block(s), "
            f"{runs['task']} task block(s)",
            highlight=False,
        )


# ---------------------------------------------------------------------------- building


def _check_pairing(instruction_set: InstructionSet, config: Any, source: str) -> None:
    """The instruction set must belong to the dataset: same name, language and label set."""
    if instruction_set.dataset != config.name:
        raise ConfigError(
            f"{source}: field 'dataset' = {instruction_set.dataset!r}: expected {config.name!r}, "
            "the name in the dataset YAML it is paired with"
        )
    if instruction_set.language != config.language:
        raise ConfigError(
            f"{source}: field 'language' = {instruction_set.language!r}: expected {config.language!r} "
            f"(dataset '{config.name}')"
        )
    schema_labels = config.to_schema().names
    if sorted(instruction_set.labels) != sorted(schema_labels):
        raise ConfigError(
            f"{source}: field 'labels' = {instruction_set.labels!r}: expected the labels of dataset "
            f"'{config.name}': {schema_labels!r}"
        )


def build_mix(
    loaded: LoadedMix,
    out_dir: str | Path,
    *,
    shuffle: str | None = None,
    cap: int | None = None,
    seed: int | None = None,
    data_root: str | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Write train.jsonl (ordered by the shuffle strategy), dev.jsonl and test.jsonl when the datasets
    have those splits, and stats.json; return the stats. Options given here override the mix file's."""
    from socialens.data.datasets import load_dataset, load_dataset_config
    from socialens.data.prepare import prepare, stratified_split

    mix = loaded.mix
    shuffle = shuffle or mix.shuffle
    if shuffle not in SHUFFLES:
        raise ConfigError(f"--shuffle '{shuffle}': expected one of {', '.join(SHUFFLES)}")
    seed = mix.seed if seed is None else seed
    loaded.check_places(data_root)
    data_root = data_root or mix.data_root
    console = console or Console()
    parts: dict[str, list[dict[str, Any]]] = {"train": [], "dev": [], "test": []}
    datasets: dict[str, dict[str, Any]] = {}
    columns = (
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("datasets", total=len(mix.datasets))
        for index, entry in enumerate(mix.datasets):
            try:
                config = load_dataset_config(loaded.resolve(entry.config), data_root=data_root)
            except ConfigError as exc:
                raise ConfigError(f"{loaded.path}: field 'datasets[{index}].config': {exc}") from None
            progress.update(bar, description=f"loading {config.name}")
            if config.name in datasets:
                raise ConfigError(
                    f"{loaded.path}: field 'datasets[{index}]': dataset '{config.name}' appears twice"
                )
            source = loaded.instruction_path(entry, config.name)
            instruction_set = load_instruction_set(source)
            _check_pairing(instruction_set, config, source)
            dataset_cap = entry.cap or cap or mix.cap
            split = prepare(load_dataset(config, data_root=data_root), seed=seed, cap=dataset_cap)
            dev, test = split.dev, split.test
            if mix.dev_cap and len(dev) > mix.dev_cap:
                dev = stratified_split(dev, mix.dev_cap, seed)[1]
            if mix.test_sample and len(test) > mix.test_sample:
                test = stratified_split(test, mix.test_sample, seed)[1]
            for name, examples in (("train", split.train), ("dev", dev), ("test", test)):
                parts[name] += build_records(
                    examples,
                    instruction_set,
                    language=config.language,
                    seed=seed,
                    split=name,
                    with_answer=name != "test",
                    system=mix.system,
                    max_text_chars=mix.max_text_chars,
                )
            datasets[config.name] = {
                "config": entry.config,
                "instructions_file": source,
                "language": config.language,
                "task": instruction_set.task,
                "instructions": len(instruction_set.instructions),
                "cap": dataset_cap,
                "capped": split.stats.get("capped", 0),
                "train_before_cap": len(split.train) + split.stats.get("capped", 0),
            }
            progress.advance(bar)
        progress.update(bar, description="datasets loaded")
    parts["train"] = order_records(parts["train"], shuffle, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stats: dict[str, Any] = {
        "mix": str(loaded.path),
        "name": mix.name,
        "shuffle": shuffle,
        "seed": seed,
        "cap": cap or mix.cap,
        "datasets": datasets,
        "splits": {},
        "files": {},
    }
    for name, records in parts.items():
        if not records:
            continue
        path = out / f"{name}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        stats["splits"][name] = split_stats(records)
        stats["files"][name] = str(path)
    (out / "stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False), encoding="utf-8")
    return stats


def read_records(path: str | Path) -> list[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
