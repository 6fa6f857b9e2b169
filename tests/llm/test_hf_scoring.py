"""Batched label scoring (socialens.llm.hf_scoring) on tiny, randomly initialised real models.

Three architectures whose batching can go wrong in different ways: GPT-2 (learned absolute
positions: a pad that shifted the position ids would change every later token), Llama (rotary
positions, grouped-query attention: SmolLM2's architecture) and Gemma 3 with a sliding window of
8 tokens (shorter than the prompts, so cache slots taken by pads would push real tokens out of the
window). Each batched score must equal the same prompt scored alone, and a from-scratch forward
pass of prompt+label. The tokenizer is SmolLM2's (with its chat template removed: the plain
``Answer:`` prompt path); the weights are random, seeded and made large enough that the
log-probabilities differ by whole units between tokens.
"""

from __future__ import annotations

import pytest

from socialens.core.errors import ConfigError
from socialens.llm.hf import HFBackend, model_folder
from socialens.llm.hf_scoring import BatchScorer, TokenRequest, sliding_window

WINDOW = 8

pytestmark = pytest.mark.slow  # about 15 s on a quiet 2-core machine (transformers and a tokenizer to load)


def tiny_config(kind: str, vocab: int):
    from transformers import Gemma3TextConfig, GPT2Config, LlamaConfig

    if kind == "gpt2":
        return GPT2Config(
            vocab_size=vocab, n_embd=32, n_layer=2, n_head=2, n_positions=256, initializer_range=0.3
        )
    if kind == "llama":
        return LlamaConfig(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            initializer_range=0.3,
        )
    return Gemma3TextConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        sliding_window=WINDOW,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=256,
        initializer_range=0.3,
    )


@pytest.fixture(scope="module")
def tokenizer_folder(tmp_path_factory):
    from transformers import AutoTokenizer

    try:
        folder = model_folder("builtin:smollm2-135m-instruct")
    except ConfigError as error:
        pytest.skip(str(error))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = None
    target = tmp_path_factory.mktemp("tokenizer")
    tokenizer.save_pretrained(target)
    return target, len(tokenizer)


@pytest.fixture(scope="module", params=["gpt2", "llama", "gemma3"])
def tiny(request, tokenizer_folder, tmp_path_factory):
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    source, vocab = tokenizer_folder
    folder = tmp_path_factory.mktemp(request.param)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(tiny_config(request.param, vocab)).save_pretrained(folder)
    for item in source.iterdir():
        shutil.copy(item, folder / item.name)
    backend = HFBackend(str(folder), threads=1, batch_texts=3, device="auto")
    yield request.param, backend
    backend.close()


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Label the post."}, {"role": "user", "content": text}]


PROMPTS = [
    ask("x"),
    ask("A much longer post about the news of the day, with a link and two hashtags #a #b"),
    ask("Label the post."),  # starts like the system text: a longer common prefix, by chance
    ask("Short one"),
    ask("Another post of middling length here"),
]
# one-token, multi-token and one that merges with the prompt's last token (":" + "\n\n")
LABELS = ["hate", "not-hate", "neither of these two labels", ":\n\nYes"]


def reference(backend, messages, continuation) -> float:
    import torch

    text = backend.render(messages)
    prompt_ids = backend.tokenizer(text)["input_ids"]
    full = backend.tokenizer(text + backend.answer_prefix + continuation)["input_ids"]
    start = 0
    while start < min(len(full), len(prompt_ids)) and full[start] == prompt_ids[start]:
        start += 1
    with torch.no_grad():
        logits = backend.model(torch.tensor([full], device=backend.device)).logits[0]
    logprobs = torch.log_softmax(logits.double(), dim=-1)
    return sum(float(logprobs[pos - 1, full[pos]]) for pos in range(start, len(full)))


