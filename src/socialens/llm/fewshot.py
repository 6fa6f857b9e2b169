"""Few-shot example selection for prompted LLM classification.

Strategies (``ShotSelector(pool, strategy, k, seed)`` embeds the pool once; ``select_shots`` is
the one-off form):

- ``random``: ``k`` examples drawn at random from the pool;
- ``stratified``: ``k`` examples **per class** (as in "stratified (k per class)"), so a prompt
  holds up to ``k × n_classes`` shots; a class with fewer than ``k`` eligible examples gives all
  it has. The shots are then shuffled so that no class always sits next to the query;
- ``similar``: the ``k`` nearest pool examples by cosine similarity of sentence embeddings (mean
  pooled, L2-normalised ``builtin:minilm-l6`` through transformers), picked by maximal marginal
  relevance (``mmr_lambda`` 0.6: 60% similarity to the query, 40% dissimilarity to the shots
  already picked; see ``DEFAULT_MMR_LAMBDA``) so near-duplicates do not fill the prompt. Returned most relevant first.
- ``fixed``: the same ``k`` shots for every query (drawn once with the seed, classes taken in
  turn), so every prompt shares one prefix that a local backend evaluates once and reuses: the
  cheap way to run few-shot on a CPU. A shot identical to the query is skipped for that query
  only, and the next one in the fixed order takes its place.

Rules for every strategy: a shot never has the query's id nor its text (compared after
normalisation: case, accents, punctuation and whitespace ignored), and unlabelled pool examples are
never shots. Results are deterministic for a fixed seed and do not depend on the order queries are
asked in: each query gets its own RNG seeded from ``seed`` and the query id.

The embedder is any callable ``list[str] -> array (n, dim)``; it is injectable, and only the
``similar`` strategy creates one (so ``random`` and ``stratified`` never load a model).
"""

from __future__ import annotations

import hashlib
import random
import unicodedata
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Literal

import numpy as np

from socialens.core.errors import ConfigError
from socialens.core.types import Example

Strategy = Literal["random", "stratified", "similar", "fixed"]
STRATEGIES = ("random", "stratified", "similar", "fixed")
Embedder = Callable[[list[str]], np.ndarray]
# 0.5 (the textbook default) lets an off-topic example beat an on-topic one on MiniLM embeddings:
# off-topic pairs have slightly negative cosine, same-topic pairs ~0.6-0.7, so the redundancy
# term outweighs relevance. 0.6 still rejects near-duplicates (cosine > 0.9) and keeps the topic.
DEFAULT_MMR_LAMBDA = 0.6


