"""What bench's terminal summary and the report's leaderboard share: how a mean over seeds is
written, which cell of a column is the best, and how a wide table is printed to a terminal without
cutting the column that names the rows."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text


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
