"""A real OpenAI-compatible HTTP server whose log-probabilities come from a real model, speaking the
scoring dialects of servers that cannot run here.

``LogprobServer`` runs a FastAPI app under uvicorn in a background thread on a free port of
127.0.0.1, backed by llama-cpp-python's ``Llama`` on the built-in SmolLM2 GGUF (``logits_all``:
every prompt position's logits, from which log-probabilities are computed with numpy). What it
answers is set by ``dialect``:

- ``vllm``: ``/v1/completions`` with ``echo`` + ``logprobs`` (the legacy shape: ``tokens``,
  ``token_logprobs``, ``text_offset``, ``top_logprobs``), vLLM's ``prompt_logprobs`` (per prompt
  token a map of token id to ``{logprob, rank, decoded_token}``, the first ``None``, holding the
  prompt's own token and the ``prompt_logprobs`` most likely), ``logprobs: k`` on generated
  tokens, and ``/v1/chat/completions`` with ``logprobs`` + ``top_logprobs``.
- ``vllm-no-echo``: the same without ``echo`` (it is ignored): ``prompt_logprobs`` is the way in.
- ``llama-server``: llama.cpp's own server: ``echo`` refused (HTTP 400, "Only no echo is
  supported"), ``prompt_logprobs`` ignored, completions ``logprobs`` in the chat shape
  (``logprobs.content[0].top_logprobs``), chat ``top_logprobs``.
- ``no-logprobs``: answers every request with text and no log-probabilities at all.

Every request body is recorded (``requests``), with the most requests in flight at once.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

DIALECTS = ("vllm", "vllm-no-echo", "llama-server", "no-logprobs")


class LogprobServer:
    def __init__(self, model_path: str, dialect: str = "vllm"):
        from llama_cpp import Llama

        self.llm = Llama(model_path, logits_all=True, n_ctx=512, n_threads=1, verbose=False)
        self.dialect = dialect
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.hold_s = 0.0
        self._model_lock = threading.Lock()
        self._evaluated: dict[tuple[int, ...], np.ndarray] = {}
        self._lock = threading.Lock()
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.app = self._build_app()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def reset(self, dialect: str = "vllm") -> None:
        with self._lock:
            self.dialect = dialect
            self.requests.clear()
            self.max_in_flight = self.in_flight = 0
            self.hold_s = 0.0

    # -- lifecycle ----------------------------------------------------------------------------------

    def __enter__(self) -> LogprobServer:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("logprob server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self.llm.close()

    # -- the model ----------------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)

    def piece(self, tokens: list[int], i: int) -> str:
        return self.llm.detokenize([tokens[i]], prev_tokens=tokens[:i]).decode("utf-8", errors="replace")

    def logprobs(self, tokens: list[int]) -> np.ndarray:
        """Log-softmax of the logits after each token: row i predicts token i + 1. Kept per token
        sequence (a test's reference asks for the sequences the server has just evaluated: on a
        busy 2-core machine one evaluation takes seconds)."""
        key = tuple(tokens)
        with self._model_lock:
            if key not in self._evaluated:
                self.llm.reset()
                self.llm.eval(tokens)
                logits = np.array(self.llm.scores[: len(tokens)], dtype=np.float64)
                logits -= logits.max(axis=1, keepdims=True)
                self._evaluated[key] = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            return self._evaluated[key]

    def top(self, row: np.ndarray, k: int) -> list[tuple[int, float]]:
        best = np.argsort(-row)[:k]
        return [(int(t), float(row[t])) for t in best]

    def token_text(self, token: int) -> str:
        return self.llm.detokenize([token]).decode("utf-8", errors="replace")

    # -- app ------------------------------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        async def handle(request: Request, kind: str):
            body = await request.json()
            with self._lock:
                self.requests.append(body)
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                if self.hold_s:
                    await _sleep(self.hold_s)
                import anyio

                answer = await anyio.to_thread.run_sync(
                    self._chat if kind == "chat" else self._completion, body
                )
                return answer if isinstance(answer, JSONResponse) else JSONResponse(answer)
            finally:
                with self._lock:
                    self.in_flight -= 1

        @app.post("/v1/completions")
        async def completions(request: Request):
            return await handle(request, "text")

        @app.post("/v1/chat/completions")
        async def chat(request: Request):
            return await handle(request, "chat")

        return app

    def _completion(self, body: dict[str, Any]) -> dict[str, Any] | JSONResponse:
        dialect, prompt = self.dialect, body["prompt"]
        if body.get("echo") and dialect == "llama-server":
            return JSONResponse({"error": {"message": "Only no echo is supported", "code": 400}}, 400)
        tokens = self.tokenize(prompt)
        table = self.logprobs(tokens)
        generated = int(np.argmax(table[-1]))
        gen_text = self.token_text(generated)
        choice: dict[str, Any] = {"index": 0, "text": gen_text, "finish_reason": "length", "logprobs": None}
        k = body.get("logprobs")
        if dialect == "no-logprobs":
            pass
        elif body.get("echo") and k is not None and dialect == "vllm":
            pieces = [self.piece(tokens, i) for i in range(len(tokens))] + [gen_text]
            offsets, position = [], 0
            for piece in pieces:
                offsets.append(position)
                position += len(piece)
            values = [None] + [float(table[i - 1, tokens[i]]) for i in range(1, len(tokens))]
            values.append(float(table[-1, generated]))
            choice["text"] = prompt + gen_text
            choice["logprobs"] = {
                "tokens": pieces,
                "token_logprobs": values,
                "text_offset": offsets,
                "top_logprobs": None,
            }
        elif k is not None:
            alternatives = self.top(table[-1], int(k))
            if dialect == "llama-server":
                listed = [
                    {"id": t, "token": self.token_text(t), "logprob": v, "bytes": None}
                    for t, v in alternatives
                ]
                entry = {"id": generated, "token": gen_text, "logprob": float(table[-1, generated])}
                choice["logprobs"] = {"content": [{**entry, "bytes": None, "top_logprobs": listed}]}
            else:
                choice["logprobs"] = {
                    "tokens": [gen_text],
                    "token_logprobs": [float(table[-1, generated])],
                    "text_offset": [len(prompt)],
                    "top_logprobs": [{self.token_text(t): v for t, v in alternatives}],
                }
        answer = {
            "id": "cmpl-1",
            "object": "text_completion",
            "created": 0,
            "model": body["model"],
            "choices": [choice],
            "usage": {"prompt_tokens": len(tokens), "completion_tokens": 1, "total_tokens": len(tokens) + 1},
        }
        asked = body.get("prompt_logprobs")
        if asked is not None and dialect in ("vllm", "vllm-no-echo"):
            entries: list[dict[str, Any] | None] = [None]
            for i in range(1, len(tokens)):
                row = table[i - 1]
                own = tokens[i]
                listed = {own: float(row[own])}
                listed.update(self.top(row, int(asked)))
                entries.append(
                    {
                        str(t): {
                            "logprob": v,
                            "rank": int((row > v).sum()) + 1,
                            "decoded_token": self.piece(tokens, i) if t == own else self.token_text(t),
                        }
                        for t, v in listed.items()
                    }
                )
            choice["prompt_logprobs"] = entries
        return answer

    def _chat(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._model_lock:
            wants = bool(body.get("logprobs")) and self.dialect != "no-logprobs"
            answer = self.llm.create_chat_completion(
                body["messages"],
                max_tokens=1,
                temperature=0.0,
                logprobs=wants,
                top_logprobs=body.get("top_logprobs") if wants else None,
            )
        return _plain(answer)


def _plain(value: Any) -> Any:
    """numpy scalars (llama-cpp-python's log-probabilities) as JSON numbers."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