def test_batched_equals_alone_and_from_scratch(tiny):
    kind, backend = tiny
    assert backend.device == "cpu"  # auto: no CUDA device here
    assert not backend.has_chat_template
    batched = backend.score_batch(PROMPTS, LABELS)
    alone = [backend.score(p, LABELS) for p in PROMPTS]
    assert len(batched) == len(PROMPTS) and all(s.error is None for s in batched + alone)
    for one, many, messages in zip(alone, batched, PROMPTS, strict=True):
        assert many.logprobs == pytest.approx(one.logprobs, abs=1e-4)
        assert many.continuation_tokens == one.continuation_tokens
        assert many.tokens_in == one.tokens_in
        expected = [reference(backend, messages, label) for label in LABELS]
        assert many.logprobs == pytest.approx(expected, abs=1e-4)
    spread = max(batched[1].logprobs) - min(batched[1].logprobs)
    assert spread > 1  # the random model is not flat: a wrong position would show
    assert (sliding_window(backend.model) == WINDOW) == (kind == "gemma3")


def test_the_prefix_is_run_once_and_kept_for_the_next_batch(tiny):
    _, backend = tiny
    backend.score_batch(PROMPTS[:2], LABELS)
    kept = backend.scorer.prefix
    assert len(kept.ids) > 5  # the plain prompt's shared start: "Label the post.\n\n"
    backend.score_batch(PROMPTS[3:], LABELS)
    assert backend.scorer.prefix is kept  # same start: not run again


def test_one_token_labels_need_no_label_pass(tiny):
    import torch

    kind, backend = tiny
    calls = []
    hook = backend.model.register_forward_hook(
        lambda module, args, kwargs, out: calls.append(1), with_kwargs=True
    )
    try:
        backend.scorer.prefix = type(backend.scorer.prefix)()
        backend.score_batch(PROMPTS[:3], ["hate", "love"])  # both one token after "Answer:" + " "
    finally:
        hook.remove()
    # the prefix, then one suffix pass for the 3 texts and both labels; with the 8-token window,
    # one suffix pass per text (their pads would outgrow the window)
    assert len(calls) == (1 + 3 if kind == "gemma3" else 1 + 1)
    assert torch.get_num_threads() >= 1


def test_token_level_scorer_on_hand_made_ids(tiny):
    """The scorer alone: two prompts sharing 3 tokens, continuations of 1 and 2 tokens."""
    _, backend = tiny
    scorer = BatchScorer(backend.model, pad_id=0, batch_texts=2)
    requests = [
        TokenRequest([5, 6, 7, 8], [[5, 6, 7, 8, 9], [5, 6, 7, 8, 10, 11]], [4, 4]),
        TokenRequest([5, 6, 7, 12, 13, 14], [[5, 6, 7, 12, 13, 14, 9], [5, 6, 7, 12, 13, 15, 16]], [6, 5]),
    ]
    got = scorer.score(requests)
    import torch

    for request, values in zip(requests, got, strict=True):
        for sequence, start, value in zip(request.sequences, request.starts, values, strict=True):
            with torch.no_grad():
                logits = backend.model(torch.tensor([sequence])).logits[0].double()
            lp = torch.log_softmax(logits, dim=-1)
            assert value == pytest.approx(
                sum(float(lp[p - 1, sequence[p]]) for p in range(start, len(sequence))), abs=1e-4
            )
    with pytest.raises(ValueError, match="empty prompt"):
        scorer.score([TokenRequest([], [[1]], [0])])


def test_older_transformers_logits_to_keep_gives_the_same_scores(tiny):
    """Before transformers 5, a logits_to_keep tensor kept the same positions in every row: the
    positions any row needs are kept and each row reads its own."""
    _, backend = tiny
    assert backend.scorer.per_row_logits  # the installed transformers takes (batch, positions)
    per_row = backend.score_batch(PROMPTS, LABELS)
    backend.scorer.per_row_logits = False
    try:
        shared = backend.score_batch(PROMPTS, LABELS)
    finally:
        backend.scorer.per_row_logits = True
    for a, b in zip(per_row, shared, strict=True):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)
