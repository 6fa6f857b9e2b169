"""YAML I/O for every config file of socialens: a safe loader with YAML 1.2 booleans, and
validation into pydantic models with errors that name the file, the field, the value and what was
expected (in the spirit of spaCy's config errors)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from socialens.core.errors import ConfigError

M = TypeVar("M", bound=BaseModel)

_BOOL_TAG = "tag:yaml.org,2002:bool"


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans: only ``true`` / ``false`` (also ``True``,
    ``TRUE``, ``False``, ``FALSE``) are booleans. YAML 1.1's other boolean words (``yes``, ``no``,
    ``on``, ``off``, ``y``, ``n`` in any case) stay strings, so a label written ``OFF`` or ``no`` is
    the label it looks like. Numbers and ``null`` are resolved as before; where a string is
    expected (label names, aliases, column names) such a value is an error naming the field."""


ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ConfigLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml_text(text: str) -> Any:
    """Parse YAML text with :class:`ConfigLoader` (every config file of socialens is read so)."""
    return yaml.load(text, Loader=ConfigLoader)  # noqa: S506 - ConfigLoader is a SafeLoader


def not_a_string_hint(value: Any) -> str:
    """The message for a number, boolean or null where a YAML field needs a string."""
    if isinstance(value, bool):
        kind = f"the boolean {value}"
    elif value is None:
        kind = "null"
    elif isinstance(value, int | float):
        kind = f"the number {value!r}"
    else:
        kind = f"a {type(value).__name__}"
    return f"expected a string, got {kind}; put the value in quotes in the YAML"


def plain_strings_are_configs(value: Any) -> Any:
    """A ``datasets:`` list may name a dataset config by its path alone: ``- configs/x.yaml``
    stands for ``- {config: configs/x.yaml}``."""
    if isinstance(value, list):
        return [{"config": item} if isinstance(item, str) else item for item in value]
    return value


def format_validation_error(error: ValidationError, source: str, prefix: str = "") -> str:
    """One line per problem: ``file: field 'a.b[2].c' = 'value': expected ...``."""
    lines = []
    for item in error.errors():
        loc = prefix
        for part in item["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        value = item.get("input")
        shown = "" if isinstance(value, dict) or value is None else f" = {value!r}"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        elif item["type"] == "missing":
            message = "required field is missing"
        elif item["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        elif item["type"] == "string_type":
            message = not_a_string_hint(value)
        lines.append(f"{source}: field '{loc or '<root>'}'{shown}: {message}")
    return "\n".join(lines)


def read_yaml(path: Path) -> Any:
    """Parse a YAML file with :class:`ConfigLoader`; a syntax error or non-UTF-8 file is a one-line
    ConfigError with the line."""
    try:
        return load_yaml_text(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{line}: not valid YAML ({problem})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; expected a YAML file") from None


def load_model_file(path: str | Path, model: type[M], kind: str, top_level: str) -> M:
    """A YAML file validated into ``model``; every problem is a one-line ConfigError naming the file
    (``kind`` says what file was expected, ``top_level`` which keys it holds)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {kind} file not found")
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with {top_level} at the top level")
    try:
        return model(**raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from None
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
