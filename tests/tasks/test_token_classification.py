"""The token-classification task: prompts, answer reading, alignment to tokens, responses."""

import json

import pytest

from socialens.core.registry import TASKS
from socialens.core.types import Example, Label, LabelSchema, PredictionRecord, Status
from socialens.tasks.base import Task
from socialens.tasks.entity_answers import Listed, align_entities, read_answer
from socialens.tasks.token_classification import TokenClassificationTask, entity_details, sentence_tokens

TASK = TokenClassificationTask()
SCHEMA = LabelSchema(
    [
        Label("PER", "names of people", ("person",)),
        Label("LOC", "names of places", ("location",)),
        Label("ORG", "organisations"),
        Label("MISC"),
    ]
)


def sentence(words_and_tags, id="s"):
    tokens = [w for w, _ in words_and_tags]
    tags = [t for _, t in words_and_tags]
    return Example(id, " ".join(tokens), tags, tokens=tokens)


def tagged(text, id="s"):
    """'John/B-PER Smith/I-PER went' -> an Example (a word without /TAG is O)."""
    pairs = []
    for word in text.split():
        token, _, tag = word.rpartition("/") if "/" in word[1:] else (word, "", "O")
        pairs.append((token, tag or "O"))
    return sentence(pairs, id)


SENTENCES = [
    tagged(text, f"s{i}")
    for i, text in enumerate(
        [
            "John/B-PER Smith/I-PER flew from the U.S/B-LOC ./I-LOC to Paris/B-LOC with John/B-PER "
            "Smith/I-PER 's friend",
            "EU/B-ORG rejects German/B-MISC call to boycott British/B-MISC lamb .",
            "Peter/B-PER Blackburn/I-PER",
            "The match ended in a draw .",
            '" New/B-LOC York/I-LOC " ,/O said Mr./O Wu/B-PER of Acme/B-ORG Corp./I-ORG ,/O New/B-LOC York/I-LOC',
        ]
    )
]


def parse(raw, example, fmt="serial"):
    return TASK.parse(raw, example, SCHEMA, fmt)


def test_registered_and_follows_the_protocol():
    task = TASKS.get("token_classification")()
    assert isinstance(task, Task)
    assert task.headline_metric == "micro_f1" and task.headline_metric in task.scalar_metrics
    assert task.output_formats == ("serial", "json") and task.label_prompts is False


def test_stratify_key_names_the_entity_types_present():
    assert TASK.stratify_key(SENTENCES[1]) == "MISC+ORG"
    assert TASK.stratify_key(SENTENCES[3]) == "O"
    assert TASK.stratify_key(Example("x", "unlabelled text")) is None


@pytest.mark.parametrize("fmt", ["serial", "json"])
@pytest.mark.parametrize("index", range(len(SENTENCES)))
def test_answer_text_parses_back_to_the_gold_tags(fmt, index):
    example = SENTENCES[index]
    answer = TASK.answer_text(example, SCHEMA, fmt)
    parsed = parse(answer, example, fmt)
    assert parsed.status is Status.OK, parsed.error
    assert parsed.predicted == example.label
    assert parsed.details["hallucinated"] == 0 and parsed.details["overlapping"] == 0
    assert len(parsed.details["entities"]) == sum(tag.startswith("B-") for tag in example.label)


def test_answer_text_in_both_formats():
    example = SENTENCES[1]
    assert TASK.answer_text(example, SCHEMA, "serial") == "EU -> ORG\nGerman -> MISC\nBritish -> MISC"
    assert json.loads(TASK.answer_text(example, SCHEMA, "json")) == [
        {"text": "EU", "type": "ORG"},
        {"text": "German", "type": "MISC"},
        {"text": "British", "type": "MISC"},
    ]
    assert TASK.answer_text(SENTENCES[3], SCHEMA, "serial") == "none"
    assert TASK.answer_text(SENTENCES[3], SCHEMA, "json") == "[]"


