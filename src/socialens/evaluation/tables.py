"""What bench's terminal summary and the report's leaderboard share: the summary table's score
columns and cells for any task (``score_columns`` / ``score_cells`` over summary rows), how a mean
over seeds is written, which cell of a column is the best, and how a wide table is printed to a
terminal without cutting the column that names the rows.

A summary row (bench's ``summary.json`` rows and the report's rows alike) holds ``task_type``,
``labels``, ``n_seeds``, ``aggregate`` (``aggregate_seeds`` of its seeds' metrics dicts), ``ci``
(``seed_cis``: the mean over seeds of each scalar metric's interval) and optionally
``official_metric`` and ``language_coverage``. The task (``TASKS.get(task_type)()``) decides the
columns: its ``headline_metric`` with its 95% CI first, then its ``table_metrics`` (an optional
attribute: the scalar metrics a table shows, in order; default: all its ``scalar_metrics``), then
F1 per class where the task has classes. Titles come from a task's optional ``metric_titles``
dict, else ``METRIC_TITLES``, else the metric name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from socialens.core.layout import DEFAULT_TASK_TYPE, TASK_TYPE_KEY
from socialens.core.registry import TASKS
from socialens.tasks.classification_metrics import scalar_metric_names

METRIC_TITLES = {
    "accuracy": "accuracy",
    "macro_f1": "macro-F1",
    "micro_f1": "micro-F1",
    "weighted_f1": "weighted-F1",
    "samples_f1": "samples-F1",
    "macro_precision": "macro precision",
    "macro_recall": "macro recall",
    "micro_precision": "micro precision",
    "micro_recall": "micro recall",
    "rouge1": "ROUGE-1",
    "rouge2": "ROUGE-2",
    "rougeL": "ROUGE-L",
    "rougeLsum": "ROUGE-Lsum",
}


@dataclass(frozen=True)
class Column:
    """One column of a summary table: the key of its cells, its header and which way is better
    (``"max"``, ``"min"`` or None: nothing to mark)."""

    key: str
    title: str
    better: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "better": self.better}


def task_of(row_or_type: dict[str, Any] | str | None):
    """The task object of a summary row (or of a task type name); a row without one is
    classification, as every run before tasks was."""
    name = row_or_type.get(TASK_TYPE_KEY) if isinstance(row_or_type, dict) else row_or_type
    return TASKS.get(name or DEFAULT_TASK_TYPE)()


def metric_title(name: str, task: Any = None) -> str:
    titles = getattr(task, "metric_titles", None) or {}
    return titles.get(name) or METRIC_TITLES.get(name) or name.replace("_", " ")


def metric_better(name: str) -> str:
    """Rates and losses (``*_rate``, ``*_loss``: hallucinated entities, Hamming loss) are better
    low; every score high."""
    return "min" if name.endswith(("_rate", "_loss")) else "max"


def table_metrics(task: Any) -> list[str]:
    """The scalar metrics a table shows for ``task``: its headline first, then its
    ``table_metrics`` (default: its ``scalar_metrics``), each once."""
    shown = getattr(task, "table_metrics", None) or task.scalar_metrics
    return list(dict.fromkeys([task.headline_metric, *shown]))


def seed_cis(per_seed: Sequence[dict[str, Any]]) -> dict[str, list[float] | None]:
    """Per scalar metric of the seeds' metrics dicts, the mean over seeds of its interval's low and
    high ends (seeds without one, e.g. ``bootstrap: 0``, left out; None when no seed has one)."""
    out: dict[str, list[float] | None] = {}
    for name in scalar_metric_names(per_seed[0]) if per_seed else []:
        cis = [m.get("ci", {}).get(name) for m in per_seed]
        cis = [c for c in cis if isinstance(c, list | tuple) and len(c) == 2 and None not in c]
        out[name] = [_mean([c[0] for c in cis]), _mean([c[1] for c in cis])] if cis else None
    return out


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def split_by_task(rows: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Rows grouped by task type, in order of first appearance (one table per task)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row.get(TASK_TYPE_KEY) or DEFAULT_TASK_TYPE, []).append(row)
    return list(groups.values())


def row_classes(row: dict[str, Any]) -> list[str]:
    """The classes a row has per-class F1 for: its aggregate's, or (a failed row) its labels."""
    aggregate = row.get("aggregate")
    return list(aggregate.get("per_class_f1", {})) if aggregate else list(row.get("labels", []))


def score_columns(
    rows: Sequence[dict[str, Any]], *, official: bool = False
) -> tuple[list[Column], list[Column]]:
    """``(scores, per_class)`` columns of a table of rows of one task: seeds, the headline metric,
    its 95% CI, the official metric (``official``: where a row has one), the task's other table
    metrics; then ``F1 <class>`` for every class of any row, in order of first appearance."""
    task = task_of(rows[0] if rows else None)
    names = table_metrics(task)
    headline = names[0]
    scores = [
        Column("seeds", "seeds"),
        Column(headline, metric_title(headline, task), metric_better(headline)),
        Column(f"{headline}_ci", "95% CI"),
    ]
    if official:
        scores += [
            Column("official", f"official: {name}", "max")
            for name in dict.fromkeys(r["official_metric"]["name"] for r in rows if r.get("official_metric"))
        ][:1]
    scores += [Column(name, metric_title(name, task), metric_better(name)) for name in names[1:]]
    classes: list[str] = []
    for row in rows:
        classes += [label for label in row_classes(row) if label not in classes]
    per_class = [Column(f"f1:{label}", f"F1 {label}", "max") for label in classes]
    return scores, per_class


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def score_cells(row: dict[str, Any], columns: Sequence[Column], *, spread: bool) -> dict[str, dict[str, Any]]:
    """``{key: {"value", "text"}}`` of one ok row for ``columns`` (from ``score_columns``). The
    headline shows its mean ± std over seeds; the other metrics and per-class F1 too with
    ``spread`` (bench's summary), else their mean only (the report's leaderboard)."""
    aggregate, n_seeds = row["aggregate"], row["n_seeds"]
    headline = task_of(row).headline_metric
    per_class = aggregate.get("per_class_f1", {})
    cells: dict[str, dict[str, Any]] = {}
    for column in columns:
        key = column.key
        if key == "seeds":
            value, text = n_seeds, str(n_seeds)
        elif key == f"{headline}_ci":
            value = (row.get("ci") or {}).get(headline)
            text = f"[{value[0]:.3f}, {value[1]:.3f}]" if value else "-"
        elif key == "official":
            value = (row.get("official_metric") or {}).get("value")
            text = fmt(value)
        else:
            metric = per_class.get(key[3:]) if key.startswith("f1:") else aggregate.get(key)
            metric = metric or {"mean": None, "std": None}
            value = metric["mean"]
            if spread or key == headline:
                text = mean_std_text(metric["mean"], metric["std"], n_seeds)
            else:
                text = fmt(value)
        cells[key] = {"value": value, "text": text}
    return cells


