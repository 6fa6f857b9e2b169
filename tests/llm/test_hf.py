"""The hf backend on a real model: the built-in SmolLM2-135M-Instruct, converted from its GGUF.

The conversion to a safetensors folder happens once per machine, into the default cache
(``~/.cache/socialens/models/smollm2-135m-instruct``, or under ``$SOCIALENS_CACHE_DIR``), the same
folder every later run and the CLI reuse; the first run of this file therefore takes about a
minute longer than the others.
"""

from __future__ import annotations

import json
import math

import pytest

from socialens.core.errors import ConfigError
from socialens.core.runtime import cache_dir, torch_threads
from socialens.llm.base import BACKENDS, GenerationParams
from socialens.llm.hf import HFBackend, _ChoiceTrie, converted_gguf_dir, render_plain

MODEL = "builtin:smollm2-135m-instruct"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def backend():
    try:
        from socialens.core.models import resolve_model

        resolve_model(MODEL)
    except ConfigError as error:
        pytest.skip(str(error))
    # One torch thread: on a small shared CPU, torch's threads spin-wait on busy cores (one
    # generate call measured 20 s with 2 threads next to another busy process, 1 s with 1).
    made = HFBackend(MODEL, batch_size=4, threads=1)
    yield made
    made.close()


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": text}]


QUESTIONS = [
    ask("Is the earth flat?"),
    ask("Vaccines cause autism, says this long and winding comment about a news story. True or false?"),
    ask("Hi"),
]


def test_registered_and_converted_once(backend):
    assert BACKENDS["hf"] is HFBackend
    folder = cache_dir() / "models" / "smollm2-135m-instruct"
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert not list(folder.parent.glob(".smollm2-135m-instruct.tmp-*"))  # no leftover temp folder
    assert converted_gguf_dir(backend.model_id, "smollm2-135m-instruct") == folder  # reused, not redone
    assert backend.model_id.endswith(".gguf")


def test_render_uses_the_chat_template(backend):
    messages = [{"role": "user", "content": "hi"}]
    text = backend.render(messages)
    assert text == backend.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert "<|im_start|>user\nhi<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")


def test_render_plain_for_models_without_a_template():
    messages = [
        {"role": "system", "content": "Label the claim."},
        {"role": "user", "content": "The moon is cheese."},
        {"role": "assistant", "content": "false"},
        {"role": "user", "content": " Water is wet. "},
    ]
    assert (
        render_plain(messages)
        == "Label the claim.\n\nThe moon is cheese.\n\nAnswer: false\n\nWater is wet.\n\nAnswer:"
    )


def test_generate_is_deterministic_and_counts_tokens(backend):
    params = GenerationParams(max_tokens=6)
    first = backend.generate(QUESTIONS, params)
    assert len(first) == 3 and all(c.error is None and c.text for c in first)
    assert all(c.tokens_in > 10 and 0 < c.tokens_out <= 6 for c in first)
    assert all(c.finish_reason in ("stop", "length") for c in first)
    assert [c.text for c in backend.generate(QUESTIONS, params)] == [c.text for c in first]


def test_batched_equals_unbatched(backend):
    params = GenerationParams(max_tokens=6)
    batched = backend.generate(QUESTIONS, params)
    backend.options.batch_size = 1
    try:
        one_by_one = backend.generate(QUESTIONS, params)
    finally:
        backend.options.batch_size = 4
    assert [c.text for c in batched] == [c.text for c in one_by_one]


def test_json_schema_is_free_generation_here(backend):
    """hf does not enforce a JSON schema (see the module docstring): the answer is the free one."""
    schema = '{"type": "array", "items": {"type": "string"}}'
    free = backend.generate(QUESTIONS, GenerationParams(max_tokens=6))
    asked = backend.generate(QUESTIONS, GenerationParams(max_tokens=6, json_schema=schema))
    assert [c.text for c in asked] == [c.text for c in free]
    assert all(c.error is None for c in asked)


def test_constrained_output_is_always_a_choice(backend):
    # choices sharing prefixes, one a prefix of another
    choices = ("false", "false claim", "true", "neither", "neither true nor false")
    completions = backend.generate(QUESTIONS, GenerationParams(max_tokens=1, choices=choices))
    assert all(c.error is None and c.text in choices for c in completions)
    assert all(c.finish_reason == "stop" for c in completions)
    single = backend.generate(QUESTIONS, GenerationParams(choices=("maybe",)))
    assert [c.text for c in single] == ["maybe"] * 3


def test_choice_trie_forces_eos_only_after_a_full_choice():
    eos = 0
    trie = _ChoiceTrie({(5,): "false", (5, 6): "false claim", (7, 8): "true"}, eos)
    assert trie.allowed(()) == [5, 7]
    assert trie.allowed((5,)) == [eos, 6]  # "false" is complete, "false claim" may go on
    assert trie.allowed((7,)) == [8]
    assert trie.allowed((5, 6)) == [eos] and trie.allowed((7, 8)) == [eos]


