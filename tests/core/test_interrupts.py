"""Ctrl-C stops `socialens predict` within 3 s, exit code 130, and the run resumes byte for byte.

Each test runs the real command in a child process and sends it a real SIGINT: once while Python
code runs (the KeyboardInterrupt path) and once while llama.cpp evaluates a long prompt, a single
native call of several seconds during which Python runs no signal handler (the watcher path)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from socialens.classifiers.tfidf import TfidfClassifier
from socialens.core.interrupts import INTERRUPTED_EXIT
from socialens.core.types import LabelSchema
from socialens.data.readers import read_examples
from socialens.predict import progress_path, run_record_path

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "fixtures" / "bench" / "tiny.csv"
SCHEMA = LabelSchema.from_names(["belief", "debunk", "other"])
STOP_WITHIN_S = 3.0


def committed_rows(out: Path) -> int:
    try:
        return json.loads(progress_path(out).read_text())["position"]["rows"]
    except (OSError, ValueError, KeyError):
        return 0


def interrupt_when(command, env, out: Path, rows: int, then_wait_s: float = 0.0):
    """Start ``command``, send SIGINT once ``rows`` input rows are committed (and ``then_wait_s``
    later); return (seconds from the signal to the exit, return code, output)."""
    child = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while committed_rows(out) < rows and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert child.poll() is None, child.stdout.read().decode()[-2000:]
    time.sleep(then_wait_s)
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    try:
        child.wait(timeout=30)
    finally:
        child.kill()
    elapsed = time.monotonic() - sent
    return elapsed, child.returncode, child.stdout.read().decode()


def resume_and_compare(model_dir: Path, source: Path, out: Path, options: list[str], env, done: int) -> None:
    """Run the interrupted command again, then the same arguments into a fresh file: the resumed
    output is that file, byte for byte."""
    resumed = subprocess.run(
        predict_command(model_dir, source, out, options), cwd=REPO, env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resumed after row {done:,}" in resumed.stdout
    assert not progress_path(out).exists() and run_record_path(out).exists()
    reference = out.with_name("reference" + out.suffix)
    subprocess.run(predict_command(model_dir, source, reference, options), cwd=REPO, env=env, check=True)
    assert out.read_bytes() == reference.read_bytes()


def predict_command(model_dir: Path, source: Path, out: Path, options: list[str]) -> list[str]:
    command = [sys.executable, "-m", "socialens.cli", "predict", str(model_dir), str(source)]
    return [*command, "--out", str(out), *options]


def test_ctrl_c_stops_predict_at_once_and_the_run_resumes(tmp_path):
    model_dir = tmp_path / "model"
    examples = read_examples(TINY, label="label", id="id", schema=SCHEMA).examples
    TfidfClassifier(seed=0).fit(examples, schema=SCHEMA).save(model_dir)
    texts = pd.read_csv(TINY, dtype=str)["text"].tolist()
    source = tmp_path / "big.jsonl"
    source.write_text("".join(json.dumps({"text": f"{texts[i % 90]} {i}"}) + "\n" for i in range(40_000)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "out.jsonl"
    options = ["--chunk-size", "100", "--batch-size", "50"]

    elapsed, code, output = interrupt_when(
        predict_command(model_dir, source, out, options), env, out, rows=500
    )
    done = committed_rows(out)
    assert code == INTERRUPTED_EXIT, output[-2000:]
    assert elapsed < STOP_WITHIN_S, (elapsed, output[-2000:])
    assert 500 <= done < 40_000  # really stopped halfway
    assert f"interrupted: {done:,} input rows committed to {out}; run the same command again" in output
    assert "Traceback" not in output and "Aborted" not in output
    resume_and_compare(model_dir, source, out, options, env, done)


@pytest.mark.slow
def test_ctrl_c_stops_predict_inside_a_long_llama_cpp_call(tmp_path):
    """Measured before: a 5-shot prompt on one thread kept the process for 5.5 s after Ctrl-C."""
    pytest.importorskip("llama_cpp")
    from socialens.classifiers.prompted import PromptedClassifier, PromptedParams

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SOCIALENS_CACHE_DIR": str(tmp_path / "cache")}
    params = PromptedParams(
        decoding="generate",
        max_tokens=1,
        n_ctx=2048,
        n_threads=1,
        max_text_chars=6000,
        backend_options={"n_batch": 2048},  # the whole prompt in one native llama_decode call
    )
    examples = read_examples(TINY, label="label", id="id", schema=SCHEMA).examples
    model_dir = tmp_path / "llm"
    PromptedClassifier(params).fit(examples, schema=SCHEMA).save(model_dir)
    long_text = " ".join(ex.text for ex in examples)[:5000]  # about 1,100 prompt tokens
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"text": "It was debunked"}) + "\n" + json.dumps({"text": long_text}) + "\n")
    out = tmp_path / "out.jsonl"
    options = ["--chunk-size", "1", "--batch-size", "1"]
    command = predict_command(model_dir, source, out, options)

    # the first row is committed, the second one's prompt is being evaluated when Ctrl-C comes
    elapsed, code, output = interrupt_when(command, env, out, rows=1, then_wait_s=1.0)
    assert code == INTERRUPTED_EXIT, output[-2000:]
    assert elapsed < STOP_WITHIN_S, (elapsed, output[-2000:])
    assert committed_rows(out) == 1
    assert f"interrupted: 1 input rows committed to {out}" in output
    resume_and_compare(model_dir, source, out, options, env, 1)  # the reference's answers come from the cache
