"""A real OpenAI-compatible HTTP server for tests, with fault injection.

``FaultServer`` runs a small FastAPI app under uvicorn in a background thread on a free port of
127.0.0.1 and serves ``/v1/chat/completions`` and ``/v1/completions``. A test sets ``plan``: a
function of (attempt number for this prompt, request body) returning what to do with the request:
``OK``, ``Status(code, retry_after)``, ``Sleep(seconds)`` (then answers), ``MALFORMED`` (invalid
JSON body), ``NO_CHOICES`` (valid JSON without ``choices``). Attempts are counted per prompt (the
last message's content, or the completions prompt), so retries can be counted server-side.
The server also records every request body, the most requests it ever had in flight, and rejects
a wrong bearer token with 401.

Answers: the first choice when ``guided_choice``, ``structured_outputs: {choice}`` or a GBNF
``grammar`` is sent, ``{"answer": <first enum value>}`` for a JSON-schema response format,
otherwise ``echo: <prompt>``. ``/v1/completions`` with ``echo`` and ``logprobs`` returns word-piece
"tokens" (runs of spaces plus a word) with log-prob ``-len(token) / 10`` and their text offsets, so
a test can compute the expected score.

``supports`` (default ``FEATURES``, all of them) emulates servers that lack some of these: a
constraint form left out is ignored (a free answer, as llama-cpp-python's server does with
``guided_choice``) or, when ``rejects`` maps it to a status, refused with it (as that server does a
``json_schema`` response format: 500); without ``echo`` the completions endpoint gives no prompt
log-probabilities.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

OK = "ok"
MALFORMED = "malformed"
NO_CHOICES = "no_choices"
FEATURES = frozenset({"json_schema", "json_object", "structured_outputs", "guided_choice", "grammar", "echo"})


@dataclass(frozen=True)
class Status:
    code: int
    retry_after: float | None = None


@dataclass(frozen=True)
class Sleep:
    seconds: float


def fake_tokens(text: str) -> list[str]:
    return re.findall(r"\s*\S+|\s+", text)


def fake_logprob(token: str) -> float:
    return -len(token) / 10


class FaultServer:
    def __init__(self, api_key: str | None = None):
        self.api_key = api_key
        self.plan = lambda attempt, body: OK
        self.attempts: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []
        self.auth_headers: list[str | None] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.hold_s = 0.0  # every request takes at least this long (to measure concurrency)
        self.ignore_constraints = False  # answer freely whatever constraint is asked for
        self.supports: set[str] = set(FEATURES)
        self.rejects: dict[str, int] = {}  # unsupported feature -> the status its requests get
        self._epoch = 0
        self._lock = threading.Lock()
        self.app = self._build_app()
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def reset(self) -> None:
        with self._lock:
            self.plan = lambda attempt, body: OK
            self.attempts.clear()
            self.requests.clear()
            self.auth_headers.clear()
            self.max_in_flight = 0
            self.in_flight = 0
            self._epoch += 1
            self.hold_s = 0.0
            self.ignore_constraints = False
            self.supports = set(FEATURES)
            self.rejects = {}

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> FaultServer:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fault server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- app ------------------------------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        async def handle(request: Request, kind: str) -> Response:
            # Requests left over from an earlier test (still sleeping after a client timeout)
            # belong to an older epoch and are not counted.
            with self._lock:
                epoch = self._epoch
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                return await self._respond(request, kind)
            finally:
                with self._lock:
                    if epoch == self._epoch:
                        self.in_flight -= 1

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            return await handle(request, "chat")

        @app.post("/v1/completions")
        async def completions(request: Request) -> Response:
            return await handle(request, "text")

        return app

    async def _respond(self, request: Request, kind: str) -> Response:
        body = await request.json()
        auth = request.headers.get("authorization")
        key = body["messages"][-1]["content"] if kind == "chat" else body["prompt"]
        with self._lock:
            self.requests.append(body)
            self.auth_headers.append(auth)
            self.attempts[key] += 1
            attempt = self.attempts[key]
        if self.hold_s:
            await asyncio.sleep(self.hold_s)
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            return JSONResponse({"error": {"message": "bad key", "type": "auth"}}, status_code=401)
        action = self.plan(attempt, body)
        if isinstance(action, Status):
            headers = {"retry-after": f"{action.retry_after:g}"} if action.retry_after is not None else {}
            return JSONResponse({"error": {"message": "injected", "type": "fault"}}, action.code, headers)
        if isinstance(action, Sleep):
            await asyncio.sleep(action.seconds)
        if action == MALFORMED:
            return Response('{"id": "x", "choices": [', media_type="application/json")
        if action == NO_CHOICES:
            return JSONResponse(
                {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"]}
            )
        refused = sorted((requested_features(body) - self.supports) & set(self.rejects))
        if refused:
            message = f"unsupported: {', '.join(refused)}"
            return JSONResponse({"error": {"message": message, "type": "invalid"}}, self.rejects[refused[0]])
        return JSONResponse(self._answer(body, kind, key, requested_features(body) & self.supports))

    def _answer(self, body: dict[str, Any], kind: str, prompt: str, honoured: set[str]) -> dict[str, Any]:
        if self.ignore_constraints:
            text = f"echo: {prompt}"
        elif "guided_choice" in honoured:
            text = body["guided_choice"][0]
        elif "structured_outputs" in honoured:
            text = body["structured_outputs"]["choice"][0]
        elif "grammar" in honoured:
            text = re.search(r'\(\s*"((?:[^"\\]|\\.)*)"', body["grammar"]).group(1)
        elif honoured & {"json_schema", "json_object"}:
            response_format = body["response_format"]
            schema = response_format.get("schema") or response_format["json_schema"]["schema"]
            text = json.dumps({"answer": schema["properties"]["answer"]["enum"][0]})
        else:
            text = f"echo: {prompt}"
        usage = {"prompt_tokens": len(fake_tokens(prompt)), "completion_tokens": 3, "total_tokens": 0}
        base = {"id": "cmpl-1", "created": 0, "model": body["model"], "usage": usage}
        if kind == "chat":
            message = {"role": "assistant", "content": text}
            choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
            return {**base, "object": "chat.completion", "choices": [choice]}
        logprobs = None
        if "echo" in honoured and body.get("logprobs") is not None:
            tokens = fake_tokens(prompt) + [" gen"]
            offsets, position = [], 0
            for token in tokens:
                offsets.append(position)
                position += len(token)
            values = [None] + [fake_logprob(t) for t in tokens[1:]]
            logprobs = {
                "tokens": tokens,
                "token_logprobs": values,
                "text_offset": offsets,
                "top_logprobs": None,
            }
            text = prompt + " gen"
        choice = {"index": 0, "text": text, "finish_reason": "length", "logprobs": logprobs}
        return {**base, "object": "text_completion", "choices": [choice]}


def requested_features(body: dict[str, Any]) -> set[str]:
    """The features of ``FEATURES`` a request body asks for."""
    features = {name for name in ("guided_choice", "structured_outputs", "grammar", "echo") if body.get(name)}
    kind = (body.get("response_format") or {}).get("type")
    if kind in ("json_schema", "json_object"):
        features.add(kind)
    return features


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
