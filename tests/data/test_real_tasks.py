"""The shipped NER and summarisation dataset YAMLs against the counts in the README.txt of each
folder of ../shared/datasets (skipped where the folder is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from socialens.data.datasets import load_dataset, load_dataset_config
from socialens.data.prepare import prepare
from socialens.data.targets import token_stats

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "datasets"

# split -> (sentences, tokens, entities per type), from each README.txt
NER = {
    "conll2003": {
        "train": (14041, 203621, {"LOC": 7140, "MISC": 3438, "ORG": 6321, "PER": 6600}),
        "dev": (3250, 51362, {"LOC": 1837, "MISC": 922, "ORG": 1341, "PER": 1842}),
        "test": (3453, 46435, {"LOC": 1668, "MISC": 702, "ORG": 1661, "PER": 1617}),
    },
    "wnut17": {
        "train": (
            3394,
            62730,
            {
                "corporation": 221,
                "creative-work": 140,
                "group": 264,
                "location": 548,
                "person": 660,
                "product": 142,
            },
        ),
        "dev": (
            1009,
            15733,
            {
                "corporation": 34,
                "creative-work": 105,
                "group": 39,
                "location": 74,
                "person": 470,
                "product": 114,
            },
        ),
        "test": (
            1287,
            23394,
            {
                "corporation": 66,
                "creative-work": 142,
                "group": 165,
                "location": 150,
                "person": 429,
                "product": 127,
            },
        ),
    },
}


def test_every_shipped_config_of_another_task_is_checked():
    # classification configs are checked in test_datasets.py
    others = {p.stem for p in CONFIGS.glob("*.yaml") if load_dataset_config(p).task_type != "classification"}
    assert others == {*NER, "anercorp_ar", *(f"xlsum-{language}" for language in XLSUM)}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NER))
def test_conll_files_match_their_readme(shared_datasets, name):
    raw = load_dataset(CONFIGS / f"{name}.yaml", data_root=shared_datasets)
    assert raw.task_type == "token_classification"
    for split, (n_sentences, n_tokens, entities) in NER[name].items():
        stats = token_stats(raw.splits[split])
        assert (stats.sentences, stats.tokens, dict(stats.entities)) == (n_sentences, n_tokens, entities), (
            split
        )
        assert all(len(ex.tokens) == len(ex.label) for ex in raw.splits[split])
    assert sum(sum(c.values()) for c in raw.repaired.values()) == 0  # both are clean IOB2
    assert raw.n_dropped == 0
    assert (
        sum(token_stats(raw.splits[s]).entities.total() for s in raw.splits)
        == {
            "conll2003": 23499 + 5942 + 5648,
            "wnut17": 1975 + 836 + 1079,
        }[name]
    )


@pytest.mark.slow
def test_anercorp_camel_cut_matches_its_readme(shared_datasets):
    raw = load_dataset(CONFIGS / "anercorp_ar.yaml", data_root=shared_datasets)
    train, dev, test = (token_stats(raw.splits[s]) for s in ("train", "dev", "test"))
    repaired = {split: dict(c) for split, c in raw.repaired.items()}
    # test part = lines 125306-150313: 25,008 token lines, 945 sentences ending in ".", 2,231 entities
    assert (test.sentences, test.tokens) == (945, 25008)
    assert dict(test.entities) == {"PERS": 888, "LOC": 657, "ORG": 450, "MISC": 236}
    assert repaired["test"] == {"orphan_i_tag": 18}
    # train part = lines 1-125305 (train + dev here): 4,164 sentences, 9,002 entities, 39 orphan I- tags,
    # and all 191 empty-token lines (dropped, counted)
    assert train.sentences + dev.sentences == 4164
    empty = repaired["train"].get("empty_token", 0) + repaired["dev"].get("empty_token", 0)
    assert empty == 191
    assert train.tokens + dev.tokens + empty == 125305
    assert dict(train.entities + dev.entities) == {"PERS": 2736, "LOC": 3780, "ORG": 1586, "MISC": 900}
    assert repaired["train"]["orphan_i_tag"] + repaired["dev"]["orphan_i_tag"] == 39
    assert dev.tokens + repaired["dev"].get("empty_token", 0) == 125305 - 112791  # lines 112792-125305
    assert all(ex.tokens[-1] == "." for split in raw.splits.values() for ex in split)
    assert raw.splits["test"][0].tokens[:2] == ["الصالحية ونايفة", "المفرق"]  # a token holding a space
    assert raw.splits["train"][0].metadata["language"] == "ar"


@pytest.mark.slow
def test_prepare_on_conll2003_keeps_the_official_test_when_asked(shared_datasets):
    raw = load_dataset(CONFIGS / "conll2003.yaml", data_root=shared_datasets)
    split = prepare(raw, seed=0, cap=500, keep_given_test=True)
    assert split.task_type == "token_classification"
    assert len(split.train) == 500 and len(split.test) == 3453
    assert sum(split.stats["class_counts"]["test"].values()) == 5648


# file -> (records, text chars min-max, summary chars min-max), from xlsum_sample/README.txt
XLSUM = {
    "en": {"train": (314, 7011, 60, 240), "dev": (754, 3536, 87, 148), "test": (2072, 4072, 134, 173)},
    "ar": {"train": (646, 7934, 51, 324), "dev": (862, 5816, 72, 211), "test": (1191, 4467, 130, 194)},
    "hi": {"train": (6561, 9951, 86, 351), "dev": (1107, 5557, 121, 236), "test": (1088, 4225, 84, 257)},
}


@pytest.mark.slow
@pytest.mark.parametrize("language", sorted(XLSUM))
def test_xlsum_sample_matches_its_readme(shared_datasets, language):
    config = load_dataset_config(CONFIGS / f"xlsum-{language}.yaml")
    assert (config.task_type, config.language) == ("summarisation", language)
    raw = load_dataset(config, data_root=shared_datasets)
    assert raw.schema.names == ["summary"]
    for split, (text_min, text_max, summary_min, summary_max) in XLSUM[language].items():
        rows = raw.splits[split]
        assert len(rows) == 5
        texts = [len(ex.text) for ex in rows]
        summaries = [len(ex.label) for ex in rows]
        assert (min(texts), max(texts), min(summaries), max(summaries)) == (
            text_min,
            text_max,
            summary_min,
            summary_max,
        ), split
        assert all(ex.metadata["language"] == language and ex.metadata["url"] for ex in rows)
    split = prepare(raw, seed=0, keep_given_test=True)
    assert split.task_type == "summarisation" and len(split.test) == 5
