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
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from socialens.core.errors import ConfigError
from socialens.llm.base import BACKENDS, GenerationParams
from socialens.llm.openai import OpenAIBackend
from socialens.llm.openai_probe import CHAT_PROBE_ORDER, PROBE_MESSAGES, TEXT_PROBE_ORDER
from socialens.llm.openai_scoring import SCORE_PROBE_PROMPT

_spec = importlib.util.spec_from_file_location("fault_server", Path(__file__).with_name("fault_server.py"))
fault_server = importlib.util.module_from_spec(_spec)
sys.modules["fault_server"] = fault_server
_spec.loader.exec_module(fault_server)
MALFORMED, NO_CHOICES, OK = fault_server.MALFORMED, fault_server.NO_CHOICES, fault_server.OK
FEATURES = fault_server.FEATURES
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


@pytest.mark.parametrize(
    ("mode", "field"),
    [
        ("guided_choice", lambda body: body["guided_choice"]),
        ("structured_outputs", lambda body: body["structured_outputs"]["choice"]),
        ("grammar", lambda body: body["grammar"]),
    ],
)
def test_a_set_constrained_form_is_sent_without_a_probe(make, server, mode, field):
    params = GenerationParams(choices=("belief", "belief strong", "neither"))
    completions = make(constrained=mode).generate(prompts(2), params)
    assert [c.text for c in completions] == ["belief", "belief"]
    assert all(c.error is None for c in completions)
    assert len(server.requests) == 2 and all(body["messages"] != PROBE_MESSAGES for body in server.requests)
    if mode == "grammar":  # the llamacpp backend's GBNF: an optional space, then one of the choices
        assert field(server.requests[0]) == 'root ::= " "? ("belief" | "belief strong" | "neither")\n'
    else:
        assert field(server.requests[0]) == ["belief", "belief strong", "neither"]


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
    backend = make(chat=False, constrained="guided_choice")
    messages = [{"role": "system", "content": "Classify."}, {"role": "user", "content": "Text one"}]
    assert backend.render(messages) == "Classify.\n\nText one\n\nAnswer:"
    [completion] = backend.generate([messages], GenerationParams(choices=("yes", "no")))
    assert completion.text == "yes" and completion.error is None
    assert server.requests[0]["prompt"] == "Classify.\n\nText one\n\nAnswer:"
    assert server.requests[0]["guided_choice"] == ["yes", "no"]


@pytest.mark.parametrize("chat", [True, False])
def test_score_sums_echoed_continuation_logprobs(make, server, chat):
    backend = make(chat=chat)  # the completions endpoint and the plain prompt, whatever chat says
    messages = [{"role": "user", "content": "Is it true?"}]
    scores = backend.score(messages, ["yes", "not at all"])
    assert scores.error is None
    # fake tokens are runs of spaces plus a word, with log-prob -len(token)/10
    assert scores.logprobs == pytest.approx([-0.4, -0.4 - 0.3 - 0.4])
    assert scores.continuation_tokens == [1, 3]
    assert scores.tokens_in == 4  # "Is", " it", " true?", "\n\nAnswer:"
    probe, *bodies = server.requests
    assert probe["prompt"] == SCORE_PROBE_PROMPT and probe["echo"] is True
    sent = sorted(body["prompt"] for body in bodies)
    assert sent == ["Is it true?\n\nAnswer: not at all", "Is it true?\n\nAnswer: yes"]
    assert all(body["echo"] is True and body["logprobs"] == 1 for body in bodies)
    backend.score(messages, ["yes"])
    assert len(server.requests) == 4  # probed once


def test_score_failure_is_reported(make, server):
    server.plan = lambda attempt, body: Status(503) if body["prompt"] != SCORE_PROBE_PROMPT else OK
    scores = make(max_retries=1).score(prompts(1)[0], ["a"])
    assert scores.logprobs == [] and scores.error == "HTTP 503 after 2 attempts"


