"""Zero- and few-shot LLM classification over any LLMBackend.

Three decoding modes: ``generate`` (free text, then parsing), ``constrained`` (output restricted to
the label answers) and ``scored`` (one log-probability per label answer, giving probabilities).
A refused or unparseable answer stays refused or invalid; it is never replaced by a guess.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from socialens.classifiers.base import (
    MODEL_INFO_FILE,
    Trust,
    check_referenced_weights,
    check_task_type,
    infer_schema,
    normalise_endpoint,
    read_model_info,
    write_model_info,
)
from socialens.core.errors import ConfigError
from socialens.core.params import FamilyParams
from socialens.core.paths import confine
from socialens.core.progress import EstimateHook, ProgressHook, RunEstimate
from socialens.core.registry import TASKS
from socialens.core.types import Example, LabelSchema, PredictionRecord, Status
from socialens.llm.native_probe import ExtraBuffers

BUILTIN_PROMPTS = ("serial", "json", "instruction")  # any other ``prompt`` is a template file
SAVED_TEMPLATE = "prompt_template.jinja"  # a saved model's copy of its user template
BACKEND_RUNTIMES = {"llamacpp": "llama.cpp", "hf": "torch", "openai": "openai-compatible"}

# Fields of PromptedParams that are handed to the backend's own Options (each backend says which it takes).
BACKEND_OPTION_FIELDS = (
    "base_url",
    "api_key_env",
    "concurrency",
    "timeout_s",
    "max_retries",
    "max_connection_failures",
    "n_ctx",
    "n_threads",
    "extra_buffers",
    "adapter",
    "batch_size",
    "batch_texts",
    "flash_attn",
    "device",
)


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_per_1m: float = Field(default=0.0, ge=0)
    output_per_1m: float = Field(default=0.0, ge=0)

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input_per_1m + tokens_out * self.output_per_1m) / 1_000_000


class PromptedParams(FamilyParams):
    backend: str = "llamacpp"
    model: str = "builtin:smollm2-135m-instruct"
    prompt: str = Field(
        default="serial", description="serial | json | instruction | path to a user-template .jinja file"
    )
    # The instruction of the ``instruction`` prompt (LlamaLens chat records); None: one built from the schema.
    instruction: str | None = None
    system_prompt: str | None = None
    wording: Literal["universal", "topic"] = "universal"
    shots: int = Field(default=0, ge=0)
    shot_selection: Literal["random", "stratified", "similar", "fixed"] = "random"
    decoding: Literal["generate", "constrained", "scored"] = "generate"
    max_tokens: int = Field(
        default=20, gt=0, description="answer token budget (left out for a task that generates: the task's)"
    )
    stop_rule: Literal["eos", "first_sentence"] = Field(
        default="eos",
        description="summaries: keep the answer up to the end of the model's turn (eos) or only its "
        "first sentence (as LlamaLens did)",
    )
    max_text_chars: int | None = Field(
        default=2000, gt=0, description="longer input texts (and shots) are cut to this many characters"
    )
    parse_threshold: float = Field(default=0.8, ge=0, le=1)
    price: Price | None = None
    cache: bool = True
    cache_path: str | None = None
    chunk_size: int = Field(default=16, gt=0, description="prompts per backend call (and per cache commit)")
    base_url: str | None = None
    api_key_env: str | None = None
    concurrency: int | None = None
    timeout_s: float | None = None
    max_retries: int | None = None
    max_connection_failures: int | None = None  # openai: stop after this many unreachable prompts
    n_ctx: int | None = None
    n_threads: int | None = None
    extra_buffers: ExtraBuffers | None = None  # llamacpp: weight-repacking buffer types
    adapter: str | None = None
    batch_size: int | None = None
    # llamacpp / hf: texts scored (llamacpp: also constrained-decoded) together in one batch;
    # llamacpp: "auto" sizes groups by n_ctx and n_batch, 1 (its default) is one text at a time.
    batch_texts: Annotated[int, Field(ge=1)] | Literal["auto"] | None = None
    flash_attn: bool | None = None  # llamacpp: llama.cpp's flash attention (default off)
    device: str | None = None
    backend_options: dict = Field(default_factory=dict)

    @model_validator(mode="after")
    def _options_apply_to_backend(self) -> PromptedParams:
        from socialens.llm.base import get_backend

        options_model = get_backend(self.backend).Options
        for name in self.backend_option_values():
            if name not in options_model.model_fields:
                raise ValueError(f"'{name}' does not apply to backend '{self.backend}'")
        # Record the key variable actually read: left out, it is the backend's default (openai:
        # OPENAI_API_KEY), so a saved model says so; an explicit null stays null: send no key.
        takes_key = "api_key_env" in options_model.model_fields
        if (
            takes_key
            and "api_key_env" not in self.model_fields_set
            and "api_key_env" not in self.backend_options
        ):
            self.api_key_env = options_model.model_fields["api_key_env"].default
        return self

    def backend_option_values(self) -> dict:
        values = {
            name: getattr(self, name) for name in BACKEND_OPTION_FIELDS if getattr(self, name) is not None
        }
        if self.api_key_env is None and "api_key_env" in self.model_fields_set:
            from socialens.llm.base import get_backend

            if "api_key_env" in get_backend(self.backend).Options.model_fields:
                values["api_key_env"] = None  # null means no key, not the backend's default variable
        return {**values, **self.backend_options}

    @property
    def style(self) -> str:
        return "json" if self.prompt == "json" else "serial"


def network_endpoint(params: PromptedParams) -> tuple[str, str | None] | None:
    """(endpoint URL, name of the environment variable the API key is read from, or None for no
    key) of a model that sends its texts over the network; None for a local backend."""
    from pydantic import ValidationError

    from socialens.llm.base import get_backend

    backend = get_backend(params.backend)
    if "base_url" not in backend.Options.model_fields:
        return None
    try:
        options = backend.Options(**params.backend_option_values())
    except ValidationError as exc:
        raise ConfigError(f"backend '{params.backend}': bad options ({exc.errors()[0]['msg']})") from None
    url = options.base_url or getattr(backend, "default_base_url", None) or "(the backend's default)"
    return normalise_endpoint(url), getattr(options, "api_key_env", None)


def _shown(value: str) -> str:
    """A value from a file, printable as is (control characters escaped)."""
    return value if value.isprintable() else repr(value)


def endpoint_consent(endpoint: tuple[str, str | None], trust: Trust | None) -> list[str]:
    """The command-line options still needed before texts may go to ``endpoint`` (none: allowed)."""
    trust = trust or Trust()
    url, key_env = endpoint
    missing = [] if url in trust.endpoints else [f"--allow-endpoint {_shown(url)}"]
    if key_env is not None and key_env not in trust.key_envs:
        missing.append(f"--allow-key-env {_shown(key_env)}")
    return missing


def describe_endpoint(endpoint: tuple[str, str | None]) -> str:
    url, key_env = endpoint
    key = f"the API key from ${_shown(key_env)}" if key_env is not None else "no API key"
    return f"texts to {_shown(url)} with {key}"


def check_endpoint(params: PromptedParams, trust: Trust | None, source: str) -> None:
    """Refuse (one-line ConfigError) a saved model whose texts would go to an endpoint, or whose API
    key would be read from a variable, that the user has not confirmed in ``trust``."""
    endpoint = network_endpoint(params)
    if endpoint is None:
        return
    missing = endpoint_consent(endpoint, trust)
    if missing:
        raise ConfigError(
            f"{source}: this model sends {describe_endpoint(endpoint)}, which a model directory may not "
            f"choose on its own; if you mean it, pass {' '.join(missing)}"
        )


ESTIMATE_TEXTS = 3  # texts timed (at least) before a whole run's time is estimated


def check_task_params(params: PromptedParams, task, source: str) -> None:
    """The prompt and decoding options that apply to a task whose answer is not one label: its
    own prompt in the serial or json format, generated (constrained: to the task's JSON schema)."""
    stop_rules = task.stop_rules
    if params.stop_rule not in stop_rules:
        raise ConfigError(
            f"{source}: field 'stop_rule' = {params.stop_rule!r} applies to generated texts "
            f"(summaries), not to task type '{task.name}'; expected {' or '.join(stop_rules)}"
        )
    if task.label_prompts:
        return
    if params.prompt not in task.output_formats:
        raise ConfigError(
            f"{source}: field 'prompt' = {params.prompt!r}: task type '{task.name}' builds its own "
            f"prompt; expected one of {', '.join(task.output_formats)}"
        )
    if params.decoding == "scored":
        raise ConfigError(
            f"{source}: field 'decoding' = 'scored' scores each label of the schema, but task type "
            f"'{task.name}' generates its answer; expected generate or constrained"
        )


def softmax(logprobs: list[float]) -> list[float]:
    top = max(logprobs)
    weights = [math.exp(lp - top) for lp in logprobs]
    total = sum(weights)
    return [w / total for w in weights]


class PromptedClassifier:
    family = "prompted"
    task_types = ("classification", "token_classification", "summarisation", "multilabel")
    Params = PromptedParams

    @property
    def runtime(self) -> str:
        """What runs the model, as GET /v1/model reports it: llama.cpp, torch (transformers) or an
        OpenAI-compatible server."""
        return BACKEND_RUNTIMES.get(self.params.backend, self.params.backend)

    def __init__(
        self,
        params: PromptedParams | None = None,
        seed: int = 0,
        *,
        progress: ProgressHook | None = None,
        estimate: EstimateHook | None = None,
        backend=None,
    ):
        self.params = params or PromptedParams()
        self.seed = seed
        self.progress = progress  # progress(stage, done, total), as the encoder family calls it
        self.estimate = estimate  # estimate(RunEstimate), called once the first texts of a run are done
        self.task_type = "classification"
        self.stopped_: str | None = None  # why the last predict() stopped sending texts, if it did
        self.schema: LabelSchema | None = None
        self.task: str = ""
        self.pool_: list[Example] = []
        self._backend = backend  # an already-built backend (tests, or sharing one loaded model)
        self._builder = None
        self._selector = None
        self._task = None

    # -- fitting: no training; remember the schema and the few-shot pool ------------------------
    def fit(
        self,
        train: list[Example],
        dev: list[Example] | None = None,
        *,
        schema: LabelSchema | None = None,
        task: str = "",
        task_type: str = "classification",
    ) -> PromptedClassifier:
        self.task_type = check_task_type(self, task_type)
        self._task = None
        check_task_params(self.params, self.task_object, "params")
        self.schema = schema or infer_schema(train)
        self.task = task
        self.pool_ = [ex for ex in train if ex.label is not None] if self.params.shots else []
        self._builder = None
        self._selector = None
        return self

    @property
    def task_object(self):
        """The Task of ``task_type`` (``socialens.core.registry.TASKS``)."""
        if self._task is None:
            task = TASKS.get(self.task_type)()
            if self.params.stop_rule != "eos":  # check_task_params made sure the task has the rule
                task.stop_rule = self.params.stop_rule
            self._task = task
        return self._task

    def _check_fitted(self) -> None:
        if self.schema is None:
            raise RuntimeError(
                "PromptedClassifier is not fitted: call fit() (it sets the label schema) or load()"
            )

    @property
    def builder(self):
        from socialens.llm.prompts import PromptBuilder

        if self._builder is None:
            style = self.params.prompt if self.params.prompt in BUILTIN_PROMPTS else Path(self.params.prompt)
            self._builder = PromptBuilder(
                self.schema,
                style=style,
                task=self.task or None,
                system_prompt=self.params.system_prompt,
                wording=self.params.wording,
                instruction=self.params.instruction,
            )
        return self._builder

    @property
    def selector(self):
        from socialens.llm.fewshot import ShotSelector

        if self._selector is None and self.params.shots:
            task = self.task_object
            self._selector = ShotSelector(
                self.pool_,
                strategy=self.params.shot_selection,
                k=self.params.shots,
                seed=self.seed,
                class_of=None if task.label_prompts else task.stratify_key,
            )
        return self._selector

    @property
    def backend(self):
        from socialens.llm.base import get_backend
        from socialens.llm.cache import CachedBackend, ResponseCache

        if self._backend is None:
            raw = get_backend(self.params.backend)(self.params.model, **self.params.backend_option_values())
            cache = ResponseCache(self.params.cache_path) if self.params.cache else None
            self._backend = CachedBackend(raw, cache)
        elif not hasattr(self._backend, "cache"):
            cache = ResponseCache(self.params.cache_path) if self.params.cache else None
            self._backend = CachedBackend(self._backend, cache)
        return self._backend

    # -- prediction -------------------------------------------------------------------------------
    def _clip(self, example: Example) -> Example:
        limit = self.params.max_text_chars
        if limit is None or len(example.text) <= limit:
            return example
        return dataclasses.replace(example, text=example.text[:limit])

    def prompts(self, examples: list[Example]):
        selector = self.selector
        task = self.task_object
        prompts = []
        for ex in examples:
            shots = [self._clip(s) for s in selector.select(ex)] if selector else []
            if task.label_prompts:
                prompts.append(self.builder.messages(self._clip(ex), shots=shots))
            else:
                prompts.append(
                    task.messages(
                        self._clip(ex),
                        shots,
                        self.schema,
                        output_format=self.params.style,
                        description=self.task,
                        system_prompt=self.params.system_prompt,
                    )
                )
        return prompts

    def _sample_size(self) -> int:
        """How many texts the first chunk holds: enough to time, and to fill a backend that runs
        several prompts at once (openai's concurrency, hf's batch)."""
        raw = getattr(self.backend, "backend", self.backend)
        options = getattr(raw, "options", None)
        parallel = max(
            getattr(options, "concurrency", 1) or 1,
            getattr(options, "batch_size", 1) or 1,
            getattr(raw, "batch_texts", None) or 1,
        )
        return min(self.params.chunk_size, max(ESTIMATE_TEXTS, parallel))

    def predict(self, examples: list[Example]) -> list[PredictionRecord]:
        self._check_fitted()
        backend, _, _ = self.backend, self.builder, self.selector  # set-up costs stay out of the estimate
        reset = getattr(backend, "reset_failures", None)
        if reset is not None:  # a server that stopped answering in an earlier call may be back
            reset()
        records: list[PredictionRecord] = []
        size = self._sample_size()
        started, sent_before = time.perf_counter(), getattr(backend, "calls", 0)
        start = 0
        while start < len(examples):
            stopped = getattr(backend, "stopped", None)
            if stopped is not None:  # every remaining text still gets its record, saying why
                records.extend(
                    self._record(ex, predicted=None, status=Status.ERROR, error=stopped)
                    for ex in examples[start:]
                )
                break
            chunk = examples[start : start + size]
            if not self.task_object.label_prompts:
                records.extend(self._predict_task(chunk))
            elif self.params.decoding == "scored":
                records.extend(self._predict_scored(chunk))
            else:
                records.extend(self._predict_generated(chunk))
            if (
                start == 0
                and self.estimate is not None
                and any(r.status is not Status.ERROR for r in records)
            ):
                sent = getattr(backend, "calls", 0) - sent_before
                self.estimate(
                    RunEstimate(
                        texts=len(examples),
                        sampled=len(chunk),
                        prompt_tokens=sum(r.tokens_in for r in records) / len(records),
                        seconds_per_text=(time.perf_counter() - started) / sent if sent else None,
                    )
                )
            start += len(chunk)
            size = self.params.chunk_size
            if self.progress is not None:
                self.progress("predict", len(records), len(examples))
        self.stopped_ = getattr(backend, "stopped", None)  # also when it stopped within the last chunk
        return records

    def _record(self, ex: Example, **fields) -> PredictionRecord:
        record = PredictionRecord(id=ex.id, gold=ex.label, metadata=dict(ex.metadata), **fields)
        if self.params.price is not None:
            record.cost = self.params.price.cost(record.tokens_in, record.tokens_out)
        return record

    def _predict_generated(self, chunk: list[Example]) -> list[PredictionRecord]:
        from socialens.llm.base import GenerationParams
        from socialens.tasks.label_parsing import failure_reason, parse_label

        builder = self.builder
        constrained = self.params.decoding == "constrained"
        answers = {builder.answer(name): name for name in self.schema.names}
        params = GenerationParams(
            max_tokens=self.params.max_tokens, seed=self.seed, choices=tuple(answers) if constrained else None
        )

        def read(ex: Example, text: str) -> dict:
            if constrained and text.strip() in answers:
                return dict(predicted=answers[text.strip()], status=Status.OK)
            parsed = parse_label(
                text, self.schema, style=self.params.style, threshold=self.params.parse_threshold
            )
            return dict(
                predicted=parsed.label,
                status=Status(parsed.status),
                error=failure_reason(parsed, self.schema.names),
            )

        return self._generated_records(chunk, params, read)

    def _predict_task(self, chunk: list[Example]) -> list[PredictionRecord]:
        """A task whose answer is not one label (entities, a summary, a label set): the task
        builds the prompt, sets the generation and reads the answer."""
        from socialens.llm.base import GenerationParams

        task, style = self.task_object, self.params.style
        wanted = task.generation(self.schema, style)
        params = GenerationParams(
            max_tokens=self.params.max_tokens
            if "max_tokens" in self.params.model_fields_set
            else wanted.max_tokens,
            seed=self.seed,
            stop=tuple(wanted.stop),
            json_schema=wanted.json_schema if self.params.decoding == "constrained" else None,
        )

        def read(ex: Example, text: str) -> dict:
            parsed = task.parse(text, ex, self.schema, style)
            return dict(
                predicted=parsed.predicted if parsed.status is Status.OK else None,
                status=parsed.status,
                error=parsed.error,
                details=parsed.details,
            )

        return self._generated_records(chunk, params, read)

    def _generated_records(self, chunk: list[Example], params, read) -> list[PredictionRecord]:
        """Generate an answer for each example and make its record, with the answer's text, latency
        and token counts: an error record for a call that failed, else the fields
        ``read(example, answer text)`` finds in the answer."""
        completions = self.backend.generate(self.prompts(chunk), params)
        records = []
        for ex, completion in zip(chunk, completions, strict=True):
            usage = dict(
                raw_output=completion.text,
                latency_s=completion.latency_s,
                tokens_in=completion.tokens_in,
                tokens_out=completion.tokens_out,
            )
            if completion.error is not None:
                fields = dict(predicted=None, status=Status.ERROR, error=completion.error)
            else:
                fields = read(ex, completion.text)
            records.append(self._record(ex, **fields, **usage))
        return records

    def _predict_scored(self, chunk: list[Example]) -> list[PredictionRecord]:
        names = self.schema.names
        continuations = [self.builder.answer(name) for name in names]
        records = []
        batch = self.backend.score_batch(self.prompts(chunk), continuations)  # the chunk in one call
        for ex, scores in zip(chunk, batch, strict=True):
            usage = dict(latency_s=scores.latency_s, tokens_in=scores.tokens_in, tokens_out=0)
            if scores.error is not None:
                records.append(
                    self._record(ex, predicted=None, status=Status.ERROR, error=scores.error, **usage)
                )
                continue
            probabilities = softmax(scores.logprobs)
            best = max(range(len(names)), key=lambda i: probabilities[i])
            records.append(
                self._record(
                    ex,
                    predicted=names[best],
                    status=Status.OK,
                    scores=dict(zip(names, probabilities, strict=True)),
                    raw_output=json.dumps(dict(zip(names, scores.logprobs, strict=True))),
                    **usage,
                )
            )
        return records

    # -- persistence: the prompt set-up, the schema and the few-shot pool ---------------------------
    def save(self, directory: str | Path) -> None:
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        params = self.params
        if params.prompt not in BUILTIN_PROMPTS:  # the directory carries its own copy of the template
            shutil.copyfile(Path(params.prompt).expanduser(), directory / SAVED_TEMPLATE)
            params = params.model_copy(update={"prompt": SAVED_TEMPLATE})
        extra = {"seed": self.seed, "task": self.task}
        if self.task_type != "classification":
            extra["task_type"] = self.task_type
        write_model_info(directory, self.family, self.schema, params, extra=extra)
        with (directory / "fewshot_pool.jsonl").open("w", encoding="utf-8") as handle:
            for ex in self.pool_:
                handle.write(json.dumps(ex.to_dict(), ensure_ascii=False) + "\n")

    @classmethod
    def load(
        cls, directory: str | Path, *, trust: Trust | None = None, progress: ProgressHook | None = None
    ) -> PromptedClassifier:
        """Load a saved prompted model. One that sends texts to an endpoint (``base_url``, or the
        backend's default URL) or reads an API key (``api_key_env``) loads only when the user
        confirmed both in ``trust`` (``--allow-endpoint``, ``--allow-key-env``): a shared model
        directory must not pick where texts and secrets go."""
        directory = Path(directory)
        info = read_model_info(directory)
        try:
            params = PromptedParams.model_validate(info["params"])
        except Exception as exc:
            raise ConfigError(f"{directory}: bad prompted-model parameters ({exc})") from None
        check_endpoint(params, trust, str(directory / MODEL_INFO_FILE))
        # A shared model directory does not choose where a file is written: the loaded model
        # caches its answers in the default response cache.
        params = params.model_copy(update={"cache_path": None})
        if params.prompt not in BUILTIN_PROMPTS:
            # Nor which file is read into its prompts (and sent to the endpoint): only its own copy.
            template = confine(
                directory / params.prompt,
                [("the model directory", directory)],
                source=directory / MODEL_INFO_FILE,
                field="params.prompt",
                value=params.prompt,
                opt_in="a model directory reads its prompt template only from inside itself; copy it there",
            )
            params = params.model_copy(update={"prompt": str(template)})
        options = params.backend_option_values()
        for reference in (params.model, options.get("adapter")):
            check_referenced_weights(reference, trust)
        obj = cls(params, seed=info.get("seed", 0))
        obj.schema = LabelSchema.from_dict(info["schema"])
        obj.task = info.get("task", "")
        obj.task_type = check_task_type(obj, info.get("task_type", "classification"))
        pool_path = directory / "fewshot_pool.jsonl"
        if pool_path.is_file():
            with pool_path.open(encoding="utf-8") as handle:
                obj.pool_ = [Example.from_dict(json.loads(line)) for line in handle if line.strip()]
        return obj
