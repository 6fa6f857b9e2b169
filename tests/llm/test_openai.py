"""The openai backend against a real HTTP server on 127.0.0.1 with injected faults.

The server (tests/llm/fault_server.py) runs in a background thread; waits and timeouts are scaled
down through the backend's options so the whole file takes seconds. The slow test at the end runs
llama-cpp-python's own OpenAI-compatible server on the built-in SmolLM2 GGUF.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from socialens.errors import ConfigError
from socialens.llm.base import BACKENDS, GenerationParams
from socialens.llm.openai import OpenAIBackend

_spec = importlib.util.spec_from_file_location("fault_server", Path(__file__).with_name("fault_server.py"))
fault_server = importlib.util.module_from_spec(_spec)
sys.modules["fault_server"] = fault_server
_spec.loader.exec_module(fault_server)
MALFORMED, NO_CHOICES, OK = fault_server.MALFORMED, fault_server.NO_CHOICES, fault_server.OK
Sleep, Status = fault_server.Sleep, fault_server.Status

SECRET = "sk-test-Zq8vW3-never-print-me"
KEY_ENV = "SOCIALENS_TEST_OPENAI_KEY"


@pytest.fixture(scope="module")
def server():
    with fault_server.FaultServer(api_key=SECRET) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh(server, monkeypatch):
    server.reset()
    monkeypatch.setenv(KEY_ENV, SECRET)


@pytest.fixture
def make(server):
    made = []

    def factory(**options) -> OpenAIBackend:
        settings = {
            "base_url": server.base_url,
            "api_key_env": KEY_ENV,
            "timeout_s": 0.5,
            "max_retries": 3,
            "backoff_base_s": 0.01,
            "backoff_max_s": 0.05,
            "concurrency": 4,
            **options,
        }
        backend = OpenAIBackend("test-model", **settings)
        made.append(backend)
        return backend

    yield factory
    for backend in made:
        backend.close()


def prompts(n: int) -> list[list[dict[str, str]]]:
    return [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"q{i}"}] for i in range(n)
    ]


def test_registered_and_model_id(make, server):
    assert BACKENDS["openai"] is OpenAIBackend
    backend = make()
    assert backend.model_id == f"{server.base_url}/test-model"
    assert OpenAIBackend("gpt-x", api_key_env=KEY_ENV).model_id == "https://api.openai.com/v1/gpt-x"


def test_generate_sends_bearer_key_and_reads_usage(make, server):
    completions = make().generate(prompts(5), GenerationParams(max_tokens=7, stop=("\n",)))
    assert [c.text for c in completions] == [f"echo: q{i}" for i in range(5)]
    assert all(c.error is None and c.finish_reason == "stop" for c in completions)
    assert all(c.tokens_in == 1 and c.tokens_out == 3 and c.latency_s > 0 for c in completions)
    assert server.auth_headers == [f"Bearer {SECRET}"] * 5
    body = server.requests[0]
    assert body["model"] == "test-model" and body["max_tokens"] == 7 and body["stop"] == ["\n"]
    assert body["temperature"] == 0.0 and body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert "guided_choice" not in body and "response_format" not in body


def test_429s_then_success_are_retried(make, server):
    server.plan = lambda attempt, body: Status(429) if attempt <= 2 else OK
    completions = make().generate(prompts(6), GenerationParams())
    assert all(c.error is None and c.text.startswith("echo: ") for c in completions)
    assert server.attempts == {f"q{i}": 3 for i in range(6)}


def test_retry_after_is_honoured_up_to_the_cap(make, server):
    server.plan = lambda attempt, body: Status(429, retry_after=0.4) if attempt == 1 else OK
    start = time.monotonic()
    [completion] = make(backoff_max_s=1.0).generate(prompts(1), GenerationParams())
    assert completion.error is None and time.monotonic() - start >= 0.4
    server.reset()
    server.plan = lambda attempt, body: Status(429, retry_after=30) if attempt == 1 else OK
    start = time.monotonic()
    [completion] = make(backoff_max_s=0.05).generate(prompts(1), GenerationParams())
    assert completion.error is None and time.monotonic() - start < 5


def test_permanent_500_gives_error_completions_for_those_prompts_only(make, server):
    server.plan = lambda attempt, body: Status(500) if body["messages"][-1]["content"] in ("q1", "q3") else OK
    completions = make().generate(prompts(5), GenerationParams())
    assert len(completions) == 5
    for i, completion in enumerate(completions):
        if i in (1, 3):
            assert completion.text == "" and completion.error == "HTTP 500 after 4 attempts"
            assert server.attempts[f"q{i}"] == 4
        else:
            assert completion.error is None and completion.text == f"echo: q{i}"
            assert server.attempts[f"q{i}"] == 1


def test_503_then_success(make, server):
    server.plan = lambda attempt, body: Status(503) if attempt == 1 else OK
    [completion] = make().generate(prompts(1), GenerationParams())
    assert completion.error is None and server.attempts["q0"] == 2


def test_client_errors_are_not_retried(make, server):
    server.plan = lambda attempt, body: Status(400)
    [completion] = make().generate(prompts(1), GenerationParams())
    assert completion.error == "HTTP 400 (not retried)" and server.attempts["q0"] == 1


def test_slow_response_times_out_and_is_retried(make, server):
    server.plan = lambda attempt, body: Sleep(2.0) if attempt == 1 else OK
    [completion] = make(timeout_s=0.3).generate(prompts(1), GenerationParams())
    assert completion.error is None and server.attempts["q0"] == 2


def test_permanent_timeout_gives_an_error(make, server):
    server.plan = lambda attempt, body: Sleep(2.0)
    start = time.monotonic()
    [completion] = make(timeout_s=0.2, max_retries=1).generate(prompts(1), GenerationParams())
    assert completion.error == "timeout (0.2 s) after 2 attempts" and completion.text == ""
    assert server.attempts["q0"] == 2 and time.monotonic() - start < 1.5


def test_malformed_bodies_are_retried(make, server):
    server.plan = lambda attempt, body: {1: MALFORMED, 2: NO_CHOICES}.get(attempt, OK)
    completions = make().generate(prompts(3), GenerationParams())
    assert all(c.error is None and c.text.startswith("echo: ") for c in completions)
    assert server.attempts == {f"q{i}": 3 for i in range(3)}


@pytest.mark.parametrize("fault", [MALFORMED, NO_CHOICES])
def test_permanently_malformed_bodies_give_errors(make, server, fault):
    server.plan = lambda attempt, body: fault
    completions = make(max_retries=2).generate(prompts(2), GenerationParams())
    assert [c.error for c in completions] == ["malformed response after 3 attempts"] * 2


def test_connection_refused_gives_errors(make):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    completions = make(base_url=f"http://127.0.0.1:{port}/v1", max_retries=1).generate(
        prompts(2), GenerationParams()
    )
    assert [c.error for c in completions] == ["connection error after 2 attempts"] * 2


def test_concurrency_is_bounded(make, server):
    server.hold_s = 0.15
    start = time.monotonic()
    completions = make(concurrency=3).generate(prompts(12), GenerationParams())
    elapsed = time.monotonic() - start
    assert all(c.error is None for c in completions)
    assert 2 <= server.max_in_flight <= 3
    assert elapsed >= 4 * 0.15  # 12 requests, at most 3 at a time


def test_order_is_kept_under_concurrency(make, server):
    server.plan = lambda attempt, body: Sleep(0.05 * (int(body["messages"][-1]["content"][1:]) % 3))
    completions = make(concurrency=8).generate(prompts(10), GenerationParams())
    assert [c.text for c in completions] == [f"echo: q{i}" for i in range(10)]


def test_api_key_never_leaks(make, server, caplog, capsys, monkeypatch):
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx", "httpx2", "httpcore", "socialens"):  # the client logs requests at DEBUG
        caplog.set_level(logging.DEBUG, logger=name)
    server.plan = lambda attempt, body: Status(500) if attempt <= 1 else MALFORMED if attempt == 2 else OK
    backend = make(max_retries=1)
    completions = backend.generate(prompts(3), GenerationParams())
    completions += backend.generate(prompts(1), GenerationParams(choices=("a", "b")))
    monkeypatch.setenv(KEY_ENV, SECRET + "-wrong")
    completions += make().generate(prompts(1), GenerationParams())  # rejected with 401
    assert completions[-1].error == "HTTP 401 (not retried)"
    texts = [
        repr(backend),
        str(backend),
        repr(backend.options),
        caplog.text,
        json.dumps([c.to_dict() for c in completions]),
    ]
    captured = capsys.readouterr()
    texts += [captured.out, captured.err]
    assert any(c.error for c in completions)
    for text in texts:
        assert SECRET not in text
    assert "HTTP 500, retry 1 of 1" in caplog.text  # the retries were logged
    assert "Building HTTP request" in caplog.text  # and the client's own request log was captured


def test_missing_key_variable_is_a_config_error(monkeypatch):
    monkeypatch.delenv("SOCIALENS_NO_SUCH_KEY", raising=False)
    with pytest.raises(ConfigError, match="SOCIALENS_NO_SUCH_KEY"):
        OpenAIBackend("m", base_url="http://127.0.0.1:9/v1", api_key_env="SOCIALENS_NO_SUCH_KEY")


def test_no_key_for_local_servers(make, server):
    [completion] = make(api_key_env=None).generate(prompts(1), GenerationParams())
    assert server.auth_headers == ["Bearer none"]
    assert completion.error == "HTTP 401 (not retried)"  # this test server wants a key


def test_unknown_option_is_rejected():
    with pytest.raises(ValueError, match="concurency"):
        OpenAIBackend("m", api_key_env=None, concurency=2)


def test_guided_choice_is_sent(make, server):
    params = GenerationParams(choices=("belief", "belief strong", "neither"))
    completions = make().generate(prompts(2), params)
    assert [c.text for c in completions] == ["belief", "belief"]
    assert all(c.error is None for c in completions)
    assert server.requests[0]["guided_choice"] == ["belief", "belief strong", "neither"]


@pytest.mark.parametrize("mode", ["json_schema", "json_object"])
def test_json_response_format_is_sent_and_unwrapped(make, server, mode):
    [completion] = make(constrained=mode).generate(prompts(1), GenerationParams(choices=("no", "yes")))
    assert completion.text == "no" and completion.error is None
    response_format = server.requests[0]["response_format"]
    assert response_format["type"] == mode
    schema = response_format["json_schema"]["schema"] if mode == "json_schema" else response_format["schema"]
    assert schema["properties"]["answer"]["enum"] == ["no", "yes"]


def test_constraint_ignored_by_the_server_is_an_error(make, server):
    [completion] = make(constrained="none").generate(prompts(1), GenerationParams(choices=("no", "yes")))
    assert completion.text == "echo: q0" and completion.error is None  # none: free text for the parser
    server.ignore_constraints = True  # as llama-cpp-python's server does with guided_choice
    [completion] = make(constrained="guided_choice").generate(
        prompts(1), GenerationParams(choices=("no", "yes"))
    )
    assert completion.text == "echo: q0" and "not one of the choices" in completion.error


def test_auto_mode_picks_json_schema_for_openai_itself(monkeypatch):
    backend = OpenAIBackend("gpt-x", api_key_env=KEY_ENV)
    assert backend.constrained_mode == "json_schema"
    backend.close()
    with pytest.raises(ConfigError, match="chat: true"):
        OpenAIBackend("m", api_key_env=None, base_url="http://x/v1", chat=False, constrained="json_schema")


def test_render_is_deterministic_json_for_chat(make):
    backend = make()
    messages = [{"role": "user", "content": "Héllo"}]
    assert backend.render(messages) == '[{"content": "Héllo", "role": "user"}]'
    assert backend.render(messages) == backend.render([dict(messages[0])])


def test_completions_endpoint_for_base_models(make, server):
    backend = make(chat=False)
    messages = [{"role": "system", "content": "Classify."}, {"role": "user", "content": "Text one"}]
    assert backend.render(messages) == "Classify.\n\nText one\n\nAnswer:"
    [completion] = backend.generate([messages], GenerationParams(choices=("yes", "no")))
    assert completion.text == "yes" and completion.error is None
    assert server.requests[0]["prompt"] == "Classify.\n\nText one\n\nAnswer:"
    assert server.requests[0]["guided_choice"] == ["yes", "no"]


def test_score_sums_echoed_continuation_logprobs(make, server):
    backend = make(chat=False)
    messages = [{"role": "user", "content": "Is it true?"}]
    scores = backend.score(messages, ["yes", "not at all"])
    assert scores.error is None
    # fake tokens are runs of spaces plus a word, with log-prob -len(token)/10
    assert scores.logprobs == pytest.approx([-0.4, -0.4 - 0.3 - 0.4])
    assert scores.continuation_tokens == [1, 3]
    assert scores.tokens_in == 4  # "Is", " it", " true?", "\n\nAnswer:"
    body = server.requests[0]
    assert body["echo"] is True and body["logprobs"] == 1


def test_score_failure_is_reported(make, server):
    server.plan = lambda attempt, body: Status(500)
    scores = make(chat=False, max_retries=1).score(prompts(1)[0], ["a"])
    assert scores.logprobs == [] and scores.error == "HTTP 500 after 2 attempts"


def test_score_needs_the_completions_endpoint(make):
    with pytest.raises(ConfigError, match="scored decoding isn't supported"):
        make().score(prompts(1)[0], ["a"])


# -- llama-cpp-python's own OpenAI-compatible server ----------------------------------------------------


@pytest.fixture(scope="module")
def llama_server():
    from socialens.models import resolve_model

    for module in ("llama_cpp.server.app", "sse_starlette", "starlette_context", "pydantic_settings"):
        if importlib.util.find_spec(module.split(".")[0]) is None:
            pytest.skip(f"llama-cpp-python's server needs {module} (pip install 'llama-cpp-python[server]')")
    try:
        model = resolve_model("builtin:smollm2-135m-instruct")
    except ConfigError as error:
        pytest.skip(str(error))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "llama_cpp.server", "--model", model, "--host", "127.0.0.1"]
    command += ["--port", str(port), "--n_ctx", "1024", "--verbose", "false"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                urllib.request.urlopen(f"{base_url}/models", timeout=2).read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    pytest.skip(f"llama.cpp server did not start: {process.stderr.read()[-500:]}")
                time.sleep(0.3)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.mark.slow
def test_real_llama_cpp_server(llama_server):
    chat = OpenAIBackend("smollm2", base_url=llama_server, api_key_env=None, timeout_s=60, concurrency=2)
    try:
        messages = [[{"role": "user", "content": "What is the capital of France?"}], prompts(1)[0]]
        completions = chat.generate(messages, GenerationParams(max_tokens=8))
        assert all(c.error is None and c.text and c.tokens_in > 0 and c.tokens_out > 0 for c in completions)
        again = chat.generate(messages, GenerationParams(max_tokens=8))
        assert [c.text for c in again] == [c.text for c in completions]  # greedy: deterministic
        # llama-cpp-python's server ignores guided_choice but takes a JSON-object schema
        constrained = OpenAIBackend(
            "smollm2", base_url=llama_server, api_key_env=None, timeout_s=60, constrained="json_object"
        )
        params = GenerationParams(max_tokens=8, choices=("true", "false", "false claim"))
        answers = constrained.generate(messages, params)
        constrained.close()
        assert all(a.error is None and a.text in params.choices for a in answers)
    finally:
        chat.close()
    base = OpenAIBackend("smollm2", base_url=llama_server, api_key_env=None, timeout_s=60, chat=False)
    try:
        [completion] = base.generate(
            [[{"role": "user", "content": "2 + 2 ="}]], GenerationParams(max_tokens=4)
        )
        assert completion.error is None and completion.tokens_in > 0
        scores = base.score([{"role": "user", "content": "The capital of France is"}], ["Paris", "a banana"])
        assert scores.error is None and scores.continuation_tokens[0] >= 1
        assert all(math.isfinite(v) and v < 0 for v in scores.logprobs)
    finally:
        base.close()


# --- failing fast: a dead server stops the backend, a wrong setting is one ConfigError ----------


def dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    return f"http://127.0.0.1:{port}/v1"


def test_a_dead_server_stops_the_backend_after_n_unreachable_prompts(make):
    backend = make(base_url=dead_url(), max_retries=2, concurrency=1, max_connection_failures=2)
    start = time.monotonic()
    completions = backend.generate(prompts(20), GenerationParams())
    assert time.monotonic() - start < 3
    errors = [c.error for c in completions]
    assert errors[:2] == ["connection error after 3 attempts"] * 2
    assert all(
        e.startswith("stopped after 2 prompts in a row failed to reach http://127.0.0.1:") for e in errors[2:]
    )
    assert "(max_connection_failures: 2)" in errors[2] and backend.stopped == errors[2]
    [later] = backend.generate(prompts(1), GenerationParams())
    assert later.error == errors[2]  # stopped: nothing more is sent
    backend.reset_failures()  # a new run tries the server again
    assert backend.stopped is None
    [retried] = backend.generate(prompts(1), GenerationParams())
    assert retried.error == "connection error after 3 attempts"


def test_a_stop_ends_the_retries_waiting_in_other_threads(make):
    # 8 prompts at once, each with retries waiting up to 5 s: the stop after the first two
    # unreachable prompts must end the others' waits, not let them sleep on
    backend = make(
        base_url=dead_url(),
        max_retries=5,
        backoff_base_s=1.0,
        backoff_max_s=5.0,
        concurrency=8,
        max_connection_failures=2,
    )
    start = time.monotonic()
    completions = backend.generate(prompts(8), GenerationParams())
    assert time.monotonic() - start < 12  # one prompt's worst case alone is 5 waits of up to 5 s
    assert sum("stopped after 2 prompts" in c.error for c in completions) >= 1
    assert all(c.error for c in completions)


def test_a_server_that_dies_after_the_first_request(make, server):
    def plan(attempt, body):
        # uvicorn shuts down while it answers: it closes its socket, answers this request and
        # closes the connection, so the next request finds nothing listening
        server._server.should_exit = True
        return Sleep(0.3)

    server.plan = plan
    try:
        backend = make(concurrency=1, max_connection_failures=3, timeout_s=5)
        start = time.monotonic()
        completions = backend.generate(prompts(30), GenerationParams())
        assert time.monotonic() - start < 10
        assert completions[0].error is None and completions[0].text == "echo: q0"
        assert all("connection error" in c.error for c in completions[1:4])
        assert all(c.error.startswith("stopped after 3 prompts") for c in completions[4:])
        assert len(server.requests) == 1
    finally:
        server.stop()
        server.start()  # the module's other tests share this server (a fresh uvicorn, same port)


def test_timeouts_count_as_unreachable_but_any_answer_resets_the_count(make, server):
    server.plan = lambda attempt, body: Sleep(2.0) if int(body["messages"][-1]["content"][1:]) % 2 else OK
    backend = make(timeout_s=0.2, max_retries=0, concurrency=1, max_connection_failures=2)
    completions = backend.generate(prompts(6), GenerationParams())
    assert [c.error for c in completions] == [None, "timeout (0.2 s) after 1 attempts"] * 3
    assert backend.stopped is None  # never two in a row


@pytest.mark.parametrize("code", [400, 401, 404])
def test_the_same_client_error_from_the_start_is_one_config_error(make, server, code):
    server.plan = lambda attempt, body: Status(code)
    backend = make(concurrency=1)
    with pytest.raises(
        ConfigError, match=rf"^the first 3 requests to http://127.0.0.1:\d+/v1 all failed with HTTP {code}"
    ):
        backend.generate(prompts(40), GenerationParams())
    assert len(server.requests) == 3  # not 40
    with pytest.raises(ConfigError):  # and nothing more is sent
        backend.generate(prompts(1), GenerationParams())
    assert len(server.requests) == 3


def test_a_client_error_after_a_success_stays_that_prompts_error(make, server):
    server.plan = lambda attempt, body: OK if body["messages"][-1]["content"] == "q0" else Status(400)
    completions = make(concurrency=1).generate(prompts(6), GenerationParams())
    assert completions[0].error is None
    assert [c.error for c in completions[1:]] == ["HTTP 400 (not retried)"] * 5


def test_a_constraint_the_server_ignores_from_the_start_is_one_config_error(make, server):
    server.ignore_constraints = True
    backend = make(constrained="guided_choice", concurrency=1)
    with pytest.raises(
        ConfigError, match="not one of the choices .does the server support constrained: guided_choice"
    ):
        backend.generate(prompts(40), GenerationParams(choices=("no", "yes")))
    assert len(server.requests) == 3
