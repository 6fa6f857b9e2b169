"""Chat prompts for classifying one text with an LLM, from Jinja2 templates.

Two built-in styles, as in Yu et al. (2023), "Open, Closed, or Small Language Models for Text
Classification?":

- ``serial``: the model answers with the label alone (``belief``);
- ``json``: the model answers with a JSON object (``{"label": "belief"}``).

A prompt is ``[system?, (user, assistant) per few-shot example..., user]``: each shot is rendered
with the same user template as the query and answered in the style's exact answer format, the
standard chat way. An empty ``system_prompt`` ("") leaves the system message out (for models
without a system role).

Label wording: ``universal`` describes each label by its schema description; ``topic`` by the
wording of the example's topic (``schema.wordings[example.metadata["topic"]][label]``), falling
back to the universal description for a label the topic has no wording for, or for an example
whose topic has none. Any other value names a fixed entry of ``schema.wordings`` used for every
example. Whatever the wording, the answer set is the canonical label names (the wording only
describes them), so constrained decoding, scoring and ``parsing.parse_label`` are unchanged.

Instruction style (``instruction``): the LlamaLens chat record (below), the exact prompt an
instruction-tuned model was trained on: ``chat_messages(instruction, text)`` with the answer
``"Label: <label>"``. ``instruction`` defaults to :func:`default_instruction` (built
from the label schema, naming every label); the system message defaults to the tuning one. The
same prompt then serves an untuned model and a LoRA-tuned one, so they are compared on equal terms.

Custom templates: ``user_template`` (or ``style`` given as a path to a ``.jinja`` file, which
then answers in the ``serial`` format) replaces the built-in user template; ``system_prompt``
given as a ``Path`` is a template file too (a plain string is used verbatim). A template is a
file people share, so it renders in Jinja's immutable sandbox
(``jinja2.sandbox.ImmutableSandboxedEnvironment``): it can read the variables below and use Jinja's
filters, tests and loops, but not reach Python internals (``__class__``, ``__globals__``, ...),
call unsafe methods or change a list or dict. Rendering uses ``StrictUndefined``; these variables
are available:

=====================  ================================================================
``text``               the text to classify
``id``                 the example id
``metadata``           the example's metadata dict
``topic``              ``metadata.get("topic")`` (None when absent)
``labels``             canonical label names, in schema order (the answer set)
``label_descriptions`` {label: universal description ("" when none)}
``label_wordings``     {label: the description used for this example (topic wording or
                       universal description)}
``wording``            the wording used for this example: "universal", "topic" or a name
``task``               the dataset's task description, or None
``style``              "serial" or "json" (the answer format)
``answers``            {label: the exact expected answer string in this style}
``examples``           few-shot examples as dicts {text, label, answer, metadata}; a user
                       template that uses ``examples`` renders the shots inline itself, and
                       they are then NOT added as chat turns
``schema_name``        the label schema's name
=====================  ================================================================

A missing template file, a syntax error, an unknown or undefined variable or a sandbox violation
raises a one-line :class:`socialens.errors.ConfigError` naming the template file and line.

The chat-record format (LlamaLens) is owned here, and only here: instruction building and mixing
(``tuning/instructions.py``, ``tuning/mix.py``), LoRA training (``tuning/lora.py``) and the
``instruct`` family build records with :func:`chat_messages` and read them back with
:func:`split_record` / :func:`split_user_content` / :func:`text_start`; nothing else spells the
layout out. A record's messages are ``[system?, user, assistant?]``: the user message is
``"<instruction>\n\nText: <example text>"``, the assistant message ``"Label: <label>"``.
"""

from __future__ import annotations

import json
import traceback
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from socialens.core.errors import ConfigError
from socialens.core.types import Example, LabelSchema
from socialens.llm.base import Messages

STYLES = ("serial", "json", "instruction")
TEMPLATE_VARIABLES = (
    "text",
    "id",
    "metadata",
    "topic",
    "labels",
    "label_descriptions",
    "label_wordings",
    "wording",
    "task",
    "style",
    "answers",
    "examples",
    "schema_name",
)

