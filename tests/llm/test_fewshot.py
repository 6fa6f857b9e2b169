"""Few-shot selection: exclusion of the query, per-class counts, determinism, similarity + MMR."""

import numpy as np
import pytest

from socialens.core.errors import ConfigError
from socialens.core.types import Example
from socialens.llm.fewshot import ShotSelector, mmr, normalise_text, select_shots


def make_pool(n_per_class=6):
    pool = []
    for label in ("belief", "debunk", "other"):
        for i in range(n_per_class):
            pool.append(Example(f"{label}-{i}", f"{label} comment number {i}", label))
    return pool


QUERY = Example("q", "Belief comment number 0!", None)  # same text as belief-0 once normalised


def test_normalise_text():
    assert normalise_text("  Vaccines   cause AUTISM!! ") == normalise_text("vaccines cause autism")
    assert normalise_text("Café") == normalise_text("cafe")


@pytest.mark.parametrize("strategy", ["random", "stratified", "fixed"])
def test_never_the_query_text_or_id(strategy):
    pool = make_pool() + [Example("q", "a different text with the query id", "other")]
    for seed in range(30):
        shots = select_shots(pool, QUERY, 5, strategy, seed)
        assert all(s.id != "q" and normalise_text(s.text) != normalise_text(QUERY.text) for s in shots)


def test_stratified_gives_k_per_class():
    shots = select_shots(make_pool(), QUERY, 2, "stratified", seed=1)
    counts = {label: sum(s.label == label for s in shots) for label in ("belief", "debunk", "other")}
    assert counts == {"belief": 2, "debunk": 2, "other": 2}
    small = make_pool(1)  # belief-0 is excluded (identical text): only 0 left for belief
    assert sorted(s.label for s in select_shots(small, QUERY, 3, "stratified", 0)) == ["debunk", "other"]


def test_fixed_gives_the_same_balanced_shots_to_every_query_but_its_twin():
    selector = ShotSelector(make_pool(), "fixed", 3, seed=4)
    shots = [selector.select(Example(f"x{i}", f"an unrelated query {i}")) for i in range(4)]
    assert all([s.id for s in row] == [s.id for s in shots[0]] for row in shots)
    assert sorted(s.label for s in shots[0]) == ["belief", "debunk", "other"]
    twin = shots[0][0]
    replaced = selector.select(Example("y", twin.text.upper()))
    assert twin.id not in [s.id for s in replaced] and len(replaced) == 3


def test_random_size_and_unlabelled_excluded():
    pool = make_pool() + [Example("u", "unlabelled", None)]
    shots = select_shots(pool, QUERY, 4, "random", 0)
    assert len(shots) == 4 and all(s.label is not None for s in shots)
    assert len(select_shots(pool, QUERY, 100, "random", 0)) == len(pool) - 2  # no query twin, no unlabelled
    assert select_shots(pool, QUERY, 0, "random", 0) == []


@pytest.mark.parametrize("strategy", ["random", "stratified"])
def test_deterministic_and_order_independent(strategy):
    pool = make_pool()
    queries = [Example(f"x{i}", f"query text {i}") for i in range(5)]
    a = ShotSelector(pool, strategy, 2, seed=7)
    b = ShotSelector(list(pool), strategy, 2, seed=7)
    first = [[s.id for s in a.select(q)] for q in queries]
    reverse = [[s.id for s in b.select(q)] for q in reversed(queries)][::-1]
    assert first == reverse
    other_seed = ShotSelector(pool, strategy, 2, seed=8)
    assert first != [[s.id for s in other_seed.select(q)] for q in queries]


def test_bad_arguments():
    with pytest.raises(ConfigError, match="strategy"):
        ShotSelector(make_pool(), "nearest", 2)
    with pytest.raises(ConfigError):
        ShotSelector(make_pool(), "random", -1)


def fake_embedder(texts):
    """Bag of two keywords: 'vaccine' and 'climate' axes, plus a small per-text offset."""
    rows = []
    for t in texts:
        t = t.lower()
        rows.append([("vaccine" in t) * 1.0, ("climate" in t) * 1.0, 0.1 + 0.01 * len(t) % 0.05])
    return np.array(rows)


def test_similar_with_injected_embedder_excludes_query():
    pool = [
        Example("v1", "vaccine one", "debunk"),
        Example("c1", "climate one", "belief"),
        Example("dup", "Vaccine query!", "belief"),
    ]
    shots = select_shots(pool, Example("q", "vaccine query"), 1, "similar", embedder=fake_embedder)
    assert [s.id for s in shots] == ["v1"]


def test_mmr_prefers_diverse_among_relevant():
    query = np.array([1.0, 0.0])
    cands = np.array([[0.9, 0.436], [0.9, 0.436], [0.9, -0.436]])  # two twins and a distinct one
    assert mmr(query, cands, 2, 0.6) == [0, 2]
    assert mmr(query, cands, 2, 1.0) == [0, 1]


VACCINE_POOL = [
    Example(
        "vax-dup-a",
        "Vaccines do not cause autism; the Wakefield MMR study was retracted for fraud.",
        "debunk",
    ),
    Example(
        "vax-dup-b",
        "Vaccines don't cause autism - the Wakefield MMR study was retracted for fraud!",
        "debunk",
    ),
    Example(
        "vax-belief", "My nephew got the MMR shot and a week later he was diagnosed with autism.", "belief"
    ),
    Example("climate", "Climate scientists just invent warming to keep their grant money flowing.", "belief"),
    Example("crime", "Immigrants commit fewer violent crimes than native-born citizens.", "debunk"),
    Example("bbq", "What a lovely day for a barbecue in the park.", "other"),
]


def test_similar_with_minilm_picks_topic_and_avoids_duplicates():
    pytest.importorskip("transformers")
    selector = ShotSelector(VACCINE_POOL, "similar", k=2, seed=0)
    queries = [Example("q", "Is it true that vaccines cause autism in kids?"), VACCINE_POOL[3]]
    vax, climate = selector.select_many(queries)
    ids = [s.id for s in vax]
    # on topic, and not the twin pair
    assert set(ids) <= {"vax-dup-a", "vax-dup-b", "vax-belief"} and "vax-belief" in ids
    assert "climate" not in [s.id for s in climate]  # never the query itself
    plain_knn = ShotSelector(VACCINE_POOL, "similar", k=2, seed=0, mmr_lambda=1.0).select(queries[0])
    assert {s.id for s in plain_knn} == {"vax-dup-a", "vax-dup-b"}
