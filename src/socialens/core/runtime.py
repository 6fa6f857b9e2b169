"""Process-level settings: torch threads (the encoder family, the hf backend), transformers' logging
(quiet_transformers: the encoder, llm_head and LoRA tuning) and the cache folder."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def cache_dir() -> Path:
    """Where socialens keeps what it can rebuild: LLM responses, native probe results, converted models."""
    return Path(os.environ.get("SOCIALENS_CACHE_DIR") or Path.home() / ".cache" / "socialens")


@contextlib.contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Run the block with torch limited to ``num_threads`` (None or 0: leave torch's setting),
    restoring the previous setting afterwards. On a small shared CPU fewer threads than cores
    is often faster, because torch's threads otherwise wait on each other."""
    import torch

    before = torch.get_num_threads()
    if not num_threads or num_threads == before:
        yield
        return
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def quiet_transformers(verbose: bool) -> Iterator[None]:
    """Run the block with transformers' logging at ERROR and its progress bars off (unless
    ``verbose``), restoring both afterwards."""
    from transformers.utils import logging as hf_logging

    if verbose:
        yield
        return
    before = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)
        if bars:
            hf_logging.enable_progress_bar()
