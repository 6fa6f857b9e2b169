"""Progress of long commands: a rich bar on a terminal, plain lines anywhere else.

A bar redrawn with control codes is noise in a log file, a CI job or a pipe, and rich draws
nothing at all there until the end, so a 40-minute run looks hung. ``progress_display`` returns
rich's ``Progress`` on a terminal and otherwise a ``PlainProgress``: the same calls, printing one
plain line for a task when its description changes, every ``every_s`` seconds, every
``every_percent`` percent and when it finishes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

PLAIN_EVERY_S = 10.0
PLAIN_EVERY_PERCENT = 25.0


def about_duration(seconds: float) -> str:
    if seconds < 0.1:
        return "<0.1 s"
    if seconds < 10:
        return f"~{seconds:.1f} s"
    if seconds < 90:
        return f"~{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"


# What a family calls while it works: progress(stage, done, total), as the bench's bars show it.
ProgressHook = Callable[[str, int, int], None]


@dataclass(frozen=True)
class RunEstimate:
    """What an LLM prediction run will cost, measured on its first texts."""

    texts: int  # in the whole run
    sampled: int  # texts measured
    prompt_tokens: float  # mean prompt tokens a text (0: the backend reports none)
    seconds_per_text: float | None  # wall time; None when every sampled answer came from the cache

    def describe(self) -> str:
        if self.prompt_tokens:
            tokens = f"~{self.prompt_tokens:,.0f} prompt tokens a text"
        else:
            tokens = "prompt tokens not reported"
        if self.seconds_per_text is None:
            return (
                f"{tokens}; the first {self.sampled} answers came from the response cache (no time estimate)"
            )
        total = self.seconds_per_text * self.texts
        return (
            f"{tokens}, {about_duration(self.seconds_per_text)} a text, {about_duration(total)} for "
            f"{self.texts:,} texts (measured on the first {self.sampled})"
        )


# What an LLM family calls once the first texts of a run are done: estimate(RunEstimate).
EstimateHook = Callable[[RunEstimate], None]


@dataclass
class PlainTask:
    description: str
    total: float | None
    completed: float = 0
    fields: dict[str, Any] = field(default_factory=dict)  # label, unit: how plain lines name it
    initial: float = 0  # completed when added: the rate counts only what was done since
    started: float = field(default_factory=time.monotonic)
    last_line: float = 0.0
    last_percent: float = 0.0
    finished: bool = False

    def __post_init__(self) -> None:
        self.last_line = self.started  # the first line comes after an interval, a step or the end
        self.last_percent = self.percentage

    @property
    def percentage(self) -> float:
        return 100.0 * self.completed / self.total if self.total else 0.0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


def default_line(task: PlainTask) -> str:
    name = task.fields.get("label") or task.description.strip()
    unit = f" {task.fields['unit']}" if task.fields.get("unit") else ""
    if task.total is None:
        done = f"{task.completed:,.0f}{unit}"
    else:
        done = f"{task.completed:,.0f}/{task.total:,.0f}{unit} ({task.percentage:.0f}%)"
    line = f"{name}: {done}, {about_duration(task.elapsed)} elapsed"
    if task.total and task.initial < task.completed < task.total:
        left = task.elapsed * (task.total - task.completed) / (task.completed - task.initial)
        line += f", {about_duration(left)} left"
    return line


class PlainProgress:
    """The part of rich's ``Progress`` socialens calls, as plain lines (see the module doc)."""

    def __init__(
        self,
        console: Console,
        *,
        line: Callable[[PlainTask], str] = default_line,
        every_s: float = PLAIN_EVERY_S,
        every_percent: float = PLAIN_EVERY_PERCENT,
    ):
        self.console = console
        self.line = line
        self.every_s = every_s
        self.every_percent = every_percent
        self.tasks: dict[int, PlainTask] = {}
        self._next_id = 0

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, description: str, total: float | None = 100, completed: float = 0, **fields) -> int:
        task_id, self._next_id = self._next_id, self._next_id + 1
        self.tasks[task_id] = PlainTask(description, total, completed, dict(fields), initial=completed)
        return task_id

    def update(
        self,
        task_id: int,
        *,
        total: float | None = None,
        completed: float | None = None,
        advance: float | None = None,
        description: str | None = None,
        **fields,
    ) -> None:
        task = self.tasks[task_id]
        renamed = description is not None and description != task.description
        moved = completed is not None and completed != task.completed or bool(advance)
        if total is not None:
            task.total = total
        if completed is not None:
            task.completed = completed
        if advance:
            task.completed += advance
        if description is not None:
            task.description = description
        task.fields.update(fields)
        if renamed:
            task.last_line, task.last_percent = time.monotonic(), task.percentage
            self._print(task.description.strip())
        elif moved:
            self._maybe_print(task)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def remove_task(self, task_id: int) -> None:
        self.tasks.pop(task_id, None)

    def _maybe_print(self, task: PlainTask) -> None:
        now = time.monotonic()
        done = task.total is not None and task.completed >= task.total
        if done and task.finished:
            return
        stepped = task.total and task.percentage - task.last_percent >= self.every_percent
        if done or stepped or now - task.last_line >= self.every_s:
            task.last_line, task.last_percent, task.finished = now, task.percentage, done
            self._print(self.line(task))

    def _print(self, line: str) -> None:
        self.console.print(Text(line), highlight=False, soft_wrap=True)


def progress_display(
    console: Console, *columns, transient: bool = False, **plain
) -> Progress | PlainProgress:
    """Rich's bar with ``columns`` on a terminal, else plain lines (``plain``: PlainProgress options)."""
    if console.is_terminal:
        return Progress(*columns, console=console, transient=transient)
    return PlainProgress(console, **plain)


STAGE_UNITS = {"train": "steps", "predict": "texts"}


class StageProgress:
    """The progress(stage, done, total) hook that model families call: one bar (or plain lines)
    for the current stage (training steps, then predicted texts), removed when the stage changes
    or ``close`` is called."""

    def __init__(self, progress: Progress | PlainProgress, indent: str = "  "):
        self.progress = progress
        self.indent = indent
        self.stage: str | None = None
        self.task = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.close()
            description = f"{self.indent}{stage}"
            self.task = self.progress.add_task(description, total=total, unit=STAGE_UNITS.get(stage))
            self.stage = stage
        self.progress.update(self.task, completed=done, total=total)

    def close(self) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.stage, self.task = None, None


@contextmanager
def stage_progress(console: Console, classifier) -> Iterator[None]:
    """Show the stages a model family reports through its ``progress`` hook (training steps,
    predicted texts) while the block runs; a family without the hook shows nothing."""
    if not hasattr(classifier, "progress"):
        yield
        return
    columns = (
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with progress_display(console, *columns) as display:
        hook = StageProgress(display, indent="")
        classifier.progress = hook
        try:
            yield
        finally:
            hook.close()
            classifier.progress = None
