"""The tables of a report, from the rows ``build`` computed: the leaderboard of one dataset (the
summary table's score columns of its task, ``evaluation.tables``, then status rates, costs and
flags, in groups that each fit a page: scores, F1 per class, cost and speed), the slice tables,
the task's own tables and the worst-confused examples."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from socialens.evaluation.flags import row_flags
from socialens.evaluation.metrics import NON_OK_COLUMNS, prediction_collapse
from socialens.evaluation.tables import (
    best_marks,
    duration_text,
    fmt,
    score_cells,
    score_columns,
    task_of,
)

__all__ = ["error_browser", "fmt", "leaderboard", "mark_pareto", "money", "slice_tables", "task_table"]

# Per-class F1 columns per table: about 60 px each, so ten and the model column fit a 1,200 px page.
LABELS_PER_TABLE = 10
# Scalar metrics beside the headline in the scores table (the rest: a "More scores" table).
METRICS_PER_TABLE = 4


def money(value: float | None) -> str:
    if value is None:
        return "-"
    return "0" if value == 0 else f"{value:.3g}"


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = 1000 * seconds
    return f"{ms:,.0f}" if ms >= 100 else f"{ms:.3g}"


def leaderboard(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The comparison table of one dataset: columns (key, title, better), one row per model with
    each cell's value, display text and ``best`` mark (``tables.best_marks``), and ``groups``: the
    columns each HTML table shows (the model column first in each), so no table is wider than a
    page however many classes there are."""
    currency = rows[0]["costs"].get("currency", "USD") if rows else "USD"
    score_cols, class_cols = score_columns(rows, official=True)
    labels = [column.key[len("f1:") :] for column in class_cols]
    scores = [column.to_dict() for column in score_cols]
    per_class = [column.to_dict() for column in class_cols]
    rates = [{"key": f"{s}_rate", "title": s, "better": "min"} for s in NON_OK_COLUMNS]
    costs = [
        {"key": "train_time_s", "title": "train time", "better": "min"},
        {"key": "train_cost", "title": f"train cost ({currency})", "better": "min"},
        {"key": "latency_p50_ms", "title": "latency p50 (ms)", "better": "min"},
        {"key": "cost_per_1000", "title": f"cost / 1k ({currency})", "better": "min"},
        {"key": "energy_wh_per_1000", "title": "energy / 1k (Wh)", "better": "min"},
        {"key": "co2_g_per_1000", "title": "CO2 / 1k (g)", "better": "min"},
        {"key": "pareto", "title": "Pareto", "better": None},
    ]
    flags = [{"key": "flags", "title": "flags", "better": None}]
    model = {"key": "model", "title": "model", "better": None}
    columns = [model, *scores, *per_class, *rates, *costs, *flags]
    size = -(-len(per_class) // max(1, -(-len(per_class) // LABELS_PER_TABLE)))  # 12 classes: 6 + 6
    chunks = [per_class[i : i + size] for i in range(0, len(per_class), size)] if per_class else []
    # the headline, its CI and the official metric lead; a task with many table metrics (label
    # sets: nine) shows the rest in a table of their own, so the scores table fits a page too
    n_lead = 3 + any(c["key"] == "official" for c in scores)  # seeds, headline, CI, official
    shown, more = scores[: n_lead + METRICS_PER_TABLE], scores[n_lead + METRICS_PER_TABLE :]
    groups = [
        {"title": "Scores", "columns": [model, *shown, *rates, *flags]},
        *([{"title": "More scores", "columns": [model, *more]}] if more else []),
        *[
            {
                "title": "F1 per class" + (f" ({n}/{len(chunks)})" if len(chunks) > 1 else ""),
                "columns": [model, *chunk],
            }
            for n, chunk in enumerate(chunks, 1)
        ],
        {"title": "Cost and speed", "columns": [model, *costs]},
    ]
    multi_run = len({row["run"] for row in rows}) > 1
    table_rows = []
    for row in rows:
        agg, cost = row["aggregate"], row["costs"]
        cells: dict[str, dict[str, Any]] = {}

        def put(key, value, text, cells=cells):
            cells[key] = {"value": value, "text": text, "best": False}

        put("model", None, f"{row['run']} / {row['model']}" if multi_run else row["model"])
        for key, cell in score_cells(row, [*score_cols, *class_cols], spread=False).items():
            put(key, cell["value"], cell["text"])
        for status in NON_OK_COLUMNS:
            value = agg["status_rates"][status]["mean"]
            put(f"{status}_rate", value, "-" if value is None else f"{value:.1%}")
        put("train_time_s", cost.get("train_time_s"), duration_text(cost.get("train_time_s")))
        put("train_cost", cost.get("train_cost"), money(cost.get("train_cost")))
        p50 = cost["latency_p50_s"]
        put("latency_p50_ms", None if p50 is None else 1000 * p50, _ms(p50))
        put("cost_per_1000", cost["cost_per_1000"], money(cost["cost_per_1000"]))
        for key in ("energy_wh_per_1000", "co2_g_per_1000"):
            value = cost.get(key)
            put(key, value, "-" if value is None else f"{value:.3g}")
        put("pareto", row.get("pareto"), {True: "yes", False: "", None: "-"}[row.get("pareto")])
        row_flag_list = row_flags(agg, row.get("language_coverage"))  # collapse: from the records
        put("flags", row_flag_list, "; ".join(row_flag_list))
        table_rows.append({"key": row["key"], "cells": cells, "flagged": bool(row_flag_list)})
    for column in columns:
        values = [r["cells"][column["key"]]["value"] for r in table_rows]
        for r, best in zip(table_rows, best_marks(values, column["better"]), strict=True):
            r["cells"][column["key"]]["best"] = best
    return {"labels": labels, "columns": columns, "groups": groups, "rows": table_rows}


def mark_pareto(rows: list[dict[str, Any]]) -> None:
    """``row["pareto"]``: True when no other model is at most as expensive (cost per 1k) and at
    least as good (the task's headline metric, macro-F1 for classification) with one of the two
    strictly better; None without both numbers."""
    points = {
        row["key"]: (
            row["costs"]["cost_per_1000"],
            row["aggregate"].get(task_of(row).headline_metric, {}).get("mean"),
        )
        for row in rows
    }
    for row in rows:
        cost, f1 = points[row["key"]]
        if cost is None or f1 is None:
            row["pareto"] = None
            continue
        row["pareto"] = not any(
            c is not None and f is not None and c <= cost and f >= f1 and (c < cost or f > f1)
            for key, (c, f) in points.items()
            if key != row["key"]
        )


def cell_text(value: Any) -> str:
    """A task table's cell as text: numbers to 3 decimals, lists joined, None as ``-``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return fmt(value)
    if isinstance(value, list | tuple):
        return ", ".join(cell_text(v) for v in value)
    return str(value)


def task_table(model: str, item: dict[str, Any]) -> dict[str, Any]:
    """One of a task's ``report_tables`` (``item``: its seed and ``ReportTable``) for the report:
    title, headers and rows of text, with the model (display name) and seed it came from."""
    table = item["table"]
    return {
        "model": model,
        "seed": item["seed"],
        "title": table.title,
        "headers": [str(h) for h in table.headers],
        "rows": [[cell_text(c) for c in row] for row in table.rows],
    }


def slice_tables(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    tables: dict[str, list[dict[str, Any]]] = defaultdict(list)
    multi_run = len({row["run"] for row in rows}) > 1
    for row in rows:
        for key, values in row["slices"].items():
            for value, block in values.items():
                tables[key].append(
                    {
                        "model": f"{row['run']} / {row['model']}" if multi_run else row["model"],
                        "value": value,
                        **block,
                    }
                )
    return {
        key: sorted(items, key=lambda x: (x["value"], x["model"])) for key, items in sorted(tables.items())
    }


def error_browser(run, dataset, labels, cells_by_model, texts, max_examples) -> dict[str, Any]:
    """Per gold class, the test examples that the most predictions (models x seeds) got wrong, with
    each model's prediction (its first seed counted), status and raw output.

    A seed that collapsed (one label for nearly every text, ``metrics.prediction_collapse``) is
    left out of the ranking and listed once in ``left_out``: it gets every text of the other
    classes wrong alike, so counting it would fill the list with texts only it got wrong."""
    wrong: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    gold: dict[str, str] = {}
    shown: dict[str, dict[str, Any]] = defaultdict(dict)
    left_out = []
    for model, cells in cells_by_model.items():
        collapsed = []
        for _seed, records, _stored in cells:
            collapse = prediction_collapse(records)
            if collapse["collapsed"]:
                collapsed.append(collapse["label"])
                continue
            for r in records:
                if r.gold is None:
                    continue
                gold[r.id] = r.gold
                total[r.id] += 1
                wrong[r.id] += not (r.status.value == "ok" and r.predicted == r.gold)
                shown[r.id].setdefault(
                    model,
                    {
                        "predicted": r.predicted,
                        "status": r.status.value,
                        "raw_output": r.raw_output,
                        "error": r.error,
                    },
                )
        if collapsed:
            predicts = "/".join(sorted(set(map(str, collapsed))))
            text = f"{model} predicts {predicts} for nearly every text ({len(collapsed)}/{len(cells)} seeds)"
            left_out.append({"model": model, "predicts": predicts, "seeds": len(collapsed), "text": text})
    classes = []
    for label in labels:
        ids = [i for i, g in gold.items() if g == label and wrong[i] > 0]
        ids.sort(key=lambda i: (-wrong[i] / total[i], i))
        classes.append(
            {
                "label": label,
                "n_wrong_examples": len(ids),
                "examples": [
                    {
                        "id": i,
                        "gold": label,
                        "text": None if texts is None else texts.get(i),
                        "wrong": wrong[i],
                        "total": total[i],
                        "predictions": shown[i],
                    }
                    for i in ids[:max_examples]
                ],
            }
        )
    return {
        "run": run,
        "dataset": dataset,
        "has_texts": texts is not None,
        "left_out": left_out,
        "classes": classes,
    }
