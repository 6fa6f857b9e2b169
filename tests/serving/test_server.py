"""`socialens serve` as a real process: start-up errors, SIGTERM finishing an in-flight request."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from socialens.cli import app
from socialens.core.errors import ConfigError
from socialens.serving.app import ServiceSettings
from socialens.serving.server import build_server, check_port, check_settings, read_token

TINY_CSV_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_read_token_from_the_named_variable(monkeypatch):
    assert read_token(None) is None
    monkeypatch.setenv("SOCIALENS_TEST_TOKEN", "abc")
    assert read_token("SOCIALENS_TEST_TOKEN") == "abc"
    monkeypatch.delenv("SOCIALENS_TEST_TOKEN")
    with pytest.raises(ConfigError, match="SOCIALENS_TEST_TOKEN is not set or empty"):
        read_token("SOCIALENS_TEST_TOKEN")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (ServiceSettings(max_batch=0), "--max-batch: expected at least 1, got 0"),
        (ServiceSettings(max_texts=-2), "--max-texts: expected at least 1, got -2"),
        (ServiceSettings(max_wait_ms=-1), "--max-wait-ms: expected 0 or more, got -1"),
        (ServiceSettings(threads=0), "--threads: expected at least 1, got 0"),
        (ServiceSettings(max_body_bytes=0), "--max-body-bytes: expected at least 1, got 0"),
        (ServiceSettings(body_timeout_s=0), "--body-timeout-s: expected a number of seconds above 0, got 0"),
        (ServiceSettings(header_timeout_s=-1), "--header-timeout-s: expected a number of seconds above 0"),
        (ServiceSettings(keep_alive_s=float("nan")), "--keep-alive-s: expected a number of seconds above 0"),
        (ServiceSettings(max_connections=0), "--max-connections: expected at least 1, got 0"),
        (
            ServiceSettings(max_connections_per_client=-1),
            "--max-connections-per-client: expected 0 \\(no cap\\) or more, got -1",
        ),
    ],
)
def test_bad_settings_are_one_line_errors(settings, message):
    with pytest.raises(ConfigError, match=message):
        check_settings(settings)


def test_cli_serve_start_up_errors_are_one_line(tmp_path, tfidf_model_dir, monkeypatch):
    runner = CliRunner()
    result = runner.invoke(app, ["serve", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a socialens model directory" in result.output
    monkeypatch.delenv("NO_SUCH_TOKEN_VAR", raising=False)
    result = runner.invoke(app, ["serve", str(tfidf_model_dir), "--token-env", "NO_SUCH_TOKEN_VAR"])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "NO_SUCH_TOKEN_VAR" in result.output
    result = runner.invoke(app, ["serve", str(tfidf_model_dir), "--max-body-bytes", "0"])
    assert result.exit_code == 2 and "--max-body-bytes: expected at least 1, got 0" in result.output


@pytest.mark.parametrize("port", [0, -1, 65536, 99999])
def test_an_invalid_port_is_refused_before_the_model_loads(tmp_path, port):
    with pytest.raises(ConfigError, match=f"^--port: expected a TCP port from 1 to 65535, got {port}$"):
        build_server(tmp_path / "not-even-a-model", port=port)
    check_port(1)
    check_port(65535)


def test_cli_serve_with_an_invalid_port_is_a_one_line_error_not_a_random_port(tfidf_model_dir):
    """`serve --port 99999` used to print :99999 and listen on a port the OS picked."""
    command = [sys.executable, "-m", "socialens.cli", "serve", str(tfidf_model_dir), "--port", "99999"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    output = (done.stdout + done.stderr).strip()
    assert output == "error: --port: expected a TCP port from 1 to 65535, got 99999"


@pytest.mark.slow
def test_sigterm_finishes_the_in_flight_request_then_exits(tfidf_model_dir):
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SERVE_TEST_TOKEN": "tok"}
    command = [sys.executable, "-m", "socialens.cli", "serve", str(tfidf_model_dir), "--port", str(port)]
    # a long batching wait keeps the request inside the server while the signal arrives
    command += ["--max-wait-ms", "1500", "--token-env", "SERVE_TEST_TOKEN"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)

        outcome = {}

        def in_flight():
            outcome["response"] = httpx.post(
                f"{url}/v1/classify",
                json={"texts": ["This has been debunked by every fact-checker"]},
                headers={"Authorization": "Bearer tok"},
                timeout=30,
            )

        client = threading.Thread(target=in_flight)
        client.start()
        time.sleep(0.5)
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        client.join(timeout=30)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    response = outcome["response"]
    assert response.status_code == 200, response.text
    assert [r["label"] for r in response.json()["results"]] == ["debunk"]
    # uvicorn re-raises the captured signal once its graceful shutdown is complete
    assert process.returncode in (0, -signal.SIGTERM), stderr
    assert time.monotonic() - sent < 20
    access = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert [(e["path"], e["status"], e["n_texts"]) for e in access][-1] == ("/v1/classify", 200, 1)
    assert "Application shutdown complete" in stderr and "Finished server process" in stderr
    assert "debunked" not in stderr + stdout


@pytest.mark.slow
def test_serve_a_run_folder_serves_its_recommended_model(tmp_path):
    """`socialens serve runs/<name>` as in the README: a real bench run, a real server on 127.0.0.1."""
    from rich.console import Console

    from socialens.bench import run_bench
    from socialens.experiment import load_experiment

    tiny = tmp_path / "tiny.csv"
    tiny.write_bytes((TINY_CSV_DIR / "tiny.csv").read_bytes())
    (tmp_path / "tiny.yaml").write_text(
        (TINY_CSV_DIR / "tiny.yaml").read_text().replace("path: .", f"path: {tmp_path}")
    )
    (tmp_path / "exp.yaml").write_text(
        f"name: t\noutput_dir: {tmp_path / 'runs'}\ndatasets: [{tmp_path / 'tiny.yaml'}]\n"
        "models:\n  - {id: tf, family: tfidf}\n  - {id: weak, family: tfidf, max_features: 3}\n"
        "seeds: [0]\nbootstrap: 100\nenergy: {enabled: false}\n"
    )
    result = run_bench(load_experiment(tmp_path / "exp.yaml"), console=Console(quiet=True))
    assert result.recommendations["tiny"]["recommended"] == "tf"
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SERVE_TEST_TOKEN": "tok"}
    command = [
        sys.executable,
        "-m",
        "socialens.cli",
        "serve",
        str(tmp_path / "runs" / "t"),
        "--port",
        str(port),
    ]
    process = subprocess.Popen(
        [*command, "--token-env", "SERVE_TEST_TOKEN"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        body = {"texts": ["This was debunked years ago"], "ids": ["c1"]}
        response = httpx.post(
            f"{url}/v1/classify", json=body, headers={"Authorization": "Bearer tok"}, timeout=30
        )
        model = httpx.get(f"{url}/v1/model", headers={"Authorization": "Bearer tok"}, timeout=30).json()
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"]["id"] == "tf" and answer["model"]["family"] == "tfidf"
    assert [(r["id"], r["label"], r["status"]) for r in answer["results"]] == [("c1", "debunk", "ok")]
    assert model["evaluation"]["test"]["source"] == "bench cell metrics.json"
    assert model["evaluation"]["test"]["macro_f1"] == 1.0
    served = tmp_path / "runs" / "t" / "tiny" / "tf" / "seed-0" / "model"
    assert f"using the recommended model of tiny, tf ({served.resolve()})" in stdout.replace("\n", "")