def test_messages_explain_types_format_and_carry_shots_as_turns():
    shots = [SENTENCES[1], SENTENCES[2]]
    messages = TASK.messages(
        SENTENCES[0], shots, SCHEMA, output_format="json", description="news", system_prompt="Be exact."
    )
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[0]["content"] == "Be exact."
    ask = messages[-1]["content"]
    assert "(news)" in ask and "- PER: names of people (also called: person)" in ask and "- MISC" in ask
    assert "JSON list" in ask and ask.endswith("Sentence: " + SENTENCES[0].text)
    assert messages[2]["content"] == TASK.answer_text(shots[0], SCHEMA, "json")
    serial = TASK.messages(SENTENCES[0], [], SCHEMA, output_format="serial")
    assert [m["role"] for m in serial] == ["user"] and "`entity text -> TYPE`" in serial[0]["content"]


def test_generation_budget_stop_and_json_schema():
    serial = TASK.generation(SCHEMA, "serial")
    assert serial.max_tokens >= 128 and serial.json_schema is None and "\nSentence:" in serial.stop
    schema = json.loads(TASK.generation(SCHEMA, "json").json_schema)
    assert schema["type"] == "array"
    assert schema["items"]["properties"]["type"]["enum"] == ["PER", "LOC", "ORG", "MISC"]
    assert schema["items"]["required"] == ["text", "type"]


# ---------------------------------------------------------------- alignment


def test_exact_and_case_insensitive_alignment():
    example = SENTENCES[0]
    parsed = parse("john smith -> person\nPARIS -> loc", example)
    assert parsed.status is Status.OK
    assert parsed.predicted[:2] == ["B-PER", "I-PER"] and parsed.predicted[8] == "B-LOC"
    assert parsed.details["aligned_by"] == {"case": 2}
    assert [e["text"] for e in parsed.details["entities"]] == ["John Smith", "Paris"]


def test_punctuation_spacing_is_ignored():
    parsed = parse("U.S. -> LOC", SENTENCES[0])
    assert parsed.predicted[5:7] == ["B-LOC", "I-LOC"]
    assert parsed.details["aligned_by"] == {"spacing": 1}


def test_repeated_mentions_map_to_successive_occurrences():
    parsed = parse("John Smith -> PER\nJohn Smith -> PER", SENTENCES[0])
    assert parsed.predicted == ["B-PER", "I-PER"] + ["O"] * 8 + ["B-PER", "I-PER", "O", "O"]
    once = parse("John Smith -> PER", SENTENCES[0])
    assert once.predicted.count("B-PER") == 1 and once.predicted[0] == "B-PER"  # leftmost first


def test_hallucinated_entity_is_counted_not_tagged():
    parsed = parse("Berlin -> LOC\nParis -> LOC", SENTENCES[0])
    assert parsed.status is Status.OK
    assert parsed.details["hallucinated"] == 1
    assert parsed.details["hallucinated_entities"] == [{"text": "Berlin", "type": "LOC"}]
    assert parsed.predicted.count("B-LOC") == 1


def test_unknown_type_is_dropped_and_counted():
    parsed = parse("Paris -> CITY\nJohn Smith -> PER", SENTENCES[0])
    assert parsed.status is Status.OK
    assert parsed.details["invalid_type"] == 1
    assert parsed.details["invalid_type_entities"] == [{"text": "Paris", "type": "CITY"}]
    assert "B-LOC" not in parsed.predicted
    only_unknown = parse("Paris -> CITY", SENTENCES[0])
    assert only_unknown.status is Status.INVALID and "CITY" in only_unknown.error


def test_overlapping_spans_keep_the_longest_and_count_the_dropped():
    example = tagged("New/B-LOC York/I-LOC City/I-LOC is big")
    parsed = parse("New York -> LOC\nNew York City -> LOC\nYork -> PER", example)
    assert parsed.predicted == ["B-LOC", "I-LOC", "I-LOC", "O", "O"]
    assert parsed.details["overlapping"] == 2
    assert parsed.details["overlapping_entities"] == [
        {"text": "New York", "type": "LOC"},
        {"text": "York", "type": "PER"},
    ]


def test_partial_token_match_only_at_a_token_edge():
    tokens = ["Smith's", "car", "in", "Germany"]
    result = align_entities(tokens, [Listed("Smith", "PER"), Listed("an", "LOC")], SCHEMA)
    assert [(s.start, s.end, s.type) for s in result.spans] == [(0, 1, "PER")]
    assert result.stages == {"partial": 1}
    assert result.hallucinated == [Listed("an", "LOC")]


