"""The paired tests against direct computations: McNemar against scipy and by hand, the paired
bootstrap against a plain numpy loop with the same seed, and the vectorised single-label path
against the task's own metric function."""

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import f1_score

from socialens.core.types import PredictionRecord, Status
from socialens.evaluation.significance import (
    PairedModel,
    classification_values,
    mcnemar,
    paired_bootstrap,
    paired_mcnemar,
    task_values,
)

LABELS = ["belief", "debunk", "other"]


def records(gold, predicted, statuses=None):
    statuses = statuses or ["ok"] * len(gold)
    return [
        PredictionRecord(id=f"t{i}", gold=g, predicted=p if s == "ok" else None, status=Status(s))
        for i, (g, p, s) in enumerate(zip(gold, predicted, statuses, strict=True))
    ]


def random_case(seed, n=40, accuracy=0.7):
    rng = np.random.default_rng(seed)
    gold = rng.choice(LABELS, size=n).tolist()
    predicted = [g if rng.random() < accuracy else rng.choice(LABELS) for g in gold]
    return gold, predicted


def test_mcnemar_matches_scipy_and_the_formula():
    a = [True] * 10 + [False] * 3 + [True] * 7 + [False] * 5
    b = [False] * 10 + [True] * 3 + [True] * 7 + [False] * 5
    result = mcnemar(a, b)
    assert (result["b"], result["c"]) == (10, 3)
    assert result["p_exact"] == pytest.approx(stats.binomtest(3, 13, 0.5).pvalue)
    # exact two-sided p by hand: 2 * P(X <= 3), X ~ Binomial(13, 1/2)
    from math import comb

    by_hand = 2 * sum(comb(13, k) for k in range(4)) / 2**13
    assert result["p_exact"] == pytest.approx(by_hand)
    assert result["chi2"] == pytest.approx((abs(10 - 3) - 1) ** 2 / 13)
    assert result["p_chi2"] == pytest.approx(stats.chi2.sf(36 / 13, 1))
    assert mcnemar([True, False], [True, False]) == {
        "b": 0,
        "c": 0,
        "p_exact": 1.0,
        "chi2": 0.0,
        "p_chi2": 1.0,
    }


def test_paired_mcnemar_pairs_by_id_on_the_first_shared_seed():
    gold = ["belief", "debunk", "other", "belief"]
    a = records(gold, ["belief", "debunk", "other", "other"])
    b = list(reversed(records(gold, ["other", "debunk", "other", "belief"])))  # another order
    result = paired_mcnemar(PairedModel("a", {1: a, 0: a}), PairedModel("b", {0: b}))
    assert result["seed"] == 0 and result["n"] == 4
    assert (result["b"], result["c"]) == (1, 1)


def direct_bootstrap(gold, pred_a, pred_b, metric, n_bootstrap, seed):
    """The paired bootstrap as a plain loop: one index draw, both models scored on it."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(gold), size=(n_bootstrap, len(gold)))
    gold, pred_a, pred_b = map(np.asarray, (gold, pred_a, pred_b))
    diffs = [metric(gold[row], pred_a[row]) - metric(gold[row], pred_b[row]) for row in idx]
    return np.percentile(diffs, [2.5, 97.5])


def macro(gold, predicted):
    return f1_score(gold, predicted, labels=LABELS, average="macro", zero_division=0)


def test_paired_bootstrap_matches_a_direct_numpy_loop_with_the_same_seed():
    gold, pred_a = random_case(1, accuracy=0.8)
    _, pred_b = random_case(2, accuracy=0.5)
    a = PairedModel("a", {0: records(gold, pred_a)})
    b = PairedModel("b", {0: records(gold, pred_b)})
    result = paired_bootstrap(
        a, b, task_type="classification", metric="macro_f1", labels=LABELS, n_bootstrap=120, seed=7
    )
    assert result["difference"] == pytest.approx(macro(gold, pred_a) - macro(gold, pred_b))
    assert result["ci"] == pytest.approx(direct_bootstrap(gold, pred_a, pred_b, macro, 120, 7).tolist())
    assert result["n"] == 40 and result["n_bootstrap"] == 120
    assert 0 <= result["p"] <= 1
    # a model's resampled scores kept across pairs give the same answer, in either direction
    cache: dict = {}
    options = {
        "task_type": "classification",
        "metric": "macro_f1",
        "labels": LABELS,
        "n_bootstrap": 120,
        "seed": 7,
    }
    assert paired_bootstrap(a, b, cache=cache, **options) == result
    reverse = paired_bootstrap(b, a, cache=cache, **options)
    assert len(cache) == 2 and reverse["difference"] == pytest.approx(-result["difference"])
    assert reverse["ci"] == pytest.approx([-result["ci"][1], -result["ci"][0]])


def test_the_vectorised_path_equals_the_tasks_own_metrics_for_every_named_metric():
    gold, predicted = random_case(3)
    statuses = ["ok"] * 35 + ["refused", "invalid", "error", "ok", "ok"]
    recs = records(gold, predicted, statuses)
    idx = np.random.default_rng(0).integers(0, len(recs), size=(6, len(recs)))
    for name in [
        "macro_f1",
        "accuracy",
        "micro_f1",
        "weighted_f1",
        "macro_recall",
        "f1_belief",
        "mean_f1_belief_debunk",
    ]:
        fast = classification_values(name, LABELS)(recs, idx)
        slow = task_values("classification", name, LABELS)(recs, idx)
        assert fast == pytest.approx(slow), name


def test_several_seeds_resample_the_seed_means_with_one_shared_draw():
    gold, a0 = random_case(4, accuracy=0.8)
    _, a1 = random_case(5, accuracy=0.8)
    _, b0 = random_case(6, accuracy=0.6)
    a = PairedModel("a", {0: records(gold, a0), 1: records(gold, a1)})
    b = PairedModel("b", {0: records(gold, b0)})
    result = paired_bootstrap(
        a, b, task_type="classification", metric="accuracy", labels=LABELS, n_bootstrap=200, seed=3
    )

    def acc(g, p):
        return float(np.mean(g == p))

    rng = np.random.default_rng(3)
    idx = rng.integers(0, 40, size=(200, 40))
    g, pa0, pa1, pb0 = map(np.asarray, (gold, a0, a1, b0))
    diffs = [(acc(g[r], pa0[r]) + acc(g[r], pa1[r])) / 2 - acc(g[r], pb0[r]) for r in idx]
    assert result["ci"] == pytest.approx(np.percentile(diffs, [2.5, 97.5]).tolist())
    assert result["difference"] == pytest.approx((acc(g, pa0) + acc(g, pa1)) / 2 - acc(g, pb0))
    assert result["seeds"] == {"a": [0, 1], "b": [0]}


def test_a_task_without_classes_goes_through_its_own_metric_function():
    golds = [
        "the vaccine trial ended early",
        "floods hit the coast",
        "prices rose again",
        "the match was cancelled",
    ]
    good = PairedModel("good", {0: records(golds, golds)})
    bad = PairedModel("bad", {0: records(golds, ["nothing", "at all", "here", "today"])})
    result = paired_bootstrap(
        good, bad, task_type="summarisation", metric="rouge2", labels=[], n_bootstrap=50, seed=0
    )
    assert result["difference"] == pytest.approx(1.0)
    assert result["ci"] == [pytest.approx(1.0), pytest.approx(1.0)]
