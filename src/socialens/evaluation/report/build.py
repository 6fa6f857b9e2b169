"""Build report.html / report.md / report.json from the files ``bench`` wrote, and nothing else.

Inputs per run dir: ``experiment.yaml``, ``<dataset>/split.json``, ``<dataset>/test.jsonl`` (texts
for the error browser; optional) and ``<dataset>/<model>/seed-<k>/{predictions.jsonl,metrics.json}``
(``metrics.json`` only for its ``costs`` block and family). Metrics are always recomputed from
``predictions.jsonl`` with ``compute_metrics``, so a report can be rebuilt, re-sliced or re-scored
without re-running any model. Several run dirs are merged into one leaderboard per dataset (rows
keyed ``run/dataset/model``).
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

from socialens.classifiers.coverage import COVERAGE_FILE
from socialens.core.errors import DataError
from socialens.core.types import PredictionRecord
from socialens.core.yaml_io import load_yaml_text
from socialens.evaluation.costs import DEFAULT_HARDWARE_PRICE_PER_HOUR, aggregate_costs, cell_costs
from socialens.evaluation.metrics import (
    NON_OK_COLUMNS,
    _slice_value,
    aggregate_seeds,
    compute_metrics,
    encode,
    f1_from_counts,
    official_metric,
)
from socialens.evaluation.report import plots
from socialens.evaluation.report.tables import (
    error_browser,
    fmt,
    leaderboard,
    mark_pareto,
    slice_tables,
)

PACKAGES = ["socialens", "torch", "transformers", "scikit-learn", "llama-cpp-python", "numpy", "matplotlib"]
DEFAULT_SLICE_KEYS = ["topic", "language"]
TEMPLATE_DIR = Path(__file__).parent / "templates"


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
    datasets: dict[str, Any] = {}
    for name in dict.fromkeys(row["dataset"] for row in rows):
        ds_rows = [row for row in rows if row["dataset"] == name]
        mark_pareto(ds_rows)
        datasets[name] = {
            "table": leaderboard(ds_rows),
            "slices": slice_tables(ds_rows),
            "error_browser": [b for b in browsers if b["dataset"] == name],
        }
    report = {
        "generated_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "hardware_price_per_hour": hardware_price_per_hour,
        "energy_note": energy_note(rows),
        "runs": runs,
        "environment": environment(),
        "datasets": datasets,
        "rows": [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "json": out_dir / "report.json",
        "md": out_dir / "report.md",
        "html": out_dir / "report.html",
    }
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


def _seed_of(cell_dir: Path) -> int:
    try:
        return int(cell_dir.name.split("-", 1)[1])
    except (IndexError, ValueError):
        return 0


def _load_run(
    run_dir: Path, price: float, n_bootstrap: int | None, max_examples: int
) -> tuple[dict, list[dict], list[dict]]:
    if not run_dir.is_dir():
        what = "is not a folder" if run_dir.exists() else "does not exist"
        raise FileNotFoundError(f"run dir {run_dir} {what}; expected a run folder written by bench")
    config_path = run_dir / "experiment.yaml"
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
    rows, browsers = [], []
    for dataset_dir in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        split_path = dataset_dir / "split.json"
        split = json.loads(split_path.read_text(encoding="utf-8")) if split_path.is_file() else {}
        texts = _read_texts(dataset_dir / "test.jsonl")
        model_dirs = [
            p for p in dataset_dir.iterdir() if p.is_dir() and any(p.glob("seed-*/predictions.jsonl"))
        ]
        if not model_dirs:
            continue
        rank = {name: i for i, name in enumerate(model_order)}
        model_dirs.sort(key=lambda p: (rank.get(p.name, len(rank)), p.name))
        labels = [label["name"] for label in split.get("schema", {}).get("labels", [])]
        cells_by_model = {}
        for model_dir in model_dirs:
            cells = []
            for cell_dir in sorted(model_dir.glob("seed-*"), key=_seed_of):
                if not (cell_dir / "predictions.jsonl").is_file():
                    continue
                stored_path = cell_dir / "metrics.json"
                stored = json.loads(stored_path.read_text(encoding="utf-8")) if stored_path.is_file() else {}
                cells.append((_seed_of(cell_dir), _read_cell_records(cell_dir / "predictions.jsonl"), stored))
            cells_by_model[model_dir.name] = cells
            if not labels:
                labels = next((c[2]["labels"] for c in cells if "labels" in c[2]), [])
        if not labels:
            labels = sorted(
                {r.gold for cells in cells_by_model.values() for c in cells for r in c[1] if r.gold}
            )
        run["datasets"][dataset_dir.name] = {
            "labels": labels,
            "stats": split.get("stats", {}),
            "split_json_sha256": _sha256(split_path),
            "test_jsonl_sha256": _sha256(dataset_dir / "test.jsonl"),
        }
        for model, cells in cells_by_model.items():
            coverage_path = dataset_dir / model / COVERAGE_FILE  # bench's tokenizer check, if any
            coverage = (
                json.loads(coverage_path.read_text(encoding="utf-8")) if coverage_path.is_file() else None
            )
            rows.append(
                _model_row(
                    run_name,
                    dataset_dir.name,
                    model,
                    labels,
                    cells,
                    bootstrap,
                    wanted_slices,
                    price,
                    official=split.get("stats", {}).get("official_metric"),
                )
                | {"language_coverage": coverage}
            )
        browsers.append(
            error_browser(run_name, dataset_dir.name, labels, cells_by_model, texts, max_examples)
        )
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
    run, dataset, model, labels, cells, bootstrap, wanted_slices, price, official: str | None = None
) -> dict[str, Any]:
    per_seed, costs, slice_blocks = [], [], defaultdict(lambda: defaultdict(list))
    family = None
    for seed, records, stored in cells:
        per_seed.append(compute_metrics(records, labels, n_bootstrap=bootstrap, seed=seed))
        costs.append(cell_costs(records, stored.get("costs"), hardware_price_per_hour=price))
        family = family or stored.get("family")
        keys = [k for k in wanted_slices if any(k in r.metadata for r in records)]
        for key, blocks in slice_metrics([r for r in records if r.gold is not None], labels, keys).items():
            for value, block in blocks.items():
                slice_blocks[key][value].append(block)
    agg = aggregate_seeds(per_seed)
    ci = [m["ci"]["macro_f1"] for m in per_seed if m["ci"]["macro_f1"] is not None]
    confusion = np.sum([m["confusion"]["matrix"] for m in per_seed], axis=0)
    slices = {
        key: {
            value: {name: _mean([b[name] for b in blocks]) for name in blocks[0]} | {"n": blocks[0]["n"]}
            for value, blocks in sorted(values.items())
        }
        for key, values in sorted(slice_blocks.items())
    }
    return {
        "key": f"{run}/{dataset}/{model}",
        "run": run,
        "dataset": dataset,
        "model": model,
        "family": family,
        "labels": labels,
        "seeds": [seed for seed, _, _ in cells],
        "n": per_seed[0]["n"],
        "aggregate": agg,
        "macro_f1_ci": [float(np.mean([c[0] for c in ci])), float(np.mean([c[1] for c in ci]))]
        if ci
        else None,
        "costs": aggregate_costs(costs),
        "confusion": {
            "rows": labels,
            "columns": per_seed[0]["confusion"]["columns"],
            "matrix": confusion.astype(int).tolist(),
        },
        "slices": slices,
        "per_seed": [
            {k: m[k] for k in ("n", "accuracy", "macro_f1", "per_class", "status", "ci")} for m in per_seed
        ],
        "official_metric": _official(official, per_seed),
    }


def slice_metrics(records, labels, keys) -> dict[str, dict[str, dict[str, float]]]:
    """Headline metrics per metadata value (key -> value -> n, macro_f1, accuracy, non-ok rates),
    from confusion counts with ``metrics.f1_from_counts`` (the same formulas as compute_metrics,
    without its per-slice bootstrap and scikit-learn calls, which dominate a report's build time)."""
    if not records or not keys:
        return {}
    k = len(labels)
    columns = k + len(NON_OK_COLUMNS)
    gold, pred = encode(records, labels)
    codes = gold * columns + pred
    out: dict[str, dict[str, dict[str, float]]] = {}
    for key in keys:
        values = np.array([_slice_value(r.metadata.get(key)) for r in records], dtype=object)
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


def _mean(values) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


# ---------------------------------------------------------------- rendering


def _figures(datasets: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, list[dict[str, str]]]:
    figures: dict[str, list[dict[str, str]]] = {}
    for name, dataset in datasets.items():
        ds_rows = [row for row in rows if row["dataset"] == name]
        names = [r["cells"]["model"]["text"] for r in dataset["table"]["rows"]]
        labels = dataset["table"]["labels"]
        items = [
            {
                "title": "Macro-F1 per model (95% CI)",
                "png": plots.macro_f1_bars(
                    names,
                    [r["aggregate"]["macro_f1"]["mean"] for r in ds_rows],
                    [r["macro_f1_ci"] for r in ds_rows],
                ),
            },
            {
                "title": "F1 per class",
                "png": plots.per_class_heatmap(
                    names,
                    labels,
                    np.array(
                        [
                            [
                                r["aggregate"]["per_class_f1"].get(lab, {}).get("mean")
                                if r["aggregate"]["per_class_f1"].get(lab, {}).get("mean") is not None
                                else np.nan
                                for lab in labels
                            ]
                            for r in ds_rows
                        ],
                        dtype=float,
                    ),
                ),
            },
        ]
        by_labels: dict[tuple, list] = defaultdict(list)  # confusion grids need the same label set
        for display, row in zip(names, ds_rows, strict=True):
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
        priced = [(d, r) for d, r in zip(names, ds_rows, strict=True) if r.get("pareto") is not None]
        if priced:
            items.append(
                {
                    "title": "Cost per 1,000 classifications vs macro-F1 (Pareto front)",
                    "png": plots.cost_scatter(
                        [d for d, _ in priced],
                        [r["costs"]["cost_per_1000"] for _, r in priced],
                        [r["aggregate"]["macro_f1"]["mean"] for _, r in priced],
                        [bool(r["pareto"]) for _, r in priced],
                        currency=priced[0][1]["costs"]["currency"],
                    ),
                }
            )
        figures[name] = items
    return figures


def render_html(report: dict[str, Any], figures: dict[str, list[dict[str, str]]]) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=jinja2.select_autoescape(["html", "jinja"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html.jinja").render(report=report, figures=figures)


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


def _md_escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md_escape(h) for h in header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in body]


def render_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# socialens report",
        "",
        f"Generated {report['generated_at']}. Best value per column in **bold** (none where every model "
        "has the same value).",
    ]
    lines += [
        f"Cost per 1k: API models from their records' costs, local models at "
        f"{report['hardware_price_per_hour']} USD/hour of hardware. Figures are in report.html.",
        report["energy_note"],
        "",
    ]
    for name, dataset in report["datasets"].items():
        table = dataset["table"]
        lines += [f"## {name}", ""]
        body = [
            [
                f"**{c['text']}**" if c["best"] else c["text"]
                for c in (r["cells"][col["key"]] for col in table["columns"])
            ]
            for r in table["rows"]
        ]
        lines += _md_table([c["title"] for c in table["columns"]], body) + [""]
        for key, items in dataset["slices"].items():
            lines += [f"### By {key}", ""]
            lines += _md_table(
                [key, "model", "n", "macro-F1", "accuracy", *NON_OK_COLUMNS],
                [
                    [
                        i["value"],
                        i["model"],
                        str(i["n"]),
                        fmt(i["macro_f1"]),
                        fmt(i["accuracy"]),
                        *[fmt(i[f"{s}_rate"]) for s in NON_OK_COLUMNS],
                    ]
                    for i in items
                ],
            ) + [""]
        for browser in dataset["error_browser"]:
            lines += [f"### Worst-confused examples ({browser['run']})", ""]
            if browser["left_out"]:
                lines += [
                    "Left out (collapsed: they get every text of the other classes wrong alike): "
                    + "; ".join(item["text"] for item in browser["left_out"])
                    + ".",
                    "",
                ]
            for cls in browser["classes"]:
                lines += [
                    f"#### gold = {cls['label']} ({cls['n_wrong_examples']} examples wrong at least once)",
                    "",
                ]
                for ex in cls["examples"]:
                    preds = "; ".join(
                        f"{m}: {p['predicted'] if p['status'] == 'ok' else p['status']}"
                        for m, p in ex["predictions"].items()
                    )
                    text = _md_escape(ex["text"])[:300] if ex["text"] is not None else "(text not available)"
                    lines.append(f"- `{ex['id']}` wrong {ex['wrong']}/{ex['total']}: {preds}. {text}")
                lines.append("")
    lines += ["## Reproduce", ""]
    env = report["environment"]
    lines.append(
        f"Python {env['python']} on {env['platform']}; "
        + ", ".join(f"{k} {v or 'not installed'}" for k, v in env["packages"].items())
    )
    for run in report["runs"]:
        lines += [
            "",
            f"### Run {run['name']} ({run['path']})",
            "",
            f"git commit: {run['git_commit'] or 'unknown'}",
            "",
        ]
        for ds, info in run["datasets"].items():
            lines.append(
                f"- {ds}: test.jsonl sha256 {info['test_jsonl_sha256'] or '-'}, split.json sha256 "
                f"{info['split_json_sha256'] or '-'}"
            )
        lines += ["", "```yaml", run["experiment_yaml"].rstrip(), "```"]
    return "\n".join(lines) + "\n"
