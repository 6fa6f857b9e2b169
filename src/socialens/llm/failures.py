"""Failure accounting shared by the worker threads of a network backend, so a dead server or a
wrong setting stops a run in seconds instead of failing every text with the same error.

Two rules. A prompt that could not reach the server (connection error or timeout, after all its
retries) is a connection failure; ``limit`` of them in a row, with no answer from the server in
between, stop the backend: it sends nothing more and every later prompt fails at once with the
reason, until ``reset``. And before any prompt has succeeded, ``limit`` prompts in a row that the
server answered but refused the same way (one HTTP 4xx status, answers outside the constraint)
mean the settings are wrong: a ConfigError, reported once, instead of one error per text.
"""

from __future__ import annotations

import threading

from socialens.core.errors import ConfigError


class FailureAccount:
    """How prompts end, counted across the worker threads of one backend (see the module doc)."""

    def __init__(self, limit: int, where: str, settings: str = "the model's settings"):
        self.limit = limit
        self.where = where  # the server, as error messages name it
        self.settings = settings  # what to check when the server refuses every request
        self.lock = threading.Lock()
        self.stop_event = threading.Event()  # set: stopped; waiting retries wake up and give up
        self.stopped: str | None = None
        self.config_error: str | None = None
        self.connection_failures = 0
        self.answered_once = False
        self.refusals: list[str] = []  # kinds of the refusals since the start, while none succeeded

    def reset(self) -> None:
        """Start counting connection failures again (one stopped call must not stop the next)."""
        with self.lock:
            self.connection_failures = 0
            self.stopped = None
            self.stop_event.clear()

    def reached(self) -> None:
        """The server answered (any HTTP status): it is up, so connection failures start over."""
        with self.lock:
            self.connection_failures = 0

    def answered(self) -> None:
        with self.lock:
            self.connection_failures = 0
            self.answered_once = True
            self.refusals.clear()

    def connection_failure(self, detail: str) -> None:
        with self.lock:
            self.connection_failures += 1
            if self.connection_failures >= self.limit and self.stopped is None:
                self.stopped = (
                    f"stopped after {self.limit} prompts in a row failed to reach {self.where} (the last: "
                    f"{detail}), so the remaining texts were not sent; is the server running? "
                    f"(max_connection_failures: {self.limit})"
                )
                self.stop_event.set()

    def refused(self, kind: str, detail: str) -> None:
        """A prompt the server answered but refused (``kind``: its status, or the constraint);
        raises ConfigError once ``limit`` prompts in a row were refused alike before any success."""
        with self.lock:
            if self.answered_once:
                return  # the settings work: this one prompt is the problem (e.g. too long)
            self.refusals.append(kind)
            if len(self.refusals) >= self.limit and len(set(self.refusals[-self.limit :])) == 1:
                self.config_error = (
                    f"the first {self.limit} requests to {self.where} all failed with {detail} and none "
                    f"succeeded, so every text would; check {self.settings} and run again"
                )
        self.raise_config_error()

    def raise_config_error(self) -> None:
        if self.config_error is not None:
            raise ConfigError(self.config_error)