def normalise_text(text: str) -> str:
    """Text as compared for identity: NFKC, case-folded, accents, punctuation and extra whitespace
    removed ("Vaccines cause autism!" == "vaccines  cause autism")."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", str(text)).casefold())
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn" or "\u0900" <= ch <= "\u097f")
    return " ".join("".join(ch if unicodedata.category(ch)[0] in "LNM" else " " for ch in text).split())


def query_rng(seed: int, query: Example) -> random.Random:
    """The RNG of one query: derived from ``seed`` and the query id (order independent)."""
    digest = hashlib.sha256(f"{seed}\x1f{query.id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class MiniLMEmbedder:
    """Sentence embeddings: mean pooling over a transformers encoder's last hidden state,
    L2-normalised (the all-MiniLM-L6-v2 recipe, without sentence-transformers). Loads lazily."""

    def __init__(
        self,
        model: str = "builtin:minilm-l6",
        *,
        batch_size: int = 64,
        max_length: int = 256,
        device: str = "cpu",
    ):
        self.model_ref, self.batch_size, self.max_length, self.device = model, batch_size, max_length, device
        self._tokenizer = None
        self._model = None

    def _load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModel, AutoTokenizer

        from socialens.core.models import resolve_model

        path = resolve_model(self.model_ref)
        self._tokenizer = AutoTokenizer.from_pretrained(path)
        self._model = AutoModel.from_pretrained(path).to(self.device).eval()

    def __call__(self, texts: list[str]) -> np.ndarray:
        import torch

        self._load()
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = self._tokenizer(
                    list(texts[start : start + self.batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy())
        if not out:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(out).astype(np.float32)


@lru_cache(maxsize=4)
def default_embedder(model: str = "builtin:minilm-l6") -> MiniLMEmbedder:
    """One shared embedder per model reference (the model loads once per process)."""
    return MiniLMEmbedder(model)


def _unit(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def mmr(
    query_vec: np.ndarray, candidates: np.ndarray, k: int, mmr_lambda: float = DEFAULT_MMR_LAMBDA
) -> list[int]:
    """Indices (into ``candidates``) picked by maximal marginal relevance, in pick order.

    Each pick maximises ``λ·sim(query, c) − (1 − λ)·max sim(c, picked)``; ties go to the lower
    index. Vectors must be L2-normalised."""
    n = len(candidates)
    if n == 0 or k <= 0:
        return []
    relevance = candidates @ query_vec
    redundancy = np.full(n, -np.inf, dtype=np.float32)
    available = np.ones(n, dtype=bool)
    picked: list[int] = []
    for _ in range(min(k, n)):
        penalty = np.where(np.isfinite(redundancy), redundancy, 0.0) if picked else 0.0
        score = mmr_lambda * relevance - (1.0 - mmr_lambda) * penalty
        score = np.where(available, score, -np.inf)
        best = int(np.argmax(score))
        picked.append(best)
        available[best] = False
        redundancy = np.maximum(redundancy, candidates @ candidates[best])
    return picked


class ShotSelector:
    """Selects few-shot examples for queries from a fixed pool (embedded once for ``similar``).

    ``k`` is the number of shots for ``random`` and ``similar`` and the number **per class** for
    ``stratified``. ``candidates`` bounds how many nearest neighbours MMR re-ranks (speed on big
    pools). ``class_of`` is what ``stratified`` and ``fixed`` take classes in turn by: the label
    by default; a task's ``stratify_key`` for targets that are not one label (entity types
    present, a label set)."""

    def __init__(
        self,
        pool: Sequence[Example],
        strategy: Strategy = "random",
        k: int = 4,
        seed: int = 0,
        embedder: Embedder | None = None,
        *,
        mmr_lambda: float = DEFAULT_MMR_LAMBDA,
        candidates: int = 100,
        class_of: Callable[[Example], str | None] | None = None,
    ):
        if strategy not in STRATEGIES:
            raise ConfigError(
                f"unknown few-shot strategy '{strategy}': expected one of {', '.join(STRATEGIES)}"
            )
        if int(k) < 0:
            raise ConfigError(f"few-shot k must be >= 0, got {k}")
        if not 0.0 <= mmr_lambda <= 1.0:
            raise ConfigError(f"few-shot mmr_lambda must be in [0, 1], got {mmr_lambda}")
        self.pool = [ex for ex in pool if ex.label is not None]
        self.strategy, self.k, self.seed = strategy, int(k), int(seed)
        self.mmr_lambda, self.candidates = float(mmr_lambda), int(candidates)
        self._norm = [normalise_text(ex.text) for ex in self.pool]
        self._by_class: dict[str, list[int]] = {}
        for i, ex in enumerate(self.pool):
            self._by_class.setdefault(str(ex.label) if class_of is None else str(class_of(ex)), []).append(i)
        self._fixed_order = self._round_robin_order() if strategy == "fixed" else []
        self.embedder = embedder
        self._vectors: np.ndarray | None = None
        if strategy == "similar" and self.pool and self.k:
            if self.embedder is None:
                self.embedder = default_embedder()
            self._vectors = _unit(self.embedder([ex.text for ex in self.pool]))

    def _round_robin_order(self) -> list[int]:
        rng = random.Random(f"fixed:{self.seed}")
        queues = {
            label: rng.sample(indices, len(indices)) for label, indices in sorted(self._by_class.items())
        }
        order: list[int] = []
        while any(queues.values()):
            for queue in queues.values():
                if queue:
                    order.append(queue.pop(0))
        return order

    def _eligible(self, query: Example) -> np.ndarray:
        qnorm = normalise_text(query.text)
        return np.array(
            [ex.id != query.id and norm != qnorm for ex, norm in zip(self.pool, self._norm, strict=True)],
            dtype=bool,
        )

    def select(self, query: Example) -> list[Example]:
        """The shots for one query."""
        if self.strategy == "similar":
            return self.select_many([query])[0]
        return self._select(query, None)

    def select_many(self, queries: Sequence[Example]) -> list[list[Example]]:
        """The shots for each query; ``similar`` embeds the queries in batches."""
        queries = list(queries)
        vectors: np.ndarray | list[None] = [None] * len(queries)
        if self.strategy == "similar" and self._vectors is not None and queries:
            vectors = _unit(self.embedder([q.text for q in queries]))
        return [self._select(q, v) for q, v in zip(queries, vectors, strict=True)]

    def _select(self, query: Example, vector: np.ndarray | None) -> list[Example]:
        if not self.pool or self.k == 0:
            return []
        eligible = self._eligible(query)
        rng = query_rng(self.seed, query)
        if self.strategy == "random":
            indices = [i for i in range(len(self.pool)) if eligible[i]]
            return [self.pool[i] for i in rng.sample(indices, min(self.k, len(indices)))]
        if self.strategy == "fixed":
            return [self.pool[i] for i in [i for i in self._fixed_order if eligible[i]][: self.k]]
        if self.strategy == "stratified":
            chosen: list[int] = []
            for label in sorted(self._by_class):
                indices = [i for i in self._by_class[label] if eligible[i]]
                chosen.extend(rng.sample(indices, min(self.k, len(indices))))
            rng.shuffle(chosen)
            return [self.pool[i] for i in chosen]
        if vector is None:
            vector = _unit(self.embedder([query.text]))[0]
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        indices = np.flatnonzero(eligible)
        if len(indices) == 0:
            return []
        sims = self._vectors[indices] @ vector
        top = indices[np.argsort(-sims, kind="stable")[: max(self.candidates, self.k)]]
        picked = mmr(vector, self._vectors[top], self.k, self.mmr_lambda)
        return [self.pool[int(top[i])] for i in picked]


def select_shots(
    pool: Sequence[Example],
    query: Example,
    k: int,
    strategy: Strategy = "random",
    seed: int = 0,
    *,
    embedder: Embedder | None = None,
    mmr_lambda: float = DEFAULT_MMR_LAMBDA,
) -> list[Example]:
    """Shots for one query (see the module docstring). For many queries build one
    :class:`ShotSelector` instead: this embeds the pool on every call."""
    return ShotSelector(pool, strategy, k, seed, embedder, mmr_lambda=mmr_lambda).select(query)