# -- what the server supports: one probe, then the form it honours ---------------------------------------

SERVERS = {
    # name: (the features it has, the statuses it refuses others with; the rest it ignores)
    "llama-cpp-python": ({"grammar", "json_object", "echo"}, {"json_schema": 500}),
    "vllm": ({"json_schema", "structured_outputs", "echo"}, {}),
    "old-vllm": ({"json_schema", "guided_choice", "echo"}, {}),
    "ollama": ({"json_schema"}, {}),
    "strict": ({"guided_choice", "echo"}, {"grammar": 400, "json_schema": 400, "json_object": 422}),
}


@pytest.mark.parametrize(
    ("name", "chat", "mode", "probes"),
    [
        ("llama-cpp-python", True, "grammar", 1),
        ("llama-cpp-python", False, "grammar", 1),
        ("vllm", True, "json_schema", 2),
        ("vllm", False, "structured_outputs", 2),
        ("old-vllm", False, "guided_choice", 3),
        ("ollama", True, "json_schema", 2),
        ("strict", True, "guided_choice", 5),
    ],
)
def test_auto_finds_the_form_the_server_honours_once(make, server, name, chat, mode, probes):
    server.supports, server.rejects = SERVERS[name]
    backend = make(chat=chat)
    assert backend.constrained_mode is None  # not known before it is needed
    params = GenerationParams(choices=("no", "yes"))
    completions = backend.generate(prompts(3), params) + backend.generate(prompts(2), params)
    assert backend.constrained_mode == mode
    assert [c.text for c in completions] == ["no"] * 5 and all(c.error is None for c in completions)
    sent = server.requests
    probe = [PROBE_MESSAGES] if chat else ["Reply with one word.\n\nAnswer:"]
    assert [b.get("messages", b.get("prompt")) in probe for b in sent] == [True] * probes + [False] * 5
    order = CHAT_PROBE_ORDER if chat else TEXT_PROBE_ORDER
    assert order[probes - 1] == mode  # the forms before it were each tried once
    assert fault_server.requested_features(sent[-1]) == {mode}


def test_a_server_that_honours_no_form_is_one_config_error(make, server):
    server.supports, server.rejects = {"echo"}, {"json_schema": 400}
    backend = make()
    with pytest.raises(ConfigError) as error:
        backend.generate(prompts(4), GenerationParams(choices=("no", "yes")))
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"openai backend: the server at {server.base_url} honours none of the")
    tried = "grammar: ignored; json_schema: HTTP 400; json_object: ignored; structured_outputs: ignored"
    assert f"({tried}; guided_choice: ignored)" in message
    assert "use decoding: generate" in message and "constrained:" in message
    assert len(server.requests) == len(CHAT_PROBE_ORDER)  # the probes; no text was sent
    with pytest.raises(ConfigError, match="honours none"):  # once: nothing more is asked
        backend.generate(prompts(4), GenerationParams(choices=("no", "yes")))
    assert len(server.requests) == len(CHAT_PROBE_ORDER)
    [free] = backend.generate(prompts(1), GenerationParams())  # unconstrained generation still works
    assert free.error is None and free.text == "echo: q0"


def test_a_probe_that_fails_is_asked_again_with_the_next_batch(make, server):
    down = {"on": True}
    server.plan = lambda attempt, body: Status(503) if down["on"] else OK
    backend = make(max_retries=1)
    params = GenerationParams(choices=("no", "yes"))
    failed = backend.generate(prompts(3), params)
    assert [c.error for c in failed] == ["HTTP 503 after 2 attempts (probing what the server supports)"] * 3
    assert len(server.requests) == 2 and backend.constrained_mode is None  # the probe's two attempts
    down["on"] = False
    completions = backend.generate(prompts(3), params)
    assert all(c.error is None and c.text == "no" for c in completions)
    assert backend.constrained_mode == "grammar" and len(server.requests) == 2 + 1 + 3


