"""The FastAPI application: classify / predict / entities, model info, health; auth, limits, JSON
errors and access logs.

Which endpoint answers depends on the served model's task (``task_type`` in its model info):

* a classification model: ``POST /v1/classify`` (``{label, probabilities}`` per text), as always;
* a model of any other task: ``POST /v1/predict``, whose response model is that task's
  (``socialens.tasks.responses``): each result has the id, the task's response fields (entities
  with character offsets and tags, labels and scores, a summary), the status and the error;
* a model whose answers hold entities (token classification): ``POST /v1/entities`` too, the same
  answer as /v1/predict under the name clients look for.

The OpenAPI spec documents only the endpoints the served model answers; the others answer 404 with
a one-line error naming the endpoint to use (and are left out of the spec).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException

from socialens.classifiers.base import MODEL_INFO_FILE, Classifier, load_classifier, model_digest
from socialens.core.types import Example, PredictionRecord, Status, is_blank_text
from socialens.serving.batcher import BatcherClosed, MicroBatcher, default_inference_threads
from socialens.serving.docs import DOCS_PATHS, add_docs
from socialens.serving.schemas import (
    BatchingStats,
    ClassifyRequest,
    ClassifyResponse,
    ErrorResponse,
    Health,
    ModelInfo,
    ModelRef,
    Prediction,
    ServingLimits,
    predict_response_model,
)
from socialens.tasks.responses import TaskResponse, model_task_type

ACCESS_LOGGER = "socialens.access"
BLANK_TEXT = "empty text; expected non-empty text"  # as predict words it (status invalid)


@dataclass
class ServiceSettings:
    max_batch: int = 64
    max_wait_ms: float = 5.0
    max_texts: int = 256
    max_chars: int = 10_000
    threads: int | None = None  # CPU threads for inference (torch or onnxruntime); None: all cores but one
    token: str | None = None  # the bearer token; None leaves the API open
    max_body_bytes: int | None = None  # None: derived from max_texts and max_chars (body_limit)
    body_timeout_s: float = 10.0  # the whole request body must arrive within this (else 408)
    header_timeout_s: float = 5.0  # a request's headers must arrive within this (else 408, closed)
    keep_alive_s: float = 5.0  # an idle connection between requests is closed after this
    max_connections: int = 512  # open connections (and requests) in all; more: 503
    max_connections_per_client: int = 64  # open connections from one IP address; more: 429; 0: no cap

    @property
    def body_limit(self) -> int:
        """The largest request body accepted. By default, room for a request at the text limits even
        when every character is JSON-escaped as \\uXXXX (6 bytes; raw UTF-8 needs at most 4), plus
        256 bytes per text for quotes, commas and an id, plus 64 KiB for the rest of the JSON."""
        if self.max_body_bytes is not None:
            return self.max_body_bytes
        return self.max_texts * (6 * self.max_chars + 256) + 64 * 1024


@dataclass
class ServedModel:
    classifier: Classifier
    ref: ModelRef
    info: dict[str, Any]
    evaluation: dict[str, Any] | None = None
    runtime: str | None = None
    task_type: str = "classification"

    @property
    def task(self) -> TaskResponse:
        return TaskResponse.of(self.task_type)


def load_served_model(model_dir: str | Path, **load_options: Any) -> ServedModel:
    """Load a saved model directory and what /v1/model reports about it. ``load_options`` go to
    ``load_classifier`` (``trust_pickle``, ``allow_endpoints``, ``allow_key_envs``); the version is
    the start of ``model_digest``, a hash of every file in the directory."""
    model_dir = Path(model_dir)
    classifier = load_classifier(model_dir, **load_options)
    # One prediction before the first request: a model that cannot run here (an LLM whose native
    # probe crashed, weights that do not load) fails at start-up with its one line, not per request.
    classifier.predict([Example(id="warm-up", text="warm-up")])
    info = json.loads((model_dir / MODEL_INFO_FILE).read_bytes())
    ref = ModelRef(
        id=model_dir.resolve().name,
        version=model_digest(model_dir)[:12],
        family=info["family"],
    )
    return ServedModel(
        classifier=classifier,
        ref=ref,
        info=info,
        evaluation=served_evaluation(model_dir, info),
        runtime=getattr(classifier, "runtime", None),
        task_type=model_task_type(info),
    )


def served_evaluation(model_dir: Path, info: dict[str, Any]) -> dict[str, Any] | None:
    """The model's scores as /v1/model reports them: ``{"dev": {...}, "test": {...}}``, each split's
    metrics with a ``source`` saying where they were read; None when nothing recorded any.

    `socialens train` records both splits' metrics in the model info. A model that bench saved
    (``<cell>/model``) has its cell's test metrics beside it, in ``<cell>/metrics.json``. An encoder
    records its best dev macro-F1 while training, whoever trained it."""
    recorded = info.get("evaluation")
    if isinstance(recorded, dict) and recorded:
        return recorded
    evaluation: dict[str, Any] = {}
    directory = model_dir.resolve()
    cell_metrics = directory.parent / "metrics.json"
    if directory.name == "model" and cell_metrics.is_file():
        source = "bench cell metrics.json"
        try:
            evaluation["test"] = {"source": source, **json.loads(cell_metrics.read_text(encoding="utf-8"))}
        except (OSError, ValueError, TypeError) as exc:  # scores are extra: a bad file must not stop serving
            evaluation["test"] = {"source": source, "error": f"{cell_metrics}: unreadable ({exc})"}
    training = info.get("training") or {}
    if training.get("best_dev_macro_f1") is not None:
        evaluation["dev"] = {
            "source": "training (best epoch)",
            "n": training.get("dev_examples"),
            "macro_f1": training["best_dev_macro_f1"],
        }
    return evaluation or None


def _error(
    status: int, message: str, detail: list | None = None, headers: dict | None = None
) -> JSONResponse:
    body = ErrorResponse(error=message, detail=detail).model_dump(exclude_none=True)
    return JSONResponse(status_code=status, content=body, headers=headers)


def _field_path(loc: tuple | list) -> str:
    """('body', 'texts', 3) -> 'texts[3]'."""
    path = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def _validation_message(errors: list[dict]) -> str:
    first = errors[0]
    if first.get("type") == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", "")
        return f"body: malformed JSON ({reason})" if reason else "body: malformed JSON"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{_field_path(first.get('loc', ()))}: {first.get('msg', 'invalid value')}{more}"


class AccessLog:
    """ASGI middleware writing one JSON line per HTTP request; never the texts themselves."""

    def __init__(self, app, logger: logging.Logger) -> None:
        self.app = app
        self.logger = logger

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}  # stays 500 if the app fails before sending a response

        async def send_with_status(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        except asyncio.CancelledError:
            status["code"] = 499  # the client went away first (nginx's convention)
            raise
        finally:
            entry = {
                "method": scope["method"],
                "path": scope["path"],
                "status": status["code"],
                "n_texts": scope.get("state", {}).get("n_texts"),
                "latency_ms": round((time.perf_counter() - start) * 1000, 2),
            }
            self.logger.info(json.dumps(entry))


def _header(scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


class BodyDeadline:
    """ASGI middleware bounding how long a request body may take: the whole body must arrive within
    ``timeout_s`` of the headers, or the request is answered 408. Any answer sent before the body
    has arrived whole (401, 413, 408, a route that does not read it) closes the connection, so an
    unread or stalled body never keeps it open."""

    def __init__(self, app, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        length = _header(scope, b"content-length")
        has_body = _header(scope, b"transfer-encoding") is not None or (
            length is not None and (not length.strip().isdigit() or int(length) > 0)
        )
        body_done = not has_body

        async def receive_by_deadline():
            nonlocal body_done
            if body_done:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise HTTPException(
                    408,
                    f"body: not received whole within {self.timeout_s:g} s (--body-timeout-s)",
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def send_closing_early(message):
            if message["type"] == "http.response.start" and not body_done:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive_by_deadline, send_closing_early)


class BearerAuth:
    """ASGI middleware checking ``Authorization: Bearer <token>`` from the headers alone, before
    anything reads the body: a missing or wrong token is a 401 and the body is never read. Paths in
    ``open_paths`` (liveness and the API docs) need no token."""

    def __init__(self, app, token: str, open_paths: frozenset[str]) -> None:
        self.app = app
        self.expected = token.encode()
        self.open_paths = open_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        scheme, _, given = (_header(scope, b"authorization") or b"").strip().partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.expected):
            response = _error(
                401,
                "missing or wrong bearer token (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class BodySizeLimit:
    """ASGI middleware capping the request body before anything parses it: a Content-Length over the
    limit is refused unread, and a body without one (chunked) is refused once it grows past the limit."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    def _too_large(self, size: str) -> HTTPException:
        return HTTPException(413, f"body: {size}; the limit is {self.limit} bytes (--max-body-bytes)")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            exc = self._too_large(f"{int(declared)} bytes (Content-Length)")
            await _error(exc.status_code, exc.detail)(scope, receive, send)
            return
        received = 0

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # FastAPI re-raises HTTPException from body reading; the app's handler answers it
                    raise self._too_large(f"more than {self.limit} bytes received")
            return message

        await self.app(scope, counting_receive, send)


