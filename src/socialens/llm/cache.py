"""One SQLite response cache shared by every LLM backend.

Keyed by backend, model, the full rendered prompt text and the decoding parameters (or the scored
continuations), so an interrupted run resumes without re-querying finished prompts and a changed
prompt, template or parameter never hits a stale entry. Failed calls are not stored: a re-run
retries them. Each answer is committed as soon as it arrives, so a killed run loses nothing.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from socialens.core.runtime import cache_dir
from socialens.llm.base import Completion, GenerationParams, LLMBackend, Messages, Scores, score_each


def default_cache_path() -> Path:
    return cache_dir() / "llm-responses.sqlite"


class ResponseCache:
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses ("
            " key TEXT PRIMARY KEY, backend TEXT, model TEXT, kind TEXT, value TEXT,"
            " created TEXT DEFAULT CURRENT_TIMESTAMP)"
        )
        self._db.commit()

    @staticmethod
    def key(backend: str, model: str, kind: str, prompt: str, params: Any) -> str:
        blob = json.dumps([backend, model, kind, prompt, params], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, backend: str, model: str, kind: str, value: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, backend, model, kind, value) VALUES (?, ?, ?, ?, ?)",
                (key, backend, model, kind, json.dumps(value, ensure_ascii=False)),
            )
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CachedBackend:
    """Wraps any LLMBackend; hits come back with ``cached=True`` and their original latency and
    token counts, so a resumed run writes records identical to an uninterrupted one."""

    def __init__(self, backend: LLMBackend, cache: ResponseCache | None):
        self.backend = backend
        self.cache = cache
        self.name = backend.name
        self.model_id = backend.model_id
        self.calls = 0  # prompts actually sent to the backend (misses), for tests and accounting

    @property
    def stopped(self) -> str | None:
        """Why the backend sends nothing more (openai: the server stopped answering), or None."""
        return getattr(self.backend, "stopped", None)

    def reset_failures(self) -> None:
        reset = getattr(self.backend, "reset_failures", None)
        if reset is not None:
            reset()

    def render(self, messages: Messages) -> str:
        return self.backend.render(messages)

    def generate(self, prompts: list[Messages], params: GenerationParams) -> list[Completion]:
        results: list[Completion | None] = [None] * len(prompts)
        keys = [self._key("generate", self.render(p), params.cache_key()) for p in prompts]
        misses = []
        for i, key in enumerate(keys):
            stored = self.cache.get(key) if self.cache is not None else None
            if stored is not None:
                results[i] = Completion.from_dict({**stored, "cached": True})
            else:
                misses.append(i)
        if misses:
            self.calls += len(misses)
            fresh = self.backend.generate([prompts[i] for i in misses], params)
            for i, completion in zip(misses, fresh, strict=True):
                results[i] = completion
                if self.cache is not None and completion.error is None:
                    self.cache.put(keys[i], self.name, self.model_id, "generate", completion.to_dict())
        return results  # type: ignore[return-value]

    def score(self, prompt: Messages, continuations: list[str]) -> Scores:
        key = self._key("score", self.render(prompt), list(continuations))
        stored = self.cache.get(key) if self.cache is not None else None
        if stored is not None:
            return Scores.from_dict({**stored, "cached": True})
        self.calls += 1
        scores = self.backend.score(prompt, continuations)
        if self.cache is not None and scores.error is None:
            self.cache.put(key, self.name, self.model_id, "score", scores.to_dict())
        return scores

    def score_batch(self, prompts: list[Messages], continuations: list[str]) -> list[Scores]:
        """The cached Scores of each prompt; the misses go to the backend in one ``score_batch``
        call (its batched path), each stored as soon as the call returns."""
        results: list[Scores | None] = [None] * len(prompts)
        keys = [self._key("score", self.render(p), list(continuations)) for p in prompts]
        misses = []
        for i, key in enumerate(keys):
            stored = self.cache.get(key) if self.cache is not None else None
            if stored is not None:
                results[i] = Scores.from_dict({**stored, "cached": True})
            else:
                misses.append(i)
        if misses:
            self.calls += len(misses)
            batch = getattr(self.backend, "score_batch", None)  # a user's own backend may lack one
            todo = [prompts[i] for i in misses]
            fresh = batch(todo, continuations) if batch else score_each(self.backend, todo, continuations)
            for i, scores in zip(misses, fresh, strict=True):
                results[i] = scores
                if self.cache is not None and scores.error is None:
                    self.cache.put(keys[i], self.name, self.model_id, "score", scores.to_dict())
        return results  # type: ignore[return-value]

    def _key(self, kind: str, prompt: str, params: Any) -> str:
        return ResponseCache.key(self.name, self.model_id, kind, prompt, params)

    def close(self) -> None:
        self.backend.close()
