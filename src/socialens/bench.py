"""`socialens bench`: run the dataset x model x seed grid, resumably, and write the summary table."""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from socialens.classifiers.base import get_family
from socialens.core.errors import ConfigError, SocialensError
from socialens.core.layout import (
    COVERAGE_FILE,
    DEFAULT_TASK_TYPE,
    ERROR_FILE,
    METRICS_FILE,
    MODEL_DIR,
    PREDICTIONS_FILE,
    TASK_TYPE_KEY,
    RunLayout,
)
from socialens.core.paths import confine, is_inside
from socialens.core.progress import StageProgress, progress_display
from socialens.core.registry import TASKS
from socialens.core.runtime import cache_dir
from socialens.core.types import Split, Status, error_records, read_records, write_records
from socialens.data.splits import describe_leakage
from socialens.evaluation.energy import EnergyMeter
from socialens.evaluation.flags import row_flags
from socialens.evaluation.metrics import aggregate_seeds, check_metric_name, compute_metrics, official_metric
from socialens.evaluation.model_card import keep_models
from socialens.evaluation.recommendation import RECOMMENDATIONS_KEY, recommend_run, recommendation_lines
from socialens.evaluation.tables import print_fitted, score_cells, score_columns, seed_cis, split_by_task
from socialens.experiment import EnergySettings, Experiment, ModelEntry, validate_model_params


@dataclass
class CellResult:
    dataset: str
    model: str
    seed: int
    status: str  # done | skipped | failed
    metrics: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class BenchResult:
    run_dir: Path
    cells: list[CellResult] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)
    # {dataset: evaluation.recommendation dict}, computed from the run's records after the grid
    recommendations: dict[str, dict[str, Any]] = field(default_factory=dict)

    def all_error_cells(self) -> list[CellResult]:
        """Cells that ran but whose every prediction is an error (a dead server, a broken model):
        a table of them measures nothing, so bench must not end as if it did."""
        return [
            cell
            for cell in self.cells
            if cell.metrics is not None and cell.metrics.get("status", {}).get("rates", {}).get("error") == 1
        ]

    def stopped_cells(self) -> list[CellResult]:
        """Cells that stopped sending texts (their server stopped answering): unfinished."""
        return [cell for cell in self.cells if cell.metrics and cell.metrics["costs"].get("stopped")]