def test_threads_sharing_a_backend_probe_once(make, server):
    server.hold_s = 0.1
    backend = make()
    params = GenerationParams(choices=("no", "yes"))
    results = []
    threads = [
        threading.Thread(target=lambda: results.extend(backend.generate(prompts(2), params)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and all(c.error is None for c in results)
    assert sum(body["messages"] == PROBE_MESSAGES for body in server.requests) == 1


@pytest.mark.parametrize("refusal", [None, 404], ids=["ignored", "refused"])
def test_a_server_giving_no_log_probabilities_is_one_config_error_for_scoring(make, server, refusal):
    server.supports = set(FEATURES) - {"echo"}
    server.rejects = {"echo": refusal} if refusal else {}
    backend = make()
    with pytest.raises(ConfigError) as error:
        backend.score(prompts(1)[0], ["no", "yes"])
    message = str(error.value)
    assert "\n" not in message and message.startswith("openai backend: scored decoding needs label log-prob")
    assert f"the server at {server.base_url} gives in none of the forms tried" in message
    echo = "HTTP 404" if refusal else "no echoed prompt log-probabilities"
    tried = f"(echo: {echo}; prompt_logprobs: no prompt_logprobs; top_logprobs: no top_logprobs)"
    assert tried in message
    assert message.endswith("use decoding: constrained or decoding: generate")
    with pytest.raises(ConfigError, match="scored decoding needs"):
        backend.score_batch(prompts(2), ["no", "yes"])
    assert len(server.requests) == 3  # one probe per method; no text was sent


# -- llama-cpp-python's own OpenAI-compatible server ----------------------------------------------------


@pytest.fixture(scope="module")
def llama_server():
    from socialens.core.models import resolve_model

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


@pytest.mark.slow
def test_scoring_on_llama_cpp_server_echo_and_chat_top_logprobs(llama_server):
    """llama-cpp-python's server echoes prompt log-probabilities (auto picks echo, exact) and lists
    chat top_logprobs (scoring: top_logprobs, the first answer token after its chat template)."""
    question = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    labels = ["Paris", "London"]
    auto = OpenAIBackend("smollm2", base_url=llama_server, api_key_env=None, timeout_s=60, concurrency=2)
    first = OpenAIBackend(
        "smollm2", base_url=llama_server, api_key_env=None, timeout_s=60, scoring="top_logprobs"
    )
    try:
        [exact] = auto.score_batch([question], labels)
        assert auto.scoring.mode == "echo" and exact.error is None
        assert exact.continuation_tokens[0] >= 1 and all(math.isfinite(v) and v < 0 for v in exact.logprobs)
        batch = first.score_batch([question, question], labels)
        assert first.scoring.mode == "top_logprobs"
        assert all(s.error is None and s.continuation_tokens == [1, 1] for s in batch)
        assert batch[0].logprobs == batch[1].logprobs  # greedy server, same prompt
        paris, london = batch[0].logprobs
        assert paris > london and all(math.isfinite(v) and v < 0 for v in batch[0].logprobs)
    finally:
        auto.close()
        first.close()


@pytest.mark.slow
@pytest.mark.parametrize("decoding", ["generate", "constrained", "scored"])
def test_every_decoding_mode_works_on_llama_cpp_server_with_defaults(llama_server, tmp_path, decoding):
    """The README recipe: base_url, api_key_env: null and nothing else (no chat:, no constrained:)."""
    from socialens.classifiers.prompted import PromptedClassifier, PromptedParams
    from socialens.core.types import Example, LabelSchema, Status

    schema = LabelSchema.from_names(["belief", "debunk", "other"])
    texts = ["Vaccines cause autism, wake up", "No, satellites clearly show warming."]
    pairs = enumerate(zip(texts, schema.names, strict=False))
    examples = [Example(f"t{i}", text, label) for i, (text, label) in pairs]
    params = PromptedParams(
        backend="openai",
        model="smollm2",
        base_url=llama_server,
        api_key_env=None,
        decoding=decoding,
        cache_path=str(tmp_path / "cache.sqlite"),
        # short prompts: with echo, the server sorts the whole vocabulary for every prompt token
        system_prompt="Classify the text.",
    )
    classifier = PromptedClassifier(params).fit(examples, schema=schema)
    try:
        records = classifier.predict(examples)
        backend = classifier.backend.backend
    finally:
        classifier.backend.close()
    assert [r.id for r in records] == ["t0", "t1"]
    assert all(r.status != Status.ERROR and r.tokens_in > 0 for r in records)
    if decoding == "constrained":
        assert backend.constrained_mode == "grammar"  # found by the probe
    if decoding != "generate":
        assert all(r.status == Status.OK and r.predicted in schema.names for r in records)
    if decoding == "scored":
        assert all(abs(sum(r.scores.values()) - 1) < 1e-6 for r in records)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "outcome"),
    [
        ("grammar", "honoured"),
        ("json_object", "honoured"),
        ("json_schema", "HTTP 500"),  # its request validation fails, answered with 500
        ("structured_outputs", "ignored"),
        ("guided_choice", "ignored"),
    ],
)
def test_what_llama_cpp_server_does_with_each_constrained_form(llama_server, mode, outcome):
    """Why the probe tries grammar first: what llama-cpp-python's server does with each form."""
    backend = OpenAIBackend(
        "smollm2", base_url=llama_server, api_key_env=None, timeout_s=60, max_retries=0, constrained=mode
    )
    try:
        params = GenerationParams(max_tokens=8, choices=("true", "false", "false claim"))
        [answer] = backend.generate([[{"role": "user", "content": "Is the earth flat?"}]], params)
    finally:
        backend.close()
    if outcome == "honoured":
        assert answer.error is None and answer.text in params.choices
    elif outcome == "ignored":
        assert answer.text not in params.choices and "is not one of the choices" in answer.error
    else:
        assert answer.error == "HTTP 500 after 1 attempts"


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


# -- JSON-schema constrained answers ----------------------------------------------------------------

ENTITY_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"text": {"type": "string"}, "type": {"type": "string", "enum": ["PER", "LOC"]}},
        "required": ["text", "type"],
        "additionalProperties": False,
    },
}
# an object root: the fault server answers {"answer": <its first enum value>} to a JSON response format
ANSWER_SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {"answer": {"type": "string", "enum": ["x", "y"]}},
        "required": ["answer"],
        "additionalProperties": False,
    }
)


