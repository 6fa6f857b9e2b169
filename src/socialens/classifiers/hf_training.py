"""The Hugging Face training and batching toolkit the encoder and llm_head families share.

- ``make_trainer_class``: a transformers Trainer whose loss can be a class-weighted cross-entropy
  (labels of -100, padding and non-first sub-tokens, are ignored as in transformers' own loss);
- ``progress_callback``: optimizer steps reported to a socialens ProgressHook;
- ``balanced_class_weights`` and ``macro_f1``;
- ``length_sorted_outputs`` / ``length_sorted_scores``: prediction over length-sorted batches,
  each padded only to its longest member, in input order again afterwards.

transformers' logging switch (``quiet_transformers``) lives in ``socialens.core.runtime``: LoRA
tuning, a layer below the classifiers, uses it as well.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from socialens.core.progress import ProgressHook


def balanced_class_weights(label_ids: list[int], num_labels: int) -> list[float]:
    """scikit-learn's 'balanced' weights, n / (k * count_c), over the k classes present;
    classes absent from training get weight 1.0 (they never occur as a target)."""
    counts = Counter(label_ids)
    n, k = len(label_ids), len(counts)
    return [n / (k * counts[c]) if counts.get(c) else 1.0 for c in range(num_labels)]


def macro_f1(gold: list[int], predicted: list[int]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(gold, predicted, average="macro", zero_division=0))


def make_trainer_class():
    """A transformers Trainer subclass taking ``class_weights`` (None: the model's own loss)."""
    import torch
    from transformers import Trainer

    class WeightedTrainer(Trainer):
        """Trainer whose loss is a class-weighted cross-entropy when ``class_weights`` is set."""

        def __init__(self, *args, class_weights: list[float] | None = None, **kwargs):
            super().__init__(*args, **kwargs)
            self.class_weights = class_weights

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self.class_weights is None:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            logits = outputs.logits
            weight = torch.tensor(self.class_weights, dtype=logits.dtype, device=logits.device)
            loss = torch.nn.functional.cross_entropy(
                logits.view(-1, logits.size(-1)), labels.view(-1), weight=weight
            )
            return (loss, outputs) if return_outputs else loss

    return WeightedTrainer


def progress_callback(hook: ProgressHook):
    """A TrainerCallback calling ``hook("train", step, max_steps)`` after each optimizer step."""
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            hook("train", state.global_step, state.max_steps)

    return _Progress()


def length_sorted_outputs(
    tokenizer,
    encoded,
    forward: Callable[[Any], np.ndarray],
    batch_size: int,
    tensors: str,
    progress: ProgressHook | None = None,
    *,
    per_token: bool = False,
) -> tuple[list[np.ndarray], list[float]]:
    """Run ``forward`` (padded batch -> an array with one row per text) over the already tokenized
    ``encoded`` (a BatchEncoding or a dict of per-text lists, unpadded) in length-sorted batches,
    and return each text's row in input order, with per-text latency (its batch's time divided
    by the batch size). ``per_token``: the rows are (sequence, ...) arrays, cut back to the text's
    own tokens (the padding removed, on whichever side the tokenizer pads)."""
    keys = list(encoded.keys())
    lengths = [len(ids) for ids in encoded["input_ids"]]
    n = len(lengths)
    outputs: list[np.ndarray | None] = [None] * n
    latency = [0.0] * n
    left = getattr(tokenizer, "padding_side", "right") == "left"
    order = sorted(range(n), key=lambda i: lengths[i])
    for start in range(0, n, batch_size):
        t0 = time.perf_counter()
        idx = order[start : start + batch_size]
        batch = tokenizer.pad([{k: encoded[k][i] for k in keys} for i in idx], return_tensors=tensors)
        rows = forward(dict(batch))
        per = (time.perf_counter() - t0) / len(idx)
        for i, row in zip(idx, rows, strict=True):
            if per_token:
                row = row[len(row) - lengths[i] :] if left else row[: lengths[i]]
            outputs[i] = row
            latency[i] = per
        if progress is not None:
            progress("predict", min(start + len(idx), n), n)
    return outputs, latency  # type: ignore[return-value]


def length_sorted_scores(
    tokenizer,
    texts: Sequence[str],
    forward: Callable[[Any], np.ndarray],
    max_length: int,
    batch_size: int,
    tensors: str,
    progress: ProgressHook | None = None,
) -> tuple[list[list[float]], list[float]]:
    """Tokenize once, run ``forward`` (padded batch -> probabilities) over length-sorted batches,
    each padded only to its longest member, and restore the input order. Per-text latency is its
    batch's time divided by the batch size."""
    if not texts:
        return [], []
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
    rows, latency = length_sorted_outputs(tokenizer, enc, forward, batch_size, tensors, progress)
    return [row.tolist() for row in rows], latency


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """The logistic function, without overflow for large logits of either sign."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(logits, dtype=np.float64)))


__all__ = [
    "balanced_class_weights",
    "length_sorted_outputs",
    "length_sorted_scores",
    "macro_f1",
    "make_trainer_class",
    "progress_callback",
    "sigmoid",
]