# The sandbox: user templates come from shared experiment files and model directories.
_ENV = ImmutableSandboxedEnvironment(
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=False,
    autoescape=False,
)


class _Template:
    """A compiled template and where it came from (for error messages)."""

    def __init__(self, source: str, origin: str):
        self.origin = origin
        try:
            ast = _ENV.parse(source)
            self.template = _ENV.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(f"{origin}:{exc.lineno}: prompt template syntax error: {exc.message}") from None
        self.variables = meta.find_undeclared_variables(ast)
        unknown = sorted(self.variables - set(TEMPLATE_VARIABLES))
        if unknown:
            lines = [node.lineno for node in ast.find_all(nodes.Name) if node.name in unknown]
            where = f"{origin}:{min(lines)}" if lines else origin
            raise ConfigError(
                f"{where}: unknown prompt template variable(s) {', '.join(unknown)}; "
                f"available: {', '.join(TEMPLATE_VARIABLES)}"
            )

    @classmethod
    def from_file(cls, path: str | Path, what: str) -> _Template:
        path = Path(path).expanduser()
        try:
            source = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path}: {what} template file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read {what} template: {exc}") from None
        return cls(source, str(path))

    @classmethod
    def builtin(cls, name: str) -> _Template:
        source = resources.files("socialens.llm").joinpath("templates", name).read_text(encoding="utf-8")
        return cls(source, f"socialens/llm/templates/{name}")

    def render(self, variables: dict[str, Any]) -> str:
        try:
            return self.template.render(**variables).strip()
        except jinja2.exceptions.SecurityError as exc:
            raise self._error(exc, "not allowed in the template sandbox", exc) from None
        except jinja2.UndefinedError as exc:
            raise self._error(exc, "undefined in prompt template", exc.message) from None
        except jinja2.TemplateError as exc:
            raise self._error(exc, "prompt template error", exc) from None
        except Exception as exc:  # noqa: BLE001 - e.g. a filter given a wrong type: the template's fault
            raise self._error(exc, "prompt template error", f"{type(exc).__name__}: {exc}") from None

    def _error(self, exc: Exception, what: str, detail: object) -> ConfigError:
        """One line: ``file:line: what: detail`` (the line where rendering failed, when known)."""
        line = _template_line(exc)
        where = f"{self.origin}:{line}" if line else self.origin
        return ConfigError(" ".join(f"{where}: {what}: {detail}".split()))


def _template_line(exc: BaseException) -> int | None:
    """The template line an error was raised at: Jinja rewrites a rendering traceback so that the
    template's own frames carry its line numbers (filename ``<template>`` for a compiled string)."""
    line = getattr(exc, "lineno", None)
    if line:
        return line
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == "<template>":
            line = frame.lineno
    return line


# --------------------------------------------------------------------------- the chat record

DEFAULT_SYSTEM = (
    "You are an expert annotator of news and social-media text. "
    "Follow the instruction and answer with the label only."
)
ANSWER_PREFIX = "Label: "
TEXT_MARKER = "\n\nText: "  # between a record's instruction and its example text


def record_user_content(instruction: str, text: str) -> str:
    """The user message of a chat record: the instruction, a blank line, ``Text: <text>``."""
    return f"{instruction.strip()}{TEXT_MARKER}{text}"


def chat_messages(
    instruction: str, text: str, label: str | None = None, system: str | None = DEFAULT_SYSTEM
) -> Messages:
    """The messages for one example; the assistant turn ("Label: <label>") only when ``label`` is given.

    A JSONL training record is ``{"id", "dataset", "language", "task", "label",
    "instruction_index", "messages": chat_messages(...)}``, which TRL's SFTTrainer and
    LLaMA-Factory (sharegpt/openai format) read as they are."""
    messages: Messages = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": record_user_content(instruction, text)})
    if label is not None:
        messages.append({"role": "assistant", "content": f"{ANSWER_PREFIX}{label}"})
    return messages


def join_record(prompt: Messages, answer: str) -> Messages:
    """A training conversation: the prompt messages followed by the assistant's ``answer``
    (the inverse of :func:`split_record`)."""
    return [*prompt, {"role": "assistant", "content": answer}]


