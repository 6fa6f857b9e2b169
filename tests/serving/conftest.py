"""Fixtures for the HTTP service tests: a TF-IDF model trained on the tiny fixture, and a real
uvicorn server on a free 127.0.0.1 port in a background thread."""

from __future__ import annotations

import contextlib
import csv
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from socialens.classifiers.tfidf import TfidfClassifier
from socialens.core.types import Example
from socialens.serving.app import ServiceSettings, create_app, load_served_model
from socialens.serving.server import uvicorn_config

TINY_CSV = Path(__file__).resolve().parents[1] / "fixtures" / "bench" / "tiny.csv"


def tiny_examples() -> list[Example]:
    with TINY_CSV.open(encoding="utf-8", newline="") as handle:
        return [Example(id=row["id"], text=row["text"], label=row["label"]) for row in csv.DictReader(handle)]


@pytest.fixture(scope="session")
def tfidf_model_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("serving") / "tiny-tfidf"
    TfidfClassifier().fit(tiny_examples()).save(directory)
    return directory


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def running_server(app, settings: ServiceSettings | None = None) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free port in a thread; yields the base URL. Leaving the block
    shuts it down the way SIGTERM does (should_exit), including the app's lifespan shutdown. The
    server runs under the service's own uvicorn configuration (connection bounds from ``settings``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn_config(app, "127.0.0.1", port, settings or ServiceSettings(), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


@pytest.fixture
def serve(tfidf_model_dir):
    """serve(settings=None, model_dir=None) -> (base_url, access log lines, app); stopped after the test."""
    stack = contextlib.ExitStack()

    def start(settings: ServiceSettings | None = None, model_dir: Path | None = None):
        handler = ListHandler()
        logger = logging.getLogger(f"socialens.access.test{id(handler)}")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        app = create_app(load_served_model(model_dir or tfidf_model_dir), settings, logger)
        url = stack.enter_context(running_server(app, settings))
        return url, handler.lines, app

    with stack:
        yield start


@pytest.fixture(scope="session")
def tiny_texts() -> list[str]:
    return [ex.text for ex in tiny_examples()]


@pytest.fixture
def serve_app():
    """serve_app(app, settings=None) -> the base URL of any ASGI app served on 127.0.0.1; stopped
    after the test."""
    with contextlib.ExitStack() as stack:
        yield lambda app, settings=None: stack.enter_context(running_server(app, settings))
