"""Process-level settings: torch threads (the encoder family, the hf backend) and the cache folder."""

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
