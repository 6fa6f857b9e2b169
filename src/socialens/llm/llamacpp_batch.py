"""Many texts per llama.cpp decode call: label scoring and label-constrained decoding in batches.

The llamacpp backend's one-text-at-a-time path pays one decode call per text suffix and one more
per multi-token label. Here the shared prompt prefix is evaluated once into sequence 0
(llama-cpp-python's own sequence, whose tokens ``Llama.input_ids`` tracks, so a later ``generate``
still reuses it), each text of a group gets its own sequence, a copy of it in a KV stream of its
own (``kv_unified`` off: a text attends only over its own cells, laid out as when it is scored
alone; a unified cache, tried first, made every token attend over all texts' cells and was slower
than one text at a time), and then

- one ``llama_batch`` carries the differing suffixes of all texts of the group, logits requested
  only where a label's first token is scored (the last prompt token);
- the multi-token label continuations take turns on their text's sequence: each turn one batch
  with the next label run of every text (labels sharing leading tokens share a run), after which
  each sequence is cut back to its prompt;
- for constrained decoding, each step decodes one token of every unfinished text in one batch and
  picks, per text, the highest-logit token the label grammar allows (``ChoiceConstraint``), as
  llama.cpp's grammar + greedy sampler would.

A batch larger than ``n_batch`` is split into several decode calls; a group holds at most as many
texts as the context has sequences, each fitting its sequence's cells. The caller keeps what does
not fit (or fails, or has a label that merges into the prompt's last token) for its one-at-a-time
path, so every text still gets exactly one result.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

AUTO_MAX_TEXTS = 8  # ``batch_texts: auto``: at most this many texts a group (a KV stream each)
_CONTEXT_LOCK = threading.Lock()


def common_prefix_len(a: Sequence[int] | np.ndarray, b: Sequence[int] | np.ndarray) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64, copy=False)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


@contextlib.contextmanager
def multi_sequence_context(n_seq_max: int) -> Iterator[None]:
    """Make ``llama_cpp.Llama(...)`` built inside the block create its context with ``n_seq_max``
    sequences, each in its own stream of the KV cache (``kv_unified`` off: ``n_ctx / n_seq_max``
    cells a sequence). A text then attends only over its own cells, laid out as they are when it
    is scored alone (a unified cache made every token attend over all texts' cells: slower, and
    other sums of the same terms).

    ``Llama`` takes neither setting as an argument; it fills its context params from
    ``llama_context_default_params()`` in ``__init__``, which the block swaps for one that sets them
    (under a lock: the swap is process-wide while the block runs)."""
    import llama_cpp.llama as llama_module

    low_level = llama_module.llama_cpp
    original = low_level.llama_context_default_params

    def with_sequences():
        params = original()
        params.n_seq_max = n_seq_max
        params.kv_unified = False
        return params

    with _CONTEXT_LOCK:
        low_level.llama_context_default_params = with_sequences
        try:
            yield
        finally:
            low_level.llama_context_default_params = original


class DecodeFailed(RuntimeError):
    """llama_decode refused a batch (no KV slot, an invalid batch); nothing of the group is kept."""


@dataclass
class Row:
    """One token of a batch: its id, position, sequence, and whether its logits are wanted."""

    token: int
    pos: int
    seq: int
    wanted: bool = False


class SequenceEngine:
    """Multi-sequence decoding on one ``llama_cpp.Llama`` whose context has several sequences.

    Sequence 0 belongs to llama-cpp-python (its ``n_tokens`` / ``input_ids`` describe it); the
    engine uses sequences 1 .. n_seq_max-1 for the texts of a group and removes them afterwards.
    Each sequence holds ``n_ctx_seq`` cells."""

    def __init__(self, llm):
        import llama_cpp

        self._llama_cpp = llama_cpp
        self.llm = llm
        self.ctx = llm._ctx.ctx
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.n_seq_max = int(llama_cpp.llama_n_seq_max(self.ctx))
        self.n_batch = int(llm.n_batch)
        self.n_ctx_seq = int(llm.n_ctx()) // self.n_seq_max
        self.n_vocab = int(llm.n_vocab())
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self.tokens_decoded = 0  # every token this engine (and set_prefix) evaluated
        self.decode_calls = 0

    def close(self) -> None:
        if self._batch is not None:
            self._llama_cpp.llama_batch_free(self._batch)
            self._batch = None

    # -- sequences ------------------------------------------------------------------------------
    def set_prefix(self, tokens: Sequence[int]) -> None:
        """Make sequence 0 hold exactly ``tokens``, evaluating only what it does not hold yet."""
        llm = self.llm
        keep = common_prefix_len(llm.input_ids[: llm.n_tokens], tokens)
        llm._ctx.kv_cache_seq_rm(0, keep, -1)
        llm.n_tokens = keep
        if keep < len(tokens):
            llm.eval(list(tokens[keep:]))
            self.tokens_decoded += len(tokens) - keep
            self.decode_calls += -(-(len(tokens) - keep) // self.n_batch)
        llm._requires_eval = True  # generate must refresh the logits before it samples

    def copy(self, source: int, target: int) -> None:
        """Sequence ``target`` becomes a copy of sequence ``source`` (across streams llama.cpp
        copies whole sequences only)."""
        self._llama_cpp.llama_memory_seq_cp(self.memory, source, target, -1, -1)

    def truncate(self, seq: int, end: int) -> None:
        """Remove positions ``end`` and later of sequence ``seq``."""
        self._llama_cpp.llama_memory_seq_rm(self.memory, seq, end, -1)

    def drop(self, sequences: Sequence[int]) -> None:
        for seq in sequences:
            self._llama_cpp.llama_memory_seq_rm(self.memory, seq, -1, -1)

    # -- decoding -------------------------------------------------------------------------------
    def decode(self, rows: list[Row]) -> list[np.ndarray]:
        """Decode ``rows`` (in calls of at most n_batch tokens); the float32 logits of each wanted
        row, in order."""
        llama_cpp, batch = self._llama_cpp, self._batch
        out: list[np.ndarray] = []
        for start in range(0, len(rows), self.n_batch):
            part = rows[start : start + self.n_batch]
            batch.n_tokens = len(part)
            wanted = []
            for i, row in enumerate(part):
                batch.token[i] = row.token
                batch.pos[i] = row.pos
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = row.seq
                batch.logits[i] = row.wanted
                if row.wanted:
                    wanted.append(i)
            code = llama_cpp.llama_decode(self.ctx, batch)
            self.decode_calls += 1
            if code != 0:
                raise DecodeFailed(f"llama_decode returned {code} for a batch of {len(part)} tokens")
            self.tokens_decoded += len(part)
            for i in wanted:
                pointer = llama_cpp.llama_get_logits_ith(self.ctx, i)
                out.append(np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).copy())
        return out


# ---------------------------------------------------------------------------------------- scoring
@dataclass
class ScoringItem:
    """One prompt to score: its tokens and, per continuation, where the continuation's tokens start
    (``common``: usually the prompt's length; less when the boundary merges tokens) and its tokens."""

    index: int
    tokens: list[int]
    targets: list[tuple[int, list[int]]]

    @property
    def aligned(self) -> bool:
        """Every continuation starts right after the prompt (no token merged across the boundary),
        so its run can go on the text's own sequence."""
        return all(common == len(self.tokens) for common, _ in self.targets)

    def feeds(self) -> list[tuple[int, list[int]]]:
        """The label-token runs to decode (a continuation without its last token), a run that is
        the start of a longer one with the same ``common`` left out: it is read from the longer."""
        runs = sorted(
            {(common, tuple(tokens[:-1])) for common, tokens in self.targets if len(tokens) > 1},
            key=lambda run: -len(run[1]),
        )
        kept: list[tuple[int, tuple[int, ...]]] = []
        for common, run in runs:
            if not any(c == common and longer[: len(run)] == run for c, longer in kept):
                kept.append((common, run))
        return [(common, list(run)) for common, run in kept]

    @property
    def first_scored(self) -> int:
        """The lowest position whose logits a continuation needs (a label's first token)."""
        return min(common for common, _ in self.targets) - 1

    def cells(self, prefix: int) -> int:
        """KV cells this item's sequence needs beyond a shared prefix of ``prefix`` tokens (its
        label runs take turns on it)."""
        return len(self.tokens) - prefix + max((len(run) for _, run in self.feeds()), default=0)


def shared_prefix(items: Sequence[ScoringItem | ConstrainedItem]) -> int:
    """Tokens every item's prompt starts with, short of the first position each needs logits of."""
    first = items[0].tokens
    length = min(item.first_scored for item in items)
    for item in items[1:]:
        length = min(length, common_prefix_len(first, item.tokens))
    return max(length, 0)


def plan_groups(
    items: Sequence[ScoringItem | ConstrainedItem],
    *,
    max_texts: int,
    n_ctx: int,
    n_batch: int | None,
) -> tuple[list[list], list]:
    """Split ``items`` into groups decoded together, in order, and the items that fit no group
    (their sequence would overflow its ``n_ctx`` cells). A group holds at most ``max_texts``
    items; with ``n_batch`` set, also at most ``n_batch`` suffix tokens, so the suffixes go in one
    decode call (a longer suffix alone is a group of one)."""
    groups: list[list] = []
    alone: list = []
    if not items:
        return groups, alone
    prefix = shared_prefix(items)
    current: list = []
    suffix = 0
    for item in items:
        need = item.cells(prefix)
        if prefix + need > n_ctx:
            alone.append(item)
            continue
        item_suffix = len(item.tokens) - prefix
        full = len(current) >= max_texts or (
            n_batch is not None and current and suffix + item_suffix > n_batch
        )
        if full:
            groups.append(current)
            current, suffix = [], 0
        current.append(item)
        suffix += item_suffix
    if current:
        groups.append(current)
    return groups, alone


def suffix_rows(engine: SequenceEngine, items: Sequence, prefix: int, wanted) -> list[Row]:
    """Sequence 1 + i of item i starts as a copy of the prefix; the rows of every item's suffix,
    logits wanted at the positions ``wanted(item)`` names."""
    rows: list[Row] = []
    for i, item in enumerate(items):
        seq = 1 + i
        engine.copy(0, seq)
        positions = wanted(item)
        rows.extend(
            Row(item.tokens[pos], pos, seq, pos in positions) for pos in range(prefix, len(item.tokens))
        )
    return rows


def score_group(engine: SequenceEngine, items: Sequence[ScoringItem]) -> list[tuple[list[float], list[int]]]:
    """(summed log-probability of each continuation, its token count) for each item (each one
    ``aligned``), from one batch of suffixes and one batch a label run of the text with most."""
    prefix = shared_prefix(items)
    engine.set_prefix(items[0].tokens[:prefix])
    used = list(range(1, 1 + len(items)))
    if used and used[-1] >= engine.n_seq_max:
        raise DecodeFailed(f"{len(items)} texts need more than n_seq_max={engine.n_seq_max} sequences")
    try:
        first_positions = [sorted({common - 1 for common, _ in item.targets}) for item in items]
        rows = suffix_rows(engine, items, prefix, lambda item: {c - 1 for c, _ in item.targets})
        logits = iter(engine.decode(rows))
        # log-probabilities of the next token at each needed position of each item
        after: list[dict[int, np.ndarray]] = [
            {pos: log_softmax(next(logits)) for pos in positions} for positions in first_positions
        ]
        totals = [
            [float(after[i][common - 1][tokens[0]]) for common, tokens in item.targets]
            for i, item in enumerate(items)
        ]
        # label runs take turns on their text's own sequence, every text's next run in one batch
        feeds = [item.feeds() for item in items]
        run_rows: dict[tuple[int, int, tuple[int, ...]], np.ndarray] = {}
        for turn in range(max((len(f) for f in feeds), default=0)):
            part = [(i, *f[turn]) for i, f in enumerate(feeds) if turn < len(f)]
            rows = [
                Row(token, common + k, 1 + i, True) for i, common, run in part for k, token in enumerate(run)
            ]
            logits = iter(engine.decode(rows))
            for i, common, run in part:
                run_rows[(i, common, tuple(run))] = log_softmax(np.stack([next(logits) for _ in run]))
                engine.truncate(1 + i, common)
        results = []
        for i, item in enumerate(items):
            counts = []
            for j, (common, tokens) in enumerate(item.targets):
                counts.append(len(tokens))
                if len(tokens) == 1:
                    continue
                feed = tokens[:-1]
                key = next(
                    k for k in run_rows if k[0] == i and k[1] == common and k[2][: len(feed)] == tuple(feed)
                )
                table = run_rows[key]
                totals[i][j] += float(table[np.arange(len(feed)), tokens[1:]].sum())
            results.append((totals[i], counts))
        return results
    finally:
        engine.drop(range(1, engine.n_seq_max))


# ----------------------------------------------------------------------------- constrained decoding
class ChoiceConstraint:
    """The token-level form of ``choices_grammar``: an optional leading space, then exactly one
    choice. For the bytes generated so far it gives the tokens the grammar allows next (a token
    whose text, appended, is still the start of a ``[" "]choice``; end-of-generation tokens only
    once a whole choice is out) as llama.cpp's grammar sampler decides them, by token text."""

    def __init__(self, choices: Sequence[str], pieces: dict[bytes, list[int]], eog: Sequence[int]):
        distinct = list(dict.fromkeys(choices))
        self.targets = {c.encode("utf-8") for c in distinct} | {b" " + c.encode("utf-8") for c in distinct}
        self.pieces = pieces
        self.eog = sorted(eog)
        self.longest = max(len(t) for t in self.targets)
        self._allowed: dict[bytes, np.ndarray] = {}

    def complete(self, text: bytes) -> bool:
        return text in self.targets

    def allowed(self, text: bytes) -> np.ndarray:
        """Token ids allowed after ``text``, ascending (end-of-generation ids among them when
        ``text`` is a whole choice)."""
        found = self._allowed.get(text)
        if found is None:
            ids: set[int] = set(self.eog) if text in self.targets else set()
            for target in self.targets:
                if len(target) > len(text) and target.startswith(text):
                    rest = target[len(text) :]
                    for end in range(1, len(rest) + 1):
                        ids.update(self.pieces.get(rest[:end], ()))
            found = np.array(sorted(ids), dtype=np.int64)
            self._allowed[text] = found
        return found

    def only_end(self, text: bytes) -> bool:
        """After ``text`` nothing but an end-of-generation token is allowed."""
        allowed = self.allowed(text)
        return len(allowed) > 0 and all(t in self.eog for t in allowed.tolist())

    def pick(self, logits: np.ndarray, text: bytes) -> int | None:
        """The allowed token of highest logit (the lowest id on a tie, as llama.cpp's greedy
        sampler); None when nothing is allowed."""
        allowed = self.allowed(text)
        if not len(allowed):
            return None
        return int(allowed[int(np.argmax(logits[allowed]))])


@dataclass
class ConstrainedItem:
    """One prompt to decode under a ChoiceConstraint; ``generated`` grows token by token."""

    index: int
    tokens: list[int]
    reserve: int  # KV cells the answer may take
    generated: list[int] = field(default_factory=list)
    text: bytes = b""
    finish_reason: str | None = None

    @property
    def first_scored(self) -> int:
        return len(self.tokens) - 1

    def cells(self, prefix: int) -> int:
        return len(self.tokens) - prefix + self.reserve


def constrained_group(
    engine: SequenceEngine,
    items: Sequence[ConstrainedItem],
    constraint: ChoiceConstraint,
    pieces_of: dict[int, bytes],
    max_tokens: int,
) -> None:
    """Greedy decoding of every item under ``constraint``, all items' next tokens in one batch a
    step. Fills each item's ``generated`` (end-of-generation token left out), ``text`` and
    ``finish_reason`` (stop, or length when ``max_tokens`` ran out first)."""
    prefix = shared_prefix(items)
    engine.set_prefix(items[0].tokens[:prefix])
    if len(items) >= engine.n_seq_max:
        raise DecodeFailed(f"{len(items)} texts need more than n_seq_max={engine.n_seq_max} sequences")
    eog = set(constraint.eog)
    try:
        rows = suffix_rows(engine, items, prefix, lambda item: {len(item.tokens) - 1})
        logits = engine.decode(rows)
        active = list(range(len(items)))
        while active:
            step_rows, still = [], []
            for i, row in zip(active, logits, strict=True):
                item = items[i]
                token = constraint.pick(row, item.text)
                if token is None or token in eog:
                    item.finish_reason = "stop"
                    continue
                item.generated.append(token)
                item.text += pieces_of[token]
                if len(item.generated) >= max_tokens:
                    item.finish_reason = "length"
                elif constraint.only_end(item.text):
                    item.finish_reason = "stop"  # the grammar forces the end: no logits needed
                else:
                    pos = len(item.tokens) + len(item.generated) - 1
                    step_rows.append(Row(token, pos, 1 + i, True))
                    still.append(i)
            active = still
            logits = engine.decode(step_rows) if step_rows else []
    finally:
        engine.drop(range(1, engine.n_seq_max))
