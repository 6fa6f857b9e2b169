"""Entity metrics from records: equal to seqeval (strict IOB2), bootstrap CIs, non-ok records."""

import random
import time

import numpy as np
import pytest
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2

from socialens.core.types import PredictionRecord, Status
from socialens.tasks.entity_metrics import compute_entity_metrics, scores_from_totals, sentence_counts
from socialens.tasks.token_classification import TokenClassificationTask

TASK = TokenClassificationTask()
TYPES = ["PER", "LOC", "ORG", "MISC"]
_ids = iter(range(10**9))


def rec(gold, predicted=None, status=Status.OK, details=None, **metadata):
    if status is Status.OK and predicted is None:
        predicted = list(gold)
    return PredictionRecord(
        str(next(_ids)), list(gold), predicted, status=status, details=details, metadata=metadata
    )


# hand-made: gold / predicted pairs with boundary errors, type errors, misses, spurious and a stray I-
HAND = [
    (["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "I-PER", "O", "B-LOC"]),  # 2 tp
    (["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "O", "O", "B-ORG"]),  # boundary + type error
    (["B-ORG", "I-ORG", "I-ORG", "O"], ["B-ORG", "I-ORG", "I-ORG", "O"]),  # tp
    (["O", "O", "B-MISC", "O"], ["O", "O", "O", "O"]),  # miss
    (["O", "O", "O", "O"], ["B-LOC", "O", "I-PER", "I-PER"]),  # spurious + a stray I- (no entity, strict)
    (["B-LOC", "B-LOC", "O", "O"], ["B-LOC", "I-LOC", "O", "O"]),  # two adjacent vs one merged
]


def test_hand_made_set_equals_seqeval_strict():
    records = [rec(g, p) for g, p in HAND]
    m = TASK.metrics(records, TYPES, n_bootstrap=50)
    y_true, y_pred = [g for g, _ in HAND], [p for _, p in HAND]
    strict = {"mode": "strict", "scheme": IOB2}
    assert m["micro_f1"] == pytest.approx(f1_score(y_true, y_pred, **strict))
    assert m["micro_precision"] == pytest.approx(precision_score(y_true, y_pred, **strict))
    assert m["micro_recall"] == pytest.approx(recall_score(y_true, y_pred, **strict))
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro", **strict))
    report = classification_report(y_true, y_pred, output_dict=True, zero_division=0, **strict)
    for kind in TYPES:
        assert m["per_class"][kind]["precision"] == pytest.approx(report[kind]["precision"])
        assert m["per_class"][kind]["recall"] == pytest.approx(report[kind]["recall"])
        assert m["per_class"][kind]["f1"] == pytest.approx(report[kind]["f1-score"])
        assert m["per_class"][kind]["support"] == report[kind]["support"]
    # by hand: gold PER 2, LOC 4, ORG 1, MISC 1 = 8; predicted PER 2, LOC 3, ORG 2 = 7; tp 3
    assert (
        m["entities"]["gold"] == 8 and m["entities"]["predicted"] == 7 and m["entities"]["true_positive"] == 3
    )
    assert m["micro_precision"] == pytest.approx(3 / 7) and m["micro_recall"] == pytest.approx(3 / 8)
    assert m["per_class"]["LOC"] == {
        "precision": pytest.approx(1 / 3),
        "recall": 0.25,
        "f1": pytest.approx(2 / 7),
        "support": 4,
        "predicted": 3,
    }
    assert m["labels"] == TYPES and m["n"] == 6 and m["n_total"] == 6 and m["n_unlabelled"] == 0
    assert m["status"]["rates"] == {"ok": 1.0, "refused": 0.0, "invalid": 0.0, "error": 0.0}
    assert m["hallucination_rate"] == 0.0


def random_tags(rng, n, types=TYPES):
    tags, i = [], 0
    while i < n:
        if rng.random() < 0.25:
            kind, length = rng.choice(types), rng.randint(1, 3)
            for j in range(min(length, n - i)):
                tags.append(("B-" if j == 0 else "I-") + kind)
            i += length
        else:
            tags.append("O")
            i += 1
    return tags[:n]


def corrupt(rng, tags):
    out = list(tags)
    for i in range(len(out)):
        r = rng.random()
        if r < 0.08:
            out[i] = "O"
        elif r < 0.12:
            out[i] = rng.choice(["B-", "I-"]) + rng.choice(TYPES)
    return out


def random_set(n, seed=0):
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        gold = random_tags(rng, rng.randint(3, 25))
        pairs.append((gold, corrupt(rng, gold)))
    return pairs


def test_random_sets_equal_seqeval():
    pairs = random_set(300, seed=3)
    m = compute_entity_metrics([rec(g, p) for g, p in pairs], TYPES, n_bootstrap=0)
    y_true, y_pred = [g for g, _ in pairs], [p for _, p in pairs]
    strict = {"mode": "strict", "scheme": IOB2}
    assert m["micro_f1"] == pytest.approx(f1_score(y_true, y_pred, **strict), abs=1e-12)
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro", **strict), abs=1e-12)
    assert m["ci"]["micro_f1"] is None  # no resamples asked for


def test_bootstrap_totals_equal_seqeval_on_a_resample():
    pairs = random_set(80, seed=5)
    records = [rec(g, p) for g, p in pairs]
    counts = sentence_counts(records, TYPES)
    rng = np.random.default_rng(1)
    idx = rng.integers(0, len(pairs), len(pairs))
    weights = np.bincount(idx, minlength=len(pairs))
    scores = scores_from_totals(weights @ counts.tp, weights @ counts.gold, weights @ counts.pred)
    y_true, y_pred = [pairs[i][0] for i in idx], [pairs[i][1] for i in idx]
    assert float(scores["micro_f1"]) == pytest.approx(f1_score(y_true, y_pred, mode="strict", scheme=IOB2))


def test_ci_brackets_the_point_estimate_and_is_reproducible():
    records = [rec(g, p) for g, p in random_set(200, seed=7)]
    m = compute_entity_metrics(records, TYPES, n_bootstrap=400, seed=0)
    for name in ("micro_f1", "micro_precision", "micro_recall", "macro_f1"):
        low, high = m["ci"][name]
        assert low <= m[name] <= high and low < high
    for kind in TYPES:
        low, high = m["ci"]["per_class_f1"][kind]
        assert low <= m["per_class"][kind]["f1"] <= high
    assert m["ci"]["level"] == 0.95 and m["ci"]["n_bootstrap"] == 400 and m["ci"]["method"] == "percentile"
    again = compute_entity_metrics(records, TYPES, n_bootstrap=400, seed=0)
    assert again["ci"] == m["ci"]
    other = compute_entity_metrics(records, TYPES, n_bootstrap=400, seed=1)
    assert other["ci"]["micro_f1"] != m["ci"]["micro_f1"]


def test_perfect_predictions_have_a_degenerate_ci():
    records = [rec(g) for g, _ in random_set(30, seed=2)]
    m = compute_entity_metrics(records, TYPES, n_bootstrap=100)
    assert m["micro_f1"] == 1.0 and m["ci"]["micro_f1"] == [1.0, 1.0]


def test_bootstrap_is_fast():
    records = [rec(g, p) for g, p in random_set(3000, seed=11)]
    start = time.perf_counter()
    compute_entity_metrics(records, TYPES, n_bootstrap=1000)
    assert time.perf_counter() - start < 10  # ~1 s on one core; seqeval per resample would take minutes


def test_non_ok_records_count_as_all_o_and_their_rates_are_reported():
    gold = ["B-PER", "I-PER", "O", "B-LOC"]
    records = [
        rec(gold),
        rec(gold, None, Status.REFUSED),
        rec(gold, None, Status.INVALID),
        rec(gold, None, Status.ERROR),
        rec(gold, ["B-PER"]),  # ok but the wrong length: counted as invalid
    ]
    m = compute_entity_metrics(records, TYPES, n_bootstrap=50)
    assert m["status"]["counts"] == {"ok": 1, "refused": 1, "invalid": 2, "error": 1}
    assert m["status"]["rates"]["invalid"] == pytest.approx(0.4)
    assert m["micro_recall"] == pytest.approx(2 / 10) and m["micro_precision"] == 1.0
    y_true = [gold] * 5
    y_pred = [gold] + [["O"] * 4] * 4
    assert m["micro_f1"] == pytest.approx(f1_score(y_true, y_pred, mode="strict", scheme=IOB2))


def test_hallucination_rate_and_entity_totals():
    gold = ["B-PER", "I-PER", "O", "B-LOC"]
    records = [
        rec(gold, details={"hallucinated": 2, "invalid_type": 1, "overlapping": 1}),  # 2 predicted
        rec(gold, ["B-PER", "I-PER", "O", "O"], details={"hallucinated": 1}),  # 1 predicted
        rec(gold, None, Status.INVALID, details={"hallucinated": 5}),  # not ok: its details don't count
    ]
    m = compute_entity_metrics(records, TYPES, n_bootstrap=100)
    assert m["hallucination_rate"] == pytest.approx(3 / (3 + 3))
    assert m["entities"] == {
        "gold": 6,
        "predicted": 3,
        "true_positive": 3,
        "hallucinated": 3,
        "invalid_type": 1,
        "overlapping": 1,
        "invalid_type_rate": pytest.approx(1 / 8),
    }
    low, high = m["ci"]["hallucination_rate"]
    assert low <= m["hallucination_rate"] <= high


def test_unlabelled_records_slices_and_extra_types():
    records = [
        rec(["B-PER", "O"], lang="en"),
        rec(["B-LOC", "O"], ["B-GPE", "O"], lang="ar"),
        PredictionRecord("u", None, ["O", "O"]),
    ]
    m = compute_entity_metrics(records, ["PER", "LOC"], n_bootstrap=20, slice_keys=["lang", "topic"])
    assert m["n"] == 2 and m["n_total"] == 3 and m["n_unlabelled"] == 1
    assert list(m["per_class"]) == ["PER", "LOC", "GPE"]  # a type outside the schema still shows
    assert m["per_class"]["GPE"]["predicted"] == 1
    assert m["slices"]["lang"]["en"]["micro_f1"] == 1.0 and m["slices"]["lang"]["ar"]["micro_f1"] == 0.0
    assert m["slices"]["topic"]["(missing)"]["n"] == 2
    assert m["slices"]["lang"]["en"]["ci"]["n_bootstrap"] == 20


def test_empty_and_bad_gold():
    m = compute_entity_metrics([], TYPES, n_bootstrap=10)
    assert m["n"] == 0 and m["micro_f1"] is None and m["ci"]["micro_f1"] is None
    with pytest.raises(ValueError, match="record 'bad': gold"):
        compute_entity_metrics([PredictionRecord("bad", "PER", None)], TYPES)
    with pytest.raises(ValueError, match="ci must be"):
        compute_entity_metrics([], TYPES, ci=1.5)


def test_common_keys_match_the_task_protocol():
    m = TASK.metrics([rec(g, p) for g, p in HAND], TYPES, n_bootstrap=20)
    for key in ("labels", "n", "n_total", "status", "ci", "per_class", *TASK.scalar_metrics):
        assert key in m
    for name in TASK.scalar_metrics:
        assert isinstance(m[name], float) and name in m["ci"]


def test_report_tables_per_type_and_worst_sentences():
    tokens = ["John", "Smith", "met", "Ann", "in", "Rome"]
    gold = ["B-PER", "I-PER", "O", "B-PER", "O", "B-LOC"]
    records = [
        PredictionRecord("good", gold, list(gold), details={"tokens": tokens, "hallucinated": 0}),
        PredictionRecord(
            "bad",
            gold,
            ["B-PER", "O", "O", "O", "O", "B-ORG"],
            details={
                "tokens": tokens,
                "hallucinated": 1,
                "hallucinated_entities": [{"text": "Paris", "type": "LOC"}],
            },
        ),
        PredictionRecord("refused", gold, None, status=Status.REFUSED),
    ]
    m = TASK.metrics(records, TYPES, n_bootstrap=0)
    per_type, worst = TASK.report_tables(m, records)
    assert per_type.headers[:5] == ["type", "precision", "recall", "f1", "support"]
    assert [row[0] for row in per_type.rows] == TYPES
    assert [row[0] for row in worst.rows] == ["bad", "refused"]  # "good" has no error
    bad = worst.rows[0]
    assert bad[1] == 3 + 2 + 1  # 3 gold missed, 2 wrong predictions, 1 hallucinated
    assert bad[3] == "John Smith met Ann in Rome"
    assert bad[4] == "John Smith (PER), Ann (PER), Rome (LOC)"
    assert bad[5] == "John (PER), Rome (ORG); hallucinated: Paris (LOC)"
    assert worst.rows[1][2] == "refused" and worst.rows[1][5] == "none"
