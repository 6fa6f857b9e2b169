"""Process-level settings shared by the torch-based parts (the encoder family, the hf backend)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


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
