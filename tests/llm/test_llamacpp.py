"""The llamacpp backend on the real built-in GGUF models (SmolLM2-135M-Instruct, Gemma 3 270M base)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from socialens.core.errors import ConfigError
from socialens.llm.base import BACKENDS, GenerationParams, LLMBackend
from socialens.llm.llamacpp import LlamaCppBackend, choices_grammar, gbnf_literal

pytest.importorskip("llama_cpp")

TEXTS = [
    "I love how this community helps each other out.",
    "Go back to where you came from, nobody wants you here.",
    "The vaccine study was retracted last year, read the notice.",
]
N_CTX = 512


def prompt(text: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You classify social-media posts."},
        {"role": "user", "content": f"Is this post hateful? Text: {text}\nAnswer with the label only."},
    ]


def _builtin(name: str, **options) -> LlamaCppBackend:
    try:
        return LlamaCppBackend(name, n_ctx=N_CTX, n_threads=1, **options)
    except ConfigError as error:  # the weights package is not installed
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def smollm():
    backend = _builtin("builtin:smollm2-135m-instruct", batch_texts="auto")
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def gemma():
    backend = _builtin("builtin:gemma3-270m", batch_texts="auto")
    yield backend
    backend.close()


def test_registered_and_protocol(smollm):
    assert BACKENDS["llamacpp"] is LlamaCppBackend
    assert isinstance(smollm, LLMBackend)
    assert smollm.model_id.startswith("SmolLM2-135M-Instruct.Q4_1.gguf:")


def test_unknown_option_is_an_error():
    with pytest.raises(Exception, match="n_gpu"):
        LlamaCppBackend.Options(n_gpu=1)


def test_render_applies_chat_template(smollm):
    rendered = smollm.render(prompt(TEXTS[0]))
    assert rendered.startswith("<|im_start|>system\nYou classify social-media posts.<|im_end|>")
    assert rendered.endswith("<|im_start|>assistant\n")
    assert TEXTS[0] in rendered


def test_render_plain_text_without_template(gemma):
    rendered = gemma.render(prompt(TEXTS[0]))
    assert not gemma.has_chat_template
    assert "<" not in rendered and "user" not in rendered.lower()
    assert rendered.startswith("You classify social-media posts.")
    assert rendered.endswith("Answer:")


def test_generate_is_deterministic_with_counts(smollm):
    params = GenerationParams(max_tokens=12)
    first = smollm.generate([prompt(t) for t in TEXTS[:2]], params)
    second = smollm.generate([prompt(t) for t in TEXTS[:2]], params)
    assert [c.text for c in first] == [c.text for c in second]
    for completion in first:
        assert completion.error is None
        assert completion.text
        assert completion.tokens_in > 10
        assert 0 < completion.tokens_out <= 12
        assert completion.latency_s > 0
        assert completion.finish_reason in {"stop", "length"}


def test_generate_stop_string(smollm):
    (free,) = smollm.generate([prompt(TEXTS[0])], GenerationParams(max_tokens=12))
    words = free.text.split()
    assert len(words) >= 2
    (stopped,) = smollm.generate([prompt(TEXTS[0])], GenerationParams(max_tokens=12, stop=(words[1],)))
    assert words[1] not in stopped.text
    assert stopped.finish_reason == "stop"


@pytest.mark.parametrize(
    "choices",
    [
        ("false", "partially false", "true"),
        ("hate", "hateful", "not-hate"),
        ('{"label": "belief"}', '{"label": "debunk"}', '{"label": "other"}'),
        ('say "hi"', "back\\slash", "two\nlines"),
    ],
)
def test_constrained_output_is_a_choice(smollm, choices):
    completions = smollm.generate([prompt(t) for t in TEXTS], GenerationParams(max_tokens=2, choices=choices))
    for completion in completions:
        assert completion.error is None
        assert completion.text in choices


def test_constrained_base_model(gemma):
    choices = ("false", "partially false", "true")
    for completion in gemma.generate([prompt(t) for t in TEXTS], GenerationParams(choices=choices)):
        assert completion.text in choices


def test_grammar_escaping():
    assert gbnf_literal('a "b" \\ c\n') == '"a \\"b\\" \\\\ c\\n"'
    assert choices_grammar(["x", "x", "y"]) == 'root ::= " "? ("x" | "y")\n'


def reference_logprob(llm, prefix: list[int], full: list[int]) -> tuple[float, int]:
    """Evaluate prompt + continuation from scratch (all logits kept) and sum the continuation's.

    The batches have the backend's shapes: the prompt in one, the continuation without its last
    token in the next (no logits are needed after the last token). llama.cpp picks its kernels by
    batch shape, and a batch one token longer moved Gemma's score of a two-token label by 0.049
    with extra buffers off; with the same shapes both settings agree to 1e-14."""
    common = 0
    while common < min(len(prefix), len(full)) and prefix[common] == full[common]:
        common += 1
    llm.reset()
    llm.eval(full[:common])
    if len(full) - common > 1:
        llm.eval(full[common:-1])
    logits = np.asarray(llm.scores[: len(full) - 1], dtype=np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    logprobs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(sum(logprobs[i - 1, full[i]] for i in range(common, len(full)))), len(full) - common


@pytest.mark.parametrize("extra_buffers", ["on", "off"])
@pytest.mark.parametrize("which", ["builtin:smollm2-135m-instruct", "builtin:gemma3-270m"])
def test_score_matches_scoring_from_scratch(which, extra_buffers):
    import llama_cpp

    from socialens.llm.native_probe import NativeCrash, llama_model_params

    try:
        backend = LlamaCppBackend(which, n_ctx=N_CTX, n_threads=1, extra_buffers=extra_buffers)
    except NativeCrash as crash:  # this setting cannot run on this machine with this build
        pytest.skip(str(crash))
    except ConfigError as error:
        pytest.skip(str(error))
    continuations = ["hate", "not-hate", "partially false", '{"label": "belief"}']
    # logits_all keeps n_ctx x n_vocab floats (262k vocab for Gemma): a small context is enough here
    with llama_model_params(backend.extra_buffers):
        reference = llama_cpp.Llama(
            backend.model_path, n_ctx=128, n_threads=1, logits_all=True, verbose=False
        )
    try:
        for text in TEXTS[:2]:  # the second call reuses the first's system-prompt prefix
            scores = backend.score(prompt(text), continuations)
            assert scores.error is None
            assert len(scores.logprobs) == len(continuations) == len(scores.continuation_tokens)
            assert all(math.isfinite(x) and x < 0 for x in scores.logprobs)
            assert scores.continuation_tokens[2] >= 2  # "partially false": multi-token, summed
            assert scores.tokens_in > 10
            rendered = backend.render(prompt(text))
            prefix = backend.tokenize(rendered)
            for continuation, got, count in zip(
                continuations, scores.logprobs, scores.continuation_tokens, strict=True
            ):
                full = backend.tokenize(rendered + backend.answer_prefix + continuation)
                expected, n = reference_logprob(reference, prefix, full)
                assert count == n
                assert got == pytest.approx(expected, abs=1e-6), continuation
        # prefix reuse across calls gives the same numbers as a fresh evaluation
        again = backend.score(prompt(TEXTS[0]), continuations)
        backend.generate([prompt(TEXTS[1])], GenerationParams(max_tokens=3))  # moves the KV cache
        after_generate = backend.score(prompt(TEXTS[0]), continuations)
        np.testing.assert_allclose(again.logprobs, after_generate.logprobs, atol=1e-6)
    finally:
        reference.close()
        backend.close()


def test_score_boundary_merge(gemma):
    # "Answer:" + " hate" is tokenized across the boundary; the plain-text answer prefix is a space.
    scores = gemma.score(prompt(TEXTS[0]), ["hate", " hate"])
    assert scores.error is None
    assert scores.continuation_tokens[0] >= 1
    assert all(math.isfinite(x) for x in scores.logprobs)


def test_too_long_prompt_is_an_error_not_an_exception(smollm):
    long_prompt = [{"role": "user", "content": "word " * (N_CTX + 50)}]
    completions = smollm.generate([long_prompt, prompt(TEXTS[0])], GenerationParams(max_tokens=3))
    assert completions[0].error and completions[0].text == ""
    assert completions[1].error is None and completions[1].text
    scores = smollm.score(long_prompt, ["a"])
    assert scores.error and scores.logprobs == []


def test_missing_model_file(tmp_path):
    with pytest.raises(ConfigError):
        LlamaCppBackend(str(tmp_path / "missing.gguf"))


# -- JSON-schema constrained decoding ------------------------------------------------------------

ENTITY_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"text": {"type": "string"}, "type": {"type": "string", "enum": ["PER", "LOC"]}},
        "required": ["text", "type"],
        "additionalProperties": False,
    },
}


def entity_prompt(text: str) -> list[dict[str, str]]:
    return [
        {
            "role": "user",
            "content": "List the named entities of the text as a JSON array of objects with 'text' and "
            f"'type' (PER or LOC).\n\nText: {text}",
        }
    ]


def test_json_schema_output_parses_and_follows_the_schema(smollm):
    import json

    import jsonschema

    texts = ["Angela Merkel visited Paris on Monday.", "John lives in London with Mary."]
    params = GenerationParams(max_tokens=96, json_schema=json.dumps(ENTITY_SCHEMA), stop=("\n",))
    completions = smollm.generate([entity_prompt(t) for t in texts], params)
    for completion in completions:
        assert completion.error is None and completion.finish_reason == "stop", completion
        answer = json.loads(completion.text)
        jsonschema.validate(answer, ENTITY_SCHEMA)
    # the stop string is off under a schema (it could cut the JSON short), and the grammar is reused
    assert len(smollm._schema_grammars) == 1
    free = smollm.generate([entity_prompt(texts[0])], GenerationParams(max_tokens=96))
    assert free[0].text != completions[0].text  # the constraint changed the answer


def test_json_schema_and_choices_cannot_be_combined():
    with pytest.raises(ValueError, match="cannot both be set"):
        GenerationParams(choices=("a",), json_schema="{}")


def test_cache_key_leaves_json_schema_out_when_unset():
    assert "json_schema" not in GenerationParams().cache_key()
    assert GenerationParams().cache_key() == {
        "max_tokens": 20,
        "temperature": 0.0,
        "top_p": 1.0,
        "seed": 0,
        "stop": (),
        "choices": None,
    }
    assert GenerationParams(json_schema='{"type": "array"}').cache_key()["json_schema"] == '{"type": "array"}'


# -- batched scoring and constrained decoding (issue 14) ---------------------------------------

SYSTEM = "You classify social-media posts about immigration and women. " * 3  # a long shared prefix
BATCH_TEXTS = [
    "I love how this community helps each other out.",
    "Go back to where you came from, nobody wants you here.",
    "Women should not be allowed to vote, send them home.",
    "Refugees welcome! Our town is better with our new neighbours.",
    "@user the match last night was a disaster lol",
    "The vaccine study was retracted last year, read the notice.",
]
LABELS = ["hate", "not-hate", "partially false"]
# Batched and one-at-a-time scores of a text differ by up to 0.54 (Gemma 3 270M; 0.35 SmolLM2)
# on these texts: other batch shapes flip int8 activation roundings in llama.cpp's quantised
# kernels. The bound leaves room above that; benchmarks/llm_decoding_speed.py reports the
# difference and the label agreement over TweetEval texts.
SCORE_TOLERANCE = 0.75


def shared_prompt(text: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Is this post hateful? Text: {text}\nAnswer with the label only."},
    ]


def assert_same_scores(batched, single):
    for got, want in zip(batched, single, strict=True):
        assert got.error is None and want.error is None
        assert got.continuation_tokens == want.continuation_tokens and got.tokens_in == want.tokens_in
        np.testing.assert_allclose(got.logprobs, want.logprobs, atol=SCORE_TOLERANCE)
        assert int(np.argmax(got.logprobs)) == int(np.argmax(want.logprobs))


@pytest.mark.parametrize("which", ["smollm", "gemma"])
def test_score_batch_agrees_with_score_in_few_decode_calls(which, request):
    backend = request.getfixturevalue(which)
    assert backend.engine is not None and not backend.flash_attn
    prompts = [shared_prompt(t) for t in BATCH_TEXTS]
    single = [backend.score(p, LABELS) for p in prompts]
    calls, fallbacks = backend.engine.decode_calls, backend.batch_fallbacks
    batched = backend.score_batch(prompts, LABELS)
    assert_same_scores(batched, single)
    assert backend.batch_fallbacks == fallbacks
    # the prefix (already in sequence 0 from the last score), one batch of suffixes, one batch a
    # label run of a text (the label runs of a text take turns on its sequence)
    assert backend.engine.decode_calls - calls <= 1 + len(LABELS)
    assert all(s.latency_s > 0 for s in batched)
    # the same group from the same cache state gives the same numbers, and the KV cache is back
    # to one sequence: one-at-a-time scoring goes on from there
    assert [s.logprobs for s in backend.score_batch(prompts, LABELS)] == [s.logprobs for s in batched]
    assert_same_scores([backend.score(prompts[0], LABELS)], single[:1])


def test_a_prompt_too_long_for_a_batch_is_scored_alone_and_every_prompt_gets_scores(smollm):
    too_long = [{"role": "user", "content": "word " * (N_CTX + 50)}]  # longer than the context
    long = [{"role": "user", "content": "Is this hateful? " + "a post that goes on " * 25}]
    prompts = [shared_prompt(BATCH_TEXTS[0]), too_long, shared_prompt(BATCH_TEXTS[1]), long]
    fallbacks = smollm.batch_fallbacks
    batched = smollm.score_batch(prompts, LABELS)
    assert len(batched) == 4
    assert batched[1].error and "n_ctx" in batched[1].error and batched[1].logprobs == []
    assert smollm.batch_fallbacks == fallbacks + 1
    single = [smollm.score(p, LABELS) for p in prompts]
    assert_same_scores([batched[i] for i in (0, 2, 3)], [single[i] for i in (0, 2, 3)])


@pytest.mark.parametrize(
    "choices",
    [
        ("hate", "hateful", "not-hate"),
        ('{"label": "belief"}', '{"label": "partially false"}'),
    ],
)
def test_batched_constrained_decoding_equals_the_grammar_one_at_a_time(smollm, choices):
    prompts = [shared_prompt(t) for t in BATCH_TEXTS]
    params = GenerationParams(choices=choices)
    single = [smollm.generate([p], params)[0] for p in prompts]  # one prompt: llama.cpp's grammar sampler
    calls = smollm.engine.decode_calls
    batched = smollm.generate(prompts, params)
    assert [c.text for c in batched] == [c.text for c in single]
    assert all(c.text in choices and c.error is None and c.finish_reason == "stop" for c in batched)
    assert [c.tokens_in for c in batched] == [c.tokens_in for c in single]
    # the same text; on a near tie the tokens spelling it may differ ('"' 'other' / '"other')
    assert all(0 < c.tokens_out <= abs(s.tokens_out) + 2 for c, s in zip(batched, single, strict=True))
    # a decode call a generated token for all texts together, not one per text
    steps = max(c.tokens_out for c in batched)
    assert smollm.engine.decode_calls - calls <= 2 + steps


def test_batch_texts_one_the_default_keeps_the_one_sequence_path():
    backend = _builtin("builtin:smollm2-135m-instruct")
    try:
        assert backend.options.batch_texts == 1 and backend.engine is None and not backend.flash_attn
        prompts = [shared_prompt(t) for t in BATCH_TEXTS[:2]]
        scores = backend.score_batch(prompts, LABELS)
        assert [s.logprobs for s in scores] == [backend.score(p, LABELS).logprobs for p in prompts]
    finally:
        backend.close()


def test_batch_texts_is_validated():
    for bad in (0, 65, "all"):
        with pytest.raises(Exception, match="batch_texts"):
            LlamaCppBackend.Options(batch_texts=bad)
    assert LlamaCppBackend.Options(batch_texts="auto").batch_texts == "auto"


def test_score_batch_with_a_label_merging_into_the_prompt_matches_score(gemma):
    # " hate" after the plain prompt's "Answer:" and its space may merge across the boundary:
    # such a text is scored one at a time, the others in a batch, every text gets its scores
    prompts = [prompt(t) for t in TEXTS]
    batched = gemma.score_batch(prompts, ["hate", " hate"])
    single = [gemma.score(p, ["hate", " hate"]) for p in prompts]
    assert_same_scores(batched, single)
