"""Scored decoding over OpenAI-compatible servers (socialens.llm.openai_scoring), against real HTTP.

vLLM and llama.cpp's own server cannot run here, so their scoring dialects are spoken by
tests/llm/logprob_server.py: a real HTTP server on 127.0.0.1 whose log-probabilities come from the
real SmolLM2 GGUF through llama-cpp-python (numpy over every position's logits). llama-cpp-python's
own server, which does run here, is tried in tests/llm/test_openai.py (echo) and at the end of this
file (chat top_logprobs). The reference numbers are computed from the model directly, not from
what the server sent.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import threading
from pathlib import Path

import pytest

from socialens.core.errors import ConfigError
from socialens.llm.base import ANSWER_PREFIX_PLAIN, render_plain
from socialens.llm.openai import OpenAIBackend
from socialens.llm.openai_scoring import (
    SCORING_PROBE_ORDER,
    TOP_LOGPROBS,
    first_token_scores,
    prompt_token_logprobs,
)

pytestmark = pytest.mark.slow  # a real model behind a real server: ~15 s on a quiet 2-core machine

_spec = importlib.util.spec_from_file_location(
    "logprob_server", Path(__file__).with_name("logprob_server.py")
)
logprob_server = importlib.util.module_from_spec(_spec)
sys.modules["logprob_server"] = logprob_server


@pytest.fixture(scope="module")
def server():
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed")
    from socialens.core.models import resolve_model

    try:
        model = resolve_model("builtin:smollm2-135m-instruct")
    except ConfigError as error:
        pytest.skip(str(error))
    _spec.loader.exec_module(logprob_server)
    with logprob_server.LogprobServer(model) as running:
        yield running


@pytest.fixture
def make(server):
    made = []

    def factory(dialect: str = "vllm", **options) -> OpenAIBackend:
        server.reset(dialect)
        settings = {"base_url": server.base_url, "api_key_env": None, "timeout_s": 30, "max_retries": 1}
        backend = OpenAIBackend("smollm2", **{**settings, **options})
        made.append(backend)
        return backend

    yield factory
    for backend in made:
        backend.close()


def ask(text: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "Does the tweet spread hate? Answer yes or no."},
        {"role": "user", "content": text},
    ]


PROMPTS = [ask("Go back to your country, nobody wants you here"), ask("ok")]
LABELS = ["yes", "no", "not at all"]


def exact_reference(server, messages, label) -> tuple[float, int]:
    """From the model: the summed log-probability of the tokens of prompt + " " + label that
    overlap the label (one that straddles the boundary included), and their count."""
    prompt = render_plain(messages)
    full = prompt + ANSWER_PREFIX_PLAIN + label
    tokens = server.tokenize(full)
    table = server.logprobs(tokens)
    total, count, position = 0.0, 0, 0
    for i in range(len(tokens)):
        piece = server.piece(tokens, i)
        if i > 0 and position + len(piece) > len(prompt):
            total += float(table[i - 1, tokens[i]])
            count += 1
        position += len(piece)
    return total, count


def reference_first_token(listed: dict[str, float], labels: list[str]) -> list[float]:
    """Each label: log of the summed probability of the listed tokens that begin it (whitespace
    before a token and case ignored), else the lowest listed log-probability."""
    values = []
    for label in labels:
        begins = [v for t, v in listed.items() if t.strip() and label.lower().startswith(t.strip().lower())]
        values.append(math.log(sum(math.exp(v) for v in begins)) if begins else min(listed.values()))
    return values


def test_auto_picks_echo_where_the_server_echoes(make, server):
    backend = make("vllm")
    batch = backend.score_batch(PROMPTS, LABELS)
    assert backend.scoring.mode == "echo"
    assert all(s.error is None for s in batch) and len(batch) == len(PROMPTS)
    for scores, messages in zip(batch, PROMPTS, strict=True):
        expected = [exact_reference(server, messages, label) for label in LABELS]
        assert scores.logprobs == pytest.approx([e[0] for e in expected], abs=1e-4)
        assert scores.continuation_tokens == [e[1] for e in expected]
        assert scores.tokens_in > 10
    probe, *sent = server.requests
    assert probe["echo"] is True and len(sent) == len(PROMPTS) * len(LABELS)
    assert sorted(b["prompt"] for b in sent) == sorted(
        render_plain(p) + " " + label for p in PROMPTS for label in LABELS
    )
    [alone] = backend.score_batch(PROMPTS[:1], LABELS)
    assert alone.logprobs == batch[0].logprobs
    assert backend.score(PROMPTS[0], LABELS).logprobs == batch[0].logprobs
    assert len(server.requests) == 1 + len(PROMPTS) * len(LABELS) + 2 * len(LABELS)  # probed once


def test_vllm_prompt_logprobs_where_echo_is_ignored(make, server):
    backend = make("vllm-no-echo")
    batch = backend.score_batch(PROMPTS, LABELS)
    assert backend.scoring.mode == "prompt_logprobs"
    assert [b.get("prompt_logprobs") for b in server.requests[:2]] == [None, 1]  # echo probed first
    for scores, messages in zip(batch, PROMPTS, strict=True):
        assert scores.error is None
        expected = [exact_reference(server, messages, label) for label in LABELS]
        assert scores.logprobs == pytest.approx([e[0] for e in expected], abs=1e-4)
        assert scores.continuation_tokens == [e[1] for e in expected]


def test_llama_server_refuses_echo_and_scores_the_first_token(make, server):
    backend = make("llama-server")  # chat: true: the server's chat template, one request per text
    batch = backend.score_batch(PROMPTS, LABELS)
    assert backend.scoring.mode == "top_logprobs"
    tried = server.requests[: len(SCORING_PROBE_ORDER)]
    assert (
        tried[0]["echo"] is True
        and "prompt_logprobs" in tried[1]
        and tried[2]["top_logprobs"] == TOP_LOGPROBS
    )
    sent = server.requests[len(SCORING_PROBE_ORDER) :]
    assert len(sent) == len(PROMPTS) and all(b["messages"] in PROMPTS and b["max_tokens"] == 1 for b in sent)
    for scores, messages in zip(batch, PROMPTS, strict=True):
        assert scores.error is None and scores.continuation_tokens == [1, 1, 1]
        # the reference: the model's own first-token distribution after the chat template
        reply = server.llm.create_chat_completion(
            messages, max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=TOP_LOGPROBS
        )
        content = reply["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
        listed = {e["token"]: float(e["logprob"]) for e in content}
        assert scores.logprobs == pytest.approx(reference_first_token(listed, LABELS), abs=1e-4)


def test_first_token_on_the_completions_endpoint_in_llama_server_shape(make, server):
    backend = make("llama-server", chat=False, scoring="top_logprobs")
    batch = backend.score_batch(PROMPTS, LABELS)
    assert sorted(b["prompt"] for b in server.requests) == sorted(render_plain(p) for p in PROMPTS)
    assert all(b["logprobs"] == TOP_LOGPROBS and "echo" not in b for b in server.requests)
    assert len(server.requests) == len(PROMPTS)  # a chosen method is not probed
    for scores, messages in zip(batch, PROMPTS, strict=True):
        assert scores.error is None
        row = server.logprobs(server.tokenize(render_plain(messages)))[-1]
        listed = {server.token_text(t): float(row[t]) for t in (-row).argsort()[:TOP_LOGPROBS]}
        assert scores.logprobs == pytest.approx(reference_first_token(listed, LABELS), abs=1e-4)
    assert backend.model_id.endswith("#scoring=top_logprobs")  # its cache entries kept apart


def test_a_server_without_log_probabilities_is_one_config_error(make, server):
    backend = make("no-logprobs")
    with pytest.raises(ConfigError) as error:
        backend.score_batch(PROMPTS, LABELS)
    message = str(error.value)
    assert "\n" not in message
    assert (
        "(echo: no echoed prompt log-probabilities; prompt_logprobs: no prompt_logprobs; top_logprobs: no top_logprobs)"
        in message
    )
    assert message.endswith("use decoding: constrained or decoding: generate")
    assert len(server.requests) == len(SCORING_PROBE_ORDER)


def test_requests_are_concurrent_up_to_the_limit(make, server):
    backend = make("vllm", concurrency=3, scoring="echo")
    server.hold_s = 0.2
    batch = backend.score_batch(PROMPTS, LABELS[:2])
    assert all(s.error is None for s in batch)
    assert server.max_in_flight == 3  # 6 requests, 3 workers
    assert all(0.2 <= s.latency_s < 5 for s in batch)


def test_threads_sharing_a_backend_probe_once(make, server):
    backend = make("vllm-no-echo")
    results = []
    threads = [
        threading.Thread(target=lambda: results.extend(backend.score_batch(PROMPTS[:1], LABELS[:2])))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3 and all(s.error is None for s in results)
    probes = [b for b in server.requests if b["prompt"] == "The capital of France is Paris"]
    assert len(probes) == 2  # echo once (ignored), prompt_logprobs once


# -- reading answers: the edge cases ---------------------------------------------------------------


def test_first_token_scores_sum_every_beginning_and_bound_the_unlisted():
    listed = {" no": -1.0, "No": -2.0, " n": -3.0, " yes": -0.5, " The": -4.0}
    scores = first_token_scores(listed, ["no", "yes", "maybe"])
    assert scores[0] == pytest.approx(math.log(math.exp(-1) + math.exp(-2) + math.exp(-3)))
    assert scores[1] == pytest.approx(-0.5)
    assert scores[2] == -4.0  # not listed: the lowest listed value, an upper bound
    assert first_token_scores({" The": -1.0}, ["no", "yes"]) is None


def test_prompt_logprobs_take_the_prompt_token_beside_a_higher_ranked_one():
    response = {
        "choices": [
            {
                "prompt_logprobs": [
                    None,
                    {
                        "7": {"logprob": -3.0, "rank": 9, "decoded_token": " cat"},
                        "2": {"logprob": -0.1, "rank": 1, "decoded_token": " the"},
                    },
                    {"5": {"logprob": -0.2, "rank": 1, "decoded_token": " sat"}},
                ]
            }
        ]
    }
    assert prompt_token_logprobs(response) == [None, (" cat", -3.0), (" sat", -0.2)]