def mean_std_text(mean: float | None, std: float | None, n_seeds: int, digits: int = 3) -> str:
    """``0.733 ± 0.012`` over several seeds, ``0.733`` over one: a spread over one seed is always 0
    and reads as a measured one."""
    if mean is None:
        return "-"
    if n_seeds < 2 or std is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def duration_text(seconds: float | None) -> str:
    """``0.36 s``, ``36 s``, ``7.2 min``, ``1.5 h``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def best_marks(values: Sequence[float | None], better: str | None) -> list[bool]:
    """Which values are the best of their column (ties all marked), or none at all when there is
    nothing to choose between: fewer than two values, all values equal (a column of 0% refusals),
    or a highest score that is not above 0 (every model at F1 0 for a class)."""
    marks = [False] * len(values)
    present = [v for v in values if v is not None]
    if better is None or len(present) < 2:
        return marks
    best = max(present) if better == "max" else min(present)
    if all(_same(v, best) for v in present) or (better == "max" and best <= 0):
        return marks
    return [v is not None and _same(v, best) for v in values]


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def print_fitted(
    console: Console,
    title: str,
    header: list[str],
    body: list[list[str]],
    *,
    key: str = "model",
    later: Callable[[str], bool] = lambda name: False,
    wrap: frozenset[str] = frozenset({"flags"}),
) -> None:
    """Print ``header``/``body`` as one rich table, or as several when one would not fit the
    console: each repeats the ``key`` column, which is never wrapped or cut. A table is split so
    that every number keeps its line (headers wrap at spaces; the free-text columns in ``wrap``
    wrap to 30 characters), each column going to the first part with room for it; the columns
    ``later`` picks (per-class scores) get parts of their own after the others, so the headline
    numbers stay together."""
    index = header.index(key)
    needs = [_need(header[i], [cells[i] for cells in body], header[i] in wrap) for i in range(len(header))]
    others = [i for i in range(len(header)) if i != index]
    # a console too narrow for the key column and any one other: print wider rather than cut a name
    width = max(console.width, _table_width([needs[index], max((needs[i] for i in others), default=0)]))
    groups = [[index, *others]]
    if _table_width([needs[i] for i in groups[0]]) > width:
        groups = []
        for kind in (False, True):  # the first fitting table of its kind takes each column
            own: list[list[int]] = []
            for i in (i for i in others if bool(later(header[i])) is kind):
                fits = (g for g in own if _table_width([needs[j] for j in [*g, i]]) <= width)
                group = next(fits, None)
                if group is None:
                    group = [index]
                    own.append(group)
                group.append(i)
            groups += own
    saved = console.width
    console.width = width
    try:
        for number, columns in enumerate(groups, 1):
            part = f"{title} ({number}/{len(groups)})" if len(groups) > 1 else title
            widths = _widths(header, body, columns, needs, width)
            console.print(_table(part, header, body, widths))
    finally:
        console.width = saved


def _widths(header, body, columns: list[int], needs: list[int], width: int) -> dict[int, int]:
    """Each column its need, then what room is left to unwrap headers and free text, left to right.
    Fixed widths, because rich's own shrinking takes from the widest column first, which folds a
    number before a header that could have wrapped."""
    widths = {i: needs[i] for i in columns}
    room = width - _table_width(list(widths.values()))
    for i in columns:
        wanted = max([cell_len(header[i])] + [cell_len(cells[i]) for cells in body])
        extra = max(0, min(wanted - widths[i], room))
        widths[i] += extra
        room -= extra
    return widths


def _need(name: str, cells: list[str], wraps: bool) -> int:
    """The width a column needs: its widest cell (at most 30 for free text, down to its longest
    word) and the longest word of its header."""
    words = [cell_len(word) for text in [name, *cells] for word in text.split()] or [1]
    widest = max((cell_len(cell) for cell in cells), default=1)
    return max(max(words), min(widest, 30) if wraps else widest)


def _table_width(needs: list[int]) -> int:
    return sum(needs) + 2 * len(needs) + len(needs) + 1  # padding of one each side, one line per border


def _table(title: str, header: list[str], body: list[list[str]], widths: dict[int, int]) -> Table:
    # Text, not str: names and labels are shown as they are, never as markup
    table = Table(title=Text(title))
    for n, (i, width) in enumerate(widths.items()):
        justify = "left" if n == 0 else "right"
        table.add_column(Text(header[i]), justify=justify, width=width, no_wrap=n == 0, overflow="fold")
    for cells in body:
        table.add_row(*(Text(cells[i]) for i in widths))
    return table
