"""The backend protocol's helpers (render_plain, score_each) on a real built-in model."""

from __future__ import annotations

import pytest

from socialens.core.errors import ConfigError
from socialens.llm.base import LLMBackend, render_plain, score_each

pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def smollm():
    from socialens.llm.llamacpp import LlamaCppBackend

    try:
        backend = LlamaCppBackend("builtin:smollm2-135m-instruct", n_ctx=512, n_threads=1, batch_texts=1)
    except ConfigError as error:
        pytest.skip(str(error))
    yield backend
    backend.close()


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Label the post."}, {"role": "user", "content": text}]


def test_score_each_is_one_score_per_prompt_in_order(smollm):
    assert isinstance(smollm, LLMBackend) and callable(LLMBackend.score_batch)
    prompts = [ask("Go back home."), ask("What a lovely day."), [{"role": "user", "content": "x " * 600}]]
    scores = score_each(smollm, prompts, ["hate", "not-hate"])
    assert len(scores) == 3
    assert [s.logprobs for s in scores[:2]] == [
        smollm.score(p, ["hate", "not-hate"]).logprobs for p in prompts[:2]
    ]
    assert scores[2].error and "n_ctx" in scores[2].error  # a failed prompt keeps its place
    assert score_each(smollm, [], ["hate"]) == []


def test_render_plain_ends_with_the_answer_cue():
    text = render_plain(
        [*ask("a post"), {"role": "assistant", "content": "hate"}, {"role": "user", "content": "b"}]
    )
    assert text == "Label the post.\n\na post\n\nAnswer: hate\n\nb\n\nAnswer:"
