"""What an OpenAI-compatible server supports, found by asking it once.

Servers that speak the OpenAI API restrict output to a set of strings in different request forms,
and most accept the forms they do not know without a word and answer freely:

| form                 | request                                             | taken by                           |
|----------------------|-----------------------------------------------------|------------------------------------|
| `grammar`            | `grammar: <GBNF>`                                   | llama-cpp-python's server (tried here), llama.cpp's own server |
| `json_schema`        | `response_format: {type: json_schema, json_schema}` | OpenAI, vLLM, llama.cpp's own server, Ollama >= 0.5 |
| `json_object`        | `response_format: {type: json_object, schema}`      | llama-cpp-python's server (tried here), llama.cpp's own server |
| `structured_outputs` | `structured_outputs: {choice: [...]}`               | vLLM since `guided_*` was deprecated (removed in 0.12) |
| `guided_choice`      | `guided_choice: [...]`                              | vLLM before 0.12                   |

(what each server's documentation says, except where tried here.) So the constrained probe asks for
a reply restricted to two made-up words no model says unprompted (``PROBE_CHOICES``), in each form
in turn (``CHAT_PROBE_ORDER`` or, for the completions endpoint, ``TEXT_PROBE_ORDER``), and the
first form whose answer is one of them is the server's. A form the server refuses
(``REJECTED_STATUSES``) or ignores (free text back) is passed over; when none is left,
``probe_constrained`` returns None. (Which scoring request a server answers is probed the same
way, in ``socialens.llm.openai_scoring``.) A probe request that fails for another
reason (a timeout, a 502/503/504 or 429 after the retries, a refused connection, a wrong key)
decides nothing: ``ProbeFailed`` is raised and the caller probes again next time.

An answer that must be a JSON document following a JSON schema (``GenerationParams.json_schema``)
is asked for in the JSON form of the same servers:

| form                 | request                                                      |
|----------------------|--------------------------------------------------------------|
| `json_schema`        | `response_format: {type: json_schema, json_schema: {strict: true, schema}}` (a schema whose root is not an object is wrapped as `{"answer": ...}`, which OpenAI's strict mode needs, and unwrapped) |
| `json_object`        | `response_format: {type: json_object, schema}`               |
| `structured_outputs` | `structured_outputs: {json: schema}`                         |
| `guided_json`        | `guided_json: schema`                                        |
| `grammar`            | `grammar: <GBNF>` built from the schema by llama-cpp-python (when it is installed) |

The form follows the constrained-choice form when that is already known (set, or found by the
probe above); otherwise ``probe_json`` asks for ``{"answer": <one of PROBE_CHOICES>}`` in each JSON
form in turn (``JSON_CHAT_PROBE_ORDER`` / ``JSON_TEXT_PROBE_ORDER``). Unlike a choice, an answer
that cannot be constrained can still be parsed: when the server honours no JSON form (or
``constrained: none``), answers are generated freely and the task's parser reads them; the reason
is recorded (``ServerCapabilities.json_verdict``) and logged once.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from socialens.core.errors import ConfigError
from socialens.llm.base import Messages, render_plain
from socialens.llm.llamacpp import choices_grammar

log = logging.getLogger(__name__)

JSON_SCHEMA_EXTRA_TOKENS = 32  # room for the {"answer": ...} wrapper around a constrained choice
CONSTRAINED_MODES = ("json_schema", "json_object", "structured_outputs", "guided_choice", "grammar")
# grammar first: llama.cpp's servers take it and then constrain exactly as the llamacpp backend does
# (the same GBNF, no JSON wrapper to generate); servers that do not know it ignore or refuse it at
# once. json_schema next: OpenAI's form, which vLLM and Ollama take. llama-cpp-python's server never
# gets that far, which matters: it answers a json_schema response format with HTTP 500.
CHAT_PROBE_ORDER = ("grammar", "json_schema", "json_object", "structured_outputs", "guided_choice")
TEXT_PROBE_ORDER = ("grammar", "structured_outputs", "guided_choice")  # response formats are chat-only
# "this request form is not taken here": 500 included, since llama-cpp-python's server answers a
# request its validation rejects with 500, and retrying that is only a wait
REJECTED_STATUSES = frozenset({400, 404, 405, 415, 422, 500, 501})

PROBE_CHOICES = ("zqx-ok", "zqx-yes")
PROBE_MESSAGES: Messages = [{"role": "user", "content": "Reply with one word."}]
PROBE_MAX_TOKENS = 8


class ProbeFailed(Exception):
    """A probe request failed for a reason that says nothing about the server's features."""