def reference_logprob(backend, messages, continuation) -> tuple[float, int]:
    """From scratch: one full forward pass of prompt+continuation, no cache, no batching."""
    import torch

    text = backend.render(messages)
    prompt_ids = backend.tokenizer(text, add_special_tokens=False)["input_ids"]
    full = backend.tokenizer(text + continuation, add_special_tokens=False)["input_ids"]
    start = 0
    while start < min(len(full), len(prompt_ids)) and full[start] == prompt_ids[start]:
        start += 1
    with torch.no_grad(), torch_threads(backend.options.threads):
        logits = backend.model(torch.tensor([full])).logits[0]
    logprobs = torch.log_softmax(logits.double(), dim=-1)
    return sum(float(logprobs[pos - 1, full[pos]]) for pos in range(start, len(full))), len(full) - start


def test_score_matches_a_from_scratch_reference(backend):
    continuations = ["false", "false claim", "Yes, the earth is round.", "\n\nYes"]  # the last merges
    scores = backend.score(QUESTIONS[0], continuations)
    assert scores.error is None and scores.tokens_in > 10
    expected = [reference_logprob(backend, QUESTIONS[0], c) for c in continuations]
    assert scores.logprobs == pytest.approx([e[0] for e in expected], abs=2e-3)
    assert scores.continuation_tokens == [e[1] for e in expected]
    assert scores.continuation_tokens[3] >= 2  # the merged boundary token is scored too
    assert all(v < 0 and math.isfinite(v) for v in scores.logprobs)


def test_score_batch_equals_score_one_at_a_time(backend):
    """Batched scoring (prefix once, padded suffixes, label tails) gives each prompt's own scores:
    texts of different lengths, over two forward-pass chunks, one-token, multi-token and merging
    labels. Measured difference on this model: about 1e-5 (float32)."""
    texts = QUESTIONS + [ask("The senator said the vaccine data was faked, " * 3), ask("no")]
    labels = ["false", "false claim", "true", "neither true nor false", "\n\nYes"]
    backend.options.batch_texts = 2
    try:
        batched = backend.score_batch(texts, labels)
    finally:
        backend.options.batch_texts = 8
    alone = [backend.score(t, labels) for t in texts]
    assert all(s.error is None for s in batched) and len(batched) == len(texts)
    pairs = zip(batched, alone, strict=True)
    worst = max(abs(a - b) for x, y in pairs for a, b in zip(x.logprobs, y.logprobs, strict=True))
    assert worst < 1e-4
    assert [s.continuation_tokens for s in batched] == [s.continuation_tokens for s in alone]
    assert [s.tokens_in for s in batched] == [s.tokens_in for s in alone]
    assert len(backend.scorer.prefix.ids) > 10  # the chat template's head and the system text
    assert backend.score_batch([], labels) == []


def test_prompted_scored_on_hf_gives_each_text_its_own_scores(backend):
    """family prompted, decoding scored, backend hf: one record per text, probabilities from the
    label log-probabilities that scoring the text alone gives."""
    from socialens.classifiers.prompted import PromptedClassifier, PromptedParams
    from socialens.core.types import Example, LabelSchema, Status

    schema = LabelSchema.from_names(["belief", "debunk", "other"])
    texts = ["Vaccines cause autism, wake up", "No, satellites clearly show warming.", "lol", "Source?"]
    examples = [Example(f"t{i}", text, "other") for i, text in enumerate(texts)]
    params = PromptedParams(backend="hf", decoding="scored", cache=False, system_prompt="Classify.")
    classifier = PromptedClassifier(params).fit(examples, schema=schema)
    try:
        records = classifier.predict(examples)
        alone = [backend.score(m, schema.names) for m in classifier.prompts(examples)]
    finally:
        classifier.backend.close()
    assert [r.id for r in records] == ["t0", "t1", "t2", "t3"]
    assert all(r.status == Status.OK and r.predicted in schema.names for r in records)
    for record, scores in zip(records, alone, strict=True):
        expected = dict(zip(schema.names, scores.logprobs, strict=True))
        assert json.loads(record.raw_output) == pytest.approx(expected, abs=1e-4)
        assert sum(record.scores.values()) == pytest.approx(1)


def test_lora_adapter_is_applied(backend, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folder = cache_dir() / "models" / "smollm2-135m-instruct"
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(folder)
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(tmp_path / "adapter")
    tuned = HFBackend(MODEL, adapter=str(tmp_path / "adapter"), threads=1)
    try:
        assert tuned.model_id.endswith(f"+lora:{tmp_path / 'adapter'}")
        plain = backend.score(QUESTIONS[2], ["Hello"]).logprobs[0]
        tuned_score = tuned.score(QUESTIONS[2], ["Hello"]).logprobs[0]
        assert tuned_score != pytest.approx(plain, abs=1e-3)
        [batched] = tuned.score_batch(QUESTIONS[2:], ["Hello"])  # through the peft wrapper too
        assert batched.logprobs[0] == pytest.approx(tuned_score, abs=1e-4)
    finally:
        tuned.close()


def test_threads_option_is_restored(backend):
    import torch

    before = torch.get_num_threads()
    backend.generate(QUESTIONS[2:], GenerationParams(max_tokens=1))
    assert torch.get_num_threads() == before


def test_unknown_option_is_rejected():
    with pytest.raises(ValueError, match="batchsize"):
        HFBackend(MODEL, batchsize=2)