def split_record(messages: Messages) -> tuple[Messages, str]:
    """A training conversation split into the prompt (every message before the last) and the
    answer (the last message, which must be the assistant's): what a tuned model is asked and
    what it learns to say. A ValueError when the last message is not an assistant turn."""
    if not messages or messages[-1].get("role") != "assistant":
        raise ValueError("a chat record's last message must be the assistant's answer")
    return list(messages[:-1]), messages[-1]["content"]


def text_start(content: str) -> int:
    """Where the example text begins in a user message of a chat record (just after
    ``"\n\nText: "``); 0 for a message in another layout, which is then all text."""
    at = content.find(TEXT_MARKER)
    return 0 if at < 0 else at + len(TEXT_MARKER)


def split_user_content(content: str) -> tuple[str, str]:
    """``(instruction, example text)`` of a chat record's user message; ``("", content)`` for a
    message in another layout."""
    at = content.find(TEXT_MARKER)
    if at < 0:
        return "", content
    return content[:at], content[at + len(TEXT_MARKER) :]


def record_instruction(messages: Messages) -> str:
    """The instruction of a chat record (of its first user message; "" when none)."""
    user = next((m["content"] for m in messages if m.get("role") == "user"), "")
    return split_user_content(user)[0]


# --------------------------------------------------------------------------- label prompts


def default_instruction(schema: LabelSchema, task: str | None = None) -> str:
    """An instruction naming every label (with its description when it has one), for datasets
    that bring no instruction set of their own."""
    lines = [task.strip()] if task else []
    lines.append("Classify the text into exactly one of these labels:")
    for label in schema.labels:
        lines.append(f"- {label.name}: {label.description}" if label.description else f"- {label.name}")
    lines.append(f"Answer with one of: {', '.join(schema.names)}.")
    return "\n".join(lines)


def _is_template_path(value: Any) -> bool:
    return isinstance(value, Path) or (
        isinstance(value, str) and value.endswith((".jinja", ".j2", ".jinja2"))
    )