def test_json_schema_form_is_found_by_a_probe_once(make, server):
    """llama-cpp-python's server: json_schema refused with 500, json_object honoured."""
    server.supports = set(FEATURES) - {"json_schema"}
    server.rejects = {"json_schema": 500}
    backend = make()
    params = GenerationParams(json_schema=ANSWER_SCHEMA, max_tokens=16, stop=("\n",))
    completions = backend.generate(prompts(2), params)
    assert [json.loads(c.text) for c in completions] == [{"answer": "x"}] * 2
    assert backend.json_schema_mode == "json_object" and backend.json_schema_fallback is None
    assert backend.constrained_mode is None  # the choice form is still to be found, when needed
    probes = [body for body in server.requests if body.get("messages") == PROBE_MESSAGES]
    assert [body["response_format"]["type"] for body in probes] == ["json_schema", "json_object"]
    sent = [body for body in server.requests if body.get("messages") != PROBE_MESSAGES]
    assert all(
        body["response_format"] == {"type": "json_object", "schema": json.loads(ANSWER_SCHEMA)}
        for body in sent
    )
    assert all("stop" not in body for body in sent)  # a stop string could cut the JSON short
    backend.generate(prompts(1), params)
    assert len(server.requests) == 2 + 2 + 1  # no second probe