def test_quotes_and_trailing_punctuation_are_trimmed():
    parsed = parse('"Paris." -> LOC', SENTENCES[0])
    assert parsed.predicted[8] == "B-LOC" and parsed.details["aligned_by"] == {"trimmed": 1}


# ---------------------------------------------------------------- reading answers


@pytest.mark.parametrize(
    "raw",
    [
        "[John Smith](PER) flew to [Paris](LOC)",
        "John Smith (PER), Paris (LOC)",
        "- John Smith -> PER\n- Paris -> LOC",
        "1. **John Smith** -> PER\n2. Paris => Location",
        "John Smith -> PER, Paris -> LOC",
        "Here are the entities:\nJohn Smith → PER\nParis → LOC",
        "PER: John Smith\nLOC: Paris\nORG: none",
        '```json\n[{"text": "John Smith", "type": "PER"}, {"text": "Paris", "type": "LOC"}]\n```',
        "[{'text': 'John Smith', 'type': 'PER'}, {'text': 'Paris', 'type': 'LOC'}]",
        '{"entities": [{"entity": "John Smith", "label": "PER"}, {"entity": "Paris", "label": "LOC"}]}',
    ],
)
@pytest.mark.parametrize("fmt", ["serial", "json"])
def test_accepted_answer_forms(raw, fmt):
    parsed = parse(raw, SENTENCES[0], fmt)
    assert parsed.status is Status.OK, parsed.error
    assert [(e["text"], e["type"]) for e in parsed.details["entities"]] == [
        ("John Smith", "PER"),
        ("Paris", "LOC"),
    ]


def test_prose_in_parentheses_is_not_an_entity():
    answer = read_answer("The sentence (which is short) has names.", "serial", SCHEMA)
    assert not answer.readable


def test_truncated_json_keeps_complete_items():
    parsed = parse('[{"text": "Paris", "type": "LOC"}, {"text": "John Sm', SENTENCES[0], "json")
    assert parsed.status is Status.OK
    assert parsed.details["truncated"] is True and parsed.predicted.count("B-LOC") == 1


@pytest.mark.parametrize(
    "raw,fmt",
    [
        ("none", "serial"),
        ("None.", "serial"),
        ("", "serial"),
        ("[]", "json"),
        ("No entities found.", "json"),
        ("[]", "serial"),
    ],
)
def test_no_entities_is_a_valid_answer(raw, fmt):
    parsed = parse(raw, SENTENCES[0], fmt)
    assert parsed.status is Status.OK
    assert parsed.predicted == ["O"] * len(SENTENCES[0].tokens)
    assert parsed.details["entities"] == [] and parsed.details["listed"] == 0


@pytest.mark.parametrize("fmt", ["serial", "json"])
def test_refusal_is_refused(fmt):
    parsed = parse("I'm sorry, but I cannot help with identifying people in this text.", SENTENCES[0], fmt)
    assert parsed.status is Status.REFUSED and parsed.predicted is None and parsed.error.startswith("refused")


@pytest.mark.parametrize(
    "raw,fmt,reason",
    [
        ("The weather is nice today.", "serial", "entity text -> TYPE"),
        ("", "json", "empty"),
        ('{"answer": 42}', "json", "holds no list"),
        ('[{"foo": 1}, {"bar": 2}]', "json", '"text" and "type"'),
        ("[{'text': 'John'", "json", "cannot be read"),
    ],
)
def test_garbage_is_invalid_with_a_reason(raw, fmt, reason):
    parsed = parse(raw, SENTENCES[0], fmt)
    assert parsed.status is Status.INVALID and parsed.predicted is None
    assert reason in parsed.error


def test_huge_answer_does_not_hang():
    raw = "[" + '{"text": "Paris", "type": "LOC"}, ' * 2000 + '{"text": "x'
    parsed = parse(raw, SENTENCES[0], "json")
    assert parsed.status is Status.OK and parsed.details["truncated"] is True
    assert parsed.details["overlapping"] > 0


# ---------------------------------------------------------------- raw texts and responses


