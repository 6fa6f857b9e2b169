"""The pieces bench's terminal summary and the report's leaderboard share."""

import io

import pytest
from rich.console import Console

from socialens.evaluation.tables import best_marks, duration_text, mean_std_text, print_fitted


def test_mean_std_text_shows_a_spread_only_over_several_seeds():
    assert mean_std_text(0.5834, 0.0, 1) == "0.583"
    assert mean_std_text(0.5834, 0.0, 2) == "0.583 ± 0.000"
    assert mean_std_text(0.5834, 0.01234, 3, digits=2) == "0.58 ± 0.01"
    assert mean_std_text(None, None, 3) == "-"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0.0, "0 s"),
        (0.36, "0.36 s"),
        (9.9, "9.9 s"),
        (36.0, "36 s"),
        (432.0, "7.2 min"),
        (5400.0, "1.5 h"),
    ],
)
def test_duration_text(seconds, text):
    assert duration_text(seconds) == text


def test_best_marks_only_a_real_best():
    assert best_marks([0.8, 0.5, 0.8], "max") == [True, False, True]  # a tie: both
    assert best_marks([0.25, 0.0, None, 0.0], "min") == [False, True, False, True]  # 0% refusals beat 25%
    assert best_marks([0.0, 0.0, 0.0], "min") == [False] * 3  # all equal: nothing to choose
    assert best_marks([0.7, 0.7 + 1e-15], "max") == [False, False]  # equal up to rounding
    assert best_marks([0.0, 0.0, None], "max") == [False] * 3  # F1 0 everywhere is no best
    assert best_marks([-0.2, -0.5], "max") == [False, False]  # nor is a best below 0
    assert best_marks([0.9, None], "max") == [False, False]  # one value: nothing to compare
    assert best_marks([0.9, 0.1], None) == [False, False]


def _print(width, header, body, **kwargs):
    out = io.StringIO()
    print_fitted(
        Console(file=out, width=width, force_terminal=True, color_system=None), "t", header, body, **kwargs
    )
    return out.getvalue().splitlines()


def test_print_fitted_keeps_one_table_when_it_fits_and_splits_per_class_last():
    header = ["model", "macro-F1", "F1 a", "F1 b", "flags", "train s"]
    body = [
        [
            "m-" + "x" * 20,
            "0.512 ± 0.013",
            "0.500",
            "0.524",
            "collapsed: predicts a for 100% of the test set",
            "12.0",
        ]
    ]
    assert sum(line.startswith("┏") for line in _print(200, header, body)) == 1
    lines = _print(60, header, body, later=lambda name: name.startswith("F1 "))
    starts = [i for i, line in enumerate(lines) if line.startswith("┏")]
    parts = ["\n".join(lines[a:b]) for a, b in zip(starts, [*starts[1:], len(lines)], strict=True)]
    assert len(parts) == 3 and all(len(line) <= 60 for line in lines)
    # each part repeats the model column; a number keeps its line; per-class scores come last, together
    assert all(part.count("m-" + "x" * 20) == 1 for part in parts)
    assert "macro-F1" in parts[0] and "train s" in parts[0] and "0.512 ± 0.013" in parts[0]
    assert "flags" in parts[1] and "collapsed: predicts a" in parts[1]
    assert "F1 a" in parts[2] and "F1 b" in parts[2]


def test_print_fitted_prints_wider_rather_than_cut_a_name():
    name = "a-model-id-longer-than-the-console-is-wide"
    lines = _print(30, ["model", "macro-F1"], [[name, "0.500"]])
    assert any(name in line for line in lines) and not any("…" in line for line in lines)
    assert max(len(line) for line in lines) == len(name) + len("macro-F1") + 7
