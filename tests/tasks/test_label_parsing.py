"""parse_label: a table of real-looking LLM outputs, and a property test that it never raises."""

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from socialens.core.types import Label, LabelSchema
from socialens.data.datasets import load_dataset_config
from socialens.tasks.label_parsing import LabelParser, ParseResult, failure_reason, is_refusal, parse_label

SCHEMAS = {
    "misinfo": LabelSchema(
        [
            Label("belief", "spreads the claim", ("believe", "supports", "spreads")),
            Label("debunk", "refutes the claim", ("refute", "refutes", "correction")),
            Label("other", "neither", ("neither", "none", "unrelated")),
        ]
    ),
    "factcheck": LabelSchema.from_names(["false", "partially false", "true", "other"]),
    "hate": LabelSchema.from_names(["not-hate", "hate"]),
    "yesno": LabelSchema.from_names(["yes", "no"]),
    "sarcasm": LabelSchema.from_names(["sarcastic", "not sarcastic"]),
}
CASES = yaml.safe_load(
    (Path(__file__).parent / "fixtures" / "parsing_cases.yaml").read_text(encoding="utf-8")
)
REAL = yaml.safe_load((Path(__file__).parent / "fixtures" / "real_outputs.yaml").read_text(encoding="utf-8"))
DATASET_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "datasets"


def test_fixture_is_big_enough():
    assert len(CASES) >= 40
    assert {"misinfo", "factcheck", "hate"} <= {case["schema"] for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=[f"{i}-{c['schema']}" for i, c in enumerate(CASES)])
def test_parse_table(case):
    schema = SCHEMAS[case["schema"]]
    result = parse_label(case["output"], schema, style=case.get("style", "serial"))
    expect = str(case["expect"])
    if expect in ("refused", "invalid"):
        assert (result.label, result.status) == (None, expect), result
    else:
        assert (result.label, result.status) == (expect, "ok"), result


def test_real_outputs_fixture_covers_both_languages_and_models():
    assert len(REAL) >= 60
    assert {case["dataset"] for case in REAL} == {"arsarcasm_v2-sarcasm", "hasoc2019_hi-a"}
    assert {case["model"] for case in REAL} == {"smollm2", "gemma3"}
    assert sum("was" in case for case in REAL) == 20  # the answers the earlier parser misread


@pytest.mark.parametrize("case", REAL, ids=[f"{i}-{c['dataset']}-{c['model']}" for i, c in enumerate(REAL)])
def test_parse_real_outputs(case):
    schema = load_dataset_config(DATASET_CONFIGS / f"{case['dataset']}.yaml").to_schema()
    result = parse_label(case["output"], schema)
    expect = str(case["expect"])
    if expect in ("refused", "invalid"):
        assert (result.label, result.status) == (None, expect), result
    else:
        assert (result.label, result.status) == (expect, "ok"), result


@pytest.mark.parametrize(
    ("output", "expect"),
    [
        ("The tweet is sarcastic.", "sarcastic"),  # "is sarcastic" is not close to "not sarcastic"
        ("Not sarcastic, sarcastic", "invalid"),  # the "not" is the first label's
        ("1. The tweet means what it says; it is not sarcastic.", "not sarcastic"),  # a description
        ("The tweet means what it says", "not sarcastic"),  # the start of one
        ("- sarcastic: mocks\n- not sarcastic: means it", "invalid"),  # the prompt's list echoed
        ("<b>Sarcastic</b>", "sarcastic"),
        ("2) not sarcastic", "not sarcastic"),
    ],
)
def test_echoes_descriptions_and_markup(output, expect):
    schema = LabelSchema(
        [
            Label("not sarcastic", "The tweet means what it says; it is not sarcastic.", ("FALSE",)),
            Label("sarcastic", "The tweet is sarcastic: it mocks or says the opposite.", ("TRUE",)),
        ]
    )
    result = parse_label(output, schema)
    assert (result.label or result.status) == expect, result


def test_a_negation_alias_is_a_label_only_as_the_answer():
    schema = LabelSchema([Label("not offensive", aliases=("NOT",)), Label("offensive", aliases=("HOF",))])
    assert parse_label("NOT", schema).label == "not offensive"
    assert parse_label("Answer: NOT", schema).label == "not offensive"
    assert parse_label("I am not a political activist.", schema).status == "invalid"


def test_methods_are_reported():
    schema = SCHEMAS["misinfo"]
    assert parse_label("belief", schema).method == "exact"
    assert parse_label('{"label": "belief"}', schema, style="json").method == "json"
    assert parse_label("Label: belief", schema).method == "cue"
    assert parse_label("belif", schema).method == "fuzzy"
    assert parse_label("دحض", schema).method == "transliteration"
    assert parse_label("", schema).method == "empty"
    assert parse_label("belief or debunk", schema).method == "ambiguous"


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ("belief", None),
        ("", "invalid: the answer is empty"),
        ("The", "invalid: the answer names none of belief, debunk, other"),
        (
            "belief or debunk",
            "invalid: the answer names several labels and none of them is clearly the answer",
        ),
        ('{"label": "maybe"}', "invalid: the answer's JSON label is none of belief, debunk, other"),
        ("I'm sorry, but I can't help with that.", "refused: the model refused to answer"),
    ],
)
def test_failure_reason_says_why_an_answer_gave_no_label(output, reason):
    schema = SCHEMAS["misinfo"]
    assert failure_reason(parse_label(output, schema, style="json"), schema.names) == reason


def test_threshold_controls_fuzzy_matching():
    schema = SCHEMAS["misinfo"]
    assert parse_label("debunkd", schema, threshold=0.8).label == "debunk"
    assert parse_label("debunkd", schema, threshold=0.99).status == "invalid"


def test_refusal_detection_and_parser_object():
    assert is_refusal("I'm sorry, but I can't help with that.")
    assert not is_refusal("I cannot believe people still think this. Debunk.")
    parser = LabelParser(SCHEMAS["hate"], style="json")
    assert parser('{"label": "not hate"}') == ParseResult("not-hate", "ok", "json")


def test_junk_and_huge_inputs():
    schema = SCHEMAS["factcheck"]
    for junk in [
        "{" * 5000,
        "}{" * 3000,
        "\x00\x01\xff\ud800",
        '{"label": "fal',
        "x" * 200_000,
        "false " * 5000,
    ]:
        result = parse_label(junk, schema)
        assert result.status in ("ok", "invalid", "refused")
    assert parse_label(None, schema).status == "invalid"  # type: ignore[arg-type]
    assert parse_label(b"true", schema).label == "true"  # type: ignore[arg-type]


label_words = st.sampled_from(
    [
        "belief",
        "debunk",
        "other",
        "false",
        "partially false",
        "true",
        "hate",
        "not-hate",
        "Label:",
        "{",
        "}",
        '"',
    ]
)
outputs = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(label_words, st.text(max_size=12)), max_size=12).map(" ".join),
    st.binary(max_size=200).map(lambda b: b.decode("utf-8", errors="replace")),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    output=outputs, schema_name=st.sampled_from(sorted(SCHEMAS)), style=st.sampled_from(["serial", "json"])
)
def test_never_raises_and_is_consistent(output, schema_name, style):
    schema = SCHEMAS[schema_name]
    result = parse_label(output, schema, style=style)
    assert result.status in ("ok", "refused", "invalid")
    assert (result.label is None) == (result.status != "ok")
    assert result.label is None or result.label in schema.names
    assert not result.method.startswith("parser-error"), result
