"""Running the service with uvicorn: settings from the command line, access log to stderr,
graceful shutdown (uvicorn finishes in-flight requests, then the batcher drains)."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from socialens.core.errors import ConfigError
from socialens.serving.app import ACCESS_LOGGER, ServiceSettings, create_app, load_served_model

GRACEFUL_SHUTDOWN_S = 30


def read_token(token_env: str | None) -> str | None:
    """The bearer token from the environment variable ``token_env``; None when auth is off."""
    if not token_env:
        return None
    token = os.environ.get(token_env, "")
    if not token.strip():
        raise ConfigError(
            f"--token-env {token_env}: the environment variable {token_env} is not set or empty; "
            "set it to the bearer token clients must send"
        )
    return token


def check_port(port: int) -> None:
    """A TCP port to listen on: 1-65535 (the OS would otherwise pick another, or refuse)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"--port: expected a TCP port from 1 to 65535, got {port}")


def check_settings(settings: ServiceSettings) -> None:
    for name in ("max_batch", "max_texts", "max_chars", "max_connections"):
        if getattr(settings, name) < 1:
            raise ConfigError(
                f"--{name.replace('_', '-')}: expected at least 1, got {getattr(settings, name)}"
            )
    if settings.max_body_bytes is not None and settings.max_body_bytes < 1:
        raise ConfigError(f"--max-body-bytes: expected at least 1, got {settings.max_body_bytes}")
    if settings.threads is not None and settings.threads < 1:
        raise ConfigError(f"--threads: expected at least 1, got {settings.threads}")
    if settings.max_wait_ms < 0:
        raise ConfigError(f"--max-wait-ms: expected 0 or more, got {settings.max_wait_ms}")
    for name in ("body_timeout_s", "header_timeout_s", "keep_alive_s"):
        value = getattr(settings, name)
        if not value > 0 or value == float("inf"):
            raise ConfigError(
                f"--{name.replace('_', '-')}: expected a number of seconds above 0, got {value}"
            )
    if settings.max_connections_per_client < 0:
        raise ConfigError(
            "--max-connections-per-client: expected 0 (no cap) or more, "
            f"got {settings.max_connections_per_client}"
        )


def limited_http_protocol(header_timeout_s: float, max_per_client: int) -> type:
    """uvicorn's httptools protocol, plus two bounds uvicorn lacks: a request's headers must arrive
    within ``header_timeout_s`` of its first byte (or of the connection opening), else 408 and the
    connection closes; and one client IP holds at most ``max_per_client`` open connections (0: no
    cap), a further one is answered 429 and closed at once. The body deadline is BodyDeadline's."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        raise ConfigError(
            "serve needs httptools (uvicorn[standard]): pip install 'socialens[serve]'"
        ) from None
    open_per_client: dict[str, int] = {}  # shared by every connection of this server

    def raw_response(status: int, reason: str, message: str) -> bytes:
        body = json.dumps({"error": message}).encode()
        head = (
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        return head.encode() + body

    class LimitedHttpProtocol(HttpToolsProtocol):
        _head_timer = None
        _counted: str | None = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            host = self.client[0] if self.client else None
            if host is not None:
                self._counted = host
                open_per_client[host] = open_per_client.get(host, 0) + 1
                if max_per_client and open_per_client[host] > max_per_client:
                    message = (
                        f"more than {max_per_client} open connections from {host} "
                        "(--max-connections-per-client)"
                    )
                    transport.write(raw_response(429, "Too Many Requests", message))
                    transport.close()
                    return
            self._arm_head_timer()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._head_timer is None:
                self._arm_head_timer()

        def on_headers_complete(self) -> None:
            self._cancel_head_timer()
            super().on_headers_complete()

        def connection_lost(self, exc) -> None:
            self._cancel_head_timer()
            if self._counted is not None:
                left = open_per_client.get(self._counted, 1) - 1
                if left > 0:
                    open_per_client[self._counted] = left
                else:
                    open_per_client.pop(self._counted, None)
                self._counted = None
            super().connection_lost(exc)

        def _arm_head_timer(self) -> None:
            self._head_timer = self.loop.call_later(header_timeout_s, self._head_timed_out)

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self.transport.is_closing():
                return
            if self.cycle is None or self.cycle.response_complete:  # never inside another response
                message = f"headers: not received within {header_timeout_s:g} s (--header-timeout-s)"
                self.transport.write(raw_response(408, "Request Timeout", message))
            self.transport.close()

    return LimitedHttpProtocol


def uvicorn_config(app, host: str, port: int, settings: ServiceSettings, log_level: str = "info"):
    """The ``uvicorn.Config`` the service runs under: connection bounds from ``settings``."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=limited_http_protocol(settings.header_timeout_s, settings.max_connections_per_client),
        ws="none",  # the API has no websocket routes
        access_log=False,  # ours is structured and counts texts
        log_level=log_level,
        timeout_keep_alive=settings.keep_alive_s,
        limit_concurrency=settings.max_connections,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        lifespan="on",
    )


def access_logger(stream=None) -> logging.Logger:
    """The access logger, writing bare JSON lines to ``stream`` (stderr by default)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not logger.handlers:
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def build_server(
    model_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 8080,
    settings: ServiceSettings | None = None,
    log_level: str = "info",
    model_id: str | None = None,
    **load_options,
):
    """A configured ``uvicorn.Server`` for the model in ``model_dir`` (not yet started);
    ``load_options`` go to ``load_classifier`` (what the user trusts the directory with);
    ``model_id`` replaces the folder name as the id answers carry (a run's model folders are all
    called ``model``: its model entry's id says more)."""
    import uvicorn

    settings = settings or ServiceSettings()
    check_port(port)
    check_settings(settings)
    served = load_served_model(model_dir, **load_options)
    if model_id:
        served.ref = served.ref.model_copy(update={"id": model_id})
    app = create_app(served, settings, access_logger())
    return uvicorn.Server(uvicorn_config(app, host, port, settings, log_level))
