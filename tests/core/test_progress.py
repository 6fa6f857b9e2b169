import io

from rich.console import Console
from rich.progress import Progress

from socialens.core.progress import (
    PlainProgress,
    RunEstimate,
    StageProgress,
    about_duration,
    progress_display,
)


def plain_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=100, markup=False, emoji=False), out


def test_a_console_that_is_no_terminal_gets_plain_lines_without_control_codes():
    console, out = plain_console()
    assert not console.is_terminal
    with progress_display(console) as display:
        assert isinstance(display, PlainProgress)
        task = display.add_task("train", total=200, unit="steps")
        for step in range(1, 201):
            display.update(task, completed=step)
    lines = out.getvalue().splitlines()
    # every 25 percent (the interval of 10 s is never reached here), the end included, once each
    assert [line.split(",")[0] for line in lines] == [
        "train: 50/200 steps (25%)",
        "train: 100/200 steps (50%)",
        "train: 150/200 steps (75%)",
        "train: 200/200 steps (100%)",
    ]
    assert "left" in lines[0] and "left" not in lines[-1] and "elapsed" in lines[-1]
    assert "\x1b" not in out.getvalue()


def test_plain_lines_follow_time_as_well_as_percent():
    console, out = plain_console()
    display = PlainProgress(console, every_s=0.0, every_percent=100)
    task = display.add_task("predict", total=None)
    for done in (5, 10, 15):
        display.update(task, completed=done)
    assert [line.split(",")[0] for line in out.getvalue().splitlines()] == [
        "predict: 5",
        "predict: 10",
        "predict: 15",
    ]


def test_a_new_description_is_one_line_and_a_label_names_the_task():
    console, out = plain_console()
    display = PlainProgress(console)
    grid = display.add_task("bench", total=2, label="bench", unit="cells")
    display.update(grid, description="tiny / tf / seed 0")
    display.advance(grid)
    display.update(grid, description="tiny / tf / seed 1")
    display.advance(grid)
    lines = out.getvalue().splitlines()
    assert lines[0] == "tiny / tf / seed 0"
    assert lines[1].startswith("bench: 1/2 cells (50%), ")
    assert lines[2] == "tiny / tf / seed 1"
    assert lines[3].startswith("bench: 2/2 cells (100%), ")


def test_stage_progress_gives_each_stage_its_own_task():
    console, out = plain_console()
    display = PlainProgress(console)
    hook = StageProgress(display)
    hook("train", 4, 4)
    hook("predict", 10, 10)
    hook.close()
    assert display.tasks == {}
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("train: 4/4 steps (100%)") and lines[1].startswith(
        "predict: 10/10 texts (100%)"
    )


def test_a_terminal_gets_richs_bar():
    console = Console(file=io.StringIO(), force_terminal=True)
    assert isinstance(progress_display(console), Progress)


def test_the_estimate_line_reads_as_the_issue_asks():
    estimate = RunEstimate(texts=80, sampled=3, prompt_tokens=1070.4, seconds_per_text=28.5)
    assert estimate.describe() == (
        "~1,070 prompt tokens a text, ~28 s a text, ~38 min for 80 texts (measured on the first 3)"
    )
    cached = RunEstimate(texts=80, sampled=3, prompt_tokens=12, seconds_per_text=None)
    assert "came from the response cache" in cached.describe()
    assert [about_duration(s) for s in (0.05, 2.34, 61, 3600, 7 * 3600)] == [
        "<0.1 s",
        "~2.3 s",
        "~61 s",
        "~60 min",
        "~7.0 h",
    ]