class RefusedResponse:
    """What ``send`` returns for a request the server refused as unsupported (``status`` in
    REJECTED_STATUSES). Shaped like a response (non-empty ``choices``) so that the backend's retry
    loop hands it back instead of retrying it or counting it as a refusal of the settings."""

    def __init__(self, status: int):
        self.status = status
        self.choices = [None]


# ``send(chat, args)`` makes one request (chat: /chat/completions with ``messages``; else
# /completions with ``prompt``) with the backend's retries and returns the response or a
# RefusedResponse, or raises ProbeFailed.
Send = Callable[[bool, dict[str, Any]], Any]


def answer_schema(choices: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"answer": {"type": "string", "enum": list(choices)}},
        "required": ["answer"],
        "additionalProperties": False,
    }


def constraint_args(mode: str, choices: Sequence[str], max_tokens: int) -> dict[str, Any]:
    """The request fields (``extra_body`` for the non-OpenAI ones) that ask for output restricted
    to ``choices`` in the form ``mode``; ``{}`` for ``none``."""
    choices = list(choices)
    if mode == "guided_choice":
        return {"extra_body": {"guided_choice": choices}}
    if mode == "structured_outputs":
        return {"extra_body": {"structured_outputs": {"choice": choices}}}
    if mode == "grammar":
        return {"extra_body": {"grammar": choices_grammar(choices)}}
    if mode == "json_schema":
        spec = {"name": "choice", "strict": True, "schema": answer_schema(choices)}
        return {
            "max_tokens": max_tokens + JSON_SCHEMA_EXTRA_TOKENS,
            "response_format": {"type": "json_schema", "json_schema": spec},
        }
    if mode == "json_object":  # llama-cpp-python's server: a JSON-schema grammar
        return {
            "max_tokens": max_tokens + JSON_SCHEMA_EXTRA_TOKENS,
            "response_format": {"type": "json_object", "schema": answer_schema(choices)},
        }
    return {}


def constrained_answer(mode: str, text: str, choices: Sequence[str]) -> str:
    """The choice in a constrained reply: unwrapped from ``{"answer": ...}`` for the JSON forms,
    a leading space dropped (as in the local backends); anything else is returned as it came."""
    if mode in ("json_schema", "json_object"):
        text = unwrap_json_answer(text)
    if text.startswith(" ") and text[1:] in choices:
        text = text[1:]
    return text


def unwrap_json_answer(text: str) -> str:
    """``{"answer": "x"}`` -> ``x``; anything else is returned as is, for the parser to judge."""
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if isinstance(data, dict) and isinstance(data.get("answer"), str):
        return data["answer"]
    return text


# -- JSON-schema constrained answers -----------------------------------------------------------------

JSON_MODES = ("json_schema", "json_object", "structured_outputs", "guided_json", "grammar")
# json_schema first: OpenAI's form (vLLM, Ollama and llama.cpp's own server take it too);
# llama-cpp-python's server refuses it (HTTP 500, passed over) and takes json_object.
JSON_CHAT_PROBE_ORDER = ("json_schema", "json_object", "structured_outputs", "guided_json", "grammar")
JSON_TEXT_PROBE_ORDER = ("structured_outputs", "guided_json", "grammar")  # response formats are chat-only
JSON_FORM_OF = {  # the JSON form of each constrained-choice form
    "json_schema": "json_schema",
    "json_object": "json_object",
    "structured_outputs": "structured_outputs",
    "guided_choice": "guided_json",
    "grammar": "grammar",
}


