import json
import random
import time

import numpy as np
import pytest
from sklearn.metrics import f1_score

from socialens.core.errors import ConfigError
from socialens.core.types import PredictionRecord, Status
from socialens.tasks.classification_metrics import (
    _BOOTSTRAP_CHUNK_CELLS,
    aggregate_seeds,
    bootstrap_counts,
    compute_metrics,
    encode,
    f1_from_counts,
    official_metric,
)

_counter = iter(range(10**9))


def rec(gold, predicted=None, status=Status.OK, **metadata):
    if status is Status.OK and predicted is None:
        predicted = gold
    return PredictionRecord(
        id=str(next(_counter)), gold=gold, predicted=predicted, status=status, metadata=metadata
    )


def refused(gold, **metadata):
    return rec(gold, None, Status.REFUSED, **metadata)


def records_with_accuracy(n, accuracy, labels=("a", "b"), seed=0):
    """n records, round(n * accuracy) correct, the rest predicted as the next label."""
    rng = random.Random(seed)
    n_correct = round(n * accuracy)
    out = []
    for i in range(n):
        gold = labels[rng.randrange(len(labels))]
        wrong = labels[(labels.index(gold) + 1) % len(labels)]
        out.append(rec(gold, gold if i < n_correct else wrong))
    return out


def random_records(n, labels, seed=0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        gold = rng.choice(labels)
        status = rng.choice([Status.OK] * 6 + [Status.REFUSED, Status.INVALID, Status.ERROR])
        predicted = (gold if rng.random() < 0.5 else rng.choice(labels)) if status is Status.OK else None
        out.append(rec(gold, predicted, status))
    return out


def test_perfect_predictions_score_one_with_degenerate_ci():
    labels = ["favor", "against", "none"]
    records = [rec(label) for label in labels for _ in range(5)]
    m = compute_metrics(records, labels, n_bootstrap=200)
    for name in ("accuracy", "macro_f1", "micro_f1", "weighted_f1", "macro_precision", "macro_recall"):
        assert m[name] == 1.0
    for label in labels:
        assert m["per_class"][label] == {
            "precision": 1.0,
            "recall": 1.0,
            "f1": 1.0,
            "support": 5,
            "predicted": 5,
        }
    assert m["ci"]["macro_f1"] == [1.0, 1.0]
    assert m["ci"]["accuracy"] == [1.0, 1.0]
    assert m["status"]["rates"] == {"ok": 1.0, "refused": 0.0, "invalid": 0.0, "error": 0.0}
    assert m["confusion"]["matrix"] == [[5, 0, 0, 0, 0, 0], [0, 5, 0, 0, 0, 0], [0, 0, 5, 0, 0, 0]]


def test_two_class_hand_computed():
    # gold pos: pos, pos, neg | gold neg: neg, neg, pos, refused
    records = [
        rec("pos", "pos"),
        rec("pos", "pos"),
        rec("pos", "neg"),
        rec("neg", "neg"),
        rec("neg", "neg"),
        rec("neg", "pos"),
        refused("neg"),
    ]
    m = compute_metrics(records, ["pos", "neg"], n_bootstrap=100)
    assert m["n"] == 7
    assert m["accuracy"] == pytest.approx(4 / 7)
    pos, neg = m["per_class"]["pos"], m["per_class"]["neg"]
    assert (pos["precision"], pos["recall"], pos["f1"]) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert (pos["support"], pos["predicted"]) == (3, 3)
    assert (neg["precision"], neg["recall"], neg["f1"]) == pytest.approx((2 / 3, 1 / 2, 4 / 7))
    assert (neg["support"], neg["predicted"]) == (4, 3)
    assert m["macro_f1"] == pytest.approx(13 / 21)
    assert m["weighted_f1"] == pytest.approx(30 / 49)
    # Micro precision ignores the refusal (no class); micro recall counts it: 2*4 / (7 + 6).
    assert m["micro_f1"] == pytest.approx(8 / 13)
    assert m["macro_precision"] == pytest.approx(2 / 3)
    assert m["macro_recall"] == pytest.approx(7 / 12)
    assert m["confusion"] == {
        "rows": ["pos", "neg"],
        "columns": ["pos", "neg", "refused", "invalid", "error"],
        "matrix": [[2, 1, 0, 0, 0], [1, 2, 1, 0, 0]],
    }
    assert m["status"]["counts"] == {"ok": 6, "refused": 1, "invalid": 0, "error": 0}
    assert m["status"]["rates"]["refused"] == pytest.approx(1 / 7)


def test_non_ok_predictions_count_wrong_and_are_reported():
    labels = ["true", "false", "mixed"]
    records = [
        rec("true"),
        refused("true"),
        refused("false"),
        rec("false", None, Status.INVALID),
        rec("false", "false"),
        rec("mixed", None, Status.ERROR),
        rec("mixed", "banana"),  # ok status but outside the schema: counted as invalid
        rec("mixed", "mixed"),
    ]
    m = compute_metrics(records, labels, n_bootstrap=100)
    assert m["accuracy"] == pytest.approx(3 / 8)
    for label in labels:
        assert m["per_class"][label]["precision"] == 1.0
    assert m["per_class"]["true"]["recall"] == pytest.approx(1 / 2)
    assert m["per_class"]["false"]["recall"] == pytest.approx(1 / 3)
    assert m["per_class"]["mixed"]["recall"] == pytest.approx(1 / 3)
    assert m["status"]["counts"] == {"ok": 3, "refused": 2, "invalid": 2, "error": 1}
    assert m["status"]["rates"]["invalid"] == pytest.approx(2 / 8)
    assert m["confusion"]["matrix"] == [
        [1, 0, 0, 1, 0, 0],
        [0, 1, 0, 1, 1, 0],
        [0, 0, 1, 0, 1, 1],
    ]
    # Sentinel is not a class: macro-F1 averages the three schema classes only.
    expected_macro = np.mean([2 * 1 / (2 + 1), 2 * 1 / (3 + 1), 2 * 1 / (3 + 1)])
    assert m["macro_f1"] == pytest.approx(expected_macro)


def test_all_refused_does_not_crash():
    m = compute_metrics([refused("a"), refused("b")], ["a", "b"], n_bootstrap=50)
    assert m["accuracy"] == 0.0 and m["macro_f1"] == 0.0
    assert m["status"]["rates"]["refused"] == 1.0
    assert m["ci"]["macro_f1"] == [0.0, 0.0]


def test_class_without_support_or_predictions_is_zero_not_a_crash():
    labels = ["a", "b", "c"]
    records = [rec("a"), rec("a"), rec("b"), rec("b", "a")]
    m = compute_metrics(records, labels, n_bootstrap=100)
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "predicted": 0}
    # a: P 2/3 R 1 F1 0.8; b: P 1 R 1/2 F1 2/3; c: 0 (kept in the macro average).
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 0) / 3)
    assert m["ci"]["per_class_f1"]["c"] == [0.0, 0.0]