def test_raw_text_is_tokenized_with_offsets():
    example = Example("r", "Angela Merkel visited Washington, D.C. on Monday.")
    assert sentence_tokens(example) == [
        "Angela",
        "Merkel",
        "visited",
        "Washington",
        ",",
        "D.C.",
        "on",
        "Monday",
        ".",
    ]
    parsed = parse("Angela Merkel -> PER\nWashington, D.C. -> LOC", example)
    assert parsed.status is Status.OK
    record = PredictionRecord("r", None, parsed.predicted, details=parsed.details)
    response = TASK.response(record)
    assert response["entities"] == [
        {"text": "Angela Merkel", "type": "PER", "start": 0, "end": 13},
        {"text": "Washington, D.C.", "type": "LOC", "start": 22, "end": 38},
    ]
    assert response["tags"] == parsed.predicted
    for entity in response["entities"]:
        assert example.text[entity["start"] : entity["end"]] == entity["text"]


def test_response_without_stored_entities_and_for_non_ok():
    example = SENTENCES[2]
    details = entity_details(example.text, example.tokens, example.label)
    details.pop("entities")
    response = TASK.response(PredictionRecord("s", example.label, example.label, details=details))
    assert response["entities"] == [{"text": "Peter Blackburn", "type": "PER", "start": 0, "end": 15}]
    bare = TASK.response(PredictionRecord("s", None, ["B-PER", "I-PER"]))
    assert bare["entities"] == [{"text": None, "type": "PER", "start": None, "end": None}]
    refused = TASK.response(PredictionRecord("s", None, None, status=Status.REFUSED))
    assert refused == {"entities": None, "tags": None}


def test_worst_sentences_use_stored_entity_texts_without_tokens():
    gold = ["B-PER", "I-PER", "O"]
    predicted = ["B-ORG", "I-ORG", "O"]
    details = {"entities": [{"text": "John Smith", "type": "ORG", "token_start": 0, "token_end": 2}]}
    records = [PredictionRecord("e", gold, predicted, details=details)]
    worst = TASK.worst_sentences(records, ["PER", "ORG"])
    assert worst.rows == [["e", 2, "ok", "", "[0:2] (PER)", "John Smith (ORG)"]]


# ---------------------------------------------------------------- a real model, end to end


@pytest.fixture(scope="module")
def smollm2():
    pytest.importorskip("llama_cpp")
    from socialens.llm.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend("builtin:smollm2-135m-instruct", n_ctx=2048, n_threads=1)
    yield backend
    backend.close()


@pytest.mark.slow
@pytest.mark.parametrize("fmt,decoding", [("serial", "generate"), ("json", "constrained")])
def test_prompted_smollm2_tags_every_sentence(smollm2, tmp_path, fmt, decoding):
    from socialens.classifiers.prompted import PromptedClassifier, PromptedParams

    params = PromptedParams(
        prompt=fmt,
        decoding=decoding,
        shots=1,
        shot_selection="stratified",
        cache_path=str(tmp_path / "c.sqlite"),
    )
    clf = PromptedClassifier(params, backend=smollm2).fit(
        SENTENCES, schema=SCHEMA, task="news", task_type="token_classification"
    )
    assert [m["role"] for m in clf.prompts(SENTENCES[:1])[0]][-2:] == ["assistant", "user"]
    asked = SENTENCES[:3]  # the pool holds all five (shots by entity types)
    records = clf.predict(asked)
    assert [r.id for r in records] == [ex.id for ex in asked]
    for record, example in zip(records, asked, strict=True):
        assert record.status in (Status.OK, Status.REFUSED, Status.INVALID), record.error
        assert record.gold == example.label and record.raw_output is not None
        if record.status is Status.OK:
            assert len(record.predicted) == len(example.tokens)
            assert record.details["tokens"] == example.tokens
            listed = record.details["listed"]
            kept = len(record.details["entities"])
            dropped = sum(record.details[k] for k in ("hallucinated", "invalid_type", "overlapping"))
            assert kept + dropped == listed  # every listed entity is accounted for
        else:
            assert record.predicted is None and record.error
    if decoding == "constrained":  # the JSON schema's grammar: every answer is a readable list
        assert all(r.status is Status.OK for r in records), [r.raw_output for r in records]
        assert all(r.raw_output.lstrip().startswith("[") for r in records)
    metrics = TASK.metrics(records, SCHEMA.names, n_bootstrap=50)
    assert metrics["n"] == len(asked) and 0.0 <= metrics["micro_f1"] <= 1.0
