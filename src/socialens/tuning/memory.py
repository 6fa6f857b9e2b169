"""What keeps LoRA instruction tuning small in memory, and what measures it.

The loss covers only the answer tokens, so logits are computed only where an answer token is
predicted: the model gets ``logits_to_keep`` (a boolean mask of those positions where the
installed transformers flattens on one, else the positions any row of the batch needs) and
returns logits for those positions alone. Over SmolLM2's 49,152-token vocabulary the full
(batch, length, vocab) logits of a batch of 8 x 256 are 384 MiB in fp32, held several times
over by the loss and its backward; the answer positions are a few dozen rows of it. The loss is
the same cross-entropy over the same tokens, normalised as the transformers loss is.
"""

from __future__ import annotations

import inspect
import threading
from typing import Any

IGNORE_INDEX = -100


def answer_positions(labels):
    """Where a logit is needed: position t predicts token t + 1, so t is kept when token t + 1
    is an answer token (its label is not ``IGNORE_INDEX``)."""
    import torch

    following = labels[:, 1:] != IGNORE_INDEX
    return torch.nn.functional.pad(following, (0, 1), value=False)


def keeps_flat_mask() -> bool:
    """Whether the installed transformers takes a boolean (batch, length) ``logits_to_keep`` and
    returns (positions kept, vocab) logits; older versions take a 1D tensor of positions only."""
    import torch

    try:
        from transformers.modeling_utils import slice_logits_to_keep
    except ImportError:
        return False
    try:
        kept = slice_logits_to_keep(torch.zeros(1, 3, 1), torch.tensor([[True, False, True]]))
    except Exception:
        return False
    return tuple(kept.shape) == (2, 1)


def accepts_logits_to_keep(model) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def logits_to_keep(labels, flat_mask: bool):
    """The ``logits_to_keep`` argument for a batch: the mask itself, or the columns any row keeps."""
    keep = answer_positions(labels)
    return keep if flat_mask else keep.any(dim=0).nonzero().squeeze(1)


def answer_cross_entropy(logits, labels, num_items_in_batch=None):
    """Cross-entropy of the answer tokens from logits computed at ``answer_positions`` only
    (flat: (n, vocab)), at the columns any row keeps ((batch, columns, vocab)), or everywhere
    ((batch, length, vocab)); summed and divided by ``num_items_in_batch`` when the Trainer gives
    it (the answer tokens of the whole accumulated batch), else the mean."""
    import torch

    keep = answer_positions(labels)
    targets = labels[:, 1:][labels[:, 1:] != IGNORE_INDEX]
    if logits.dim() == 3:
        columns = (
            torch.arange(labels.shape[1], device=labels.device)
            if logits.shape[1] == labels.shape[1]
            else keep.any(dim=0).nonzero().squeeze(1)
        )
        logits = logits[keep[:, columns]]
    loss = torch.nn.functional.cross_entropy(
        logits.float(), targets.to(logits.device), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    count = targets.numel() if num_items_in_batch is None else num_items_in_batch
    if torch.is_tensor(count):
        count = count.to(loss.device)
    return loss / count


class AnswerLogitsCollator:
    """Pads a batch as ``DataCollatorForSeq2Seq`` does (labels with -100) and adds the
    ``logits_to_keep`` that limits the logits to the answer positions, when the model takes it."""

    def __init__(self, tokenizer, *, keep_logits: bool = True):
        from transformers import DataCollatorForSeq2Seq

        self.pad = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE_INDEX)
        self.keep_logits = keep_logits
        self.flat_mask = keeps_flat_mask() if keep_logits else False

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.pad([dict(row) for row in rows])
        if self.keep_logits:
            batch["logits_to_keep"] = logits_to_keep(batch["labels"], self.flat_mask)
        return batch


class PeakMemory:
    """Peak resident memory of this process while the block runs (sampled, plus ru_maxrss when
    the block raised it), and peak CUDA memory when a GPU is used."""

    def __init__(self, interval_s: float = 0.2):
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()

    @staticmethod
    def _rss() -> int:
        try:
            import psutil

            return psutil.Process().memory_info().rss
        except ImportError:
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak_bytes = max(self.peak_bytes, self._rss())

    def __enter__(self) -> PeakMemory:
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self.peak_bytes = self._rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._rss())

    @property
    def peak_gpu_mb(self) -> float | None:
        import torch

        return round(torch.cuda.max_memory_allocated() / 2**20, 1) if torch.cuda.is_available() else None


__all__ = [
    "IGNORE_INDEX",
    "AnswerLogitsCollator",
    "PeakMemory",
    "accepts_logits_to_keep",
    "answer_cross_entropy",
    "answer_positions",
    "keeps_flat_mask",
    "logits_to_keep",
]
