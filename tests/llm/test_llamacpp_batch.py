"""Batched llama.cpp decoding: the grammar's token sets, group planning, and the engine on the
real built-in SmolLM2 GGUF (the backend-level agreement tests are in test_llamacpp.py)."""

from __future__ import annotations

import numpy as np
import pytest

from socialens.core.errors import ConfigError
from socialens.llm.llamacpp_batch import (
    ChoiceConstraint,
    ConstrainedItem,
    ScoringItem,
    plan_groups,
    score_group,
    shared_prefix,
)

# a toy vocabulary: token id -> text, as llama.cpp's grammar sees it
PIECES = {1: b"hate", 2: b" hate", 3: b"h", 4: b"ate", 5: b"ful", 6: b"not", 7: b"-", 8: b" not", 9: b"x"}
EOG = [0]


def constraint(choices=("hate", "hateful", "not-hate")) -> ChoiceConstraint:
    by_piece: dict[bytes, list[int]] = {}
    for token, piece in PIECES.items():
        by_piece.setdefault(piece, []).append(token)
    return ChoiceConstraint(choices, by_piece, EOG)


def test_allowed_tokens_follow_the_grammar():
    c = constraint()
    assert c.allowed(b"").tolist() == [1, 2, 3, 6, 8]  # with or without the optional space
    assert c.allowed(b"h").tolist() == [4]
    assert c.allowed(b"hate").tolist() == [0, 5]  # a whole choice: the end, or on to "hateful"
    assert c.allowed(b"hateful").tolist() == [0]
    assert c.only_end(b"hateful") and not c.only_end(b"hate")
    assert c.allowed(b"not").tolist() == [7]
    assert c.allowed(b"x").tolist() == []  # off the grammar: nothing


def test_pick_is_greedy_over_allowed_tokens_lowest_id_on_ties():
    c = constraint()
    logits = np.zeros(10, dtype=np.float32)
    logits[9] = 100.0  # "x" is not allowed, however likely
    logits[[2, 6]] = 5.0  # a tie: the lower id wins, as llama.cpp's greedy sampler
    assert c.pick(logits, b"") == 2
    logits[0] = 7.0
    assert c.pick(logits, b"hate") == 0  # the end beats "ful"
    assert c.pick(logits, b"x") is None


def test_label_runs_share_sequences_when_one_starts_another():
    item = ScoringItem(0, [1, 2, 3], [(3, [7]), (3, [4, 5]), (3, [4, 5, 6]), (2, [4, 5, 6])])
    assert sorted(item.feeds()) == [(2, [4, 5]), (3, [4, 5])]
    assert item.first_scored == 1 and not item.aligned  # one continuation starts inside the prompt
    assert item.cells(prefix=1) == 2 + 2  # the runs take turns on the text's sequence
    assert ScoringItem(1, [1, 2, 3], [(3, [7]), (3, [4, 5])]).aligned


def test_plan_groups_respects_texts_cells_and_one_call():
    prefix = [9] * 10
    items = [ScoringItem(i, prefix + [i] * 20, [(30, [1])]) for i in range(5)]
    assert shared_prefix(items) == 10
    groups, alone = plan_groups(items, max_texts=2, n_ctx=1000, n_batch=None)
    assert [[it.index for it in g] for g in groups] == [[0, 1], [2, 3], [4]] and not alone
    groups, _ = plan_groups(items, max_texts=16, n_ctx=10 + 20, n_batch=None)
    assert [len(g) for g in groups] == [5]  # each text in a sequence (KV stream) of its own
    groups, _ = plan_groups(items, max_texts=16, n_ctx=1000, n_batch=45)
    assert [len(g) for g in groups] == [2, 2, 1]  # suffixes of a group in one 45-token call
    huge = ScoringItem(5, prefix + [5] * 2000, [(2010, [1])])
    groups, alone = plan_groups([*items, huge], max_texts=16, n_ctx=1000, n_batch=None)
    assert alone == [huge] and sum(len(g) for g in groups) == 5


def test_constrained_items_reserve_their_answer():
    items = [ConstrainedItem(i, [1, 2] + [3] * (1 + i), reserve=8) for i in range(3)]
    assert shared_prefix(items) == 2
    groups, alone = plan_groups(items, max_texts=16, n_ctx=2 + 2 + 8, n_batch=None)
    assert [[it.index for it in g] for g in groups] == [[0, 1]] and alone == [items[2]]


@pytest.fixture(scope="module")
def smollm():
    pytest.importorskip("llama_cpp")
    from socialens.llm.llamacpp import LlamaCppBackend

    try:
        backend = LlamaCppBackend("builtin:smollm2-135m-instruct", n_ctx=512, n_threads=1, batch_texts="auto")
    except ConfigError as error:
        pytest.skip(str(error))
    yield backend
    backend.close()


def test_a_group_leaves_only_the_prefix_in_sequence_zero(smollm):
    import llama_cpp

    engine = smollm.engine
    assert engine.n_seq_max == 9  # auto: 8 texts and llama-cpp-python's own sequence
    texts = ["<|im_start|>user\nfirst post", "<|im_start|>user\nsecond, longer post"]
    items = []
    for i, text in enumerate(texts):
        tokens = smollm.tokenize(text)
        full = smollm.tokenize(text + " not-hate")
        items.append(ScoringItem(i, tokens, [(len(tokens), full[len(tokens) :])]))
    prefix = shared_prefix(items)
    assert prefix >= 3
    (first, counts_first), (second, _) = score_group(engine, items)
    assert counts_first == [len(items[0].targets[0][1])] and first[0] < 0 and second[0] < 0
    assert smollm.llm.n_tokens == prefix  # llama-cpp-python's view of sequence 0
    for seq in range(1, engine.n_seq_max):
        assert llama_cpp.llama_memory_seq_pos_max(engine.memory, seq) == -1
    assert llama_cpp.llama_memory_seq_pos_max(engine.memory, 0) == prefix - 1
    decoded = engine.tokens_decoded
    score_group(engine, items)  # the prefix is still there: only suffixes and labels again
    label_runs = sum(len(run) for it in items for _, run in it.feeds())
    assert engine.tokens_decoded - decoded == sum(len(it.tokens) - prefix for it in items) + label_runs
