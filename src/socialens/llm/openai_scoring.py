"""Label scoring (``decoding: scored``) on OpenAI-compatible servers: which request each server
answers with log-probabilities, how the answer is read, and the probe that picks one.

| method            | request                                                        | scores                     | servers |
|-------------------|----------------------------------------------------------------|----------------------------|---------|
| `echo`            | `/completions`, prompt+label, `echo: true`, `logprobs: 1`       | every label token, exact   | llama-cpp-python's server (tried here), vLLM |
| `prompt_logprobs` | `/completions`, prompt+label, `prompt_logprobs: 1` (vLLM's own) | every label token, exact   | vLLM (its protocol tried here on a stand-in server) |
| `top_logprobs`    | `/chat/completions` with `logprobs: true, top_logprobs: 20`, or `/completions` with `logprobs: 20` (``chat: false``), one token | the label's first token only, from the 20 most likely | OpenAI, llama.cpp's own server (`llama-server`: no `echo`), llama-cpp-python's server (tried here), vLLM, Ollama >= 0.12 |

``echo`` and ``prompt_logprobs`` send the plain-text prompt (``render_plain``, no chat template:
the server would otherwise have to template a prompt that ends inside the answer) followed by
one space and the label, one request per (text, label); the label's log-probability is the sum
over the echoed tokens that overlap it (a token straddling the boundary included, as in the local
backends). ``top_logprobs`` sends one request per text (the chat messages when ``chat: true``, so
the server's own template is used) and reads the distribution of the first answer token: a
label's score is the log of the summed probability of the listed tokens that begin it, leading
whitespace and case ignored as the answer parser ignores them (" hate", "Hate" and "h" all begin
"hate"; a chat model answers "No" more often than "no"). It is an approximation, and says so:
labels that begin with the same token ("false" / "false claim") cannot be told apart, and a label
none of whose beginnings is among the 20 listed gets the lowest listed log-probability (an upper
bound of its own); a text for which no label is listed gets an error record.

``scoring: auto`` (the default) asks the server once, before the first score, in the order
``SCORING_PROBE_ORDER`` (the exact methods first), and uses the first method it answers; OpenAI's
own API (no ``base_url``) is ``top_logprobs`` without asking, since its chat models echo nothing.
A server that answers none is one ConfigError naming what each method got.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from typing import Any

from socialens.core.errors import ConfigError
from socialens.llm.base import Messages, render_plain
from socialens.llm.openai_probe import ProbeFailed, RefusedResponse, Send

log = logging.getLogger(__name__)

SCORING_MODES = ("echo", "prompt_logprobs", "top_logprobs")
SCORING_PROBE_ORDER = SCORING_MODES  # exact methods first
TOP_LOGPROBS = 20  # the most OpenAI's API lists (and vLLM's default max_logprobs)
SCORE_PROBE_PROMPT = "The capital of France is Paris"
SCORE_PROBE_CHECK = "capital of France"
SCORE_PROBE_MESSAGES: Messages = [{"role": "user", "content": "The capital of France is"}]


class MalformedScores(Exception):
    """A 2xx answer without the log-probabilities asked for (retried like a malformed body)."""


def field(obj: Any, name: str) -> Any:
    """``obj.name`` or ``obj[name]``: the client parses known fields into objects and leaves a
    server's own fields (vLLM's ``prompt_logprobs``, llama-server's ``content``) as plain JSON."""
    if isinstance(obj, dict):
        return obj.get(name)
    value = getattr(obj, name, None)
    if value is None:
        extra = getattr(obj, "model_extra", None) or {}
        value = extra.get(name)
    return value


def first_choice(response: Any) -> Any:
    choices = field(response, "choices") or [None]
    return choices[0]


# -- requests ------------------------------------------------------------------------------------------


