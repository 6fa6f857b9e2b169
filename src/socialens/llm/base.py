"""The LLM backend protocol shared by llamacpp, hf and openai, and the values it passes around.

A prompt is a list of chat messages ({"role": "system"|"user"|"assistant", "content": str}).
Each backend renders it to the exact text the model sees (``render``): with the model's chat
template when it has one, as plain text otherwise. That rendered text, not the messages, is what
the response cache keys on, so a changed template never hits a stale entry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from socialens.core.registry import BACKENDS  # noqa: F401  (the backend registry, re-exported here)

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class GenerationParams:
    """Decoding parameters. ``choices`` set means constrained decoding: the output must be exactly
    one of these strings (a GBNF grammar in llama.cpp, guided choice / JSON schema on
    OpenAI-compatible servers, a prefix-constrained logits processor in hf).

    ``json_schema`` (JSON text of a JSON Schema) asks for an answer that is a JSON document
    following it: a grammar built from the schema in llama.cpp, a JSON-schema response format (or
    the server's own form) on an OpenAI-compatible server that takes one, free generation where the
    backend cannot constrain (hf; a server that takes no form), the parser then judging the text.
    It cannot be combined with ``choices``."""

    max_tokens: int = 20
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    choices: tuple[str, ...] | None = None
    json_schema: str | None = None

    def __post_init__(self) -> None:
        if self.choices and self.json_schema is not None:
            raise ValueError("GenerationParams: choices and json_schema cannot both be set")

    def cache_key(self) -> dict[str, Any]:
        key = asdict(self)
        if key["json_schema"] is None:  # the key every entry had before json_schema existed
            del key["json_schema"]
        return key


@dataclass
class Completion:
    """One generated answer. ``error`` is set (and ``text`` empty) when the call failed for good."""

    text: str
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    finish_reason: str | None = None
    error: str | None = None
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Completion:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class Scores:
    """Log-probability of each continuation given the prompt (multi-token continuations summed)."""

    logprobs: list[float]
    tokens_in: int = 0
    continuation_tokens: list[int] = field(default_factory=list)
    latency_s: float = 0.0
    error: str | None = None
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scores:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@runtime_checkable
class LLMBackend(Protocol):
    name: ClassVar[str]  # registry name: llamacpp | hf | openai
    model_id: str  # what identifies the model's weights in the cache (path, hub id or served name)

    def render(self, messages: Messages) -> str:
        """The exact prompt text the model will see for these messages."""

    def generate(self, prompts: list[Messages], params: GenerationParams) -> list[Completion]:
        """One Completion per prompt, in order; a failed call yields a Completion with ``error``."""

    def score(self, prompt: Messages, continuations: list[str]) -> Scores:
        """Summed log-probability of each continuation as the start of the assistant's answer."""

    def score_batch(self, prompts: list[Messages], continuations: list[str]) -> list[Scores]:
        """One Scores per prompt, in order, each as score(prompt, continuations) would give."""

    def close(self) -> None: ...


def score_each(backend: LLMBackend, prompts: list[Messages], continuations: list[str]) -> list[Scores]:
    """``score_batch`` for a backend that has no batched path: one ``score`` call per prompt."""
    return [backend.score(prompt, continuations) for prompt in prompts]


ANSWER_CUE = "Answer:"
ANSWER_PREFIX_PLAIN = " "  # what separates a plain prompt's final "Answer:" from the answer


def render_plain(messages: Messages) -> str:
    """Plain-text prompt for a model without a chat template (as the llamacpp backend renders it):
    the system and user texts, earlier assistant turns as ``Answer: ...``, and a final ``Answer:``,
    separated by blank lines. The answer then follows after one space (``ANSWER_PREFIX_PLAIN``)."""
    parts: list[str] = []
    for message in messages:
        role, content = message.get("role", "user"), message.get("content", "").strip()
        if role == "assistant":
            parts.append(f"{ANSWER_CUE} {content}")
        elif content:
            parts.append(content)
    parts.append(ANSWER_CUE)
    return "\n\n".join(parts)


def get_backend(name: str) -> type:
    """The backend class registered under ``name`` (``socialens.core.registry.BACKENDS``). Backend
    modules import their heavy dependency lazily (in the constructor), so importing them always
    works and a missing package is reported when the backend is used, naming the extra."""
    return BACKENDS.get(name)
