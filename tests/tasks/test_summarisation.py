"""The summarisation task: the stop rule, prompts, parsing, and ROUGE that keeps Arabic and
Devanagari (rouge-score's default tokenizer drops them), from records only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rouge_score import rouge_scorer

from socialens.core.errors import ConfigError
from socialens.core.registry import TASKS
from socialens.core.types import Example, LabelSchema, PredictionRecord, Status
from socialens.tasks.base import Task
from socialens.tasks.rouge import rouge, tokenize
from socialens.tasks.summarisation import SummarisationTask, first_sentence

SCHEMA = LabelSchema.from_names(["summary"])  # unused by the task; the protocol passes one
XLSUM = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "xlsum_sample"

AR_REF = "تنظر محكمة عسكرية أمريكية في قضية الطبيب النفسي نضال حسن"
AR_OVERLAP = "محكمة عسكرية أمريكية تنظر اليوم في قضية نضال حسن"
HI_REF = "मालेगाँव धमाकों के सिलसिले में गिरफ़्तार साध्वी प्रज्ञा सिंह ठाकुर को टेस्ट से गुज़रना होगा"
HI_OVERLAP = "साध्वी प्रज्ञा सिंह ठाकुर को अब ब्रेन मैपिंग टेस्ट से गुज़रना होगा"


def record(rid, gold, predicted, status=Status.OK, **metadata):
    return PredictionRecord(id=rid, gold=gold, predicted=predicted, status=status, metadata=metadata)


# -- registry and protocol


def test_registered_and_implements_the_protocol():
    task = TASKS.get("summarisation")()
    assert isinstance(task, SummarisationTask) and isinstance(task, Task)
    assert task.headline_metric == "rouge2" and task.headline_metric in task.scalar_metrics
    assert task.label_prompts is False and task.output_formats[0] == "serial"
    assert task.stratify_key(Example("a", "article", "summary")) is None


def test_unknown_stop_rule_is_a_config_error():
    with pytest.raises(ConfigError, match="stop_rule 'period'.*eos, first_sentence"):
        SummarisationTask(stop_rule="period")


# -- the stop rule


@pytest.mark.parametrize(
    ("text", "first"),
    [
        ("The U.S. economy grew 3.5% in 2023. Then it fell.", "The U.S. economy grew 3.5% in 2023."),
        ("Dr. Smith left! Then he came back.", "Dr. Smith left!"),
        ("John F. Kennedy died in 1963. Others lived.", "John F. Kennedy died in 1963."),
        ("See bbc.co.uk for more. Yes.", "See bbc.co.uk for more."),
        ('He said "stop." Then he left.', 'He said "stop."'),
        ("Is it true? Maybe.", "Is it true?"),
        ("  Trailing space and no end  ", "Trailing space and no end"),
        ("They moved to the U.S.", "They moved to the U.S."),
        ("هل جاء الرجل؟ نعم جاء.", "هل جاء الرجل؟"),
        ("وصل الوفد إلى القاهرة۔ ثم غادر.", "وصل الوفد إلى القاهرة۔"),
        ("वह दिल्ली आया। फिर चला गया।", "वह दिल्ली आया।"),
        ("टेस्ट से गुज़रना होगा. ये सारे टेस्ट", "टेस्ट से गुज़रना होगा."),
        ("", ""),
    ],
)
def test_first_sentence(text, first):
    assert first_sentence(text) == first


def test_stop_rule_applies_in_parse_and_keeps_details():
    article = Example("x", "An article. It has two sentences.", "ref", metadata={"language": "en"})
    raw = "The U.S. budget passed. Then more text that LlamaLens would not have generated."
    eos = SummarisationTask().parse(raw, article, SCHEMA, "serial")
    cut = SummarisationTask(stop_rule="first_sentence").parse(raw, article, SCHEMA, "serial")
    assert eos.status is Status.OK and eos.predicted == raw
    assert cut.status is Status.OK and cut.predicted == "The U.S. budget passed."
    assert cut.details == {"article_words": 6, "stop_rule": "first_sentence", "cut": True}


# -- prompts


def test_messages_name_the_language_and_answer_shots_with_references():
    task = SummarisationTask()
    shot = Example("s", "Shot article.", "Shot summary.", metadata={"language": "ar"})
    query = Example("q", "Query article.", "Query summary.", metadata={"language": "hi"})
    messages = task.messages(query, [shot], SCHEMA, output_format="serial", system_prompt="Be brief.")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"] == "Be brief."
    assert "in one sentence, in Arabic." in messages[1]["content"]
    assert messages[1]["content"].endswith("\n\nArticle: Shot article.")
    assert messages[2]["content"] == "Shot summary."
    assert "in one sentence, in Hindi." in messages[3]["content"]
    assert messages[3]["content"].endswith("\n\nArticle: Query article.")
    unknown = Example("u", "Text.", "S.")
    plain = task.messages(unknown, [], SCHEMA, output_format="serial")
    assert [m["role"] for m in plain] == ["user"]
    assert "in the same language as the article" in plain[0]["content"]
    named = Example("n", "Text.", "S.", metadata={"language": "arabic"})
    assert "in Arabic." in task.messages(named, [], SCHEMA, output_format="serial")[0]["content"]


def test_json_format_answer_and_generation():
    task = SummarisationTask()
    shot = Example("s", "Article.", "ملخص قصير.")
    assert task.answer_text(shot, SCHEMA, "json") == '{"summary": "ملخص قصير."}'
    assert task.answer_text(shot, SCHEMA, "serial") == "ملخص قصير."
    serial, as_json = task.generation(SCHEMA, "serial"), task.generation(SCHEMA, "json")
    assert serial.max_tokens == 96 and serial.stop == () and serial.json_schema is None
    assert json.loads(as_json.json_schema)["required"] == ["summary"]
    assert SummarisationTask(max_tokens=40).generation(SCHEMA, "serial").max_tokens == 40
    with pytest.raises(ConfigError, match="output format 'inline'"):
        task.generation(SCHEMA, "inline")


# -- parsing


@pytest.mark.parametrize(
    ("raw", "fmt", "status", "predicted"),
    [
        ("  A summary.  ", "serial", Status.OK, "A summary."),
        ("Summary: A summary.", "serial", Status.OK, "A summary."),
        ("<think>hmm</think>\nالملخص: ملخص.", "serial", Status.OK, "ملخص."),
        ("", "serial", Status.INVALID, None),
        ("   \n ", "serial", Status.INVALID, None),
        ("I'm sorry, but I can't help with summarising this article.", "serial", Status.REFUSED, None),
        ("عذراً، لا يمكنني تلخيص هذا المقال.", "serial", Status.REFUSED, None),
        ('```json\n{"summary": " A summary. "}\n```', "json", Status.OK, "A summary."),
        ('{"title": "x"}', "json", Status.INVALID, None),
        ("A summary without JSON.", "json", Status.INVALID, None),
    ],
)
def test_parse(raw, fmt, status, predicted):
    parsed = SummarisationTask().parse(raw, Example("x", "A plain article.", "ref"), SCHEMA, fmt)
    assert parsed.status is status and parsed.predicted == predicted
    assert (parsed.error is None) == (status is Status.OK)


def test_a_summary_repeating_its_article_is_not_a_refusal():
    # "اعتذر" (apologised) and "ينتهك" (violates) are refusal cues in a label answer, news in an article
    article = Example("x", "اعتذر الوزير عن تصريحاته وقال إن الاتفاق ينتهك القانون الدولي.", "ref")
    parsed = SummarisationTask().parse("اعتذر الوزير عن تصريحاته.", article, SCHEMA, "serial")
    assert parsed.status is Status.OK and parsed.predicted == "اعتذر الوزير عن تصريحاته."


# -- ROUGE in every script


def test_tokenizer_keeps_arabic_and_devanagari_words_whole():
    assert tokenize("हिन्दी भाषा, ठीक!") == ["हिन्दी", "भाषा", "ठीक"]  # virama and vowel signs are \p{M}
    assert tokenize("الـعربية (اللغة) 3.5 Ok") == ["العربية", "اللغة", "3", "5", "ok"]  # tatweel dropped
    assert tokenize("गिर\u095e्तार") == tokenize("गिर\u092b\u093c्तार")  # precomposed and decomposed nukta


@pytest.mark.parametrize(("reference", "overlap"), [(AR_REF, AR_OVERLAP), (HI_REF, HI_OVERLAP)])
def test_non_latin_summaries_get_rouge_where_rouge_score_default_gives_zero(reference, overlap):
    default = rouge_scorer.RougeScorer(["rouge1", "rouge2"])
    assert default.score(reference, reference)["rouge2"].fmeasure == 0.0  # every word dropped
    assert default.score(reference, overlap)["rouge1"].fmeasure == 0.0
    assert rouge(reference, reference)["rouge2"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    partial = rouge(overlap, reference)
    assert 0 < partial["rouge2"]["f1"] < partial["rouge1"]["f1"] < 1


def test_rouge_numbers_by_hand():
    scores = rouge("the cat sat on the mat", "the cat sat on a mat")
    assert scores["rouge2"]["f1"] == pytest.approx(3 / 5)  # the-cat, cat-sat, sat-on of 5 bigrams each
    assert scores["rouge1"]["f1"] == pytest.approx(5 / 6)
    assert scores["rougeL"]["f1"] == pytest.approx(5 / 6)  # the cat sat on ... mat


# -- metrics from records


RECORDS = [
    record("a", "the cat sat on a mat", "the cat sat on the mat", language="en"),
    record("b", "a dog ran", None, Status.REFUSED, language="en"),
    record("c", AR_REF, AR_REF, language="ar"),
    record("d", HI_REF, None, Status.INVALID, language="hi"),
]


def test_metrics_keys_and_values():
    metrics = SummarisationTask().metrics(RECORDS, [], n_bootstrap=200, seed=1, slice_keys=["language"])
    assert metrics["n"] == 4 and metrics["n_total"] == 4 and "per_class" not in metrics
    assert metrics["labels"] == []
    assert metrics["rouge2"] == pytest.approx((0.6 + 0 + 1 + 0) / 4)  # non-ok records score 0
    assert metrics["rouge1"] == pytest.approx((5 / 6 + 1) / 4)
    assert metrics["precision"]["rouge2"] == pytest.approx(0.4)
    assert metrics["recall"]["rouge2"] == pytest.approx(0.4)
    assert metrics["status"]["counts"] == {"ok": 2, "refused": 1, "invalid": 1, "error": 0}
    assert metrics["status"]["rates"]["refused"] == 0.25
    low, high = metrics["ci"]["rouge2"]
    assert 0 <= low <= metrics["rouge2"] <= high <= 1 and metrics["ci"]["n_bootstrap"] == 200
    assert SummarisationTask().metrics(RECORDS, [], n_bootstrap=200, seed=1)["ci"] == metrics["ci"]
    slices = metrics["slices"]["language"]
    assert sorted(slices) == ["ar", "en", "hi"]
    assert slices["ar"]["rouge2"] == 1.0 and slices["hi"]["rouge2"] == 0.0
    assert slices["en"]["rouge2"] == pytest.approx(0.3) and slices["en"]["status"]["rates"]["refused"] == 0.5
    lengths = metrics["lengths"]
    assert lengths["prediction_words"]["mean"] == pytest.approx((6 + 10) / 2)
    assert lengths["reference_words"]["n"] == 4
    assert lengths["length_ratio"] == pytest.approx((6 / 6 + 1) / 2)
    assert json.dumps(metrics)  # JSON-serialisable


def test_metrics_of_nothing_and_compression_from_details():
    empty = SummarisationTask().metrics([], [])
    assert empty["n"] == 0 and empty["rouge2"] is None and empty["ci"]["rouge2"] is None
    task = SummarisationTask()
    article = Example("x", "one two three four five six seven eight", "one two")
    parsed = task.parse("one two three four", article, SCHEMA, "serial")
    rec = PredictionRecord("x", "one two", parsed.predicted, parsed.status, details=parsed.details)
    compression = task.metrics([rec], [])["lengths"]["compression_ratio"]
    assert compression == {"prediction": 2.0, "reference": 4.0}


def test_report_tables_and_response():
    task = SummarisationTask()
    metrics = task.metrics(RECORDS, [], n_bootstrap=50, slice_keys=["language"])
    tables = {table.title.split(" (")[0]: table for table in task.report_tables(metrics, RECORDS)}
    assert set(tables) == {"Summary lengths", "ROUGE by language", "Worst summaries"}
    worst = tables["Worst summaries"]
    assert worst.headers == ["id", "ROUGE-2", "reference", "prediction"]
    assert [row[0] for row in worst.rows] == ["b", "d", "a", "c"]
    assert worst.rows[0][3] == "(refused)" and worst.rows[2][1] == pytest.approx(0.6)
    assert [row[0] for row in tables["ROUGE by language"].rows] == ["ar", "en", "hi"]
    assert task.response(RECORDS[0]) == {"summary": "the cat sat on the mat"}


# -- real XL-Sum text (the 45-record sample; no real score can be made from it)


def _xlsum(language: str) -> list[dict]:
    path = XLSUM / f"{language}_test.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize(("language", "code"), [("arabic", "ar"), ("hindi", "hi"), ("english", "en")])
def test_lead_sentence_baseline_on_xlsum_sample(language, code):
    rows = _xlsum(language)
    task = SummarisationTask(stop_rule="first_sentence")
    records = []
    for row in rows:
        example = Example(row["id"], row["text"], row["summary"], metadata={"language": code})
        parsed = task.parse(row["text"], example, SCHEMA, "serial")  # the article's lead sentence
        assert parsed.status is Status.OK and len(parsed.predicted) < len(row["text"])
        records.append(
            PredictionRecord(
                row["id"], row["summary"], parsed.predicted, parsed.status, metadata={"language": code}
            )
        )
    metrics = task.metrics(records, [], n_bootstrap=100)
    assert metrics["n"] == 5 and metrics["rouge1"] > 0.05
    default = rouge_scorer.RougeScorer(["rouge1"])
    default_rouge1 = sum(default.score(r.gold, r.predicted)["rouge1"].fmeasure for r in records) / 5
    if code != "en":
        assert default_rouge1 == 0.0  # rouge-score's own tokenizer sees no words at all
    identical = task.metrics([record(r.id, r.gold, r.gold) for r in records], [], n_bootstrap=0)
    assert identical["rouge2"] == 1.0 and identical["ci"]["rouge2"] is None
