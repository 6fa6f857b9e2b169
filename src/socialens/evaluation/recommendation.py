"""Which model to run on a dataset, computed from a run's prediction records.

The best model is the one with the best seed-mean value of the dataset's official metric (else
its task's headline metric). Every other model is compared with it on the same test examples
(``evaluation.significance``): the difference with its paired-bootstrap 95% CI and, for a
single-label task, McNemar's exact test. A lead is *significant* when the 95% CI of the difference
excludes 0 (and, when the metric is accuracy, McNemar's exact p < 0.05 too); otherwise the two
models are tied. Of the best model and those tied with it, the cheapest is recommended: lowest cost
per 1,000 classifications (``evaluation.costs``: API money, or the hardware's price for the
prediction time), then lowest mean latency. The weakest class of each model is its class with the
lowest seed-mean F1, where the task has classes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from socialens.core.layout import DEFAULT_TASK_TYPE, TASK_TYPE_KEY, RunLayout
from socialens.core.types import PredictionRecord
from socialens.core.yaml_io import load_yaml_text
from socialens.evaluation.costs import DEFAULT_HARDWARE_PRICE_PER_HOUR, aggregate_costs, cell_costs
from socialens.evaluation.metrics import aggregate_seeds, compute_metrics, official_metric
from socialens.evaluation.significance import ALPHA, PairedModel, paired_bootstrap, paired_mcnemar
from socialens.evaluation.tables import metric_better, metric_title, task_of

RECOMMENDATIONS_KEY = "recommendations"  # in summary.json
SIGNIFICANCE_RULE = (
    "a lead is significant when the paired-bootstrap 95% CI of the difference excludes 0 "
    "(for accuracy also McNemar's exact p < 0.05); not significant: the CI contains 0"
)
SEED_RULE = (
    "with several seeds, each model's value on a bootstrap resample is its mean over seeds (one resample "
    "of the test examples shared by every seed of both models); McNemar uses the first seed both have"
)


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_cell_records(path: Path) -> list[PredictionRecord] | None:
    """A cell's records, or None when its predictions cannot be read (the cell is left out)."""
    try:
        with path.open(encoding="utf-8") as handle:
            return [PredictionRecord.from_dict(json.loads(line)) for line in handle if line.strip()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def candidates(
    layout: RunLayout,
    dataset: str,
    *,
    n_bootstrap: int,
    hardware_price_per_hour: float,
    metric_cis: bool = True,
    only_models: list[str] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(dataset info, one candidate per model with readable cells) of one dataset of a run;
    ``metric_cis`` False skips each model's own bootstrap intervals (the paired test is apart);
    ``only_models`` leaves out the other model folders (those of models no longer in the
    experiment)."""
    experiment = load_yaml_text(layout.experiment_file.read_text(encoding="utf-8")) or {}
    order = [m.get("id") for m in experiment.get("models", []) if isinstance(m, dict)]
    entries = {m.get("id"): m for m in experiment.get("models", []) if isinstance(m, dict)}
    split = read_json(layout.split_file(dataset))
    labels = [label["name"] for label in split.get("schema", {}).get("labels", [])]
    models = sorted(layout.models(dataset), key=lambda m: (order.index(m) if m in order else len(order), m))
    models = [m for m in models if only_models is None or m in only_models]
    # without split.json (an old or hand-made run) the cells' metrics.json say the task and labels
    stored = [read_json(cell.metrics) for model in models for cell in layout.cells(dataset, model)]
    task_type = (
        split.get(TASK_TYPE_KEY)
        or next((m[TASK_TYPE_KEY] for m in stored if m.get(TASK_TYPE_KEY)), None)
        or DEFAULT_TASK_TYPE
    )
    labels = labels or next((m["labels"] for m in stored if isinstance(m.get("labels"), list)), [])
    found = []
    cells = {
        model: [
            (cell, read_cell_records(cell.predictions), read_json(cell.metrics))
            for cell in layout.cells(dataset, model)
        ]
        for model in models
    }
    if not labels and task_of(task_type).label_prompts:  # one label per text: the gold labels seen
        labels = sorted(
            {
                r.gold
                for found_cells in cells.values()
                for _, recs, _ in found_cells
                for r in recs or []
                if r.gold
            }
        )
    for model in models:
        seeds, per_seed, costs, family = {}, [], [], None
        for cell, records, stored in cells[model]:
            if records is None or not stored:  # unreadable, or a cell that never finished
                continue
            seeds[cell.seed] = records
            metrics = compute_metrics(
                records,
                labels,
                task_type=task_type,
                n_bootstrap=n_bootstrap if metric_cis else 0,
                seed=cell.seed,
            )
            per_seed.append(metrics)
            costs.append(
                cell_costs(records, stored.get("costs"), hardware_price_per_hour=hardware_price_per_hour)
            )
            family = family or stored.get("family")
        if seeds:
            found.append(
                {
                    "model": model,
                    "family": family,
                    "entry": entries.get(model) or {},
                    "seeds": seeds,
                    "per_seed": per_seed,
                    "aggregate": aggregate_seeds(per_seed),
                    "costs": aggregate_costs(costs),
                }
            )
    info = {"labels": labels, TASK_TYPE_KEY: task_type, "stats": split.get("stats", {})}
    return info, found


def seed_mean(per_seed: list[dict[str, Any]], name: str) -> float | None:
    values = [official_metric(m, name) for m in per_seed]
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else None


def seed_mean_ci(per_seed: list[dict[str, Any]], name: str) -> list[float] | None:
    """The mean over seeds of the metric's own bootstrap interval (scalar or per-class F1)."""
    cis = []
    for metrics in per_seed:
        ci = metrics.get("ci") or {}
        found = ci.get(name)
        if found is None and name.startswith("f1_"):
            found = (ci.get("per_class_f1") or {}).get(name[3:])
        if isinstance(found, list | tuple) and len(found) == 2 and None not in found:
            cis.append(found)
    return [sum(c[0] for c in cis) / len(cis), sum(c[1] for c in cis) / len(cis)] if cis else None


def weakest_class(aggregate: dict[str, Any]) -> dict[str, Any] | None:
    per_class = {
        label: summary["mean"]
        for label, summary in (aggregate.get("per_class_f1") or {}).items()
        if summary.get("mean") is not None
    }
    if not per_class:
        return None
    label = min(per_class, key=lambda name: (per_class[name], name))
    return {"label": label, "f1": per_class[label]}


def _cost_key(candidate: dict[str, Any]) -> tuple[float, float]:
    costs = candidate["costs"]
    cost = costs.get("cost_per_1000")
    latency = costs.get("latency_mean_s")
    return (math.inf if cost is None else cost, math.inf if latency is None else latency)


def recommend(
    dataset: str,
    info: dict[str, Any],
    found: list[dict[str, Any]],
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any] | None:
    """The recommendation for one dataset (see the module docstring); None without candidates."""
    task = task_of(info[TASK_TYPE_KEY])
    name = info["stats"].get("official_metric") or task.headline_metric
    better = metric_better(name)
    scored = [c | {"value": seed_mean(c["per_seed"], name)} for c in found]
    scored = [c for c in scored if c["value"] is not None]
    if not scored:
        return None
    sign = 1 if better == "max" else -1
    best = max(scored, key=lambda c: sign * c["value"])  # the first of equal values: config order
    paired_best = PairedModel(best["model"], best["seeds"])
    comparisons = []
    resamples: dict = {}  # the best model's resampled scores, computed once for every pair
    for other in scored:
        if other is best:
            continue
        paired_other = PairedModel(other["model"], other["seeds"])
        boot = paired_bootstrap(
            paired_best,
            paired_other,
            task_type=info[TASK_TYPE_KEY],
            metric=name,
            labels=info["labels"],
            n_bootstrap=n_bootstrap,
            seed=seed,
            cache=resamples,
        )
        test = paired_mcnemar(paired_best, paired_other) if task.target_form == "label" else None
        ci = boot["ci"]
        # None: no test example in common, nothing to compare (never counted as a tie)
        significant = None if ci is None else not ci[0] <= 0 <= ci[1]
        if significant and name == "accuracy" and test is not None:
            significant = significant and test["p_exact"] < ALPHA
        comparisons.append(
            {
                "model": other["model"],
                "best": best["model"],
                "difference": boot["difference"],  # best minus model, in the metric's units
                "ci": ci,
                "p_bootstrap": boot["p"],
                "n": boot["n"],
                "n_bootstrap": boot["n_bootstrap"],
                "mcnemar": test,
                "significant": significant,
            }
        )
    tied_names = {c["model"] for c in comparisons if c["significant"] is False}
    tied = [best] + [c for c in scored if c["model"] in tied_names]
    chosen = min(tied, key=_cost_key)  # min keeps the first of equal keys: the best model
    kept_seed = 0 if 0 in chosen["seeds"] else min(chosen["seeds"])
    models = [
        {
            "model": c["model"],
            "family": c["family"],
            "value": c["value"],
            "ci": seed_mean_ci(c["per_seed"], name),
            "seeds": sorted(c["seeds"]),
            "cost_per_1000": c["costs"].get("cost_per_1000"),
            "latency_mean_s": c["costs"].get("latency_mean_s"),
            "currency": c["costs"].get("currency"),
            "weakest_class": weakest_class(c["aggregate"]),
            "per_class_f1": {
                label: s["mean"] for label, s in (c["aggregate"].get("per_class_f1") or {}).items()
            },
        }
        for c in scored
    ]
    result = {
        "dataset": dataset,
        "metric": name,
        "metric_title": metric_title(name, task),
        "official": bool(info["stats"].get("official_metric")),
        "better": better,
        "best": best["model"],
        "recommended": chosen["model"],
        "tied_with_best": sorted(tied_names, key=[c["model"] for c in scored].index),
        "kept_seed": kept_seed,
        "model_dir": f"{dataset}/{chosen['model']}/seed-{kept_seed}/model",
        "models": models,
        "comparisons": comparisons,
        "significance": SIGNIFICANCE_RULE,
        "seeds_rule": SEED_RULE,
    }
    result["sentence"] = sentence(result)
    return result


def recommend_run(
    run_dir: str | Path,
    *,
    n_bootstrap: int | None = None,
    hardware_price_per_hour: float = DEFAULT_HARDWARE_PRICE_PER_HOUR,
    metric_cis: bool = True,
    only_models: list[str] | None = None,
    only_datasets: list[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """The recommendation of every dataset of a run folder, from its records: {dataset: dict}
    (``n_bootstrap`` default: the experiment's ``bootstrap``)."""
    layout = RunLayout(Path(run_dir))
    experiment = {}
    if layout.experiment_file.is_file():
        experiment = load_yaml_text(layout.experiment_file.read_text(encoding="utf-8")) or {}
    boot = int(experiment.get("bootstrap", 1000)) if n_bootstrap is None else n_bootstrap
    out = {}
    for dataset in layout.datasets():
        if not layout.experiment_file.is_file():
            break
        if only_datasets is not None and dataset not in only_datasets:
            continue
        info, found = candidates(
            layout,
            dataset,
            n_bootstrap=boot,
            hardware_price_per_hour=hardware_price_per_hour,
            metric_cis=metric_cis,
            only_models=only_models,
        )
        result = recommend(dataset, info, found, n_bootstrap=boot)
        if result is not None:
            out[dataset] = result
    return out


# ---------------------------------------------------------------- words


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _ci(ci: list[float] | None) -> str:
    return "no CI" if not ci else f"95% CI [{ci[0]:+.3f}, {ci[1]:+.3f}]"


def _money(value: float | None, currency: str | None) -> str:
    if value is None:
        return "unknown cost"
    return f"{value:.2g} {currency or 'USD'}"


def sentence(rec: dict[str, Any]) -> str:
    """The one sentence that leads bench's output and the report for a dataset."""
    models = {m["model"]: m for m in rec["models"]}
    best, chosen = models[rec["best"]], models[rec["recommended"]]
    metric = rec["metric_title"]
    official = ", the dataset's official metric" if rec["official"] else ""
    head = f"{rec['dataset']}: recommended model {chosen['model']}"
    if len(models) == 1:
        return f"{head}, the only model with results ({metric} {_num(chosen['value'])}{official})."
    by_model = {c["model"]: c for c in rec["comparisons"]}
    if chosen is best:
        tied = rec["tied_with_best"]
        text = f"{head}: best {metric}, {_num(best['value'])}{official}"
        if not tied:
            return (
                text + "; its lead over every other model is significant "
                "(the 95% CI of each paired difference excludes 0)."
            )
        names = ", ".join(tied)
        return (
            text + f"; its lead over {names} is not significant (95% CI of the difference contains 0), "
            f"and it is also the cheapest of the tied models ({_money(best['cost_per_1000'], best['currency'])} "
            "per 1k classifications)."
        )
    lead = by_model[chosen["model"]]
    mcnemar = lead.get("mcnemar")
    extra = f"; McNemar exact p = {mcnemar['p_exact']:.2f}" if mcnemar else ""
    if (chosen["cost_per_1000"], best["cost_per_1000"]) != (None, None) and chosen["cost_per_1000"] != best[
        "cost_per_1000"
    ]:
        cheaper = (
            f"cheaper ({_money(chosen['cost_per_1000'], chosen['currency'])} vs "
            f"{_money(best['cost_per_1000'], best['currency'])} per 1k classifications)"
        )
    else:
        cheaper = (
            f"as cheap and faster ({1000 * (chosen['latency_mean_s'] or 0):.1f} vs "
            f"{1000 * (best['latency_mean_s'] or 0):.1f} ms a text)"
        )
    if best["value"] == chosen["value"]:
        ahead = "the same"
    else:
        ahead = "higher" if rec["better"] == "max" else "lower (better)"
    return (
        f"{head} ({metric} {_num(chosen['value'])}{official}): {best['model']} scores {ahead} ({_num(best['value'])}), "
        "but its lead of "
        f"{lead['difference']:+.3f} is not significant ({_ci(lead['ci'])} contains 0{extra}), "
        f"and {chosen['model']} is {cheaper}."
    )


def comparison_lines(rec: dict[str, Any]) -> list[str]:
    """One line per model against the best: the difference, its CI and the verdict."""
    lines = []
    for c in rec["comparisons"]:
        verdict = {True: "significant", False: "not significant", None: "not compared"}[c["significant"]]
        mcnemar = c.get("mcnemar")
        test = f"; McNemar exact p = {mcnemar['p_exact']:.3g} (seed {mcnemar['seed']})" if mcnemar else ""
        difference = "n/a" if c["difference"] is None else f"{c['difference']:+.3f}"
        lines.append(
            f"{c['best']} - {c['model']}: {difference} {rec['metric_title']} ({_ci(c['ci'])}, "
            f"{verdict}{test}; {c['n']} paired test examples)"
        )
    return lines


def weakest_line(rec: dict[str, Any]) -> str | None:
    parts = [
        f"{m['model']} {m['weakest_class']['label']} {m['weakest_class']['f1']:.3f}"
        for m in rec["models"]
        if m.get("weakest_class")
    ]
    return "weakest class per model (F1): " + "; ".join(parts) if parts else None


def recommendation_lines(rec: dict[str, Any]) -> list[str]:
    """The sentence, the pairwise differences and the weakest-class line, as printed by bench."""
    lines = [rec["sentence"], *("  " + line for line in comparison_lines(rec))]
    weakest = weakest_line(rec)
    if weakest:
        lines.append("  " + weakest)
    if rec["comparisons"]:
        lines.append(f"  ({rec['significance']}; {rec['seeds_rule']})")
    return lines
