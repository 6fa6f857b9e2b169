import pytest

from socialens.llm.base import GenerationParams
from socialens.llm.cache import CachedBackend, ResponseCache

pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def smollm2():
    from socialens.llm.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend("builtin:smollm2-135m-instruct", n_ctx=512, n_threads=1)
    yield backend
    backend.close()


def ask(text):
    return [{"role": "user", "content": f"Is this hate speech? Answer yes or no.\n{text}"}]


def test_hits_return_the_stored_answer_without_calling_the_model(tmp_path, smollm2):
    cache = ResponseCache(tmp_path / "c.sqlite")
    first = CachedBackend(smollm2, cache)
    params = GenerationParams(max_tokens=5)
    fresh = first.generate([ask("I love my neighbours"), ask("Go back home")], params)
    assert first.calls == 2 and len(cache) == 2

    again = CachedBackend(smollm2, ResponseCache(tmp_path / "c.sqlite"))  # a new process would do this
    hits = again.generate([ask("I love my neighbours"), ask("Go back home")], params)
    assert again.calls == 0
    assert [h.text for h in hits] == [f.text for f in fresh]
    assert [h.latency_s for h in hits] == [f.latency_s for f in fresh]
    assert all(h.cached for h in hits)


def test_key_covers_prompt_params_and_model(tmp_path, smollm2):
    cache = ResponseCache(tmp_path / "c.sqlite")
    backend = CachedBackend(smollm2, cache)
    backend.generate([ask("a text")], GenerationParams(max_tokens=5))
    backend.generate([ask("a text")], GenerationParams(max_tokens=6))  # other params: a miss
    backend.generate([ask("a text!")], GenerationParams(max_tokens=5))  # other prompt: a miss
    assert backend.calls == 3
    key = ResponseCache.key("llamacpp", smollm2.model_id, "generate", "p", {"a": 1})
    assert key != ResponseCache.key("llamacpp", smollm2.model_id + "x", "generate", "p", {"a": 1})


def test_scores_are_cached(tmp_path, smollm2):
    backend = CachedBackend(smollm2, ResponseCache(tmp_path / "c.sqlite"))
    first = backend.score(ask("nice day"), ["yes", "no"])
    second = backend.score(ask("nice day"), ["yes", "no"])
    assert backend.calls == 1 and second.cached
    assert second.logprobs == first.logprobs


def test_no_cache_always_calls(smollm2):
    backend = CachedBackend(smollm2, None)
    backend.generate([ask("x")], GenerationParams(max_tokens=3))
    backend.generate([ask("x")], GenerationParams(max_tokens=3))
    assert backend.calls == 2


def test_score_batch_sends_only_the_misses_in_one_batch_and_stores_each(tmp_path, smollm2):
    backend = CachedBackend(smollm2, ResponseCache(tmp_path / "c.sqlite"))
    first = backend.score_batch([ask("nice day"), ask("go home")], ["yes", "no"])
    assert backend.calls == 2 and not any(s.cached for s in first)
    again = CachedBackend(smollm2, ResponseCache(tmp_path / "c.sqlite"))
    mixed = again.score_batch([ask("go home"), ask("new text"), ask("nice day")], ["yes", "no"])
    assert again.calls == 1  # only "new text" reached the model
    assert [s.cached for s in mixed] == [True, False, True]
    assert mixed[0].logprobs == first[1].logprobs and mixed[2].logprobs == first[0].logprobs
    assert again.score(ask("new text"), ["yes", "no"]).cached  # stored by score_batch, hit by score
    assert again.score_batch([ask("nice day")], ["no", "yes"])[0].cached is False  # other continuations
