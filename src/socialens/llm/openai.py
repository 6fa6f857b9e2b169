"""Any OpenAI-compatible HTTP endpoint: OpenAI itself, vLLM, Ollama, TGI, llama.cpp's server.

The official ``openai`` client does the HTTP; this module adds what a benchmark over thousands of
prompts needs: bounded concurrency (a thread pool of ``concurrency`` workers), a per-request
timeout, and retries with exponential backoff and jitter (tenacity) on 429, 5xx, timeouts,
connection errors and malformed bodies. The client's own retries are switched off so these are
the only ones. A prompt that still fails gives a Completion with ``error``; it never raises and
never loses the other prompts.

The API key is read once, at construction, from the environment variable named by
``api_key_env``; it is handed to the client and is never logged, cached, put in an error message
or shown by ``repr``. ``api_key_env: null`` is for local servers that need no key.

Constrained decoding (``GenerationParams.choices``) is asked of the server, which must enforce it,
in one of the request forms of ``socialens.llm.openai_probe`` (``json_schema``, ``json_object``,
``structured_outputs``, ``guided_choice``, ``grammar``). ``constrained: auto`` (the default) is
``json_schema`` for OpenAI itself and, for a ``base_url``, the form the server is found to honour
before the first constrained request (a ConfigError when it honours none). As in the local
backends a leading space is dropped, and an answer that is still not one of the choices keeps its
text and gets ``error`` set. ``none`` sends no constraint and returns the free text for the parser.
An answer that must follow a JSON schema (``GenerationParams.json_schema``) is asked for in the
matching JSON form (``openai_probe``: found by a probe for a ``base_url`` when the choice form is
not yet known); a server that takes none answers freely, the parser reads the text, and
``json_schema_fallback`` says why (logged once).

Scoring (``score`` / ``score_batch``) reads label log-probabilities in the best form the server
gives (``socialens.llm.openai_scoring``: ``echo`` or vLLM's ``prompt_logprobs``, exact, on
``/completions`` with the plain-text prompt; else ``top_logprobs``, the label's first token
only), found by one probe before the first score or set by ``scoring:``; a server that gives none
is one ConfigError. All requests of a batch (one per text and label, or one per text for
``top_logprobs``) go through the same bounded pool as generation.

Failing fast (``socialens.llm.failures``): once ``max_connection_failures`` prompts in a row have
failed to reach the server (connection error or timeout after all their retries), the backend is
stopped: retries waiting in other threads end at once and every later prompt fails without a
request, its error saying why, until ``reset_failures``. Before any request has succeeded, the same
number of prompts in a row refused the same way (one HTTP 4xx status, or answers outside the
constraint) is a ConfigError: the settings are wrong, and every other text would fail the same way.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from pydantic import Field

from socialens.core.errors import ConfigError
from socialens.core.params import FamilyParams
from socialens.llm.base import (
    ANSWER_PREFIX_PLAIN,
    Completion,
    GenerationParams,
    Messages,
    Scores,
    render_plain,
)
from socialens.llm.failures import FailureAccount
from socialens.llm.openai_probe import (
    REJECTED_STATUSES,
    ProbeFailed,
    RefusedResponse,
    ServerCapabilities,
    constrained_answer,
    constraint_args,
    json_answer,
    json_schema_args,
)
from socialens.llm.openai_scoring import (
    TOP_LOGPROBS,
    MalformedScores,
    ScoringCapability,
    echo_score,
    first_token_alternatives,
    first_token_scores,
    prompt_logprobs_score,
    scoring_request,
    usage_prompt_tokens,
)

log = logging.getLogger(__name__)

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
NO_KEY = "none"  # what a local server that checks no key is sent


class MalformedResponse(Exception):
    """The server answered 2xx with a body that is not a usable completion (retried)."""


class _Failure(Exception):
    """A request that failed for good; ``str`` is the error text put in the Completion."""


def render_messages_json(messages: Messages) -> str:
    """Deterministic text of a chat prompt for a server that applies its own chat template."""
    return json.dumps(
        [{"role": m["role"], "content": m["content"]} for m in messages], ensure_ascii=False, sort_keys=True
    )


class OpenAIBackend:
    name = "openai"
    default_base_url = OPENAI_DEFAULT_BASE_URL  # where texts go when base_url is None

    class Options(FamilyParams):
        base_url: str | None = None  # None -> OpenAI's own API
        api_key_env: str | None = "OPENAI_API_KEY"  # None -> no key (local servers)
        concurrency: int = Field(8, ge=1)
        timeout_s: float = Field(60.0, gt=0)  # per request
        max_retries: int = Field(5, ge=0)  # retries after the first attempt
        backoff_base_s: float = Field(1.0, ge=0)  # exponential backoff multiplier (with full jitter)
        backoff_max_s: float = Field(30.0, ge=0)  # cap on one wait, Retry-After included
        constrained: Literal[
            "auto", "json_schema", "json_object", "structured_outputs", "guided_choice", "grammar", "none"
        ] = "auto"
        chat: bool = True  # True: /chat/completions; False: /completions (base models)
        # how scored decoding reads label log-probabilities (socialens.llm.openai_scoring)
        scoring: Literal["auto", "echo", "prompt_logprobs", "top_logprobs"] = "auto"
        # prompts in a row that fail to connect (after their retries) before the rest fail at once
        max_connection_failures: int = Field(3, ge=1)

    def __init__(self, model: str, **options: Any):
        self.options = self.Options(**options)
        self.model = model
        base = self.options.base_url or OPENAI_DEFAULT_BASE_URL
        self.model_id = f"{base.rstrip('/')}/{model}"
        mode: str | None = self.options.constrained
        if mode == "auto":
            # OpenAI's own API documents json_schema; any other server is asked (ServerCapabilities).
            mode = "json_schema" if self.options.base_url is None and self.options.chat else None
        if mode in ("json_schema", "json_object") and not self.options.chat:
            raise ConfigError(
                f"openai backend: constrained '{mode}' needs chat: true (response formats are a chat "
                "feature); use 'grammar', 'structured_outputs', 'guided_choice' or 'none' with chat: false"
            )
        # asked of the server once, when first needed (None: not yet known)
        self.capabilities = ServerCapabilities(
            self._probe_send, model, server=base.rstrip("/"), chat=self.options.chat, constrained_mode=mode
        )
        scoring: str | None = self.options.scoring
        if scoring == "auto":
            # OpenAI's own chat models echo no prompt: the first answer token's top_logprobs
            scoring = "top_logprobs" if self.options.base_url is None else None
        else:  # a chosen method scores differently from another: keep their cache entries apart
            self.model_id += f"#scoring={scoring}"
        self.scoring = ScoringCapability(
            self._probe_send, model, server=base.rstrip("/"), chat=self.options.chat, mode=scoring
        )
        api_key = self._read_key()
        try:
            import openai
        except ImportError:
            raise ConfigError(
                "the openai backend needs the package 'openai': pip install 'socialens[llm]'"
            ) from None
        try:
            import tenacity  # noqa: F401
        except ImportError:
            raise ConfigError(
                "the openai backend needs the package 'tenacity': pip install 'socialens[llm]'"
            ) from None
        self._openai = openai
        # The client's own retries are off: ours (with jitter, counted, reported) are the only ones.
        self._client = openai.OpenAI(
            api_key=api_key,
            base_url=self.options.base_url,
            timeout=self.options.timeout_s,
            max_retries=0,
        )
        del api_key
        self._pool = ThreadPoolExecutor(
            max_workers=self.options.concurrency, thread_name_prefix="socialens-openai"
        )
        self._closed = False
        self._lock = threading.Lock()
        self.failures = FailureAccount(
            self.options.max_connection_failures,
            base.rstrip("/"),
            settings="model, base_url, api_key_env, constrained, chat",
        )

    def _read_key(self) -> str:
        name = self.options.api_key_env
        if name is None:
            return NO_KEY
        value = os.environ.get(name)
        if not value:
            raise ConfigError(
                f"openai backend: the environment variable {name} holding the API key is not set; set it, "
                "or set api_key_env: null for a local server that needs no key"
            )
        return value

    def __repr__(self) -> str:
        opts = self.options.model_dump()
        return f"OpenAIBackend(model={self.model!r}, options={opts!r})"

    __str__ = __repr__

    # -- protocol ---------------------------------------------------------------------------------

    def render(self, messages: Messages) -> str:
        """The text sent: the chat messages as JSON (the server applies its template), or for
        ``chat: false`` the plain-text prompt the completions endpoint receives."""
        if self.options.chat:
            return render_messages_json(messages)
        return render_plain(messages)

    @property
    def stopped(self) -> str | None:
        """Why this backend sends nothing more (the server stopped answering), or None."""
        return self.failures.stopped

    def reset_failures(self) -> None:
        self.failures.reset()

    def generate(self, prompts: list[Messages], params: GenerationParams) -> list[Completion]:
        if params.choices and prompts:
            failure = self.capabilities.resolve_constrained_mode()
            if failure is not None:
                return [Completion(text="", error=failure) for _ in prompts]
        if params.json_schema is not None and prompts:
            failure = self.capabilities.resolve_json_mode()
            if failure is not None:
                return [Completion(text="", error=failure) for _ in prompts]
        futures = [self._pool.submit(self._generate_one, prompt, params) for prompt in prompts]
        return [future.result() for future in futures]

    def score(self, prompt: Messages, continuations: list[str]) -> Scores:
        return self.score_batch([prompt], continuations)[0]

    def score_batch(self, prompts: list[Messages], continuations: list[str]) -> list[Scores]:
        """One Scores per prompt, in order, each as ``score(prompt, continuations)`` would give; every
        request of the batch is in the pool at once, ``concurrency`` of them in flight."""
        if not prompts:
            return []
        failure = self.scoring.resolve()
        if failure is not None:
            return [Scores(logprobs=[], error=failure) for _ in prompts]
        mode = self.scoring.mode
        if mode == "top_logprobs":
            futures = [self._pool.submit(self._first_token_one, p, continuations) for p in prompts]
            return [future.result() for future in futures]
        # As in the local backends: the answer follows a plain "Answer:" prompt after one space.
        rows = [
            [self._pool.submit(self._score_one, mode, p, ANSWER_PREFIX_PLAIN + c) for c in continuations]
            for p in prompts
        ]
        return [self._collect(row) for row in rows]

    def _collect(self, futures) -> Scores:
        results, errors = [], []
        for future in futures:
            try:
                results.append(future.result())
            except _Failure as failure:
                errors.append(str(failure))
        began = min((r[3] for r in results), default=0.0)
        latency = max((r[4] for r in results), default=began) - began
        if errors:
            return Scores(logprobs=[], latency_s=latency, error=errors[0])
        self.failures.answered()
        return Scores(
            logprobs=[r[0] for r in results],
            tokens_in=max((r[2] for r in results), default=0),
            continuation_tokens=[r[1] for r in results],
            latency_s=latency,
        )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.shutdown(wait=True)
            self._client.close()

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what the server supports (socialens.llm.openai_probe) ----------------------------------------

    @property
    def constrained_mode(self) -> str | None:
        """The constrained-decoding form in use; None while a probe has still to find it."""
        return self.capabilities.constrained_mode

    @property
    def json_schema_mode(self) -> str | None:
        """The JSON-schema form in use (None: not yet decided, or answers generated freely)."""
        return self.capabilities.json_mode

    @property
    def json_schema_fallback(self) -> str | None:
        """Why JSON-schema answers are generated freely and parsed here, or None."""
        return self.capabilities.json_verdict

    def _probe_send(self, chat: bool, args: dict[str, Any]) -> Any:
        """One probe request with the usual retries (``openai_probe.Send``)."""
        openai = self._openai
        create = self._client.chat.completions.create if chat else self._client.completions.create

        def request():
            try:
                return create(**args)
            except openai.APIStatusError as error:
                if error.status_code in REJECTED_STATUSES:
                    # returned, not raised: a form the server does not take is an answer, not
                    # a failed request to retry or to count against the server
                    return RefusedResponse(error.status_code)
                raise

        try:
            return self._call(request)
        except _Failure as failure:
            raise ProbeFailed(f"{failure} (probing what the server supports)") from None

    # -- requests -----------------------------------------------------------------------------------

    def _request_args(self, params: GenerationParams) -> dict[str, Any]:
        args: dict[str, Any] = {
            "model": self.model,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": params.seed,
        }
        if params.stop:
            args["stop"] = list(params.stop)
        if params.choices:
            args.update(constraint_args(self.constrained_mode or "none", params.choices, params.max_tokens))
        elif params.json_schema is not None and self.json_schema_mode is not None:
            args.update(json_schema_args(self.json_schema_mode, params.json_schema, params.max_tokens))
            args.pop("stop", None)  # a stop string could cut the JSON short
        return args

    def _generate_one(self, prompt: Messages, params: GenerationParams) -> Completion:
        start = time.perf_counter()
        args = self._request_args(params)
        try:
            if self.options.chat:
                response = self._call(lambda: self._client.chat.completions.create(messages=prompt, **args))
                choice = _first_choice(response)
                message = getattr(choice, "message", None)
                text = getattr(message, "content", None)
                if text is None and getattr(message, "refusal", None):
                    text = message.refusal
            else:
                response = self._call(
                    lambda: self._client.completions.create(prompt=self.render(prompt), **args)
                )
                choice = _first_choice(response)
                text = getattr(choice, "text", None)
        except _Failure as failure:
            return Completion(text="", latency_s=time.perf_counter() - start, error=str(failure))
        text = text or ""
        if params.json_schema is not None:
            text = json_answer(self.json_schema_mode, text, params.json_schema)
        error = None
        if params.choices and self.constrained_mode != "none":
            text = constrained_answer(self.constrained_mode, text, params.choices)
            if text not in params.choices:  # the server ignored or does not support the constraint
                error = (
                    f"constrained output {text[:80]!r} is not one of the choices "
                    f"(does the server support constrained: {self.constrained_mode}?)"
                )
                self.failures.refused(
                    "constraint",
                    f"answers that are not one of the choices (does the server support constrained: "
                    f"{self.constrained_mode}?)",
                )
        if error is None:
            self.failures.answered()
        usage = getattr(response, "usage", None)
        return Completion(
            text=text,
            tokens_in=int(getattr(usage, "prompt_tokens", 0) or 0),
            tokens_out=int(getattr(usage, "completion_tokens", 0) or 0),
            latency_s=time.perf_counter() - start,
            finish_reason=getattr(choice, "finish_reason", None),
            error=error,
        )

    def _score_one(
        self, mode: str, prompt: Messages, continuation: str
    ) -> tuple[float, int, int, float, float]:
        """(summed log-probability, continuation tokens, prompt tokens, start, end) of one label."""
        start = time.perf_counter()
        _, args = scoring_request(mode, self.model, prompt, continuation, self.options.chat)
        response = self._call(lambda: self._client.completions.create(**args))
        try:
            if mode == "echo":
                total, count, n_prompt = echo_score(response, render_plain(prompt), continuation)
            else:
                total, count, n_prompt = prompt_logprobs_score(response, continuation)
        except MalformedScores as error:
            raise _Failure(f"malformed response ({error})") from None
        return total, count, n_prompt, start, time.perf_counter()

    def _first_token_one(self, prompt: Messages, labels: list[str]) -> Scores:
        """Every label's score from one request: the first answer token's listed alternatives."""
        start = time.perf_counter()
        chat, args = scoring_request("top_logprobs", self.model, prompt, None, self.options.chat)
        create = self._client.chat.completions.create if chat else self._client.completions.create
        try:
            response = self._call(lambda: create(**args))
        except _Failure as failure:
            return Scores(logprobs=[], latency_s=time.perf_counter() - start, error=str(failure))
        latency = time.perf_counter() - start
        alternatives = first_token_alternatives(response)
        if alternatives is None:
            return Scores(logprobs=[], latency_s=latency, error="malformed response (no top_logprobs)")
        self.failures.answered()
        scores = first_token_scores(alternatives, labels)
        if scores is None:
            return Scores(
                logprobs=[],
                tokens_in=usage_prompt_tokens(response),
                latency_s=latency,
                error=f"no label begins any of the server's {TOP_LOGPROBS} most likely first answer tokens",
            )
        return Scores(
            logprobs=scores,
            tokens_in=usage_prompt_tokens(response),
            continuation_tokens=[1] * len(labels),
            latency_s=latency,
        )

    def _call(self, request):
        """Run ``request`` with our retries; return its response or raise _Failure."""
        from tenacity import RetryError, Retrying, retry_if_exception, stop_after_attempt, stop_when_event_set

        failures = self.failures
        failures.raise_config_error()
        if failures.stopped is not None:
            raise _Failure(failures.stopped)
        attempts = self.options.max_retries + 1
        retrying = Retrying(
            stop=stop_after_attempt(attempts) | stop_when_event_set(failures.stop_event),
            wait=self._wait,
            sleep=failures.stop_event.wait,  # a stopped backend ends every waiting retry at once
            retry=retry_if_exception(self._retryable),
            reraise=False,
            before_sleep=self._log_retry,
        )
        try:
            for attempt in retrying:
                with attempt:
                    if failures.stopped is not None:  # stopped while this prompt waited to retry
                        raise _Failure(failures.stopped)
                    try:
                        response = request()
                    except self._openai.APIStatusError:
                        failures.reached()
                        raise
                    failures.reached()
                    if isinstance(response, str | bytes) or not hasattr(response, "choices"):
                        raise MalformedResponse("response body is not a completion object")
                    _first_choice(response)
            return response
        except RetryError as error:
            last = error.last_attempt.exception()
            detail = f"{self._describe(last)} after {error.last_attempt.attempt_number} attempts"
            if isinstance(last, self._openai.APIConnectionError):  # timeouts included
                failures.connection_failure(detail)
            if error.last_attempt.attempt_number < attempts and failures.stopped is not None:
                raise _Failure(failures.stopped) from None
            raise _Failure(detail) from None
        except _Failure:
            raise
        except Exception as error:
            if isinstance(error, ConfigError):
                raise
            if isinstance(error, self._openai.APIStatusError) and 400 <= error.status_code < 500:
                failures.refused(f"HTTP {error.status_code}", self._describe(error))
            raise _Failure(f"{self._describe(error)} (not retried)") from None

    def _retryable(self, error: BaseException) -> bool:
        openai = self._openai
        if isinstance(error, openai.APIStatusError):
            return error.status_code in (408, 409, 429) or error.status_code >= 500
        return isinstance(
            error,
            openai.APITimeoutError
            | openai.APIConnectionError
            | openai.APIResponseValidationError
            | MalformedResponse
            | ValueError,  # json.JSONDecodeError of a malformed body
        )

    def _describe(self, error: BaseException | None) -> str:
        """A short error text built from the error's type and status only: server bodies and client
        messages are left out, so no header or key can leak into a Completion."""
        openai = self._openai
        if isinstance(error, openai.APIStatusError):
            return f"HTTP {error.status_code}"
        if isinstance(error, openai.APITimeoutError):
            return f"timeout ({self.options.timeout_s:g} s)"
        if isinstance(error, openai.APIConnectionError):
            return "connection error"
        if isinstance(error, MalformedResponse | ValueError | openai.APIResponseValidationError):
            return "malformed response"
        return type(error).__name__ if error is not None else "unknown error"

    def _wait(self, retry_state) -> float:
        from tenacity import wait_random_exponential

        base = wait_random_exponential(multiplier=self.options.backoff_base_s, max=self.options.backoff_max_s)
        delay = base(retry_state)
        error = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = _retry_after_s(error)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.options.backoff_max_s))
        return delay

    def _log_retry(self, retry_state) -> None:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        log.debug(
            "%s: %s, retry %d of %d",
            self.model_id,
            self._describe(error),
            retry_state.attempt_number,
            self.options.max_retries,
        )


def _first_choice(response: Any) -> Any:
    choices = getattr(response, "choices", None)
    if not choices:
        raise MalformedResponse("response has no choices")
    return choices[0]


def _retry_after_s(error: BaseException | None) -> float | None:
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
