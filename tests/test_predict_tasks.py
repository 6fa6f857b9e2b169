"""Batch prediction with a model whose task is not classification: rows carry the task's response
fields (here a multi-label TF-IDF model: labels and scores), nested in JSONL, JSON text in CSV and
Parquet cells; duplicate ids and blank texts get the task's empty answer."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from socialens.classifiers.base import load_classifier
from socialens.classifiers.tfidf import TfidfClassifier
from socialens.core.types import Example, LabelSchema
from socialens.data.stream import RowStream
from socialens.predict import predict_stream

TINY = Path(__file__).resolve().parent / "fixtures" / "bench" / "tiny.csv"
MULTI = LabelSchema.from_names(["belief", "debunk", "other", "long"])


def tiny_rows() -> list[dict[str, str]]:
    with TINY.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    examples = [
        Example(row["id"], row["text"], [row["label"], *(["long"] if len(row["text"]) > 60 else [])])
        for row in tiny_rows()
    ]
    directory = tmp_path_factory.mktemp("multilabel") / "model"
    TfidfClassifier().fit(examples, schema=MULTI, task_type="multilabel").save(directory)
    return directory


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("input") / "in.csv"
    rows = tiny_rows()[:6]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        for row in rows:
            writer.writerow([row["id"], row["text"]])
        writer.writerow(["blank", "  "])
        writer.writerow([rows[0]["id"], rows[0]["text"]])  # a duplicate id
    return path


def run(model_dir: Path, source: Path, out: Path):
    classifier = load_classifier(model_dir)
    return predict_stream(classifier, RowStream(source, id="id"), out, model_dir=model_dir, chunk_rows=3)


def test_jsonl_rows_carry_the_tasks_fields_nested(model_dir, source, tmp_path):
    out = tmp_path / "out.jsonl"
    summary = run(model_dir, source, out)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert summary.rows == len(rows) == 8
    assert [list(row) for row in rows] == [["id", "labels", "scores", "status", "error"]] * 8
    classifier = load_classifier(model_dir)
    direct = classifier.predict([Example(r["id"], r["text"]) for r in tiny_rows()[:6]])
    assert [row["labels"] for row in rows[:6]] == [d.predicted for d in direct]
    assert [row["scores"] for row in rows[:6]] == [d.scores for d in direct]
    assert all(row["status"] == "ok" and set(row["scores"]) == set(MULTI.names) for row in rows[:6])
    blank, duplicate = rows[6], rows[7]
    assert blank["status"] == "invalid" and blank["labels"] is None and blank["scores"] is None
    assert duplicate["status"] == "invalid" and duplicate["labels"] is None and duplicate["scores"] is None
    assert duplicate["error"].startswith("duplicate id in column 'id'")


def test_csv_and_parquet_cells_hold_json_text(model_dir, source, tmp_path):
    run(model_dir, source, tmp_path / "out.jsonl")
    expected = [
        json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    run(model_dir, source, tmp_path / "out.csv")
    with (tmp_path / "out.csv").open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["id", "labels", "scores", "status", "error"]
        rows = list(reader)
    for row, want in zip(rows, expected, strict=True):
        assert (json.loads(row["labels"]) if row["labels"] else None) == want["labels"]
        assert (json.loads(row["scores"]) if row["scores"] else None) == want["scores"]
        assert row["status"] == want["status"]
    run(model_dir, source, tmp_path / "out.parquet")
    table = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert [None if r["labels"] is None else json.loads(r["labels"]) for r in table] == [
        w["labels"] for w in expected
    ]
    assert [None if r["scores"] is None else json.loads(r["scores"]) for r in table] == [
        w["scores"] for w in expected
    ]


def test_a_killed_run_resumes_to_the_same_file(model_dir, source, tmp_path):
    whole = tmp_path / "whole.csv"
    run(model_dir, source, whole)
    out = tmp_path / "resumed.csv"

    classifier = load_classifier(model_dir)
    calls = {"n": 0}
    predict = classifier.predict

    def predict_then_die(examples):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # as Ctrl-C would, mid-run
        return predict(examples)

    classifier.predict = predict_then_die
    with pytest.raises(KeyboardInterrupt):
        # the first chunk is committed, then the second fails as a kill would
        predict_stream(classifier, RowStream(source, id="id"), out, model_dir=model_dir, chunk_rows=3)
    run(model_dir, source, out)
    assert out.read_bytes() == whole.read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_the_ray_engine_writes_the_local_engines_file(model_dir, source, tmp_path, suffix):
    ray = pytest.importorskip("ray")
    from socialens.predict_ray import predict_stream_ray

    local = tmp_path / f"local{suffix}"
    run(model_dir, source, local)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        distributed = tmp_path / f"ray{suffix}"
        predict_stream_ray(
            RowStream(source, id="id"),
            distributed,
            model_dir=model_dir,
            labels=MULTI.names,
            chunk_rows=3,
            actors=1,
        )
    finally:
        if started:
            ray.shutdown()
    assert distributed.read_bytes() == local.read_bytes()