def json_grammar(schema_text: str) -> str | None:
    """The GBNF grammar llama-cpp-python builds from a JSON schema (the one the llamacpp backend
    decodes with); None when llama-cpp-python is not installed."""
    try:
        from llama_cpp.llama_grammar import json_schema_to_gbnf
    except ImportError:
        return None
    return json_schema_to_gbnf(schema_text)


def wraps_root(schema: dict[str, Any]) -> bool:
    """Whether the ``json_schema`` form wraps this schema as ``{"answer": schema}``: OpenAI's strict
    structured outputs need an object at the root."""
    return schema.get("type") != "object"


def json_schema_args(mode: str, schema_text: str, max_tokens: int) -> dict[str, Any]:
    """The request fields that ask for a JSON answer following ``schema_text`` in form ``mode``."""
    schema = json.loads(schema_text)
    if mode == "json_schema":
        if wraps_root(schema):
            schema = {
                "type": "object",
                "properties": {"answer": schema},
                "required": ["answer"],
                "additionalProperties": False,
            }
        spec = {"name": "answer", "strict": True, "schema": schema}
        extra = JSON_SCHEMA_EXTRA_TOKENS if wraps_root(json.loads(schema_text)) else 0
        return {
            "max_tokens": max_tokens + extra,
            "response_format": {"type": "json_schema", "json_schema": spec},
        }
    if mode == "json_object":
        return {"response_format": {"type": "json_object", "schema": schema}}
    if mode == "structured_outputs":
        return {"extra_body": {"structured_outputs": {"json": schema}}}
    if mode == "guided_json":
        return {"extra_body": {"guided_json": schema}}
    if mode == "grammar":
        grammar = json_grammar(schema_text)
        return {"extra_body": {"grammar": grammar}} if grammar is not None else {}
    return {}


def json_answer(mode: str | None, text: str, schema_text: str) -> str:
    """The JSON answer in a reply: unwrapped from ``{"answer": ...}`` where the ``json_schema`` form
    wrapped the schema; anything else as it came, for the task's parser to judge."""
    if mode != "json_schema" or not wraps_root(json.loads(schema_text)):
        return text
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if isinstance(data, dict) and set(data) == {"answer"}:
        return json.dumps(data["answer"], ensure_ascii=False)
    return text


def probe_json(send: Send, model: str, chat: bool) -> tuple[str | None, list[str]]:
    """The first JSON-schema form the server honours (None: none of them), and what each form tried
    did, as ``probe_constrained`` does for choices."""
    tried = []
    probe_schema = json.dumps(answer_schema(PROBE_CHOICES))
    max_tokens = PROBE_MAX_TOKENS + JSON_SCHEMA_EXTRA_TOKENS
    for mode in JSON_CHAT_PROBE_ORDER if chat else JSON_TEXT_PROBE_ORDER:
        form = json_schema_args(mode, probe_schema, max_tokens)
        if not form:
            tried.append(f"{mode}: needs llama-cpp-python to build the grammar")
            continue
        # room for the {"answer": ...} wrapper around the word
        args: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "temperature": 0.0}
        if chat:
            args["messages"] = PROBE_MESSAGES
        else:
            args["prompt"] = render_plain(PROBE_MESSAGES)
        args.update(form)
        response = send(chat, args)
        if isinstance(response, RefusedResponse):
            tried.append(f"{mode}: HTTP {response.status}")
            continue
        if unwrap_json_answer(reply_text(response, chat).strip()) in PROBE_CHOICES:
            return mode, tried
        tried.append(f"{mode}: ignored")
    return None, tried


def reply_text(response: Any, chat: bool) -> str:
    choices = getattr(response, "choices", None) or [None]
    if chat:
        return getattr(getattr(choices[0], "message", None), "content", None) or ""
    return getattr(choices[0], "text", None) or ""


