"""Build report.html / report.md / report.json from the files ``bench`` wrote, and nothing else.

Inputs per run dir (``core.layout.RunLayout`` names them): ``experiment.yaml``,
``<dataset>/split.json`` (schema, stats, task type), ``<dataset>/test.jsonl`` (texts for the error
browser; optional) and ``<dataset>/<model>/seed-<k>/{predictions.jsonl,metrics.json}``
(``metrics.json`` for its ``costs`` block, family and task type). Metrics are always recomputed
from ``predictions.jsonl`` by the dataset's task (``compute_metrics(task_type=...)``), so a report
can be rebuilt, re-sliced or re-scored without re-running any model. Several run dirs are merged
into one leaderboard per dataset (rows keyed ``run/dataset/model``).

Every task gets the leaderboard (``evaluation.tables``: its headline metric with CI, its table
metrics, F1 per class where it has classes, status rates, costs), slices by metadata, the figures
(headline bars, the per-class heat map where it has classes, cost against the headline) and the
tables its ``report_tables`` adds; a single-label task (its metrics have a confusion matrix) also
gets the confusion grid and the worst-confused examples.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import subprocess
from collections import defaultdict
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from socialens.core.errors import DataError
from socialens.core.layout import DEFAULT_TASK_TYPE, TASK_TYPE_KEY, RunLayout
from socialens.core.types import PredictionRecord
from socialens.core.yaml_io import load_yaml_text
from socialens.evaluation.costs import DEFAULT_HARDWARE_PRICE_PER_HOUR, aggregate_costs, cell_costs
from socialens.evaluation.metrics import NON_OK_COLUMNS, aggregate_seeds, compute_metrics, official_metric
from socialens.evaluation.recommendation import comparison_lines, recommend_run, weakest_line
from socialens.evaluation.report import plots
from socialens.evaluation.report.render import render_html, render_markdown
from socialens.evaluation.report.tables import (
    error_browser,
    leaderboard,
    mark_pareto,
    slice_tables,
    task_table,
)
from socialens.evaluation.tables import metric_title, seed_cis, table_metrics, task_of
from socialens.tasks.classification_metrics import encode, f1_from_counts, slice_value

PACKAGES = ["socialens", "torch", "transformers", "scikit-learn", "llama-cpp-python", "numpy", "matplotlib"]
DEFAULT_SLICE_KEYS = ["topic", "language"]

__all__ = ["build_report", "energy_note", "environment", "git_commit", "render_html", "render_markdown"]


def build_report(
    run_dirs: list[Path] | Path,
    out_dir: Path | None = None,
    *,
    hardware_price_per_hour: float = DEFAULT_HARDWARE_PRICE_PER_HOUR,
    n_bootstrap: int | None = None,
    max_examples: int = 5,
) -> dict[str, Any]:
    """Write ``report.html``, ``report.md`` and ``report.json`` into ``out_dir`` (default: the first
    run dir) and return the report dict (the content of report.json) with ``"files"`` added.

    ``n_bootstrap`` overrides the experiment's ``bootstrap`` resample count; ``max_examples`` is
    the number of worst-confused examples per class in the error browser."""
    if isinstance(run_dirs, str | Path):
        run_dirs = [run_dirs]
    run_dirs = [Path(p) for p in run_dirs]
    if not run_dirs:
        raise ValueError("build_report needs at least one run dir")
    out_dir = Path(out_dir) if out_dir is not None else run_dirs[0]
    runs, rows, browsers = [], [], []
    for run_dir in run_dirs:
        run, run_rows, run_browsers = _load_run(run_dir, hardware_price_per_hour, n_bootstrap, max_examples)
        runs.append(run)
        rows += run_rows
        browsers += run_browsers
        if not run_rows:  # an empty or wrong folder must not give an empty report that looks fine
            raise DataError(
                f"{run_dir}: no prediction records found; expected a run folder written by bench "
                "(<dataset>/<model>/seed-<n>/predictions.jsonl)"
            )
    recommendations = [
        rec | {"run": run["name"], "lines": comparison_lines(rec), "weakest": weakest_line(rec)}
        for run_dir, run in zip(run_dirs, runs, strict=True)
        for rec in recommend_run(
            run_dir,
            n_bootstrap=n_bootstrap,
            hardware_price_per_hour=hardware_price_per_hour,
            metric_cis=False,
        ).values()
    ]
    datasets: dict[str, Any] = {}
    for name in dict.fromkeys(row["dataset"] for row in rows):
        ds_rows = [row for row in rows if row["dataset"] == name]
        mark_pareto(ds_rows)
        task = task_of(ds_rows[0])
        table = leaderboard(ds_rows)
        multi_run = len({row["run"] for row in ds_rows}) > 1
        datasets[name] = {
            TASK_TYPE_KEY: task.name,
            "headline": {"metric": task.headline_metric, "title": metric_title(task.headline_metric, task)},
            "table": table,
            "slice_columns": [{"key": m, "title": metric_title(m, task)} for m in table_metrics(task)],
            "slices": slice_tables(ds_rows),
            "task_tables": [
                task_table(f"{row['run']} / {row['model']}" if multi_run else row["model"], item)
                for row in ds_rows
                for item in row["_task_tables"]
            ],
            "error_browser": [b for b in browsers if b["dataset"] == name],
            "recommendations": [rec for rec in recommendations if rec["dataset"] == name],
        }
    report = {
        "generated_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "hardware_price_per_hour": hardware_price_per_hour,
        "energy_note": energy_note(rows),
        "recommendations": recommendations,
        "runs": runs,
        "environment": environment(),
        "datasets": datasets,
        "rows": [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    files = RunLayout.report_files(out_dir)
    files["json"].write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    files["md"].write_text(render_markdown(report), encoding="utf-8")
    files["html"].write_text(render_html(report, _figures(datasets, rows)), encoding="utf-8")
    report["files"] = {k: str(v) for k, v in files.items()}
    return report


# ---------------------------------------------------------------- reading a run


def _sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_commit(path: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment() -> dict[str, Any]:
    """Versions of the packages that produce and score predictions, in the environment that built
    the report (bench and report normally run in the same one)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = None
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": versions}