def fingerprint(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def load_split(entry, data_root: str | None) -> Split:
    from socialens.data.datasets import load_dataset, load_dataset_config
    from socialens.data.prepare import class_counts, prepare, stratified_split

    config = load_dataset_config(entry.config, data_root=data_root)
    raw = load_dataset(config, data_root=data_root, drop_invalid=entry.drop_invalid)
    split = prepare(raw, seed=entry.split_seed, cap=entry.cap, keep_given_test=entry.official_test)
    official = entry.official_metric or config.official_metric
    if official:
        try:
            check_metric_name(official, split.schema.names, TASKS.get(split.task_type).scalar_metrics)
        except ConfigError as exc:
            raise ConfigError(f"{entry.config}: field 'official_metric': {exc}") from None
        split.stats["official_metric"] = official
    if entry.test_sample is not None and entry.test_sample < len(split.test):
        split.stats["test_before_sample"] = len(split.test)
        before = class_counts(split.test, split.task_type)
        _, split.test = stratified_split(
            split.test, entry.test_sample, seed=entry.split_seed, task_type=split.task_type
        )
        split.stats["test_sample"] = len(split.test)
        # class counts and rows of the test set evaluated, and of the one it was sampled from
        split.stats["class_counts"] = {
            **split.stats.get("class_counts", {}),
            "test": class_counts(split.test, split.task_type),
            "test_before_sample": before,
        }
        split.stats.setdefault("rows_after", {})["test"] = len(split.test)
    return split


def split_fingerprint(split: Split) -> str:
    """Hash of every example, so a changed dataset or split never reuses a finished cell."""
    digest = hashlib.sha256()
    for part, examples in split.parts().items():
        for ex in examples:
            digest.update(f"{part}\t{ex.id}\t{ex.label}\t{ex.text}\n".encode())
    return digest.hexdigest()[:16]


def run_cell(
    split: Split,
    entry: ModelEntry,
    params,
    seed: int,
    cell_dir: Path,
    save_model: bool,
    progress=None,
    energy: EnergySettings | None = None,
    estimate=None,
) -> dict:
    energy = energy or EnergySettings()
    family = get_family(entry.family)
    classifier = family(params=params, seed=seed, progress=progress, estimate=estimate)
    with EnergyMeter(energy.country, energy.enabled) as train_meter:
        start = time.perf_counter()
        classifier.fit(
            split.train, split.dev, schema=split.schema, task=split.task, task_type=split.task_type
        )
        train_time = time.perf_counter() - start
    with EnergyMeter(energy.country, energy.enabled) as predict_meter:
        start = time.perf_counter()
        try:
            records = classifier.predict(split.test)
        except SocialensError:
            # the model could not be set up at all (a native probe that crashed, a bad option):
            # the cell fails with that one line and a re-run tries it again
            raise
        except Exception as exc:  # keep the cell's records complete even when prediction crashes
            records = error_records(split.test, f"{type(exc).__name__}: {exc}")
        predict_time = time.perf_counter() - start
    if len(records) != len(split.test):
        raise RuntimeError(f"{entry.id} returned {len(records)} records for {len(split.test)} test examples")
    stopped = classifier.stopped_  # an LLM server that stopped answering
    cell_dir.mkdir(parents=True, exist_ok=True)
    write_records(cell_dir / PREDICTIONS_FILE, records)
    save_error = None
    if save_model:
        try:
            classifier.save(cell_dir / MODEL_DIR)
        except Exception as exc:  # noqa: BLE001 - the cell's records stand; only the kept model is lost
            save_error = f"{type(exc).__name__}: {exc}"
    return {
        "train_time_s": train_time,
        "train_examples_per_s": len(split.train) / train_time if train_time > 0 else None,
        "predict_time_s": predict_time,
        "predict_examples_per_s": len(split.test) / predict_time if predict_time > 0 else None,
        "n_train": len(split.train),
        "n_dev": len(split.dev),
        "n_test": len(split.test),
        "tokens_in": sum(r.tokens_in for r in records),
        "tokens_out": sum(r.tokens_out for r in records),
        "cost": sum(r.cost for r in records),
        "cost_per_1000": 1000 * sum(r.cost for r in records) / max(1, len(records)),
        "mean_latency_s": sum(r.latency_s for r in records) / max(1, len(records)),
        "stopped": stopped,
        "save_error": save_error,
        **energy_fields(train_meter, predict_meter),
    }


def energy_fields(train_meter: EnergyMeter, predict_meter: EnergyMeter) -> dict:
    train, predict = train_meter.reading, predict_meter.reading
    reading = predict or train
    return {
        "train_energy_kwh": train.energy_kwh if train else None,
        "train_co2_kg": train.co2_kg if train else None,
        "predict_energy_kwh": predict.energy_kwh if predict else None,
        "predict_co2_kg": predict.co2_kg if predict else None,
        "energy_method": reading.method if reading else None,
        "energy_country": reading.country if reading else None,
        "energy_error": predict_meter.error or train_meter.error,
    }


def score_cell(cell_dir: Path, split: Split, experiment: Experiment, seed: int) -> dict:
    """The metrics of one cell, from its prediction records, by the split's task; the task type is
    kept in the dict (``metrics.json``) so a report rebuilds from the run folder alone."""
    records = read_records(cell_dir / PREDICTIONS_FILE)
    metrics = compute_metrics(
        records,
        split.schema.names,
        task_type=split.task_type,
        n_bootstrap=experiment.bootstrap,
        seed=seed,
        slice_keys=[key for key in experiment.slice_by if any(key in r.metadata for r in records)],
    )
    metrics[TASK_TYPE_KEY] = split.task_type
    name = split.stats.get("official_metric")
    if name:
        metrics["official_metric"] = {"name": name, "value": official_metric(metrics, name)}
    return metrics


def split_info(split: Split) -> dict[str, Any]:
    """What ``<dataset>/split.json`` holds: the schema, the split statistics and, for a task other
    than classification (the default when absent), its task type."""
    info: dict[str, Any] = {"schema": split.schema.to_dict(), "stats": split.stats}
    if split.task_type != DEFAULT_TASK_TYPE:
        info[TASK_TYPE_KEY] = split.task_type
    return info


def check_places(experiment: Experiment, data_root: str | None, output_dir: str | None) -> None:
    """What an experiment file names stays in its place (docs/security.md, "Configs and paths"):
    its ``data_root`` under its own folder or a data root the user chose ($SOCIALENS_DATA_ROOT, the
    default ../shared/datasets); its ``output_dir`` under the current folder or its own folder;
    each dataset YAML it names (``builtin:<name>`` or a .yaml/.yml file) under the current folder,
    its own folder or the data root; a model's ``cache_path`` under the current folder, its own
    folder or the socialens cache folder. ``--data-root`` and ``--output-dir`` (the caller's
    ``data_root`` / ``output_dir``) are the user's say and lift the first two checks."""
    from socialens.data.datasets import resolve_data_root, user_data_roots

    source = experiment.source or "experiment"
    own = ("the experiment's folder", experiment.source.parent if experiment.source else None)
    here = ("the current folder", Path.cwd())
    if data_root is None and experiment.data_root is not None:
        confine(
            experiment.data_root,
            [own, *user_data_roots()],
            source=source,
            field="data_root",
            value=experiment.data_root,
            opt_in="pass --data-root to read data from another folder",
        )
    if output_dir is None:
        confine(
            experiment.output_dir,
            [here, own],
            source=source,
            field="output_dir",
            value=experiment.output_dir,
            opt_in="pass --output-dir to write the run elsewhere",
        )
    for index, entry in enumerate(experiment.models):
        cache_path = entry.params.get("cache_path")
        if cache_path is not None:  # a file bench writes: an LLM response cache
            confine(
                str(cache_path),  # opened as given, relative to the current folder
                [here, own, ("the socialens cache folder", cache_dir())],
                source=source,
                field=f"models[{index}].cache_path",
                value=cache_path,
                opt_in="keep the response cache under the experiment's folder or the cache folder",
            )
    root = ("the data root", resolve_data_root(data_root or experiment.data_root))
    for index, entry in enumerate(experiment.datasets):
        if entry.config.startswith("builtin:"):
            continue
        field_name = f"datasets[{index}].config"
        if not entry.config.endswith((".yaml", ".yml")):
            raise ConfigError(
                f"{source}: field '{field_name}' = {entry.config!r}: expected builtin:<name> or a "
                "dataset .yaml/.yml file"
            )
        confine(
            entry.config,
            [here, own, root],
            source=source,
            field=field_name,
            value=entry.config,
            opt_in="copy the dataset YAML into one of them, or pass --data-root",
        )


def inside_run_dir(run_dir: Path, path: Path) -> Path:
    """``path`` when it resolves inside ``run_dir`` (names are safe names, so only a symlink planted
    in the run folder can lead elsewhere); else a ConfigError: bench writes only under its run."""
    if not is_inside(path, run_dir):
        raise ConfigError(f"{path}: resolves outside the run directory {run_dir}; refusing to write there")
    return path


def run_bench(
    experiment: Experiment,
    *,
    force: bool = False,
    data_root: str | None = None,
    output_dir: str | None = None,
    console: Console | None = None,
    save_models: bool | str | None = None,
    no_cache: bool = False,
) -> BenchResult:
    """Run the grid; ``save_models`` (none | best | all; True: all, False: none) overrides the
    experiment's ``save_models``."""
    console = console or Console()
    keep = save_models_mode(experiment, save_models)
    check_places(experiment, data_root, output_dir)
    data_root = data_root or experiment.data_root
    layout = RunLayout.of(output_dir or experiment.output_dir, experiment.name)
    run_dir = layout.root
    run_dir.mkdir(parents=True, exist_ok=True)
    layout.experiment_file.write_text(
        yaml.safe_dump(experiment.model_dump(mode="json"), sort_keys=False), encoding="utf-8"
    )
    params = {
        entry.id: validate_model_params(entry, i, "experiment") for i, entry in enumerate(experiment.models)
    }
    if no_cache:  # bypass the LLM response cache for every family that has one
        params = {
            k: p.model_copy(update={"cache": False}) if "cache" in type(p).model_fields else p
            for k, p in params.items()
        }
    result = BenchResult(run_dir=run_dir)
    total = len(experiment.datasets) * len(experiment.models) * len(experiment.seeds)
    # markup=False: descriptions hold config paths and names, shown as they are (never rich markup)
    columns = (
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with progress_display(console, *columns) as progress:
        grid = progress.add_task("bench", total=total, label="bench", unit="cells")
        for dataset_entry in experiment.datasets:
            progress.update(grid, description=f"loading {dataset_entry.config}")
            try:
                split = load_split(dataset_entry, data_root)
            except SocialensError as exc:  # a dataset that cannot load fails its cells, not the grid
                console.print(Text.assemble(("dataset failed", "red"), f" {dataset_entry.config}: {exc}"))
                for entry in experiment.models:
                    for seed in experiment.seeds:
                        result.cells.append(
                            CellResult(dataset_entry.config, entry.id, seed, "failed", error=str(exc))
                        )
                        progress.advance(grid)
                continue
            dataset_dir = inside_run_dir(run_dir, layout.dataset_dir(split.name))
            dataset_dir.mkdir(parents=True, exist_ok=True)
            layout.split_file(split.name).write_text(
                json.dumps(split_info(split), indent=2, default=str), encoding="utf-8"
            )
            write_records(layout.test_file(split.name), split.test)  # texts for the report's error browser
            if "group_leakage" in split.stats:  # grouped datasets: how many groups two splits share
                console.print(Text(f"{split.name}: {describe_leakage(split.stats['group_leakage'])}"))
            split_key = split_fingerprint(split)
            for entry in experiment.models:
                per_seed = []
                coverage = check_language_coverage(  # before any training: one warning line
                    split,
                    entry,
                    params[entry.id],
                    inside_run_dir(run_dir, layout.model_dir(split.name, entry.id)),
                    console,
                )
                for seed in experiment.seeds:
                    progress.update(grid, description=f"{split.name} / {entry.id} / seed {seed}")
                    cell = _run_or_skip(
                        experiment,
                        dataset_entry,
                        split,
                        split_key,
                        entry,
                        params[entry.id],
                        seed,
                        inside_run_dir(run_dir, layout.cell(split.name, entry.id, seed).dir),
                        force,
                        keep != "none",
                        console,
                        StageProgress(progress),
                    )
                    result.cells.append(cell)
                    if cell.metrics is not None:
                        per_seed.append(cell.metrics)
                    progress.advance(grid)
                row = summarise(split, entry, per_seed, dataset_entry)
                row["language_coverage"] = coverage
                result.summary.append(row)
    # over this experiment's models: a run folder may still hold cells of models since removed
    result.recommendations = recommend_run(
        run_dir,
        only_models=[entry.id for entry in experiment.models],
        only_datasets=list(dict.fromkeys(row["dataset"] for row in result.summary)),
    )
    for dataset, rec in result.recommendations.items():
        rec["model_kept"] = keep_models(layout, dataset, rec, keep)
        rec["save_models"] = keep
    write_summary(layout, result.summary, result.cells, result.recommendations)
    return result


def save_models_mode(experiment: Experiment, override: bool | str | None) -> str:
    """The ``save_models`` mode of a run: the caller's (``--save-models``) else the experiment's."""
    if override is None:
        return experiment.save_models
    if isinstance(override, bool):
        return "all" if override else "none"
    if override not in ("none", "best", "all"):
        raise ConfigError(f"--save-models {override}: expected none, best or all")
    return override


def check_language_coverage(split: Split, entry: ModelEntry, params, model_dir: Path, console: Console):
    """Whether the model's tokenizer covers the language of the training texts (classifiers.coverage;
    None for a family without a tokenizer to ask): one warning line when it does not, and
    ``<dataset>/<model>/tokenizer_coverage.json`` for the report."""
    from socialens.classifiers.coverage import coverage_warning, language_coverage

    coverage = language_coverage(get_family(entry.family), params, split.train)
    path = model_dir / COVERAGE_FILE
    if coverage is None:
        path.unlink(missing_ok=True)
        return None
    model_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(coverage, indent=2), encoding="utf-8")
    if not coverage["covered"]:
        console.print(Text(coverage_warning(split.name, entry.id, coverage)), highlight=False, soft_wrap=True)
    return coverage


def error_record_count(predictions: Path) -> int | None:
    """How many records of a cell's predictions are ``error`` (a failed call, a crashed predict);
    None when the file is missing or unreadable. A cell counts as finished only at 0."""
    try:
        return sum(record.status is Status.ERROR for record in read_records(predictions))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _run_or_skip(
    experiment,
    dataset_entry,
    split,
    split_key,
    entry,
    params,
    seed,
    cell_dir,
    force,
    save_models,
    console,
    cell_progress=None,
):
    key = fingerprint(dataset_entry.model_dump(), entry.model_dump(), seed, split_key)
    metrics_path = cell_dir / METRICS_FILE
    if metrics_path.is_file() and not force:
        stored = json.loads(metrics_path.read_text(encoding="utf-8"))
        if stored.get("cell_fingerprint") == key:
            errors = error_record_count(cell_dir / PREDICTIONS_FILE)
            if errors == 0:
                console.print(f"skipped (finished): {split.name} / {entry.id} / seed {seed}", highlight=False)
                return CellResult(split.name, entry.id, seed, "skipped", metrics=stored)
            # Not finished: run it again. Answers that succeeded come back from the LLM response
            # cache (failed calls are never cached), so only the failed prompts are sent again.
            again = "its predictions are unreadable" if errors is None else f"{errors} error records"
            console.print(
                f"re-running {split.name} / {entry.id} / seed {seed}: {again} from the last run",
                highlight=False,
            )

    def estimate(found) -> None:
        console.print(
            Text(f"llm cell {split.name} / {entry.id} / seed {seed}: {found.describe()}"), soft_wrap=True
        )

    try:
        try:
            costs = run_cell(
                split, entry, params, seed, cell_dir, save_models, cell_progress, experiment.energy, estimate
            )
        finally:
            if cell_progress is not None:
                cell_progress.close()
        metrics = score_cell(cell_dir, split, experiment, seed)
        if costs["save_error"]:
            console.print(
                Text(f"model not saved: {split.name} / {entry.id} / seed {seed}: {costs['save_error']}"),
                soft_wrap=True,
            )
        if costs["stopped"]:
            console.print(
                Text.assemble(
                    ("cell stopped", "red"), f" {split.name} / {entry.id} / seed {seed}: {costs['stopped']}"
                ),
                soft_wrap=True,
            )
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        cell_dir.mkdir(parents=True, exist_ok=True)
        (cell_dir / ERROR_FILE).write_text(traceback.format_exc(), encoding="utf-8")
        console.print(
            Text.assemble(
                ("cell failed", "red"),
                f" {split.name} / {entry.id} / seed {seed}: {message} (traceback in {cell_dir / ERROR_FILE})",
            )
        )
        return CellResult(split.name, entry.id, seed, "failed", error=message)
    metrics.update(
        {
            "cell_fingerprint": key,
            "dataset": split.name,
            "model": entry.id,
            "family": entry.family,
            "seed": seed,
            "costs": costs,
        }
    )
    metrics_path.write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    (cell_dir / ERROR_FILE).unlink(missing_ok=True)
    return CellResult(split.name, entry.id, seed, "done", metrics=metrics)


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def summarise(split: Split, entry: ModelEntry, per_seed: list[dict], dataset_entry) -> dict[str, Any]:
    """One summary row (``evaluation.tables``: what a row holds) of a model on a dataset."""
    row: dict[str, Any] = {
        "dataset": split.name,
        "model": entry.id,
        "family": entry.family,
        "labels": split.schema.names,
        TASK_TYPE_KEY: split.task_type,
        "n_seeds": len(per_seed),
    }
    if not per_seed:
        row["status"] = "failed"
        return row
    row["status"] = "ok"
    row["aggregate"] = aggregate_seeds(per_seed)
    row["ci"] = seed_cis(per_seed)  # none with bootstrap: 0
    row["train_time_s"] = _mean([m["costs"]["train_time_s"] for m in per_seed])
    row["predict_examples_per_s"] = _mean([m["costs"]["predict_examples_per_s"] for m in per_seed])
    row["n_test"] = per_seed[0]["n"]
    name = split.stats.get("official_metric")
    if name:
        row["official_metric"] = {"name": name, "value": official_metric(row["aggregate"], name)}
    return row


def _rate(per_second: float) -> str:
    return f"{per_second:,.0f}" if per_second >= 10 else f"{per_second:.2f}"


def summary_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Rows of one task in the papers' style: one per model, the task's headline metric mean ± std
    and CI, its other table metrics, per-class F1 columns (``evaluation.tables.score_columns``),
    then the non-ok rate, speed and flags."""
    scores, per_class = score_columns(rows)
    columns = [*scores, *per_class]
    header = [
        "dataset",
        "model",
        *[column.title for column in columns],
        "non-ok rate",
        "train s",
        "predict ex/s",
        "flags",
    ]
    body = []
    for row in rows:
        flags = "; ".join(row_flags(row.get("aggregate"), row.get("language_coverage")))
        if row["status"] != "ok":
            body.append([row["dataset"], row["model"], "0", "failed", *["-"] * (len(header) - 5), flags])
            continue
        agg = row["aggregate"]
        cells = score_cells(row, columns, spread=True)
        body.append(
            [
                row["dataset"],
                row["model"],
                *[cells[column.key]["text"] for column in columns],
                f"{1 - agg['status_rates']['ok']['mean']:.1%}",
                f"{row['train_time_s']:.1f}",
                _rate(row["predict_examples_per_s"]) if row["predict_examples_per_s"] else "-",
                flags,
            ]
        )
    return header, body


def write_summary(
    layout: RunLayout | Path,
    rows: list[dict[str, Any]],
    cells: list[CellResult],
    recommendations: dict[str, dict[str, Any]] | None = None,
) -> None:
    """``summary.md`` (the recommendation per dataset, one table per task, the failed cells below)
    and ``summary.json``."""
    layout = layout if isinstance(layout, RunLayout) else RunLayout(layout)
    recommendations = recommendations or {}
    lines: list[str] = []
    for rec in recommendations.values():
        first, *rest = recommendation_lines(rec)
        lines += [f"**{first}**", "", *(f"- {line.strip()}" for line in rest), ""]
    for index, task_rows in enumerate(split_by_task(rows) or [[]]):
        header, body = summary_table(task_rows)
        if index:
            lines.append("")
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cells_) + " |" for cells_ in body]
    failed = [c for c in cells if c.status == "failed"]
    if failed:
        lines += ["", "Failed cells:"] + [
            f"- {c.dataset} / {c.model} / seed {c.seed}: {c.error}" for c in failed
        ]
    layout.summary_md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    layout.summary_json.write_text(
        json.dumps(
            {
                RECOMMENDATIONS_KEY: recommendations,
                "rows": rows,
                "cells": [c.__dict__ | {"metrics": None} for c in cells],
            },
            indent=2,
            default=str,
        ),
        encoding="utf-8",
    )


def print_recommendations(recommendations: dict[str, dict[str, Any]], console: Console) -> None:
    """The recommendation sentence of each dataset, its paired differences and weakest classes."""
    for rec in recommendations.values():
        for line in recommendation_lines(rec):
            console.print(Text(line), highlight=False, soft_wrap=True)
        if rec.get("model_kept"):
            line = f"  kept: {rec['model_dir']} (with MODEL_CARD.md)"
        elif rec.get("save_models", "none") != "none":
            line = (
                f"  not kept: {rec['model_dir']} has no saved model (its cell finished in an earlier run "
                "that kept no model, or saving it failed); run bench again with --force to retrain and keep it"
            )
        else:
            continue
        console.print(Text(line), highlight=False, soft_wrap=True)


def print_summary(rows: list[dict[str, Any]], console: Console) -> None:
    """One table per dataset, with that dataset's own label columns, split in parts that fit the
    console (``tables.print_fitted``: model names are never cut); piped output gets a wide page
    instead of rich's 80-column default."""
    if not console.is_terminal:
        console = Console(file=console.file, width=200, quiet=console.quiet, markup=False, emoji=False)
    for dataset in dict.fromkeys(row["dataset"] for row in rows):
        ds_rows = [row for row in rows if row["dataset"] == dataset]
        header, body = summary_table(ds_rows)
        spread = any(row.get("n_seeds", 0) > 1 for row in ds_rows)
        title = f"{dataset}: test-set scores" + (", mean ± std over seeds" if spread else "")
        cells = [row_cells[1:] for row_cells in body]
        print_fitted(console, title, header[1:], cells, later=lambda name: name.startswith("F1 "))
