"""Where a shared config may point (docs/security.md, "Configs and paths").

- Names that become folder names (experiment, dataset, model-entry and instruction-mix names) are
  safe names: letters, digits, ``.``, ``_`` and ``-``, not starting with ``.``; so a name can
  never climb out of the folder it is written under.
- A path a config names must resolve (symlinks followed) inside one of its places: for a dataset
  YAML the data root or the YAML's own folder, for an experiment also its own folder and, for the
  files it reads and writes, the current folder. A path given on the command line is the user's
  own say and is not checked (``--data-root``, ``--output-dir``, a data file argument).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from socialens.core.errors import ConfigError

_SAFE_NAME = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]*")
SAFE_NAME_RULE = "letters, digits, '.', '_' and '-', not starting with '.'"


def is_safe_name(value: object) -> bool:
    return isinstance(value, str) and _SAFE_NAME.fullmatch(value) is not None


def safe_name(value: str) -> str:
    """A pydantic validator body: ``value`` unchanged, or ValueError saying what a safe name is."""
    if not is_safe_name(value):
        raise ValueError(f"not a safe name (it names a folder); expected {SAFE_NAME_RULE}")
    return value


def resolved(path: str | Path) -> Path:
    """``path`` with ``~`` expanded, made absolute and every symlink followed."""
    return Path(path).expanduser().resolve()


def is_inside(path: str | Path, root: str | Path) -> bool:
    """Whether ``path`` resolves to ``root`` or somewhere under it (symlinks followed in both)."""
    return resolved(path).is_relative_to(resolved(root))


def confine(
    path: str | Path,
    places: Iterable[tuple[str, str | Path | None]],
    *,
    source: str | Path,
    field: str,
    value: object,
    opt_in: str,
) -> Path:
    """The resolved ``path`` when it lies inside one of ``places`` (``(description, folder)``
    pairs; a ``None`` folder is skipped); else a one-line ConfigError naming the config file,
    the field, its value, where it resolves to and how to opt in."""
    target = resolved(path)
    folders = [(what, resolved(folder)) for what, folder in places if folder is not None]
    if any(target.is_relative_to(folder) for _, folder in folders):
        return target
    where = " or ".join(f"{what} ({str(folder)!r})" for what, folder in folders) or "its place"
    raise ConfigError(
        f"{source}: field '{field}' = {str(value)!r} resolves to {str(target)!r}, outside {where}; "
        f"refused: {opt_in}"
    )
