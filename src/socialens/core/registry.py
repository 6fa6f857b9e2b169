"""Lazy registries, in the style of lm-evaluation-harness: a name maps to ``"module:Class"`` and
the module is imported on first use. So a protocol module never imports its implementations, a
heavy dependency (torch, llama.cpp) loads only when its entry is used, and adding a model family,
an LLM backend, a task or a data format is one module plus one line here."""

from __future__ import annotations

import importlib
from collections.abc import Iterator

from socialens.core.errors import ConfigError


class Registry:
    """Names of one kind (``what``: "model family", "LLM backend", ...) mapped to
    ``"module:attribute"`` references, resolved and cached on first ``get``."""

    def __init__(self, what: str, entries: dict[str, str]):
        self.what = what
        self._entries = dict(entries)
        self._loaded: dict[str, object] = {}

    def register(self, name: str, reference: str) -> None:
        """Add (or replace) an entry: a plugin's own family, backend or task."""
        self._entries[name] = reference
        self._loaded.pop(name, None)

    def get(self, name: str):
        try:
            reference = self._entries[name]
        except (KeyError, TypeError):
            raise ConfigError(
                f"unknown {self.what} '{name}': expected one of {', '.join(sorted(self._entries))}"
            ) from None
        if name not in self._loaded:
            module, _, attribute = reference.partition(":")
            self._loaded[name] = getattr(importlib.import_module(module), attribute)
        return self._loaded[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, object]]:
        """Every entry, loaded (importing each module)."""
        for name in self.names():
            yield name, self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __getitem__(self, name: str):
        return self.get(name)

    def __len__(self) -> int:
        return len(self._entries)


FAMILIES = Registry(
    "model family",
    {
        "tfidf": "socialens.classifiers.tfidf:TfidfClassifier",
        "encoder": "socialens.classifiers.encoder:EncoderClassifier",
        "prompted": "socialens.classifiers.prompted:PromptedClassifier",
        "instruct": "socialens.classifiers.instruct:InstructClassifier",
        "llm_head": "socialens.classifiers.llm_head:LLMHeadClassifier",
    },
)

BACKENDS = Registry(
    "LLM backend",
    {
        "llamacpp": "socialens.llm.llamacpp:LlamaCppBackend",
        "hf": "socialens.llm.hf:HFBackend",
        "openai": "socialens.llm.openai:OpenAIBackend",
    },
)

TASKS = Registry(
    "task",
    {
        "classification": "socialens.tasks.classification:ClassificationTask",
        "multilabel": "socialens.tasks.multilabel:MultilabelTask",
        "token_classification": "socialens.tasks.token_classification:TokenClassificationTask",
        "summarisation": "socialens.tasks.summarisation:SummarisationTask",
    },
)