# Only documents the scheme in the OpenAPI spec: BearerAuth checks the token, before the body is read.
BEARER = HTTPBearer(auto_error=False, description="Bearer token (the service's --token-env variable).")
# Liveness, and everything a browser fetches to show the docs (pages, spec, Swagger UI and ReDoc files)
OPEN_PATHS = frozenset({"/healthz"}) | DOCS_PATHS


def _openapi_with_limits(app: FastAPI, settings: ServiceSettings):
    """The generated spec, plus this instance's request limits, so that clients (and schemathesis)
    see them."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            spec = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            texts = spec["components"]["schemas"]["ClassifyRequest"]["properties"]["texts"]
            texts["maxItems"] = settings.max_texts
            texts["items"]["maxLength"] = settings.max_chars
            app.openapi_schema = spec
        return app.openapi_schema

    return openapi


def create_app(
    served: ServedModel, settings: ServiceSettings | None = None, access_logger: logging.Logger | None = None
) -> FastAPI:
    settings = settings or ServiceSettings()
    threads = settings.threads or default_inference_threads()
    set_threads = getattr(served.classifier, "set_num_threads", None)
    if set_threads is not None:  # reaches onnxruntime too, which torch.set_num_threads does not
        set_threads(threads)
    batcher = MicroBatcher(
        served.classifier.predict,
        max_batch=settings.max_batch,
        max_wait_s=settings.max_wait_ms / 1000,
        inference_threads=threads,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        try:
            yield
        finally:  # in-flight requests have finished by now (uvicorn waits); drain whatever is queued
            await batcher.close()

    from socialens import __version__

    task = served.task
    labelled = task.label_layout  # a classification model: /v1/classify; any other: /v1/predict
    with_entities = "entities" in task.fields
    description = f"Serves the {served.ref.family} model '{served.ref.id}' (version {served.ref.version})."
    if not labelled:
        entities = " and POST /v1/entities (the same answer)" if with_entities else ""
        description += (
            f" Its task is {served.task_type}: POST /v1/predict{entities} answers with the task's fields. "
            "/v1/classify answers classification models only: here it is a 404 with a one-line error"
            f"{'' if with_entities else ', as is /v1/entities (token-classification models)'}."
        )
    app = FastAPI(
        title="socialens classification service",
        version=__version__,
        description=description,
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load their scripts from a CDN: add_docs serves them locally
        redoc_url=None,
    )
    add_docs(app)
    app.state.batcher = batcher
    # The last added runs first: access log, body deadline, token (headers only), body size, the app.
    app.add_middleware(BodySizeLimit, limit=settings.body_limit)
    if settings.token:
        app.add_middleware(BearerAuth, token=settings.token, open_paths=OPEN_PATHS)
    app.add_middleware(BodyDeadline, timeout_s=settings.body_timeout_s)
    app.add_middleware(AccessLog, logger=access_logger or logging.getLogger(ACCESS_LOGGER))

    protected = [Depends(BEARER)] if settings.token else []
    auth_errors = {401: {"model": ErrorResponse, "description": "Missing or wrong bearer token."}}

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = jsonable_encoder(exc.errors(), custom_encoder={Exception: str})
        for error in errors:
            error.pop("input", None)  # never echo the texts back
        return _error(422, _validation_message(errors), errors)

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else exc.headers
        return _error(exc.status_code, str(exc.detail), headers=headers)

    @app.exception_handler(BatcherClosed)
    async def on_closed(request: Request, exc: BatcherClosed) -> JSONResponse:
        return _error(503, str(exc))

    @app.get("/healthz", response_model=Health, tags=["service"])
    async def healthz() -> Health:
        """Liveness; open even when the API needs a token."""
        return Health(status="ok", model=served.ref)

    @app.get(
        "/v1/model", response_model=ModelInfo, dependencies=protected, responses=auth_errors, tags=["model"]
    )
    async def model_info() -> ModelInfo:
        """The served model: labels, schema, training parameters and metrics, limits, batching counters."""
        info = served.info
        return ModelInfo(
            model=served.ref,
            task_type=served.task_type,
            labels=[label["name"] for label in info["schema"]["labels"]],
            schema=info["schema"],
            params=info.get("params", {}),
            training=info.get("training", {}),
            evaluation=served.evaluation,
            runtime=served.runtime,
            versions=info.get("versions", {}),
            limits=ServingLimits(
                max_batch=settings.max_batch,
                max_wait_ms=settings.max_wait_ms,
                max_texts=settings.max_texts,
                max_chars=settings.max_chars,
                max_body_bytes=settings.body_limit,
                body_timeout_s=settings.body_timeout_s,
                header_timeout_s=settings.header_timeout_s,
                keep_alive_s=settings.keep_alive_s,
                max_connections=settings.max_connections,
                max_connections_per_client=settings.max_connections_per_client,
                inference_threads=batcher.inference_threads,
            ),
            batching=BatchingStats(**batcher.stats.to_dict()),
        )

    request_errors = {
        **auth_errors,
        413: {
            "model": ErrorResponse,
            "description": "More texts than --max-texts, or a body over --max-body-bytes.",
        },
        422: {"model": ErrorResponse, "description": "Malformed JSON, wrong types, or a text too long."},
        503: {"model": ErrorResponse, "description": "The service is shutting down."},
    }

    async def predict_records(body: ClassifyRequest, request: Request) -> list[PredictionRecord]:
        """One record per text of a checked request, in order; blank texts never reach the model."""
        texts = body.texts
        request.state.n_texts = len(texts)
        if len(texts) > settings.max_texts:
            raise HTTPException(
                413, f"texts: {len(texts)} texts in one request; the limit is {settings.max_texts}"
            )
        for index, text in enumerate(texts):
            if len(text) > settings.max_chars:
                raise HTTPException(
                    422, f"texts[{index}]: {len(text)} characters; the limit is {settings.max_chars}"
                )
        if body.ids is not None and len(body.ids) != len(texts):
            raise HTTPException(
                422, f"ids: {len(body.ids)} ids for {len(texts)} texts; expected one per text"
            )
        ids = body.ids if body.ids is not None else [str(i) for i in range(len(texts))]
        # a blank text is invalid, as in predict (one rule: is_blank_text), and never reaches the model
        records: list[PredictionRecord | None] = [
            PredictionRecord(i, None, None, Status.INVALID, error=f"texts[{n}]: {BLANK_TEXT}")
            if is_blank_text(t)
            else None
            for n, (i, t) in enumerate(zip(ids, texts, strict=True))
        ]
        examples = [Example(id=i, text=t) for i, t, r in zip(ids, texts, records, strict=True) if r is None]
        predicted = iter(await batcher.submit(examples) if examples else [])
        return [r if r is not None else next(predicted) for r in records]

    def not_here(path: str, serves: str) -> None:
        """A 404 with one line for an endpoint that does not answer the served model's task."""
        use = "/v1/classify" if labelled else "/v1/predict"
        raise HTTPException(
            404,
            f"{path}: answers {serves} models; the served model's task is {served.task_type}: use {use}",
        )

    if labelled:

        @app.post(
            "/v1/classify",
            response_model=ClassifyResponse,
            dependencies=protected,
            tags=["model"],
            responses=request_errors,
        )
        async def classify(body: ClassifyRequest, request: Request) -> ClassifyResponse:
            """Classify texts: one result per text (status ok, refused, invalid or error), in order."""
            records = await predict_records(body, request)
            return ClassifyResponse(model=served.ref, results=[Prediction.from_record(r) for r in records])

        @app.post("/v1/predict", include_in_schema=False)
        async def predict_elsewhere() -> None:
            not_here("/v1/predict", "models of tasks other than classification")

    else:
        response_model = predict_response_model(task)

        async def predict(body: ClassifyRequest, request: Request):
            """The task-shaped answer for each text (status ok, refused, invalid or error), in order."""
            records = await predict_records(body, request)
            results = [
                {"id": r.id, **task.values(r), "status": r.status.value, "error": r.error} for r in records
            ]
            return response_model(model=served.ref, task_type=served.task_type, results=results)

        for path in ("/v1/predict", "/v1/entities") if with_entities else ("/v1/predict",):
            app.add_api_route(
                path,
                predict,
                methods=["POST"],
                response_model=response_model,
                dependencies=protected,
                tags=["model"],
                responses=request_errors,
                summary="Find entities" if path == "/v1/entities" else "Predict",
                operation_id=path.strip("/").replace("/", "_"),
            )

        @app.post("/v1/classify", include_in_schema=False)
        async def classify_elsewhere() -> None:
            not_here("/v1/classify", "classification")

    if not with_entities:

        @app.post("/v1/entities", include_in_schema=False)
        async def entities_elsewhere() -> None:
            not_here("/v1/entities", "token-classification (entity)")

    app.openapi = _openapi_with_limits(app, settings)
    return app