def test_a_server_honouring_no_json_form_answers_freely_with_the_reason_recorded(make, server, caplog):
    server.ignore_constraints = True
    backend = make()
    with caplog.at_level(logging.WARNING, logger="socialens.llm.openai_probe"):
        completions = backend.generate(prompts(2), GenerationParams(json_schema=json.dumps(ENTITY_SCHEMA)))
    assert [c.text for c in completions] == ["echo: q0", "echo: q1"]  # free text, for the parser
    assert all(c.error is None for c in completions)
    assert backend.json_schema_mode is None
    reason = backend.json_schema_fallback
    assert reason.startswith("openai backend: answers that must follow a JSON schema are generated freely")
    assert "json_schema: ignored; json_object: ignored" in reason
    assert [r.getMessage() for r in caplog.records] == [reason]  # logged once
    backend.generate(prompts(1), GenerationParams(json_schema=json.dumps(ENTITY_SCHEMA)))
    assert sum(body.get("messages") == PROBE_MESSAGES for body in server.requests) == 5


def test_json_form_follows_a_set_constrained_form_without_a_probe(make, server):
    server.ignore_constraints = True  # only the request bodies matter here
    schema = json.dumps(ENTITY_SCHEMA)
    make(constrained="guided_choice").generate(prompts(1), GenerationParams(json_schema=schema))
    make(constrained="structured_outputs").generate(prompts(1), GenerationParams(json_schema=schema))
    none = make(constrained="none")
    none.generate(prompts(1), GenerationParams(json_schema=schema))
    assert len(server.requests) == 3  # no probe
    assert server.requests[0]["guided_json"] == ENTITY_SCHEMA
    assert server.requests[1]["structured_outputs"] == {"json": ENTITY_SCHEMA}
    assert "response_format" not in server.requests[2] and "guided_json" not in server.requests[2]
    assert none.json_schema_fallback.endswith(": constrained: none")


def test_openai_strict_json_schema_wraps_a_non_object_root_and_unwraps_the_answer():
    from socialens.llm.openai_probe import json_answer, json_schema_args

    schema = json.dumps(ENTITY_SCHEMA)
    args = json_schema_args("json_schema", schema, 64)
    spec = args["response_format"]["json_schema"]
    assert args["response_format"]["type"] == "json_schema" and spec["strict"] is True
    assert spec["schema"]["properties"]["answer"] == ENTITY_SCHEMA
    assert spec["schema"]["required"] == ["answer"] and args["max_tokens"] > 64
    reply = '{"answer": [{"text": "Zoë", "type": "PER"}]}'
    assert json_answer("json_schema", reply, schema) == '[{"text": "Zoë", "type": "PER"}]'
    assert json_answer("json_schema", "not json", schema) == "not json"
    # an object root is sent as it is, and its answer is not unwrapped
    assert json_schema_args("json_schema", ANSWER_SCHEMA, 64)["response_format"]["json_schema"]["schema"] == (
        json.loads(ANSWER_SCHEMA)
    )
    assert json_answer("json_schema", '{"answer": "x"}', ANSWER_SCHEMA) == '{"answer": "x"}'


@pytest.mark.slow
def test_json_schema_answers_on_llama_cpp_server(llama_server):
    import jsonschema

    backend = OpenAIBackend("smollm2", base_url=llama_server, api_key_env=None, timeout_s=60, max_retries=0)
    try:
        messages = [
            [
                {
                    "role": "user",
                    "content": "List the named entities as a JSON array of {text, type} objects (type PER "
                    f"or LOC).\n\nText: {text}",
                }
            ]
            for text in ("Angela Merkel visited Paris on Monday.", "John lives in London.")
        ]
        params = GenerationParams(max_tokens=96, json_schema=json.dumps(ENTITY_SCHEMA))
        completions = backend.generate(messages, params)
    finally:
        backend.close()
    assert backend.json_schema_mode == "json_object"  # found by the probe; json_schema gets HTTP 500 there
    for completion in completions:
        assert completion.error is None
        jsonschema.validate(json.loads(completion.text), ENTITY_SCHEMA)