def _read_cell_records(path: Path) -> list[PredictionRecord]:
    """A cell's prediction records; a damaged line is a one-line DataError naming the file and line."""
    records = []
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                records.append(PredictionRecord.from_dict(json.loads(line.decode("utf-8"))))
            except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
                raise DataError(
                    f"{path}:{number}: unreadable prediction record ({reason}); expected the JSON lines "
                    "bench writes"
                ) from None
    return records


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _load_run(
    run_dir: Path, price: float, n_bootstrap: int | None, max_examples: int
) -> tuple[dict, list[dict], list[dict]]:
    if not run_dir.is_dir():
        what = "is not a folder" if run_dir.exists() else "does not exist"
        raise FileNotFoundError(f"run dir {run_dir} {what}; expected a run folder written by bench")
    layout = RunLayout(run_dir)
    config_path = layout.experiment_file
    config_text = config_path.read_text(encoding="utf-8") if config_path.is_file() else ""
    experiment = load_yaml_text(config_text) or {} if config_text else {}
    run_name = experiment.get("name") or run_dir.name
    bootstrap = n_bootstrap if n_bootstrap is not None else int(experiment.get("bootstrap", 1000))
    wanted_slices = list(experiment.get("slice_by") or DEFAULT_SLICE_KEYS)
    run = {
        "name": run_name,
        "path": str(run_dir),
        "experiment_yaml": config_text,
        "experiment_sha256": _sha256(config_path),
        "git_commit": git_commit(run_dir),
        "datasets": {},
    }
    model_order = [m.get("id") for m in experiment.get("models", []) if isinstance(m, dict)]
    rank = {name: i for i, name in enumerate(model_order)}
    rows, browsers = [], []
    for dataset in layout.datasets():
        models = sorted(layout.models(dataset), key=lambda name: (rank.get(name, len(rank)), name))
        if not models:
            continue
        split = _read_json(layout.split_file(dataset))
        texts = _read_texts(layout.test_file(dataset))
        labels = [label["name"] for label in split.get("schema", {}).get("labels", [])]
        cells_by_model = {
            model: [
                (cell.seed, _read_cell_records(cell.predictions), _read_json(cell.metrics))
                for cell in layout.cells(dataset, model)
            ]
            for model in models
        }
        stored = [c[2] for cells in cells_by_model.values() for c in cells]
        task_type = (
            split.get(TASK_TYPE_KEY)
            or next((m[TASK_TYPE_KEY] for m in stored if m.get(TASK_TYPE_KEY)), None)
            or DEFAULT_TASK_TYPE
        )
        task = task_of(task_type)
        if not labels:
            labels = next((m["labels"] for m in stored if "labels" in m), [])
        if not labels and task.label_prompts:  # one label per text: the gold labels seen
            labels = sorted(
                {r.gold for cells in cells_by_model.values() for c in cells for r in c[1] if r.gold}
            )
        run["datasets"][dataset] = {
            TASK_TYPE_KEY: task_type,
            "labels": labels,
            "stats": split.get("stats", {}),
            "split_json_sha256": _sha256(layout.split_file(dataset)),
            "test_jsonl_sha256": _sha256(layout.test_file(dataset)),
        }
        ds_rows = [
            _model_row(
                run_name,
                dataset,
                model,
                labels,
                cells,
                bootstrap,
                wanted_slices,
                price,
                task_type=task_type,
                official=split.get("stats", {}).get("official_metric"),
            )
            | {"language_coverage": _read_json(layout.coverage_file(dataset, model)) or None}
            for model, cells in cells_by_model.items()
        ]
        rows += ds_rows
        if all(row["confusion"] is not None for row in ds_rows):  # one label per text
            browsers.append(error_browser(run_name, dataset, labels, cells_by_model, texts, max_examples))
    return run, rows, browsers