def test_predicted_class_without_support():
    m = compute_metrics([rec("a", "b"), rec("a")], ["a", "b"], n_bootstrap=50)
    assert m["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "predicted": 1}


def test_ci_contains_point_estimate_and_narrows_with_more_data():
    small = compute_metrics(records_with_accuracy(40, 0.7), ["a", "b"], n_bootstrap=500)
    large = compute_metrics(records_with_accuracy(4000, 0.7), ["a", "b"], n_bootstrap=500)
    for m in (small, large):
        for name in ("accuracy", "macro_f1", "weighted_f1"):
            low, high = m["ci"][name]
            assert low <= m[name] <= high
    width = {key: m["ci"]["macro_f1"][1] - m["ci"]["macro_f1"][0] for key, m in (("s", small), ("l", large))}
    assert width["l"] < width["s"] / 3


def test_bootstrap_is_deterministic_for_a_seed():
    records = random_records(300, ["a", "b", "c"])
    first = compute_metrics(records, ["a", "b", "c"], n_bootstrap=300, seed=7)
    again = compute_metrics(records, ["a", "b", "c"], n_bootstrap=300, seed=7)
    other = compute_metrics(records, ["a", "b", "c"], n_bootstrap=300, seed=8)
    assert first["ci"] == again["ci"]
    assert first["ci"]["macro_f1"] != other["ci"]["macro_f1"]
    assert first["ci"]["seed"] == 7 and first["ci"]["n_bootstrap"] == 300


def test_vectorised_f1_matches_sklearn_exactly():
    labels = ["a", "b", "c", "d"]
    records = random_records(500, labels, seed=3)
    gold, pred = encode(records, labels)
    k = len(labels)
    sentinel_pred = np.where(pred < k, pred, k)
    counts = np.zeros((k, k + 1), dtype=np.int64)
    np.add.at(counts, (gold, sentinel_pred), 1)
    stats = f1_from_counts(counts)
    label_idx = list(range(k))
    assert stats["macro_f1"] == f1_score(
        gold, sentinel_pred, labels=label_idx, average="macro", zero_division=0
    )
    assert np.array_equal(
        stats["per_class_f1"], f1_score(gold, sentinel_pred, labels=label_idx, average=None, zero_division=0)
    )
    assert stats["weighted_f1"] == pytest.approx(
        f1_score(gold, sentinel_pred, labels=label_idx, average="weighted", zero_division=0), abs=1e-15
    )
    m = compute_metrics(records, labels, n_bootstrap=10)
    assert m["macro_f1"] == stats["macro_f1"]


def test_bootstrap_resamples_match_sklearn_per_resample():
    labels = ["a", "b", "c"]
    records = random_records(60, labels, seed=5)
    gold, pred = encode(records, labels)
    k = len(labels)
    sentinel_pred = np.where(pred < k, pred, k)
    n_boot = 20
    assert n_boot * len(gold) <= _BOOTSTRAP_CHUNK_CELLS  # one chunk: the indices are one rng call
    counts = bootstrap_counts(gold, sentinel_pred, k, k + 1, n_bootstrap=n_boot, seed=11)
    idx = np.random.default_rng(11).integers(0, len(gold), size=(n_boot, len(gold)))
    macro = f1_from_counts(counts)["macro_f1"]
    for b in range(n_boot):
        expected = f1_score(
            gold[idx[b]], sentinel_pred[idx[b]], labels=[0, 1, 2], average="macro", zero_division=0
        )
        assert macro[b] == pytest.approx(expected, abs=1e-12)


def test_bootstrap_speed_3000_records():
    labels = ["a", "b", "c", "d"]
    records = random_records(3000, labels)
    start = time.perf_counter()
    compute_metrics(records, labels, n_bootstrap=1000)
    assert time.perf_counter() - start < 1.0


def test_slices_by_topic():
    records = [
        rec("a", "a", topic="covid"),
        rec("b", "b", topic="covid"),
        rec("a", "a", topic="climate"),
        rec("b", "a", topic="climate"),
        refused("b", topic="climate"),
        rec("a", "a"),  # no topic
    ]
    m = compute_metrics(records, ["a", "b"], n_bootstrap=100, slice_keys=["topic"])
    topics = m["slices"]["topic"]
    assert sorted(topics) == ["(missing)", "climate", "covid"]
    assert (
        topics["covid"]["n"] == 2
        and topics["covid"]["accuracy"] == 1.0
        and topics["covid"]["macro_f1"] == 1.0
    )
    climate = topics["climate"]
    assert climate["n"] == 3
    assert climate["accuracy"] == pytest.approx(1 / 3)
    # a: P 1/2 R 1 F1 2/3; b: 0 -> macro 1/3
    assert climate["macro_f1"] == pytest.approx(1 / 3)
    assert climate["status"]["counts"]["refused"] == 1
    assert "confusion" not in climate
    assert climate["ci"]["n_bootstrap"] == 100
    assert topics["(missing)"]["n"] == 1
    json.dumps(m, allow_nan=False)


def test_unlabelled_records_are_excluded():
    records = [
        rec("a"),
        rec("b", "a"),
        rec(None, "a"),
        PredictionRecord(id="u", gold=None, predicted=None, status=Status.REFUSED),
    ]
    m = compute_metrics(records, ["a", "b"], n_bootstrap=50)
    assert (m["n"], m["n_total"], m["n_unlabelled"]) == (2, 4, 2)
    assert m["accuracy"] == 0.5
    assert m["status"]["counts"]["refused"] == 0


def test_no_labelled_records():
    m = compute_metrics([rec(None, "a")], ["a", "b"], n_bootstrap=50, slice_keys=["topic"])
    assert m["n"] == 0 and m["macro_f1"] is None and m["ci"]["macro_f1"] is None
    json.dumps(m, allow_nan=False)


def test_gold_outside_schema_is_an_error():
    with pytest.raises(ValueError, match="not one of"):
        compute_metrics([rec("zzz")], ["a", "b"])


def test_status_as_plain_string_is_accepted():
    record = PredictionRecord.from_dict({"id": "1", "gold": "a", "predicted": None, "status": "refused"})
    m = compute_metrics([record, rec("a")], ["a"], n_bootstrap=10)
    assert m["status"]["counts"]["refused"] == 1


def test_aggregate_seeds_mean_and_std():
    runs = [
        compute_metrics(records_with_accuracy(4, acc, seed=i), ["a", "b"], n_bootstrap=10)
        for i, acc in enumerate([0.5, 0.75, 1.0])
    ]
    agg = aggregate_seeds(runs)
    assert agg["n_seeds"] == 3
    assert agg["accuracy"]["mean"] == pytest.approx(0.75)
    assert agg["accuracy"]["std"] == pytest.approx(0.25)  # sample std of 0.5, 0.75, 1.0
    f1_a = [run["per_class"]["a"]["f1"] for run in runs]
    assert agg["per_class_f1"]["a"]["mean"] == pytest.approx(np.mean(f1_a))
    assert agg["per_class_f1"]["a"]["std"] == pytest.approx(np.std(f1_a, ddof=1))
    assert agg["status_rates"]["ok"] == {"mean": 1.0, "std": 0.0, "values": [1.0, 1.0, 1.0]}
    single = aggregate_seeds(runs[:1])
    assert single["n_seeds"] == 1 and single["macro_f1"]["std"] == 0.0
    assert single["macro_f1"]["mean"] == runs[0]["macro_f1"]
    json.dumps(agg, allow_nan=False)


def test_official_metric_names():
    labels = ["favor", "against", "partially_false"]
    records = [
        rec("favor"),
        rec("favor", "against"),
        rec("against"),
        rec("partially_false"),
        refused("partially_false"),
    ]
    m = compute_metrics(records, labels, n_bootstrap=10)
    assert official_metric(m, "macro_f1") == m["macro_f1"]
    assert official_metric(m, "accuracy") == m["accuracy"]
    assert official_metric(m, "weighted_f1") == m["weighted_f1"]
    assert official_metric(m, "f1_favor") == pytest.approx(2 / 3)
    assert official_metric(m, "recall_partially_false") == pytest.approx(0.5)
    assert official_metric(m, "f1_partially_false") == pytest.approx(2 / 3)
    assert official_metric(m, "mean_f1_favor_against") == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert official_metric(m, "mean_f1_partially_false_favor") == pytest.approx(2 / 3)
    with pytest.raises(ConfigError, match="unknown metric 'f1_nope'"):
        official_metric(m, "f1_nope")
    with pytest.raises(ConfigError):
        official_metric(m, "mean_f1_favor_nope")
    agg = aggregate_seeds([m, m])
    assert official_metric(agg, "macro_f1") == pytest.approx(m["macro_f1"])
    assert official_metric(agg, "mean_f1_favor_against") == pytest.approx(2 / 3)


# --- collapse: one label for > 95% of a test set (issue 16) ----------------------------------


def test_collapse_is_computed_from_the_records():
    # 97 of 100 predicted "a" (gold: 60 a, 40 b): collapsed; 95 of 100 is not (> 95% is needed)
    records = (
        [rec("a") for _ in range(60)] + [rec("b", "a") for _ in range(37)] + [rec("b") for _ in range(3)]
    )
    collapse = compute_metrics(records, ["a", "b"], n_bootstrap=0)["collapse"]
    assert collapse == {"label": "a", "share": 0.97, "gold_share": 0.6, "collapsed": True}
    records = (
        [rec("a") for _ in range(60)] + [rec("b", "a") for _ in range(35)] + [rec("b") for _ in range(5)]
    )
    collapse = compute_metrics(records, ["a", "b"], n_bootstrap=0)["collapse"]
    assert (collapse["share"], collapse["collapsed"]) == (0.95, False)


def test_refusals_predict_no_label_and_unlabelled_records_count():
    # 10 refused of 20: "a" is predicted for half of the test set, which is no collapse
    records = [refused("a") for _ in range(10)] + [rec("a") for _ in range(10)]
    assert compute_metrics(records, ["a", "b"], n_bootstrap=0)["collapse"]["share"] == 0.5
    unlabelled = [rec(None, "b") for _ in range(30)] + [rec("a", "b") for _ in range(10)]
    collapse = compute_metrics(unlabelled, ["a", "b"], n_bootstrap=0)["collapse"]
    assert collapse == {"label": "b", "share": 1.0, "gold_share": 0.0, "collapsed": True}
    nothing = compute_metrics([refused("a")], ["a", "b"], n_bootstrap=0)["collapse"]
    assert nothing == {"label": None, "share": None, "gold_share": None, "collapsed": False}


def test_aggregate_counts_the_collapsed_seeds():
    collapsed = compute_metrics([rec("a"), rec("b", "a"), rec("b", "a")], ["a", "b"], n_bootstrap=0)
    healthy = compute_metrics([rec("a"), rec("b"), rec("b")], ["a", "b"], n_bootstrap=0)
    old = {k: v for k, v in healthy.items() if k != "collapse"}  # metrics.json from before
    agg = aggregate_seeds([collapsed, healthy, old])
    assert agg["collapse"]["seeds"] == 1 and agg["collapse"]["labels"] == ["a"]
    assert agg["collapse"]["share"]["values"] == [1.0, pytest.approx(2 / 3), None]
