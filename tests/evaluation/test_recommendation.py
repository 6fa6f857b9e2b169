"""The recommendation from hand-made run folders with known answers."""

import json
from pathlib import Path

import yaml

from socialens.core.types import PredictionRecord, Status, write_records
from socialens.evaluation.recommendation import recommend_run, recommendation_lines

LABELS = ["pos", "neg"]


def write_run(root: Path, models: dict, official: str | None = None, bootstrap: int = 400) -> Path:
    """models: id -> (gold, predicted, predict_time_s); one seed each."""
    run = root / "run"
    experiment = {
        "name": "run",
        "bootstrap": bootstrap,
        "models": [{"id": m, "family": "tfidf"} for m in models],
    }
    (run / "ds").mkdir(parents=True)
    (run / "experiment.yaml").write_text(yaml.safe_dump(experiment))
    schema = {"name": "u", "labels": [{"name": n, "description": "", "aliases": []} for n in LABELS]}
    stats = {"official_metric": official} if official else {}
    (run / "ds" / "split.json").write_text(json.dumps({"schema": schema, "stats": stats}))
    for model, (gold, predicted, seconds) in models.items():
        cell = run / "ds" / model / "seed-0"
        cell.mkdir(parents=True)
        records = [
            PredictionRecord(id=f"t{i}", gold=g, predicted=p, status=Status.OK, latency_s=seconds / len(gold))
            for i, (g, p) in enumerate(zip(gold, predicted, strict=True))
        ]
        write_records(cell / "predictions.jsonl", records)
        costs = {"predict_time_s": seconds, "train_time_s": 1.0, "n_test": len(gold)}
        (cell / "metrics.json").write_text(json.dumps({"family": "tfidf", "seed": 0, "costs": costs}))
    return run


def test_accuracy_needs_mcnemar_too_and_a_tie_goes_to_the_cheaper_model(tmp_path):
    gold = ["pos", "neg"] * 10
    wrong = ["neg" if g == "pos" else "pos" for g in gold]
    # a right on all 20; b wrong on 5 of them: 5 discordant pairs, all one way
    b_predicted = wrong[:5] + gold[5:]
    run = write_run(tmp_path, {"a": (gold, gold, 60.0), "b": (gold, b_predicted, 1.0)}, official="accuracy")
    rec = recommend_run(run)["ds"]
    [pair] = rec["comparisons"]
    assert rec["metric"] == "accuracy" and rec["best"] == "a"
    assert pair["difference"] == 0.25 and pair["ci"][0] > 0  # the bootstrap alone would say significant
    assert (pair["mcnemar"]["b"], pair["mcnemar"]["c"]) == (5, 0)
    assert pair["mcnemar"]["p_exact"] == 0.0625  # 2 / 2**5: not below 0.05
    assert pair["significant"] is False and rec["recommended"] == "b"
    assert rec["sentence"].startswith(
        "ds: recommended model b (accuracy 0.750, the dataset's official metric): a scores higher (1.000), "
        "but its lead of +0.250 is not significant (95% CI [+"
    )
    assert "; McNemar exact p = 0.06), and b is cheaper (" in rec["sentence"]
    # one discordant pair more and both tests agree: the best model is recommended
    run = write_run(
        tmp_path / "more", {"a": (gold, gold, 60.0), "b": (gold, wrong[:6] + gold[6:], 1.0)}, "accuracy"
    )
    rec = recommend_run(run)["ds"]
    assert rec["comparisons"][0]["mcnemar"]["p_exact"] == 0.03125 and rec["recommended"] == "a"
    lines = recommendation_lines(rec)
    assert (
        lines[1].startswith("  a - b: +0.300 accuracy (95% CI [+")
        and "significant; McNemar exact p = 0.0312" in lines[1]
    )
    assert lines[2] == "  weakest class per model (F1): a neg 1.000; b neg 0.700"  # ties: the first name


def test_models_scored_on_different_examples_are_not_compared_or_tied(tmp_path):
    gold = ["pos", "neg"] * 4
    run = write_run(tmp_path, {"a": (gold, gold, 5.0), "b": (gold, gold, 1.0)})
    cell = run / "ds" / "b" / "seed-0" / "predictions.jsonl"
    cell.write_text(cell.read_text().replace('"t', '"other-'))  # b's examples have other ids
    rec = recommend_run(run)["ds"]
    [pair] = rec["comparisons"]
    assert pair["n"] == 0 and pair["significant"] is None and pair["ci"] is None
    assert rec["recommended"] == "a" and rec["tied_with_best"] == []
    assert "not compared" in recommendation_lines(rec)[1]