def _official(name: str | None, per_seed: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The dataset's official metric (the one its shared task ranked by), averaged over seeds."""
    if not name:
        return None
    values = [v for v in (official_metric(m, name) for m in per_seed) if v is not None]
    return {"name": name, "value": float(np.mean(values)) if values else None}


def _read_texts(path: Path) -> dict[str, str] | None:
    if not path.is_file():
        return None
    texts = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                data = json.loads(line)
                texts[str(data["id"])] = data.get("text", "")
    return texts


def _model_row(
    run,
    dataset,
    model,
    labels,
    cells,
    bootstrap,
    wanted_slices,
    price,
    *,
    task_type: str = DEFAULT_TASK_TYPE,
    official: str | None = None,
) -> dict[str, Any]:
    task = task_of(task_type)
    names = table_metrics(task)
    per_seed, costs, slice_blocks = [], [], defaultdict(lambda: defaultdict(list))
    family = None
    for seed, records, stored in cells:
        metrics = compute_metrics(records, labels, task_type=task_type, n_bootstrap=bootstrap, seed=seed)
        per_seed.append(metrics)
        costs.append(cell_costs(records, stored.get("costs"), hardware_price_per_hour=price))
        family = family or stored.get("family")
        keys = [k for k in wanted_slices if any(k in r.metadata for r in records)]
        scored = [r for r in records if r.gold is not None]
        if "confusion" in metrics:
            found = slice_metrics(scored, labels, keys)
        else:
            found = task_slice_metrics(task, scored, labels, keys, names, seed)
        for key, blocks in found.items():
            for value, block in blocks.items():
                slice_blocks[key][value].append(block)
    agg = aggregate_seeds(per_seed)
    confusion = None
    if all("confusion" in m for m in per_seed):
        matrix = np.sum([m["confusion"]["matrix"] for m in per_seed], axis=0)
        confusion = {
            "rows": labels,
            "columns": per_seed[0]["confusion"]["columns"],
            "matrix": matrix.astype(int).tolist(),
        }
    slices = {
        key: {
            value: {name: _mean([b[name] for b in blocks]) for name in blocks[0]} | {"n": blocks[0]["n"]}
            for value, blocks in sorted(values.items())
        }
        for key, values in sorted(slice_blocks.items())
    }
    first_seed, first_records, _ = cells[0]
    return {
        "key": f"{run}/{dataset}/{model}",
        "run": run,
        "dataset": dataset,
        "model": model,
        "family": family,
        TASK_TYPE_KEY: task_type,
        "labels": labels,
        "seeds": [seed for seed, _, _ in cells],
        "n_seeds": len(cells),
        "n": per_seed[0]["n"],
        "aggregate": agg,
        "ci": seed_cis(per_seed),
        "costs": aggregate_costs(costs),
        "confusion": confusion,
        "slices": slices,
        "per_seed": [
            {k: m[k] for k in ("n", *names, "per_class", "status", "ci") if k in m} for m in per_seed
        ],
        "official_metric": _official(official, per_seed),
        # the task's own tables, for its first seed (not in report.json's rows: in its dataset)
        "_task_tables": [
            {"seed": first_seed, "table": table} for table in task.report_tables(per_seed[0], first_records)
        ],
    }


def slice_metrics(records, labels, keys) -> dict[str, dict[str, dict[str, float]]]:
    """Headline metrics per metadata value of a single-label task (key -> value -> n, macro_f1,
    accuracy, non-ok rates), from confusion counts with ``f1_from_counts`` (the same formulas as
    compute_metrics, without its per-slice bootstrap and scikit-learn calls, which dominate a
    report's build time)."""
    if not records or not keys:
        return {}
    k = len(labels)
    columns = k + len(NON_OK_COLUMNS)
    gold, pred = encode(records, labels)
    codes = gold * columns + pred
    out: dict[str, dict[str, dict[str, float]]] = {}
    for key in keys:
        values = np.array([slice_value(r.metadata.get(key)) for r in records], dtype=object)
        out[key] = {}
        for value in sorted(set(values)):
            mask = values == value
            counts = np.bincount(codes[mask], minlength=k * columns).reshape(k, columns)
            n = int(mask.sum())
            stats = f1_from_counts(counts)
            out[key][value] = {
                "n": n,
                "macro_f1": float(stats["macro_f1"]),
                "accuracy": float(stats["accuracy"]),
                **{f"{s}_rate": float(counts[:, k + j].sum() / n) for j, s in enumerate(NON_OK_COLUMNS)},
            }
    return out


def task_slice_metrics(task, records, labels, keys, names, seed) -> dict[str, dict[str, dict[str, float]]]:
    """The table metrics ``names`` and non-ok rates per metadata value, for any task: its own
    ``metrics`` on each slice's records, without a bootstrap."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for key in keys if records else []:
        groups: dict[str, list[PredictionRecord]] = defaultdict(list)
        for record in records:
            groups[slice_value(record.metadata.get(key))].append(record)
        out[key] = {}
        for value in sorted(groups):
            metrics = task.metrics(groups[value], labels, n_bootstrap=0, seed=seed)
            rates = metrics["status"]["rates"]
            out[key][value] = {
                "n": len(groups[value]),
                **{name: metrics.get(name) for name in names},
                **{f"{s}_rate": rates.get(s) for s in NON_OK_COLUMNS},
            }
    return out


def _mean(values) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


# ---------------------------------------------------------------- figures


def _figures(datasets: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, list[dict[str, str]]]:
    figures: dict[str, list[dict[str, str]]] = {}
    for name, dataset in datasets.items():
        ds_rows = [row for row in rows if row["dataset"] == name]
        names = [r["cells"]["model"]["text"] for r in dataset["table"]["rows"]]
        labels = dataset["table"]["labels"]
        headline, title = dataset["headline"]["metric"], dataset["headline"]["title"]
        means = [r["aggregate"][headline]["mean"] for r in ds_rows]
        items = [
            {
                "title": f"{title[:1].upper()}{title[1:]} per model (95% CI)",
                "png": plots.metric_bars(
                    names, means, [r["ci"].get(headline) for r in ds_rows], metric=title
                ),
            }
        ]
        if labels:
            matrix = [
                [r["aggregate"]["per_class_f1"].get(lab, {}).get("mean") for lab in labels] for r in ds_rows
            ]
            items.append(
                {
                    "title": "F1 per class",
                    "png": plots.per_class_heatmap(
                        names, labels, np.array([[np.nan if v is None else v for v in m] for m in matrix])
                    ),
                }
            )
        by_labels: dict[tuple, list] = defaultdict(list)  # confusion grids need the same label set
        for display, row in zip(names, ds_rows, strict=True):
            if row["confusion"] is not None:
                by_labels[tuple(row["labels"])].append((display, row))
        for group in by_labels.values():
            items.append(
                {
                    "title": "Confusion matrices (counts summed over seeds)",
                    "png": plots.confusion_grid(
                        [d for d, _ in group],
                        group[0][1]["confusion"]["rows"],
                        group[0][1]["confusion"]["columns"],
                        [r["confusion"]["matrix"] for _, r in group],
                    ),
                }
            )
        priced = [
            (d, r, m) for d, r, m in zip(names, ds_rows, means, strict=True) if r.get("pareto") is not None
        ]
        if priced:
            items.append(
                {
                    "title": f"Cost per 1,000 classifications vs {title} (Pareto front)",
                    "png": plots.cost_scatter(
                        [d for d, _, _ in priced],
                        [r["costs"]["cost_per_1000"] for _, r, _ in priced],
                        [m for _, _, m in priced],
                        [bool(r["pareto"]) for _, r, _ in priced],
                        currency=priced[0][1]["costs"]["currency"],
                        metric=title,
                    ),
                }
            )
        figures[name] = items
    return figures


def energy_note(rows: list[dict[str, Any]]) -> str:
    """How the energy columns were obtained, so an estimate is never read as a meter reading."""
    methods = sorted({r["costs"].get("energy_method") for r in rows} - {None})
    countries = sorted({r["costs"].get("energy_country") for r in rows} - {None})
    if not methods:
        return "Energy and CO2 were not measured for these runs."
    return (
        "Energy and CO2 of prediction per 1k classifications, measured with codecarbon (offline): "
        + " | ".join(methods)
        + f"; CO2 from the grid carbon intensity of {', '.join(countries)}."
    )