class PromptBuilder:
    """Builds the chat messages for one example (and its few-shot examples) in one style.

    ``PromptBuilder(schema, style="serial"|"json"|path, task=None, system_prompt=None,
    wording="universal"|"topic"|<wordings key>, user_template=None)``
    """

    def __init__(
        self,
        schema: LabelSchema,
        style: str | Path = "serial",
        *,
        task: str | None = None,
        system_prompt: str | Path | None = None,
        wording: str = "universal",
        user_template: str | Path | None = None,
        instruction: str | None = None,
    ):
        if _is_template_path(style):
            if user_template is not None:
                raise ConfigError(f"prompt style '{style}': give either a template style or user_template")
            user_template, style = style, "serial"
        style = str(style)
        if style not in STYLES:
            raise ConfigError(
                f"unknown prompt style '{style}': expected one of {', '.join(STYLES)} or a .jinja file"
            )
        if wording not in ("universal", "topic") and wording not in schema.wordings:
            known = ", ".join(["universal", "topic", *schema.wordings])
            raise ConfigError(f"unknown label wording '{wording}': expected one of {known}")
        self.schema = schema
        self.style = style
        self.task = task or None
        self.wording = wording
        self.instruction = instruction or default_instruction(schema, task or None)
        if style == "instruction":
            self._init_instruction_style(system_prompt, user_template)
            return
        self.user = (
            _Template.from_file(user_template, "user prompt")
            if user_template is not None
            else _Template.builtin(f"{style}_user.jinja")
        )
        if system_prompt is None:
            self.system: _Template | str | None = _Template.builtin(f"{style}_system.jinja")
        elif isinstance(system_prompt, Path):
            self.system = _Template.from_file(system_prompt, "system prompt")
        else:
            self.system = system_prompt or None  # "" -> no system message
        self.inline_shots = "examples" in self.user.variables

    def _init_instruction_style(self, system_prompt: str | Path | None, user_template) -> None:
        if user_template is not None or isinstance(system_prompt, Path):
            raise ConfigError("prompt style 'instruction' takes an instruction, not template files")
        self.user = None
        self.system = DEFAULT_SYSTEM if system_prompt is None else (system_prompt or None)
        self.inline_shots = False

    # -- answers

    def answer(self, label: str) -> str:
        """The exact assistant answer for ``label`` in this style ('belief' / '{"label": "belief"}')."""
        if label not in self.schema.names:
            raise ValueError(f"'{label}' is not a label of schema '{self.schema.name}': {self.schema.names}")
        if self.style == "json":
            return json.dumps({"label": label}, ensure_ascii=False)
        if self.style == "instruction":
            return ANSWER_PREFIX + label
        return label

    def choices(self) -> list[str]:
        """Every allowed answer, in schema order (for constrained decoding and scoring)."""
        return [self.answer(name) for name in self.schema.names]

    # -- rendering

    def label_wordings(self, example: Example) -> tuple[str, dict[str, str]]:
        """(wording used, {label: description}) for this example."""
        universal = {lab.name: lab.description for lab in self.schema.labels}
        if self.wording == "universal":
            return "universal", universal
        if self.wording == "topic":
            topic = (example.metadata or {}).get("topic")
            table = self.schema.wordings.get(str(topic)) if topic is not None else None
            used = "topic"
        else:
            table, used = self.schema.wordings.get(self.wording), self.wording
        if not table:
            return "universal", universal
        return used, {name: table.get(name) or universal[name] for name in self.schema.names}

    def variables(self, example: Example, shots: list[Example] = ()) -> dict[str, Any]:
        """The template variables for ``example`` (see the module docstring)."""
        used, wordings = self.label_wordings(example)
        metadata = dict(example.metadata or {})
        return {
            "text": example.text,
            "id": example.id,
            "metadata": metadata,
            "topic": metadata.get("topic"),
            "labels": list(self.schema.names),
            "label_descriptions": {lab.name: lab.description for lab in self.schema.labels},
            "label_wordings": wordings,
            "wording": used,
            "task": self.task,
            "style": self.style,
            "answers": {name: self.answer(name) for name in self.schema.names},
            "examples": [self._shot_dict(shot) for shot in shots],
            "schema_name": self.schema.name,
        }

    def _shot_dict(self, shot: Example) -> dict[str, Any]:
        return {
            "text": shot.text,
            "label": shot.label,
            "answer": self._shot_answer(shot),
            "metadata": shot.metadata,
        }

    def _shot_answer(self, shot: Example) -> str:
        label = self.schema.normalise(shot.label) if shot.label is not None else None
        if label is None:
            raise ValueError(f"few-shot example '{shot.id}' has no label of schema '{self.schema.name}'")
        return self.answer(label)

    def user_message(self, example: Example, shots: list[Example] = ()) -> str:
        if self.user is None:  # instruction style
            return record_user_content(self.instruction, example.text)
        return self.user.render(self.variables(example, shots))

    def messages(self, example: Example, shots: list[Example] = ()) -> Messages:
        """The chat messages that ask for ``example``'s label, after ``shots`` as earlier turns
        (or inline, when the user template uses ``examples``)."""
        shots = list(shots)
        messages: Messages = []
        if isinstance(self.system, _Template):
            messages.append({"role": "system", "content": self.system.render(self.variables(example))})
        elif self.system:
            messages.append({"role": "system", "content": self.system})
        if self.inline_shots:
            messages.append({"role": "user", "content": self.user_message(example, shots)})
            return messages
        for shot in shots:
            messages.append({"role": "user", "content": self.user_message(shot)})
            messages.append({"role": "assistant", "content": self._shot_answer(shot)})
        messages.append({"role": "user", "content": self.user_message(example)})
        return messages


def build_messages(
    schema: LabelSchema,
    example: Example,
    shots: list[Example] = (),
    *,
    style: str | Path = "serial",
    task: str | None = None,
    system_prompt: str | Path | None = None,
    wording: str = "universal",
    user_template: str | Path | None = None,
) -> Messages:
    """One-off convenience: ``PromptBuilder(...).messages(example, shots)``."""
    builder = PromptBuilder(
        schema, style, task=task, system_prompt=system_prompt, wording=wording, user_template=user_template
    )
    return builder.messages(example, shots)
