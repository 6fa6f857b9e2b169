"""Instruction sets in the LlamaLens style: per dataset, N paraphrased instructions; one sampled
per training example; chat-format records (system / user / assistant) in JSONL.

The chat-record shape (``socialens.llm.prompts.chat_messages``, which owns it) is the contract
between instruction building, LoRA training (``tuning/lora.py``) and evaluation of a tuned model:
training and evaluation render the same messages, so a tuned model is asked exactly what it was
taught.

An instruction set is a YAML file (``configs/instructions/<dataset>.yaml``): the dataset's metadata
(name, language, a short task key, the task definition, the labels) and ``instructions: [...]``,
written by hand or generated once by an LLM backend (:func:`generate_instruction_set`) and then
reviewed. Every instruction must name every label exactly as written, because the tuned model
learns to answer with the words its instruction offered. Mixing several datasets into one training
file, with caps and the four training orders compared in LlamaLens, is :mod:`socialens.tuning.mix`.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from socialens.core.errors import ConfigError
from socialens.core.types import Example
from socialens.core.yaml_io import load_model_file
from socialens.llm.prompts import ANSWER_PREFIX, DEFAULT_SYSTEM, chat_messages

# The chat-record format is llm.prompts': re-exported here, where the records are built.
__all__ = [
    "ANSWER_PREFIX",
    "DEFAULT_SYSTEM",
    "GenerationReport",
    "InstructionSet",
    "build_records",
    "chat_messages",
    "clean_generated",
    "generate_instruction_set",
    "generation_prompt",
    "load_instruction_set",
    "missing_labels",
    "sample_instruction_indices",
    "write_instruction_set",
]

# ---------------------------------------------------------------------------- the label check


def _label_pattern(label: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w){re.escape(label)}(?!\w)", re.IGNORECASE)


def missing_labels(instruction: str, labels: Sequence[str]) -> list[str]:
    """The labels that ``instruction`` does not name as whole words (case-insensitive).

    Longer labels are matched first and blanked out, so "partially false" does not also count as
    naming "false", nor "not-hate" as naming "hate"."""
    text = instruction
    missing = []
    for label in sorted(labels, key=len, reverse=True):
        pattern = _label_pattern(label)
        if pattern.search(text) is None:
            missing.append(label)
        else:
            text = pattern.sub(" ", text)
    return [label for label in labels if label in missing]


# ---------------------------------------------------------------------------- instruction files


class InstructionSet(BaseModel):
    """One dataset's instructions plus the metadata they were written (or generated) from."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(description="the dataset YAML's name")
    language: str = "en"
    task: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_]*$",
        description="short task key (e.g. hate_speech); datasets sharing it form one block in by_task order",
    )
    task_definition: str = ""
    labels: list[str] = Field(min_length=1)
    source: str = "written by hand"
    instructions: list[str] = Field(min_length=1)

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_as_text(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [str(item) if isinstance(item, bool | int) else item for item in value]
        return value

    def check(self, source: str) -> InstructionSet:
        """Raise a one-line ConfigError for the first instruction that fails to name every label."""
        for index, instruction in enumerate(self.instructions):
            missing = missing_labels(instruction, self.labels)
            if missing:
                names = ", ".join(repr(m) for m in missing)
                raise ConfigError(
                    f"{source}: field 'instructions[{index}]': does not name label(s) {names}; "
                    f"every instruction must name every label exactly as written ({', '.join(self.labels)})"
                )
        return self


def load_instruction_set(path: str | Path) -> InstructionSet:
    instruction_set = load_model_file(
        path, InstructionSet, "instruction", "dataset, task, labels and instructions"
    )
    return instruction_set.check(str(path))


def write_instruction_set(instruction_set: InstructionSet, path: str | Path, header: str = "") -> Path:
    """Write the set as YAML for review; ``header`` becomes leading comment lines."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    body = yaml.safe_dump(
        instruction_set.model_dump(), sort_keys=False, allow_unicode=True, width=100, default_flow_style=False
    )
    path.write_text(comment + body, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- generation by an LLM

GENERATION_SYSTEM = (
    "You write instructions for annotators who label news and social-media text. "
    "Reply with the instruction only."
)


def generation_prompt(
    dataset: str, language: str, task_definition: str, labels: Sequence[str], descriptions: Sequence[str]
) -> list[dict[str, str]]:
    """The request for one paraphrased instruction, built from the dataset's metadata only."""
    label_lines = "\n".join(
        f"- {label}: {desc}" if desc else f"- {label}"
        for label, desc in zip(labels, descriptions, strict=True)
    )
    quoted = ", ".join(f'"{label}"' for label in labels)
    user = (
        f"Dataset: {dataset}\nLanguage of the texts: {language}\nTask: {task_definition}\n"
        f"Labels:\n{label_lines}\n\n"
        "Write one instruction, in English and in your own words, that asks a model to read a text from "
        "this dataset and answer with exactly one label. The instruction must name every label exactly "
        f"as written: {quoted}."
    )
    return [{"role": "system", "content": GENERATION_SYSTEM}, {"role": "user", "content": user}]


_LEADING_TAG = re.compile(r"^\s*(?:\d+[.)]\s*|[-*]\s*|instruction\s*\d*\s*:\s*)+", re.IGNORECASE)


def clean_generated(text: str) -> str:
    """Strip list markers, an "Instruction:" tag and wrapping quotes; collapse whitespace."""
    text = _LEADING_TAG.sub("", text.strip())
    text = text.strip().strip('"“”').strip()
    return re.sub(r"\s+", " ", text)


@dataclass
class GenerationReport:
    requested: int
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count

    def to_dict(self) -> dict[str, Any]:
        return {"requested": self.requested, "kept": self.kept, "dropped": dict(self.dropped)}


def generate_instruction_set(
    backend: Any,
    *,
    dataset: str,
    language: str,
    task: str,
    task_definition: str,
    labels: Sequence[str],
    descriptions: Sequence[str] | None = None,
    n: int = 20,
    max_tokens: int = 120,
    temperature: float = 0.8,
    seed: int = 0,
    on_step: Callable[[], None] | None = None,
) -> tuple[InstructionSet, GenerationReport]:
    """Ask ``backend`` (any :class:`socialens.llm.base.LLMBackend`) for ``n`` instructions, one call
    per instruction with its own sampling seed, and keep those that name every label.

    Empty or failed answers, duplicates and instructions missing a label are dropped and counted;
    a ConfigError says so when none survive (write the instructions by hand, or use a bigger model)."""
    from socialens.llm.base import GenerationParams

    labels = [str(label) for label in labels]
    prompt = generation_prompt(dataset, language, task_definition, labels, descriptions or [""] * len(labels))
    report = GenerationReport(requested=n)
    kept: list[str] = []
    seen: set[str] = set()

    def drop(reason: str) -> None:
        report.dropped[reason] = report.dropped.get(reason, 0) + 1

    for i in range(n):
        params = GenerationParams(max_tokens=max_tokens, temperature=temperature, seed=seed + i)
        completion = backend.generate([prompt], params)[0]
        if on_step is not None:
            on_step()
        text = clean_generated(completion.text or "")
        if completion.error or not text:
            drop("empty or failed")
        elif missing_labels(text, labels):
            drop("does not name every label")
        elif text.casefold() in seen:
            drop("duplicate")
        else:
            seen.add(text.casefold())
            kept.append(text)
    report.kept = len(kept)
    if not kept:
        summary = ", ".join(f"{count} {reason}" for reason, count in sorted(report.dropped.items()))
        raise ConfigError(
            f"dataset '{dataset}': none of the {n} generated instructions passed the check ({summary}); "
            f"every instruction must name every label ({', '.join(labels)}). Write them by hand or use a "
            "bigger model"
        )
    model = getattr(backend, "model_id", "?")
    instruction_set = InstructionSet(
        dataset=dataset,
        language=language,
        task=task,
        task_definition=task_definition,
        labels=labels,
        source=f"generated by {getattr(backend, 'name', '?')}:{model} (seed {seed}); review before use",
        instructions=kept,
    )
    return instruction_set, report


# ---------------------------------------------------------------------------- records


def _stream_seed(seed: int, *parts: str) -> list[int]:
    """A seed sequence for one named random stream: adding a dataset never changes another's draws."""
    return [seed, *(zlib.crc32(part.encode("utf-8")) for part in parts)]


def sample_instruction_indices(n_examples: int, n_instructions: int, seed: int, *stream: str) -> list[int]:
    rng = np.random.default_rng(_stream_seed(seed, *stream))
    return [int(i) for i in rng.integers(0, n_instructions, size=n_examples)]


def build_records(
    examples: Sequence[Example],
    instruction_set: InstructionSet,
    *,
    language: str,
    seed: int,
    split: str = "train",
    with_answer: bool = True,
    system: str | None = DEFAULT_SYSTEM,
    max_text_chars: int | None = None,
) -> list[dict[str, Any]]:
    """One chat record per example, each with one instruction sampled (seeded) from the set.

    ``with_answer=False`` leaves out the assistant turn (evaluation prompts); ``label`` still holds
    the gold label. ``max_text_chars`` cuts long texts (news articles) so that a training length
    limit never cuts the instruction instead."""
    dataset = instruction_set.dataset
    picks = sample_instruction_indices(len(examples), len(instruction_set.instructions), seed, dataset, split)
    records = []
    for example, index in zip(examples, picks, strict=True):
        records.append(
            {
                "id": f"{dataset}/{example.id}",
                "dataset": dataset,
                "language": language,
                "task": instruction_set.task,
                "label": example.label,
                "instruction_index": index,
                "messages": chat_messages(
                    instruction_set.instructions[index],
                    example.text if max_text_chars is None else example.text[:max_text_chars],
                    example.label if with_answer else None,
                    system=system,
                ),
            }
        )
    return records
