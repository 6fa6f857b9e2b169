"""Running the service with uvicorn: settings from the command line, access log to stderr,
graceful shutdown (uvicorn finishes in-flight requests, then the batcher drains)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from socialens.errors import ConfigError
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


def check_settings(settings: ServiceSettings) -> None:
    for name in ("max_batch", "max_texts", "max_chars"):
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
    **load_options,
):
    """A configured ``uvicorn.Server`` for the model in ``model_dir`` (not yet started);
    ``load_options`` go to ``load_classifier`` (what the user trusts the directory with)."""
    import uvicorn

    settings = settings or ServiceSettings()
    check_settings(settings)
    app = create_app(load_served_model(model_dir, **load_options), settings, access_logger())
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,  # ours is structured and counts texts
        log_level=log_level,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        lifespan="on",
    )
    return uvicorn.Server(config)
