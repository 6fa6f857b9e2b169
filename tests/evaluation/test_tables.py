"""The pieces bench's terminal summary and the report's leaderboard share: the score columns of
any task, mean ± std, best marks, tables fitted to a terminal."""

import io

import pytest
from rich.console import Console

from socialens.core.types import PredictionRecord, Status
from socialens.evaluation.metrics import aggregate_seeds, compute_metrics, official_metric
from socialens.evaluation.tables import (
    best_marks,
    duration_text,
    mean_std_text,
    metric_better,
    metric_title,
    print_fitted,
    score_cells,
    score_columns,
    seed_cis,
    split_by_task,
    table_metrics,
    task_of,
)


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


# ---------------------------------------------------------------- the summary table of any task


def _summary_row(task_type, per_seed, **extra):
    return {
        "task_type": task_type,
        "labels": per_seed[0]["labels"],
        "n_seeds": len(per_seed),
        "aggregate": aggregate_seeds(per_seed),
        "ci": seed_cis(per_seed),
        **extra,
    }


def test_classification_columns_are_the_ones_it_always_had():
    records = [PredictionRecord(str(i), g, p) for i, (g, p) in enumerate(zip("aabb", "abbb", strict=True))]
    per_seed = [compute_metrics(records, ["a", "b"], n_bootstrap=20, seed=s) for s in (0, 1)]
    assert "scalar_metrics" not in per_seed[0]  # classification dicts are as they were
    row = _summary_row("classification", per_seed, official_metric={"name": "f1_a", "value": 2 / 3})
    scores, per_class = score_columns([row], official=True)
    assert [c.title for c in scores] == ["seeds", "macro-F1", "95% CI", "official: f1_a", "accuracy"]
    assert [c.key for c in per_class] == ["f1:a", "f1:b"]
    assert [c.key for c in score_columns([row])[0]] == ["seeds", "macro_f1", "macro_f1_ci", "accuracy"]
    spread = score_cells(row, [*scores, *per_class], spread=True)
    plain = score_cells(row, [*scores, *per_class], spread=False)
    # a: P 1 R 1/2 -> 2/3; b: P 2/3 R 1 -> 4/5
    assert spread["macro_f1"]["text"] == plain["macro_f1"]["text"] == f"{(2 / 3 + 0.8) / 2:.3f} ± 0.000"
    assert (spread["accuracy"]["text"], plain["accuracy"]["text"]) == ("0.750 ± 0.000", "0.750")
    assert (spread["f1:b"]["text"], plain["f1:b"]["text"]) == ("0.800 ± 0.000", "0.800")
    assert plain["official"] == {"value": 2 / 3, "text": "0.667"}
    ci = row["ci"]["macro_f1"]
    assert plain["macro_f1_ci"] == {"value": ci, "text": f"[{ci[0]:.3f}, {ci[1]:.3f}]"}
    assert row["ci"]["accuracy"] is not None and row["ci"]["micro_f1"] is None  # not bootstrapped


def test_summaries_have_rouge_columns_and_no_classes():
    records = [
        PredictionRecord("a", "the cat sat", "the cat sat"),
        PredictionRecord("b", "dogs bark loudly", None, Status.REFUSED),
    ]
    per_seed = [compute_metrics(records, ["summary"], task_type="summarisation", n_bootstrap=0)]
    assert per_seed[0]["scalar_metrics"] == ["rouge1", "rouge2", "rougeL"]  # named for seed aggregation
    row = _summary_row("summarisation", per_seed)
    assert row["aggregate"]["rouge2"]["mean"] == pytest.approx(0.5) and row["aggregate"]["per_class_f1"] == {}
    assert official_metric(row["aggregate"], "rouge2") == pytest.approx(0.5)
    assert official_metric(per_seed[0], "rougeL") == pytest.approx(0.5)
    scores, per_class = score_columns([row])
    assert [c.title for c in scores] == ["seeds", "ROUGE-2", "95% CI", "ROUGE-1", "ROUGE-L"]
    assert per_class == []
    cells = score_cells(row, scores, spread=True)
    assert cells["rouge2"]["text"] == "0.500" and cells["rouge2_ci"]["text"] == "-"  # bootstrap: 0


def test_titles_order_and_direction():
    task = task_of({"task_type": "token_classification"})
    assert table_metrics(task)[0] == task.headline_metric == "micro_f1"
    assert table_metrics(task_of(None)) == ["macro_f1", "accuracy"]  # no task type: classification
    assert metric_title("rougeL") == "ROUGE-L" and metric_title("hallucination_rate") == "hallucination rate"
    assert metric_title("some_new_score") == "some new score"
    assert [metric_better(m) for m in ("micro_f1", "hallucination_rate", "hamming_loss")] == [
        "max",
        "min",
        "min",
    ]
    rows = [{"task_type": "multilabel", "n": 1}, {"n": 2}, {"task_type": "multilabel", "n": 3}]
    assert [[r["n"] for r in group] for group in split_by_task(rows)] == [[1, 3], [2]]


def test_a_failed_row_keeps_its_label_columns():
    failed = {"task_type": "classification", "labels": ["x", "y"], "n_seeds": 0, "status": "failed"}
    assert [c.key for c in score_columns([failed])[1]] == ["f1:x", "f1:y"]
