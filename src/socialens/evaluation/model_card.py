"""``MODEL_CARD.md``: what bench writes into the model directory it keeps (the recommended model of
a dataset): what it was trained on, its test metrics with their 95% CIs, F1 per class, the
runner-up and the cost, all from the run's files (the cell's ``metrics.json`` is computed from its
prediction records)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from socialens.classifiers.base import MODEL_INFO_FILE
from socialens.core.layout import RunLayout
from socialens.core.paths import is_inside
from socialens.core.yaml_io import load_yaml_text
from socialens.evaluation.recommendation import comparison_lines, read_json, weakest_line
from socialens.evaluation.tables import metric_title, table_metrics, task_of

MODEL_CARD_FILE = "MODEL_CARD.md"


def _num(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "n/a"


def _interval(ci: Any) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if isinstance(ci, list | tuple) and len(ci) == 2 else "n/a"


def _money(model: dict[str, Any]) -> str:
    cost = model.get("cost_per_1000")
    return "n/a" if cost is None else f"{cost:.2g} {model.get('currency') or 'USD'}"


def _plain(text: Any) -> str:
    """A name or value from the run's files as Markdown table text (no cell breaks, no HTML)."""
    return str(text).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


def model_card(
    rec: dict[str, Any],
    split_info: dict[str, Any],
    cell_metrics: dict[str, Any],
    entry: dict[str, Any],
) -> str:
    """The card of the recommended model of ``rec`` (a ``recommendation.recommend`` dict), from its
    dataset's ``split.json`` content, its kept cell's ``metrics.json`` and its experiment entry."""
    task = task_of(split_info.get("task_type"))
    model = next(m for m in rec["models"] if m["model"] == rec["recommended"])
    stats = split_info.get("stats", {})
    sizes = stats.get("rows_after", {})
    seed = rec["kept_seed"]
    lines = [
        f"# Model card: {_plain(model['model'])} on {_plain(rec['dataset'])}",
        "",
        rec["sentence"],
        "",
        "## Training",
        "",
        f"- dataset: `{_plain(rec['dataset'])}` (task: {task.name})",
        "- split sizes: "
        + ", ".join(f"{part} {sizes[part]:,}" for part in ("train", "dev", "test") if part in sizes)
        + (
            f" (test sampled from {stats['test_before_sample']:,})" if stats.get("test_before_sample") else ""
        ),
        f"- family: {_plain(model['family'])}; seed {seed} (this directory), seeds run: "
        + ", ".join(str(s) for s in model["seeds"]),
        "- configuration (the experiment's entry):",
        "",
        "```yaml",
        yaml.safe_dump(entry, sort_keys=False, allow_unicode=True).rstrip(),
        "```",
        "",
        f"## Test metrics (seed {seed}, 95% bootstrap CIs over test examples)",
        "",
        "| metric | value | 95% CI |",
        "|---|---|---|",
    ]
    ci = cell_metrics.get("ci") or {}
    for name in table_metrics(task):
        lines.append(
            f"| {metric_title(name, task)} | {_num(cell_metrics.get(name))} | {_interval(ci.get(name))} |"
        )
    official = cell_metrics.get("official_metric")
    if official:
        lines.append(f"| official: {_plain(official['name'])} | {_num(official.get('value'))} | |")
    per_class = cell_metrics.get("per_class") or {}
    if per_class:
        class_ci = ci.get("per_class_f1") or {}
        lines += ["", "## F1 per class", "", "| class | F1 | 95% CI | support |", "|---|---|---|---|"]
        for label, scores in per_class.items():
            lines.append(
                f"| {_plain(label)} | {_num(scores.get('f1'))} | {_interval(class_ci.get(label))} | "
                f"{scores.get('support', '')} |"
            )
    others = sorted(
        (m for m in rec["models"] if m["model"] != model["model"]),
        key=lambda m: -m["value"] if rec["better"] == "max" else m["value"],
    )
    lines += ["", "## Compared with", ""]
    if others:
        runner = others[0]
        role = (
            "best model (this one is as good within the CI, and cheaper)"
            if runner["model"] == rec["best"]
            else "runner-up"
        )
        lines.append(
            f"- {role}: {_plain(runner['model'])} ({rec['metric_title']} {_num(runner['value'])} vs "
            f"{_num(model['value'])} here, means over seeds; {_money(runner)} per 1k classifications)"
        )
        lines += [f"- {_plain(line)}" for line in comparison_lines(rec)]
    else:
        lines.append("- no other model had results on this dataset")
    weakest = weakest_line(rec)
    if weakest:
        lines.append(f"- {_plain(weakest)}")
    lines += ["", "## Cost", ""]
    costs = cell_metrics.get("costs") or {}
    lines += [
        f"- per 1,000 classifications: {_money(model)} "
        "(API prices, or the hardware's price per hour for the prediction time)",
        f"- mean latency: {1000 * model['latency_mean_s']:.1f} ms a text"
        if model.get("latency_mean_s") is not None
        else "- mean latency: n/a",
        f"- training time: {costs['train_time_s']:.1f} s" if costs.get("train_time_s") is not None else "",
        "",
        f"Significance: {rec['significance']}.",
        "",
    ]
    return "\n".join(lines)


def remove_model_dir(path: Path, root: Path) -> None:
    """Delete a cell's model folder; a symlink planted there is unlinked, never followed."""
    if path.is_symlink():
        path.unlink()
    elif path.is_dir() and is_inside(path, root):
        shutil.rmtree(path)


def keep_models(layout: RunLayout, dataset: str, rec: dict[str, Any], mode: str) -> bool:
    """Apply ``save_models`` to one dataset of a run: with ``best`` delete every cell's model folder
    but the recommended one's; with ``best`` or ``all`` write ``MODEL_CARD.md`` into the
    recommended model's folder (and remove a stale card elsewhere). True when that folder holds a
    saved model (a cell skipped on a re-run keeps what an earlier run saved, or nothing)."""
    kept = layout.root / rec["model_dir"]
    for model in layout.models(dataset):
        for cell in layout.cells(dataset, model):
            if cell.model == kept:
                continue
            if mode == "best":
                remove_model_dir(cell.model, layout.root)
            elif cell.model.is_dir() and not cell.model.is_symlink():
                (cell.model / MODEL_CARD_FILE).unlink(missing_ok=True)
    if mode == "none" or kept.is_symlink() or not (kept / MODEL_INFO_FILE).is_file():
        return False
    if not is_inside(kept, layout.root):
        return False
    experiment = load_yaml_text(layout.experiment_file.read_text(encoding="utf-8")) or {}
    entry = next(
        (
            m
            for m in experiment.get("models", [])
            if isinstance(m, dict) and m.get("id") == rec["recommended"]
        ),
        {},
    )
    cell = layout.cell(dataset, rec["recommended"], rec["kept_seed"])
    card = model_card(rec, read_json(layout.split_file(dataset)), read_json(cell.metrics), entry)
    (kept / MODEL_CARD_FILE).write_text(card, encoding="utf-8")
    return True