def scoring_request(
    mode: str, model: str, prompt: Messages, continuation: str | None, chat: bool
) -> tuple[bool, dict[str, Any]]:
    """(chat endpoint?, request fields) that score ``continuation`` after ``prompt`` in ``mode``;
    ``top_logprobs`` asks once per prompt (``continuation`` None)."""
    args: dict[str, Any] = {"model": model, "max_tokens": 1, "temperature": 0.0}
    if mode == "top_logprobs":
        if chat:
            return True, {**args, "messages": prompt, "logprobs": True, "top_logprobs": TOP_LOGPROBS}
        return False, {**args, "prompt": render_plain(prompt), "logprobs": TOP_LOGPROBS}
    text = render_plain(prompt) + (continuation or "")
    if mode == "echo":
        return False, {**args, "prompt": text, "echo": True, "logprobs": 1}
    if mode == "prompt_logprobs":
        return False, {**args, "prompt": text, "extra_body": {"prompt_logprobs": 1}}
    raise ValueError(f"unknown scoring mode {mode!r}")


# -- reading the answers -------------------------------------------------------------------------------


def echoed_tokens(response: Any) -> list[tuple[str, float | None, int]] | None:
    """(token text, log-probability, text offset) of each echoed prompt token, from ``echo`` + ``logprobs``
    (the generated token after the prompt dropped by the caller's offsets); None when absent."""
    logprobs = field(first_choice(response), "logprobs")
    tokens, values = field(logprobs, "tokens"), field(logprobs, "token_logprobs")
    offsets = field(logprobs, "text_offset")
    if not tokens or values is None or offsets is None:
        return None
    return [(t, v, o) for t, v, o in zip(tokens, values, offsets, strict=False)]


def echo_score(response: Any, prompt_text: str, continuation: str) -> tuple[float, int, int]:
    """(summed log-probability of the continuation's tokens, their count, prompt tokens)."""
    found = echoed_tokens(response)
    if found is None:
        raise ConfigError(
            "openai backend: scoring: echo, but the completions endpoint returned no echoed prompt "
            "log-probabilities; use scoring: auto, decoding: constrained or decoding: generate"
        )
    full, boundary = prompt_text + continuation, len(prompt_text)
    total, count, n_prompt = 0.0, 0, 0
    for token, value, offset in found:
        if offset >= len(full):
            break  # the generated token after the echoed prompt
        if offset + len(token) <= boundary:
            n_prompt += 1
            continue
        if value is None:
            raise MalformedScores("echoed continuation token without a log-probability")
        total += float(value)
        count += 1
    return total, count, n_prompt


def prompt_token_logprobs(response: Any) -> list[tuple[str, float] | None] | None:
    """vLLM's ``prompt_logprobs``: per prompt token (the first is None) a map of token id to
    ``{logprob, rank, decoded_token}``, holding the prompt's own token and the top ones asked for.
    The prompt's own token is the entry of highest rank: a top token listed beside it ranks
    higher only when it is the same token (then there is one entry)."""
    entries = field(first_choice(response), "prompt_logprobs")
    if entries is None:
        entries = field(response, "prompt_logprobs")
    if not isinstance(entries, list) or not entries:
        return None
    tokens: list[tuple[str, float] | None] = []
    for entry in entries:
        if not entry:
            tokens.append(None)
            continue
        own = max(entry.values(), key=lambda e: field(e, "rank") or 0)
        text, value = field(own, "decoded_token"), field(own, "logprob")
        if text is None or value is None:
            return None
        tokens.append((text, float(value)))
    return tokens


def prompt_logprobs_score(response: Any, continuation: str) -> tuple[float, int, int]:
    """As ``echo_score``, from ``prompt_logprobs``: the trailing tokens that overlap the
    continuation (counted from the end, so a BOS or a template piece the server adds in front
    changes nothing)."""
    tokens = prompt_token_logprobs(response)
    if tokens is None:
        raise ConfigError(
            "openai backend: scoring: prompt_logprobs, but the completions endpoint returned no "
            "prompt_logprobs; use scoring: auto, decoding: constrained or decoding: generate"
        )
    total, count, covered = 0.0, 0, 0
    for token in reversed(tokens):
        if covered >= len(continuation):
            break
        if token is None:
            raise MalformedScores("prompt_logprobs end before the continuation does")
        text, value = token
        total += value
        count += 1
        covered += len(text)
    return total, count, len(tokens) - count