def probe_constrained(send: Send, model: str, chat: bool) -> tuple[str | None, list[str]]:
    """The first constrained-decoding form the server honours (None: none of them), and what
    each form tried did (``"json_schema: HTTP 422"``, ``"guided_choice: ignored"``)."""
    tried, statuses = [], []
    for mode in CHAT_PROBE_ORDER if chat else TEXT_PROBE_ORDER:
        args: dict[str, Any] = {"model": model, "max_tokens": PROBE_MAX_TOKENS, "temperature": 0.0}
        if chat:
            args["messages"] = PROBE_MESSAGES
        else:
            args["prompt"] = render_plain(PROBE_MESSAGES)
        args.update(constraint_args(mode, PROBE_CHOICES, PROBE_MAX_TOKENS))
        response = send(chat, args)
        if isinstance(response, RefusedResponse):
            tried.append(f"{mode}: HTTP {response.status}")
            statuses.append(response.status)
            continue
        if constrained_answer(mode, reply_text(response, chat), PROBE_CHOICES) in PROBE_CHOICES:
            return mode, tried
        tried.append(f"{mode}: ignored")
    if statuses and len(statuses) == len(tried) and set(statuses) == {500}:
        # a server failing every request says nothing about the forms it takes
        raise ProbeFailed("HTTP 500 for every request (probing what the server supports)")
    return None, tried


class ServerCapabilities:
    """What one backend's server was found to support, each asked once, when first needed, and
    kept for the backend's life (thread-safe: the first caller probes, the others wait for it)."""

    def __init__(self, send: Send, model: str, *, server: str, chat: bool, constrained_mode: str | None):
        self.send = send
        self.model = model
        self.server = server  # as error messages name it
        self.chat = chat
        self.constrained_mode = constrained_mode  # None: to be found by probe_constrained
        # the one-line error of a probe that found no constrained form
        self.constrained_verdict: str | None = None
        # the JSON-schema form (None: free generation, ``json_verdict`` says why); known once checked
        self.json_mode: str | None = None
        self.json_checked = False
        self.json_verdict: str | None = None
        self.lock = threading.Lock()

    def resolve_json_mode(self) -> str | None:
        """Decide, once, how a JSON-schema answer is asked for (``json_mode``; None: generated freely,
        with the reason in ``json_verdict``). Returns the error text of a probe that failed for a
        passing reason (asked again next time), else None."""
        with self.lock:
            if self.json_checked:
                return None
            endpoint = "/chat/completions" if self.chat else "/completions"
            if self.constrained_mode == "none":
                mode, why = None, "constrained: none"
            elif self.constrained_mode is not None:
                mode = JSON_FORM_OF[self.constrained_mode]
                why = (
                    f"constrained: {self.constrained_mode}, whose JSON form needs llama-cpp-python installed"
                )
                if mode == "grammar" and json_grammar('{"type": "string"}') is None:
                    mode = None
            else:
                try:
                    mode, tried = probe_json(self.send, self.model, self.chat)
                except ProbeFailed as failure:
                    return str(failure)
                why = f"it honours none of the JSON-schema forms on {endpoint} ({'; '.join(tried)})"
            self.json_mode, self.json_checked = mode, True
            if mode is None:
                self.json_verdict = (
                    f"openai backend: answers that must follow a JSON schema are generated freely and parsed "
                    f"at {self.server}: {why}"
                )
                log.warning("%s", self.json_verdict)
            else:
                log.info("%s: JSON-schema answers as %s", self.server, mode)
            return None

    def resolve_constrained_mode(self) -> str | None:
        """None once ``constrained_mode`` is known; the error text of a probe that failed for a
        passing reason (asked again next time); a ConfigError when the server honours no form."""
        with self.lock:
            if self.constrained_mode is not None:
                return None
            if self.constrained_verdict is None:
                try:
                    mode, tried = probe_constrained(self.send, self.model, self.chat)
                except ProbeFailed as failure:
                    return str(failure)
                if mode is not None:
                    log.info("%s: constrained decoding as %s", self.server, mode)
                    self.constrained_mode = mode
                    return None
                endpoint = "/chat/completions" if self.chat else "/completions"
                self.constrained_verdict = (
                    f"openai backend: the server at {self.server} honours none of the constrained-decoding "
                    f"forms on {endpoint} ({'; '.join(tried)}); use decoding: generate (free text, parsed), "
                    "or set the backend option constrained: to the form it takes"
                )
            raise ConfigError(self.constrained_verdict)
