"""The multilabel task: prompts, answer parsing, metrics (checked against scikit-learn), tables."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, hamming_loss, precision_recall_fscore_support

from socialens.core.registry import TASKS
from socialens.core.types import Example, Label, LabelSchema, PredictionRecord, Status
from socialens.tasks.base import Task
from socialens.tasks.multilabel import MultilabelTask
from socialens.tasks.multilabel_metrics import SCALAR_METRICS, compute_multilabel_metrics

SCHEMA = LabelSchema(
    [
        Label("fake", "false or misleading information", ("fake news",)),
        Label("hate", "hate speech against a group"),
        Label("offensive", "insulting or abusive", ("abusive",)),
        Label("defamation"),
    ],
    name="hostility",
)
TASK = MultilabelTask()
EXAMPLE = Example("x", "they are all liars", ["fake"])


def parse(raw, output_format="serial"):
    return TASK.parse(raw, EXAMPLE, SCHEMA, output_format)


def test_registered_and_a_task():
    assert TASKS.get("multilabel") is MultilabelTask
    assert isinstance(TASK, Task)
    assert TASK.headline_metric == "macro_f1" and TASK.headline_metric in TASK.scalar_metrics
    assert TASK.output_formats == ("serial", "json") and TASK.label_prompts is False


def test_stratify_key():
    assert TASK.stratify_key(Example("a", "t", ["hate", "fake"])) == "fake+hate"
    assert TASK.stratify_key(Example("a", "t", ["offensive"])) == "offensive"
    assert TASK.stratify_key(Example("a", "t", [])) == "none"
    assert TASK.stratify_key(Example("a", "t", None)) is None


def test_messages_list_labels_descriptions_and_shots():
    shots = [Example("s1", "shot one", ["hate", "fake"]), Example("s2", "shot two", [])]
    for output_format in TASK.output_formats:
        messages = TASK.messages(
            EXAMPLE,
            shots,
            SCHEMA,
            output_format=output_format,
            description="hostile posts",
            system_prompt="Be brief.",
        )
        assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
        assert messages[0]["content"] == "Be brief."
        ask = messages[-1]["content"]
        assert "hostile posts" in ask and "Several labels may apply, or none" in ask
        assert "- fake: false or misleading information" in ask and "- defamation\n" in ask
        assert ask.endswith("\n\nText: they are all liars")
        assert messages[1]["content"].endswith("Text: shot one")
        assert messages[2]["content"] == TASK.answer_text(shots[0], SCHEMA, output_format)
        assert messages[4]["content"] == TASK.answer_text(shots[1], SCHEMA, output_format)
        # the answers the prompt shows parse back to the shots' labels
        assert parse(messages[2]["content"], output_format).predicted == ["fake", "hate"]
        assert parse(messages[4]["content"], output_format).predicted == []
    serial = TASK.messages(EXAMPLE, [], SCHEMA, output_format="serial")[-1]["content"]
    assert "separated by commas" in serial and "none" in serial
    assert '{"labels": []}' in TASK.messages(EXAMPLE, [], SCHEMA, output_format="json")[-1]["content"]


def test_answer_text_in_schema_order():
    shot = Example("s", "t", ["hate", "fake"])
    assert TASK.answer_text(shot, SCHEMA, "serial") == "fake, hate"
    assert json.loads(TASK.answer_text(shot, SCHEMA, "json")) == {"labels": ["fake", "hate"]}
    assert TASK.answer_text(Example("s", "t", []), SCHEMA, "serial") == "none"
    with pytest.raises(ValueError, match="not a list of labels"):
        TASK.answer_text(Example("s", "t", "hate"), SCHEMA, "serial")
    with pytest.raises(ValueError, match="not all in"):
        TASK.answer_text(Example("s", "t", ["rumour"]), SCHEMA, "serial")


def test_generation_budget_and_json_schema():
    everything = Example("s", "t", SCHEMA.names)
    for output_format in TASK.output_formats:
        generation = TASK.generation(SCHEMA, output_format)
        # at least one token per character of the longest answer
        assert generation.max_tokens >= len(TASK.answer_text(everything, SCHEMA, output_format))
    assert TASK.generation(SCHEMA, "serial").json_schema is None
    spec = json.loads(TASK.generation(SCHEMA, "json").json_schema)
    assert spec["required"] == ["labels"]
    assert spec["properties"]["labels"]["type"] == "array"
    assert spec["properties"]["labels"]["items"]["enum"] == SCHEMA.names


PARSE_CASES = [
    # (raw answer, output format, status, predicted, method)
    ("hate, fake", "serial", "ok", ["fake", "hate"], "list"),
    ("Fake News; ABUSIVE", "serial", "ok", ["fake", "offensive"], "list"),  # aliases and case
    ("offensive", "serial", "ok", ["offensive"], "exact"),
    ("Hate.", "serial", "ok", ["hate"], "exact"),
    ("- hate\n- offensive", "serial", "ok", ["hate", "offensive"], "list"),
    ("hate and offensive", "serial", "ok", ["hate", "offensive"], "list"),
    ("none", "serial", "ok", [], "exact"),
    ("None.", "json", "ok", [], "exact"),
    ("No labels apply", "serial", "ok", [], "exact"),
    (
        "Labels: hate, offensive\nExplanation: it insults people.",
        "serial",
        "ok",
        ["hate", "offensive"],
        "cue",
    ),
    ("<think>maybe fake</think>hate", "serial", "ok", ["hate"], "exact"),
    ("offensiv, defamaton", "serial", "ok", ["offensive", "defamation"], "list+match"),  # typos
    ("كراهية", "serial", "ok", ["hate"], "list+match"),  # Arabic "hate"
    ('{"labels": ["hate", "offensive"]}', "json", "ok", ["hate", "offensive"], "json"),
    ('{"labels": ["offensive", "Hate"]}', "serial", "ok", ["hate", "offensive"], "json"),
    ('{"labels": []}', "json", "ok", [], "json"),
    ('{"labels": null}', "json", "ok", [], "json"),
    ('```json\n{"labels": ["fake news"]}\n```', "json", "ok", ["fake"], "json"),
    ("{'labels': ['hate',],}", "json", "ok", ["hate"], "json"),  # single quotes, trailing commas
    ('{"labels": ["hate", "fake"]', "json", "ok", ["fake", "hate"], "json"),  # cut off
    ('["fake", "hate"]', "json", "ok", ["fake", "hate"], "json"),
    ('{"labels": "hate, fake"}', "json", "ok", ["fake", "hate"], "json"),
    ('{"labels": [{"label": "hate"}, {"label": "fake"}]}', "json", "ok", ["fake", "hate"], "json"),
    (
        '{"fake": true, "hate": false, "offensive": 1, "defamation": "no"}',
        "json",
        "ok",
        ["fake", "offensive"],
        "json",
    ),
    ('{"labels": ["hate"]} and again {"labels": ["fake"]}', "json", "invalid", None, "json-ambiguous"),
    ('{"labels": ["rumour"]}', "json", "invalid", None, "json-unknown-label"),
    ("banana, apple", "serial", "invalid", None, "no-match"),
    ("", "serial", "invalid", None, "empty"),
    ("   ", "json", "invalid", None, "empty"),
    ("I'm sorry, but I can't help with classifying hateful content.", "serial", "refused", None, "refusal"),
    ("As an AI language model, I cannot label this text.", "json", "refused", None, "refusal"),
    ('I cannot help with that. {"labels": ["rumour"]}', "json", "refused", None, "refusal"),
]


@pytest.mark.parametrize(("raw", "output_format", "status", "predicted", "method"), PARSE_CASES)
def test_parse(raw, output_format, status, predicted, method):
    parsed = parse(raw, output_format)
    assert (parsed.status.value, parsed.predicted, parsed.details["method"]) == (status, predicted, method)
    assert (parsed.error is None) == (status == "ok")
    if status != "ok":
        assert parsed.error.startswith(f"{status}: ")


def test_parse_counts_unknown_items_and_duplicates():
    parsed = parse("hate, banana, hate, fake, hate")
    assert parsed.status is Status.OK and parsed.predicted == ["fake", "hate"]
    assert parsed.details == {"method": "list", "unknown": ["banana"], "n_unknown": 1, "duplicates": 2}
    garbage = parse("banana, apple, cherry, plum")
    assert garbage.status is Status.INVALID and garbage.details["n_unknown"] == 4
    assert "4 unknown items: 'banana', 'apple', 'cherry', ..." in garbage.error
    assert "names none of fake, hate, offensive, defamation" in garbage.error


def test_parse_a_refusal_with_an_answer_line_is_an_answer():
    # as in classification: a structured answer wins over refusal language around it
    parsed = parse("I'm sorry, but this is hateful. Labels: hate, offensive")
    assert parsed.status is Status.OK and parsed.predicted == ["hate", "offensive"]
    # a bare "no" inside a refusal does not read as "none applies"
    assert parse("No, I cannot help with that request.").status is Status.REFUSED


def test_parse_never_raises():
    for raw in [None, b"hate, fake", "{" * 100, "[" * 50 + "]", "x" * 30_000, '{"labels": [1, true, null]}']:
        parsed = TASK.parse(raw, EXAMPLE, SCHEMA, "json")
        assert parsed.status in (Status.OK, Status.INVALID, Status.REFUSED)
    assert TASK.parse(b"hate, fake", EXAMPLE, SCHEMA, "serial").predicted == ["fake", "hate"]


def test_a_schema_label_named_none_wins_over_the_none_answer():
    schema = LabelSchema.from_names(["hate", "none"])
    assert TASK.parse("none", EXAMPLE, schema, "serial").predicted == ["none"]


# --------------------------------------------------------------------------- metrics

LABELS = ["fake", "hate", "offensive"]
GOLD = [
    ["fake"],
    ["hate", "offensive"],
    [],
    ["fake", "hate"],
    ["offensive"],
    [],
    ["hate"],
    ["fake", "offensive"],
]
PRED = [["fake"], ["hate"], [], ["fake", "offensive"], [], ["hate"], ["hate"], ["fake", "offensive"]]


def records(golds, preds, statuses=None, **metadata_lists):
    out = []
    for i, (gold, pred) in enumerate(zip(golds, preds, strict=True)):
        status = statuses[i] if statuses else Status.OK
        metadata = {key: values[i] for key, values in metadata_lists.items()}
        out.append(
            PredictionRecord(
                id=f"r{i}",
                gold=gold,
                predicted=pred if status is Status.OK else None,
                status=status,
                metadata=metadata,
            )
        )
    return out


def indicator(label_sets):
    return np.array([[name in s for name in LABELS] for s in label_sets], dtype=int)


def test_metrics_equal_sklearn():
    metrics = TASK.metrics(records(GOLD, PRED), LABELS, n_bootstrap=200)
    y, p = indicator(GOLD), indicator(PRED)
    assert metrics["labels"] == LABELS and metrics["n"] == metrics["n_total"] == 8
    assert metrics["micro_f1"] == pytest.approx(f1_score(y, p, average="micro", zero_division=0))
    assert metrics["macro_f1"] == pytest.approx(f1_score(y, p, average="macro", zero_division=0))
    assert metrics["samples_f1"] == pytest.approx(f1_score(y, p, average="samples", zero_division=1))
    assert metrics["subset_accuracy"] == pytest.approx(accuracy_score(y, p))
    assert metrics["hamming_loss"] == pytest.approx(hamming_loss(y, p))
    for average in ("micro", "macro"):
        precision, recall, _, _ = precision_recall_fscore_support(y, p, average=average, zero_division=0)
        assert metrics[f"{average}_precision"] == pytest.approx(precision)
        assert metrics[f"{average}_recall"] == pytest.approx(recall)
    precision, recall, f1, support = precision_recall_fscore_support(y, p, average=None, zero_division=0)
    for i, label in enumerate(LABELS):
        row = metrics["per_class"][label]
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx((precision[i], recall[i], f1[i]))
        assert row["support"] == support[i] and row["predicted"] == p[:, i].sum()
    assert set(SCALAR_METRICS) <= set(metrics) and set(SCALAR_METRICS) <= set(metrics["ci"])
    assert metrics["status"]["counts"] == {"ok": 8, "refused": 0, "invalid": 0, "error": 0}
    assert metrics["cooccurrence"]["gold"][1][2] == 1 and metrics["cooccurrence"]["gold"][0][0] == 3
    assert metrics["cardinality"]["gold"] == pytest.approx(9 / 8)
    assert metrics["none_share"] == {"gold": 0.25, "predicted": 0.25}
    json.dumps(metrics)  # JSON-serialisable


def test_ci_brackets_the_point_estimate_and_matches_a_plain_bootstrap():
    rng = np.random.default_rng(3)
    golds = [[name for name in LABELS if rng.random() < 0.4] for _ in range(60)]
    preds = [[name for name in LABELS if (name in g) != (rng.random() < 0.25)] for g in golds]
    metrics = TASK.metrics(records(golds, preds), LABELS, n_bootstrap=300, seed=7)
    for name in SCALAR_METRICS:
        low, high = metrics["ci"][name]
        assert low <= metrics[name] <= high and low < high, name
    for label in LABELS:
        low, high = metrics["ci"]["per_class_f1"][label]
        assert low <= metrics["per_class"][label]["f1"] <= high
    # the vectorised resamples are the plain ones: the same draws, scored by scikit-learn
    y, p = indicator(golds), indicator(preds)
    draws = np.random.default_rng(7).integers(0, 60, size=(300, 60))
    micro = [f1_score(y[d], p[d], average="micro", zero_division=0) for d in draws]
    samples = [f1_score(y[d], p[d], average="samples", zero_division=1) for d in draws]
    assert metrics["ci"]["micro_f1"] == pytest.approx(list(np.percentile(micro, [2.5, 97.5])), abs=1e-12)
    assert metrics["ci"]["samples_f1"] == pytest.approx(list(np.percentile(samples, [2.5, 97.5])), abs=1e-12)
    assert metrics["ci"]["level"] == 0.95 and metrics["ci"]["n_bootstrap"] == 300
    again = TASK.metrics(records(golds, preds), LABELS, n_bootstrap=300, seed=7)
    assert again["ci"] == metrics["ci"]
    none = TASK.metrics(records(golds, preds), LABELS, n_bootstrap=0)
    assert none["ci"]["micro_f1"] is None and none["micro_f1"] == metrics["micro_f1"]


def test_non_ok_records_count_wrong():
    statuses = [Status.OK, Status.REFUSED, Status.INVALID, Status.ERROR, Status.OK]
    golds = [["fake"], ["hate"], [], ["fake", "hate"], []]
    preds = [["fake"], None, None, None, []]
    metrics = TASK.metrics(records(golds, preds, statuses), LABELS, n_bootstrap=50)
    # label-wise: each non-ok record predicts nothing, so it loses every gold label
    y, p = indicator(golds), indicator([["fake"], [], [], [], []])
    assert metrics["micro_f1"] == pytest.approx(f1_score(y, p, average="micro", zero_division=0))
    assert metrics["per_class"]["hate"]["recall"] == 0 and metrics["per_class"]["fake"]["recall"] == 0.5
    # example-wise: wrong outright, even the invalid one whose gold is "none"
    assert metrics["subset_accuracy"] == pytest.approx(2 / 5)
    assert metrics["samples_f1"] == pytest.approx(2 / 5)
    assert metrics["hamming_loss"] == pytest.approx(3 / 5)
    assert metrics["status"]["counts"] == {"ok": 2, "refused": 1, "invalid": 1, "error": 1}
    assert metrics["status"]["rates"]["refused"] == pytest.approx(0.2)
    # the same records with the non-ok ones answering "none" would score better
    answered = TASK.metrics(records(golds, [["fake"], [], [], [], []]), LABELS, n_bootstrap=0)
    assert answered["subset_accuracy"] > metrics["subset_accuracy"]
    assert answered["hamming_loss"] < metrics["hamming_loss"]


def test_malformed_ok_predictions_are_invalid_and_unlabelled_records_are_not_scored():
    recs = records([["fake"], ["hate"]], ["fake", ["rumour"]])  # a string, an unknown label
    recs.append(PredictionRecord(id="u", gold=None, predicted=["fake"]))
    metrics = TASK.metrics(recs, LABELS, n_bootstrap=0)
    assert metrics["status"]["counts"]["invalid"] == 2 and metrics["status"]["counts"]["ok"] == 0
    assert metrics["micro_f1"] == 0 and metrics["n"] == 2 and metrics["n_total"] == 3
    assert metrics["n_unlabelled"] == 1
    with pytest.raises(ValueError, match="not a list of labels"):
        TASK.metrics(records([["rumour"]], [[]]), LABELS)
    with pytest.raises(ValueError, match="not a list of labels"):
        TASK.metrics(records(["fake"], [[]]), LABELS)


def test_slices_collapse_and_unknown_counts():
    topics = ["a", "a", "b", "b", "b", None, "a", "b"]
    recs = records(GOLD, PRED, topic=topics)
    recs[0].details = {"method": "list", "unknown": ["x", "y"], "n_unknown": 2, "duplicates": 0}
    metrics = compute_multilabel_metrics(recs, LABELS, n_bootstrap=20, slice_keys=["topic"])
    assert sorted(metrics["slices"]["topic"]) == ["(missing)", "a", "b"]
    part = metrics["slices"]["topic"]["a"]
    y, p = indicator([GOLD[i] for i in (0, 1, 6)]), indicator([PRED[i] for i in (0, 1, 6)])
    assert part["n"] == 3 and part["micro_f1"] == pytest.approx(f1_score(y, p, average="micro"))
    assert metrics["unknown_labels"] == {"records": 1, "items": 2}
    assert metrics["collapse"]["collapsed"] is False
    collapsed = TASK.metrics(records(GOLD, [[]] * 8), LABELS, n_bootstrap=0)["collapse"]
    assert collapsed == {"label": "none", "share": 1.0, "gold_share": 0.25, "collapsed": True}
    empty = TASK.metrics([], LABELS)
    assert empty["n"] == 0 and empty["micro_f1"] is None and empty["ci"]["micro_f1"] is None


def test_report_tables_and_response():
    statuses = [Status.OK] * 7 + [Status.REFUSED]
    recs = records(GOLD, PRED, statuses)
    metrics = TASK.metrics(recs, LABELS, n_bootstrap=50)
    per_label, together, worst = TASK.report_tables(metrics, recs)
    assert [row[0] for row in per_label.rows] == LABELS
    assert per_label.rows[1][:3] == ["hate", 3, 3]
    assert together.headers == ["label", *LABELS] and together.rows[1] == ["hate", 1, 3, 1]
    # a refusal loses both its gold labels and is not an answer: three errors, first
    assert worst.rows[0] == ["r7", "refused", "fake, offensive", "", "fake, offensive", ""]
    assert worst.rows[1][0] == "r3" and worst.rows[1][4:] == ["hate", "offensive"]  # one missed, one extra
    assert "r0" not in [row[0] for row in worst.rows]  # right: not listed
    assert TASK.response(recs[1]) == {"labels": ["hate"], "scores": None}
    assert TASK.response(recs[7]) == {"labels": None, "scores": None}