def first_token_alternatives(response: Any) -> dict[str, float] | None:
    """token -> log-probability of the listed alternatives for the first generated token, from any
    of the shapes servers answer in: chat ``logprobs.content[0].top_logprobs`` (OpenAI, vLLM,
    llama.cpp's servers), llama-server's completions in that same shape, and the legacy completions
    ``logprobs.top_logprobs[0]`` map (llama-cpp-python, vLLM)."""
    logprobs = field(first_choice(response), "logprobs")
    if logprobs is None:
        return None
    content = field(logprobs, "content")
    if content:
        listed = field(content[0], "top_logprobs") or []
        found = {field(e, "token"): field(e, "logprob") for e in listed}
    else:
        tops = field(logprobs, "top_logprobs")
        found = dict(tops[0]) if tops and isinstance(tops[0], dict) else {}
    found = {t: float(v) for t, v in found.items() if isinstance(t, str) and v is not None}
    return found or None


def first_token_scores(alternatives: dict[str, float], labels: Sequence[str]) -> list[float] | None:
    """Each label's log-probability of being begun by the next token (see the module docstring);
    None when no listed token begins any label."""
    floor = min(alternatives.values())
    scores, matched = [], False
    for label in labels:
        wanted = label.lstrip().casefold()
        beginning = [
            v for t, v in alternatives.items() if t.strip() and wanted.startswith(t.lstrip().casefold())
        ]
        if beginning:
            matched = True
            top = max(beginning)
            scores.append(top + math.log(sum(math.exp(v - top) for v in beginning)))
        else:
            scores.append(floor)
    return scores if matched else None


def usage_prompt_tokens(response: Any) -> int:
    return int(field(field(response, "usage"), "prompt_tokens") or 0)


# -- which method a server answers -------------------------------------------------------------------


def probe_reply(mode: str, response: Any) -> str | None:
    """None when the probe's answer carries what ``mode`` needs, else what it did instead."""
    if isinstance(response, RefusedResponse):
        return f"HTTP {response.status}"
    if mode == "echo":
        found = echoed_tokens(response) or []
        echoed = "".join(t for t, _, _ in found if isinstance(t, str))
        if SCORE_PROBE_CHECK in echoed and any(v is not None for _, v, _ in found):
            return None
        return "no echoed prompt log-probabilities"
    if mode == "prompt_logprobs":
        tokens = prompt_token_logprobs(response) or []
        if SCORE_PROBE_CHECK in "".join(t[0] for t in tokens if t is not None):
            return None
        return "no prompt_logprobs"
    return None if first_token_alternatives(response) else "no top_logprobs"


def probe_scoring(send: Send, model: str, chat: bool, order: Sequence[str]) -> tuple[str | None, list[str]]:
    """The first method of ``order`` the server answers (None: none), and what each tried got."""
    tried = []
    for mode in order:
        if mode == "top_logprobs":
            use_chat, args = scoring_request(mode, model, SCORE_PROBE_MESSAGES, None, chat)
        else:
            use_chat, args = scoring_request(mode, model, [], None, chat)
            args["prompt"] = SCORE_PROBE_PROMPT  # a whole sentence, no "Answer:" cue
        problem = probe_reply(mode, send(use_chat, args))
        if problem is None:
            return mode, tried
        tried.append(f"{mode}: {problem}")
    return None, tried


class ScoringCapability:
    """How one backend scores: ``mode`` set by the user, or asked of the server once, when first
    needed (thread-safe: the first caller probes, the others wait for it)."""

    def __init__(self, send: Send, model: str, *, server: str, chat: bool, mode: str | None):
        self.send, self.model, self.server, self.chat = send, model, server, chat
        self.mode = mode  # None: to be found by probe_scoring
        self.verdict: str | None = None  # the one-line error of a probe that found no method
        self.lock = threading.Lock()

    def resolve(self) -> str | None:
        """None once ``mode`` is known; the error text of a probe that failed for a passing
        reason (asked again next time); a ConfigError when the server answers no method."""
        with self.lock:
            if self.mode is not None:
                return None
            if self.verdict is None:
                try:
                    mode, tried = probe_scoring(self.send, self.model, self.chat, SCORING_PROBE_ORDER)
                except ProbeFailed as failure:
                    return str(failure)
                if mode is not None:
                    log.info("%s: scored decoding as %s", self.server, mode)
                    self.mode = mode
                    return None
                self.verdict = (
                    "openai backend: scored decoding needs label log-probabilities, which the server at "
                    f"{self.server} gives in none of the forms tried ({'; '.join(tried)}); use decoding: "
                    "constrained or decoding: generate"
                )
            raise ConfigError(self.verdict)
