"""Streaming, resumable batch prediction (socialens.predict) and the `socialens predict` command."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from socialens.classifiers.base import load_classifier
from socialens.classifiers.tfidf import TfidfClassifier
from socialens.cli import app
from socialens.core.errors import DataError
from socialens.core.types import Example, LabelSchema
from socialens.data.readers import read_examples
from socialens.data.stream import RowStream
from socialens.predict import predict_examples, predict_stream, progress_path, run_record_path

TINY = Path(__file__).resolve().parent / "fixtures" / "bench" / "tiny.csv"
SCHEMA = LabelSchema.from_names(["belief", "debunk", "other"])
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("model")
    examples = read_examples(TINY, label="label", id="id", schema=SCHEMA).examples
    TfidfClassifier(seed=0).fit(examples, schema=SCHEMA).save(directory)
    return directory


def run(model_dir, source, out, chunk_rows=4096, batch_size=256, force=False, **stream_options):
    classifier = load_classifier(model_dir)
    stream = RowStream(source, schema=classifier.schema, **stream_options)
    return predict_stream(
        classifier,
        stream,
        out,
        model_dir=model_dir,
        chunk_rows=chunk_rows,
        batch_size=batch_size,
        force=force,
    )


def read_output(path: Path) -> pd.DataFrame:
    if path.suffix == ".jsonl":
        return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines()])
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype={"id": str, "error": str, "gold": str, "topic": str})
    return pd.read_parquet(path)


def write_input(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in frame.to_dict("records")))
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False, row_group_size=17)
    return path


@pytest.mark.parametrize("in_suffix", [".csv", ".jsonl", ".parquet"])
@pytest.mark.parametrize("out_suffix", [".csv", ".jsonl", ".parquet"])
def test_every_format_in_and_out_gives_the_same_rows(model_dir, tmp_path, in_suffix, out_suffix):
    source = write_input(pd.read_csv(TINY, dtype=str), tmp_path / f"in{in_suffix}")
    out = tmp_path / f"out{out_suffix}"
    summary = run(model_dir, source, out, chunk_rows=13, label="label", metadata={"topic": "topic"})
    assert summary.rows == 90 and summary.statuses == {"ok": 90}
    frame = read_output(out)
    assert list(frame.columns) == [
        "id", "label", "p_belief", "p_debunk", "p_other", "status", "error", "gold", "topic"
    ]  # fmt: skip
    expected = pd.read_csv(TINY, dtype=str)
    assert list(frame["id"]) == list(expected["id"])  # the input's id column, in input order
    assert list(frame["topic"]) == list(expected["topic"])
    assert (frame["label"] == frame["gold"]).mean() > 0.9
    probabilities = frame[["p_belief", "p_debunk", "p_other"]]
    assert ((probabilities.sum(axis=1) - 1).abs() < 1e-9).all()
    assert not progress_path(out).exists()  # a finished run leaves no sidecar


@pytest.mark.parametrize("out_suffix", [".jsonl", ".csv", ".parquet"])
def test_chunk_size_never_changes_the_rows(model_dir, tmp_path, out_suffix):
    outputs = []
    for chunk_rows in (1, 7, 90, 1000):
        out = tmp_path / f"out-{chunk_rows}{out_suffix}"
        run(model_dir, TINY, out, chunk_rows=chunk_rows)
        outputs.append(read_output(out))
    for other in outputs[1:]:
        pd.testing.assert_frame_equal(outputs[0], other)


def test_bad_rows_get_invalid_records_and_nothing_is_dropped(model_dir, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(
        "\n".join(
            [
                json.dumps({"text": "This has been debunked by every fact-checker", "label": "debunk"}),
                json.dumps({"text": ""}),
                "{broken",
                json.dumps({"text": "lunch", "label": "nonsense"}),
                json.dumps({"headline": "no text key"}),
                json.dumps({"text": "Finally exposes the lie they sold us"}),
            ]
        )
        + "\n"
    )
    out = tmp_path / "out.jsonl"
    summary = run(model_dir, source, out, chunk_rows=2, label="label")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert summary.statuses == {"ok": 2, "invalid": 4}
    assert [r["status"] for r in rows] == ["ok", "invalid", "invalid", "invalid", "invalid", "ok"]
    assert [r["id"] for r in rows] == [f"row-{i}" for i in range(1, 7)]
    assert rows[0]["label"] == "debunk" and rows[5]["label"] == "belief" and rows[5]["gold"] is None
    assert "empty text in column 'text'" in rows[1]["error"] and rows[1]["label"] is None
    assert f"{source}:3: malformed row: invalid JSON" in rows[2]["error"]
    assert f"{source}:4: unknown label in column 'label'" in rows[3]["error"]
    assert rows[4]["p_belief"] is None and rows[0]["error"] is None


class FailsOnSomeTexts(TfidfClassifier):
    """A real TF-IDF model that raises on texts containing 'boom', like a model hitting a bad input."""

    def predict(self, examples):
        if any("boom" in ex.text for ex in examples):
            raise ValueError("cannot handle boom")
        return super().predict(examples)


def test_a_failing_batch_is_retried_row_by_row(model_dir):
    model = FailsOnSomeTexts.load(model_dir)
    examples = read_examples(TINY, label="label", id="id", schema=SCHEMA).examples[:6]
    examples[2].text = "boom goes the claim"
    records = predict_examples(model, examples, batch_size=4)
    assert [r.status.value for r in records] == ["ok", "ok", "error", "ok", "ok", "ok"]
    assert records[2].error == "ValueError: cannot handle boom" and records[2].id == examples[2].id
    assert [r.id for r in records] == [ex.id for ex in examples]


class InterruptedOnThirdCall(TfidfClassifier):
    """A real TF-IDF model whose run is interrupted (Ctrl-C) during its third prediction call."""

    calls = 0

    def predict(self, examples):
        InterruptedOnThirdCall.calls += 1
        if InterruptedOnThirdCall.calls == 3:
            raise KeyboardInterrupt
        return super().predict(examples)


@pytest.mark.parametrize("out_suffix", [".jsonl", ".csv", ".parquet"])
def test_an_interrupted_run_resumes_and_refuses_changed_arguments(model_dir, tmp_path, out_suffix):
    reference, out = tmp_path / f"reference{out_suffix}", tmp_path / f"out{out_suffix}"
    run(model_dir, TINY, reference, chunk_rows=10, batch_size=10)
    InterruptedOnThirdCall.calls = 0
    stream = RowStream(TINY, schema=SCHEMA)
    interrupted = InterruptedOnThirdCall.load(model_dir)
    with pytest.raises(KeyboardInterrupt):
        predict_stream(interrupted, stream, out, model_dir=model_dir, chunk_rows=10, batch_size=10)
    sidecar = progress_path(out)
    assert json.loads(sidecar.read_text())["position"]["rows"] == 20

    with pytest.raises(DataError) as error:
        run(model_dir, TINY, out, chunk_rows=10, batch_size=10, metadata={"topic": "topic"})
    message = str(error.value)
    assert message.startswith(f"{sidecar}: an unfinished run with a different options.metadata")
    assert "--force" in message and "\n" not in message
    with pytest.raises(DataError, match="different options.chunk_rows wrote"):
        run(model_dir, TINY, out, chunk_rows=11, batch_size=10)
    with pytest.raises(DataError, match="different options.batch_size wrote"):
        run(model_dir, TINY, out, chunk_rows=10, batch_size=256)

    summary = run(model_dir, TINY, out, chunk_rows=10, batch_size=10)
    assert summary.resumed_from == 20 and summary.rows == 90 and summary.statuses == {"ok": 90}
    assert out.read_bytes() == reference.read_bytes() and not sidecar.exists()

    InterruptedOnThirdCall.calls = 0
    with pytest.raises(KeyboardInterrupt):
        predict_stream(interrupted, stream, out, model_dir=model_dir, chunk_rows=10, batch_size=10)
    summary = run(model_dir, TINY, out, chunk_rows=10, batch_size=10, metadata={"topic": "topic"}, force=True)
    assert summary.resumed_from == 0 and "topic" in read_output(out).columns


def make_big_input(path: Path, rows: int) -> Path:
    texts = pd.read_csv(TINY, dtype=str)["text"].tolist()
    with path.open("w") as handle:
        for i in range(rows):
            handle.write(json.dumps({"id": f"r{i}", "text": f"{texts[i % len(texts)]} {i}"}) + "\n")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("out_suffix", [".jsonl", ".parquet"])
def test_resume_after_kill_9_is_byte_identical(model_dir, tmp_path, out_suffix):
    source = make_big_input(tmp_path / "big.jsonl", 20_000)
    reference = tmp_path / f"reference{out_suffix}"
    run(model_dir, source, reference, chunk_rows=300)

    out = tmp_path / f"out{out_suffix}"
    command = [sys.executable, "-m", "socialens.cli", "predict", str(model_dir), str(source)]
    command += ["--out", str(out), "--chunk-size", "300"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    child = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sidecar = progress_path(out)
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and child.poll() is None:
        try:
            done = json.loads(sidecar.read_text())["position"]["rows"]
        except (OSError, ValueError, KeyError):
            done = 0
        if done >= 2_000:
            break
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, child.stderr.read().decode()[-2000:]
    killed_at = json.loads(sidecar.read_text())["position"]["rows"]
    assert 0 < killed_at < 20_000  # really stopped halfway, leaving a sidecar behind

    resumed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed after row" in resumed.stdout
    assert out.read_bytes() == reference.read_bytes()
    assert not sidecar.exists()


runner = CliRunner()


def test_cli_predicts_a_csv_with_scores_and_a_one_line_error_for_bad_input(model_dir, tmp_path):
    out = tmp_path / "out.csv"
    result = runner.invoke(
        app,
        ["predict", str(model_dir), str(TINY), "--out", str(out), "--label", "label", "--chunk-size", "9"],
    )
    assert result.exit_code == 0, result.output
    assert "wrote 90 predictions" in result.output and "90 ok" in result.output
    assert "macro-F1" in result.output
    assert list(pd.read_csv(out, dtype=str)["id"][:2]) == ["t012", "t071"]

    result = runner.invoke(app, ["predict", str(model_dir), str(TINY), "--out", str(out), "--text", "body"])
    assert result.exit_code == 2
    assert [line for line in result.output.splitlines() if line.strip()] == [
        f"error: {TINY}: missing column 'body' (none of the file's 4 columns has that name); "
        "expected columns: body, id"
    ]
    result = runner.invoke(app, ["predict", str(model_dir), str(TINY), "--out", str(tmp_path / "o.txt")])
    assert result.exit_code == 2 and "unsupported output format '.txt'" in result.output


# the same cases as tests/serving/test_limits.py::test_blank_texts_are_invalid_as_in_predict_and_never_reach_the_model
BLANK_TEXTS = ["", " ", "\t\n", "\u00a0", "\u3000 \u2003"]


def test_blank_texts_are_invalid_by_the_rule_the_service_shares(model_dir, tmp_path):
    """predict and the HTTP service judge a blank text by one function (is_blank_text): invalid."""
    from socialens.core.types import is_blank_text

    assert all(is_blank_text(text) for text in BLANK_TEXTS)
    assert not any(is_blank_text(text) for text in ["a", " x ", "\u200b"])  # zero-width space is a character
    texts = ["This has been debunked by every fact-checker", *BLANK_TEXTS]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts))
    out = tmp_path / "out.jsonl"
    summary = run(model_dir, source, out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert summary.statuses == {"ok": 1, "invalid": len(BLANK_TEXTS)}
    assert [r["status"] for r in rows] == ["ok", *["invalid"] * len(BLANK_TEXTS)]
    for row in rows[1:]:
        assert row["error"].endswith(": empty text in column 'text'; expected non-empty text")
        assert row["label"] is None


def test_a_model_whose_native_probe_crashed_is_one_line_not_n_error_rows(tmp_path, monkeypatch):
    pytest.importorskip("llama_cpp")
    from socialens.classifiers.prompted import PromptedClassifier, PromptedParams
    from socialens.core.models import resolve_model
    from socialens.llm import native_probe
    from socialens.serving.app import load_served_model

    monkeypatch.setenv("SOCIALENS_CACHE_DIR", str(tmp_path / "cache"))
    examples = read_examples(TINY, label="label", id="id", schema=SCHEMA).examples
    params = PromptedParams(decoding="scored", n_ctx=512, extra_buffers="on", cache=False)
    PromptedClassifier(params).fit(examples, schema=SCHEMA).save(tmp_path / "llm")
    sigill = native_probe.ProbeResult(False, -4, "SIGILL (illegal instruction)")
    native_probe.record_probe(resolve_model(params.model), True, sigill)
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "llm"), str(TINY), "--out", str(out)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "SIGILL" in lines[0] and "extra_buffers: off" in lines[0], result.output
    with pytest.raises(native_probe.NativeCrash, match="SIGILL"):
        load_served_model(tmp_path / "llm")  # serve fails at start-up, not at the first request


def test_a_repeated_id_makes_that_row_invalid_across_chunks_and_resumes(model_dir, tmp_path):
    source = tmp_path / "in.csv"
    ids = ["a", "b", "a", "c", "b", "d", "a"]
    source.write_text("id,text\n" + "".join(f"{i},debunked claim number {n}\n" for n, i in enumerate(ids)))
    out = tmp_path / "out.jsonl"
    summary = run(model_dir, source, out, chunk_rows=2)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ids  # one row per input row, in order
    assert [r["status"] for r in rows] == ["ok", "ok", "invalid", "ok", "invalid", "ok", "invalid"]
    assert summary.statuses == {"ok": 4, "invalid": 3}
    assert rows[2]["label"] is None and rows[2]["p_belief"] is None
    assert rows[2]["error"].startswith("duplicate id in column 'id': an earlier row has the same id")
    assert summary.first_problem == {"invalid": f"a: {rows[2]['error']}"}

    # killed after the second chunk: the resumed run still knows the ids written before it
    InterruptedOnThirdCall.calls = 0
    resumed_out = tmp_path / "resumed.jsonl"
    with pytest.raises(KeyboardInterrupt):
        predict_stream(
            InterruptedOnThirdCall.load(model_dir),
            RowStream(source),
            resumed_out,
            model_dir=model_dir,
            chunk_rows=2,
        )
    summary = run(model_dir, source, resumed_out, chunk_rows=2)
    assert summary.resumed_from == 4
    assert resumed_out.read_bytes() == out.read_bytes()


def test_the_input_file_is_never_the_output(model_dir, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"text": "debunked again"}) + "\n")
    before = source.read_bytes()
    with pytest.raises(DataError, match=r"in.jsonl: this is the input file; expected a different --out path"):
        run(model_dir, source, tmp_path / "." / "in.jsonl")
    assert source.read_bytes() == before and not progress_path(source).exists()


def test_a_finished_output_is_not_overwritten_by_a_run_with_other_arguments(model_dir, tmp_path):
    out = tmp_path / "out.jsonl"
    run(model_dir, TINY, out, chunk_rows=10, batch_size=10)
    finished = out.read_bytes()
    assert json.loads(run_record_path(out).read_text())["rows"] == 90  # what made the file, kept beside it
    assert run(model_dir, TINY, out, chunk_rows=10, batch_size=10).rows == 90  # same arguments: runs again
    assert out.read_bytes() == finished

    with pytest.raises(DataError) as error:
        run(model_dir, TINY, out, chunk_rows=10, batch_size=32, metadata={"topic": "topic"})
    assert str(error.value) == (
        f"{out}: a finished output of a run with a different --metadata ({{}} before, {{'topic': 'topic'}} "
        "now), --batch-size (10 before, 32 now); pass --force to overwrite it, or choose another --out"
    )
    assert out.read_bytes() == finished

    command = [
        "predict",
        str(model_dir),
        str(TINY),
        "--out",
        str(out),
        "--chunk-size",
        "10",
        "--label",
        "label",
    ]
    result = runner.invoke(app, command)
    assert result.exit_code == 2
    assert [line for line in result.output.splitlines() if line.strip()] == [
        f"error: {out}: a finished output of a run with a different --label (None before, 'label' now), "
        "--batch-size (10 before, 256 now); pass --force to overwrite it, or choose another --out"
    ]
    assert out.read_bytes() == finished
    result = runner.invoke(app, [*command, "--force"])
    assert result.exit_code == 0, result.output
    assert "gold" in read_output(out).columns and out.read_bytes() != finished

    other_file = tmp_path / "notes.jsonl"  # a file no predict run wrote
    other_file.write_text('{"note": "keep me"}\n')
    with pytest.raises(DataError) as error:
        run(model_dir, TINY, other_file)
    assert str(error.value) == (
        f"{other_file}: exists, and no notes.jsonl.run.json says which predict run wrote it; pass --force "
        "to overwrite it, or choose another --out"
    )
    assert other_file.read_text() == '{"note": "keep me"}\n'


def test_invalid_llm_rows_carry_the_raw_answer_and_why(tmp_path, monkeypatch):
    """Measured: 9 of 10 rows of a tuned model were `invalid` with `error: null` and no answer to
    look at. A real llama.cpp model allowed one answer token says "The" or "A": each such row now
    holds that answer and the reason; ok rows leave raw_output empty."""
    pytest.importorskip("llama_cpp")
    from socialens.classifiers.prompted import PromptedClassifier, PromptedParams

    monkeypatch.setenv("SOCIALENS_CACHE_DIR", str(tmp_path / "cache"))
    examples = read_examples(TINY, label="label", id="id", schema=SCHEMA).examples
    params = PromptedParams(decoding="generate", max_tokens=1, n_ctx=512)
    PromptedClassifier(params).fit(examples, schema=SCHEMA).save(tmp_path / "llm")
    source = tmp_path / "in.jsonl"
    texts = ["The post finally exposes the lie they sold us", "This was debunked years ago", ""]
    source.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts))
    out = tmp_path / "out.csv"
    classifier = load_classifier(tmp_path / "llm")
    summary = predict_stream(classifier, RowStream(source, schema=SCHEMA), out, model_dir=tmp_path / "llm")
    frame = read_output(out)
    assert list(frame.columns) == [
        "id", "label", "p_belief", "p_debunk", "p_other", "status", "error", "raw_output"
    ]  # fmt: skip
    records = classifier.predict([Example(f"row-{i + 1}", text) for i, text in enumerate(texts[:2])])
    for row, record in zip(frame.to_dict("records")[:2], records, strict=True):
        assert row["status"] == record.status.value
        if record.status.value == "ok":
            assert pd.isna(row["raw_output"]) and pd.isna(row["error"])
        else:
            assert row["raw_output"] == record.raw_output and record.raw_output.strip()
            assert (
                row["error"]
                == record.error
                == (f"{record.status.value}: the answer names none of belief, debunk, other")
            )
    assert summary.statuses["invalid"] >= 2  # one answer token names no label; the blank text is invalid
    assert frame["error"][2].endswith("empty text in column 'text'; expected non-empty text")
    assert pd.isna(frame["raw_output"][2])  # never reached the model
