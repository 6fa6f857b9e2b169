"""PromptBuilder: styles, wordings, shots, custom templates and their errors."""

from pathlib import Path

import pytest
import yaml

from socialens.core.errors import ConfigError
from socialens.core.types import Example, LabelSchema
from socialens.llm.prompts import TEMPLATE_VARIABLES, PromptBuilder, build_messages
from socialens.tasks.label_parsing import parse_label

DEMO = Path(__file__).resolve().parents[2] / "src/socialens/data/builtin/reddit_misinfo_demo/dataset.yaml"


@pytest.fixture(scope="module")
def demo():
    data = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    return LabelSchema.from_dict(data["schema"]), data["task"]


QUERY = Example("q1", "My nephew got the MMR shot and now he has autism.", None, {"topic": "vaccines"})
SHOTS = [
    Example("s1", "The Wakefield paper was retracted for fraud.", "debunk", {"topic": "vaccines"}),
    Example("s2", "Grant money is the only reason for the hoax.", "belief", {"topic": "climate"}),
]


@pytest.mark.parametrize("style", ["serial", "json"])
def test_style_renders_labels_descriptions_text_and_task(demo, style):
    schema, task = demo
    messages = PromptBuilder(schema, style, task=task).messages(QUERY)
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[-1]["content"]
    for label in schema.labels:
        assert f"- {label.name}: {label.description}" in user
    assert QUERY.text in user and task in user
    if style == "json":
        assert '{"label": "<label>"}' in user and "JSON" in messages[0]["content"]


@pytest.mark.parametrize("style", ["serial", "json"])
def test_answers_and_choices_parse_back(demo, style):
    schema, _ = demo
    builder = PromptBuilder(schema, style)
    assert builder.choices() == [builder.answer(n) for n in schema.names]
    assert builder.answer("belief") == ("belief" if style == "serial" else '{"label": "belief"}')
    for name in schema.names:
        result = parse_label(builder.answer(name), schema, style=style)
        assert (result.label, result.status) == (name, "ok")
    with pytest.raises(ValueError):
        builder.answer("nonsense")


def test_topic_wording_and_fallback(demo):
    schema, _ = demo
    builder = PromptBuilder(schema, "serial", wording="topic")
    user = builder.messages(QUERY)[-1]["content"]
    assert schema.wordings["vaccines"]["belief"] in user
    assert schema.description("belief") not in user
    assert "(one of: belief, debunk, other)" in user  # the answer set stays the label names
    for meta in ({"topic": "elections"}, {}):
        other = Example("q2", "text", None, meta)
        fallback = builder.messages(other)[-1]["content"]
        assert schema.description("belief") in fallback
        assert builder.variables(other)["wording"] == "universal"
    # a topic wording that lacks a label falls back for that label only
    schema.wordings["partial"] = {"belief": "backs the claim"}
    partial = builder.messages(Example("q3", "t", None, {"topic": "partial"}))[-1]["content"]
    assert "- belief: backs the claim" in partial and schema.description("debunk") in partial
    with pytest.raises(ConfigError, match="wording"):
        PromptBuilder(schema, wording="nope")


def test_shots_become_user_assistant_turns(demo):
    schema, _ = demo
    builder = PromptBuilder(schema, "json")
    messages = builder.messages(QUERY, SHOTS)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert SHOTS[0].text in messages[1]["content"] and messages[2]["content"] == '{"label": "debunk"}'
    assert messages[4]["content"] == '{"label": "belief"}' and QUERY.text in messages[5]["content"]
    with pytest.raises(ValueError, match="no label"):
        builder.messages(QUERY, [Example("s3", "unlabelled")])


def test_system_prompt_override_and_removal(demo, tmp_path):
    schema, _ = demo
    assert PromptBuilder(schema, system_prompt="Be terse.").messages(QUERY)[0] == {
        "role": "system",
        "content": "Be terse.",
    }
    assert [m["role"] for m in PromptBuilder(schema, system_prompt="").messages(QUERY)] == ["user"]
    path = tmp_path / "system.jinja"
    path.write_text("You label {{ task }}.", encoding="utf-8")
    assert (
        PromptBuilder(schema, task="stance", system_prompt=path).messages(QUERY)[0]["content"]
        == "You label stance."
    )


def test_user_template_from_file(demo, tmp_path):
    schema, _ = demo
    path = tmp_path / "mine.jinja"
    path.write_text(
        "{{ task }}|{{ labels | join('/') }}|{{ label_wordings['other'] }}|{{ topic }}|{{ text }}",
        encoding="utf-8",
    )
    for builder in (
        PromptBuilder(schema, task="T", user_template=path),
        PromptBuilder(schema, str(path), task="T"),
    ):
        content = builder.messages(QUERY)[-1]["content"]
        assert content == f"T|belief/debunk/other|{schema.description('other')}|vaccines|{QUERY.text}"
        assert builder.style == "serial"


def test_inline_examples_template(demo, tmp_path):
    schema, _ = demo
    path = tmp_path / "inline.jinja"
    path.write_text(
        "{% for e in examples %}{{ e.text }} => {{ e.answer }}\n{% endfor %}{{ text }} =>", encoding="utf-8"
    )
    messages = build_messages(schema, QUERY, SHOTS, style="json", user_template=path, system_prompt="")
    assert len(messages) == 1
    assert f'{SHOTS[0].text} => {{"label": "debunk"}}' in messages[0]["content"]


def test_template_errors_name_the_file(demo, tmp_path):
    schema, _ = demo
    missing = tmp_path / "missing.jinja"
    with pytest.raises(ConfigError, match="missing.jinja"):
        PromptBuilder(schema, user_template=missing)
    unknown = tmp_path / "unknown.jinja"
    unknown.write_text("{{ txet }}", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown\.jinja.*txet"):
        PromptBuilder(schema, user_template=unknown)
    broken = tmp_path / "broken.jinja"
    broken.write_text("{% if text %}never closed", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken\.jinja:1"):
        PromptBuilder(schema, user_template=broken)
    bad_attr = tmp_path / "attr.jinja"
    bad_attr.write_text("{{ metadata.nope.deeper }}", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"attr\.jinja"):
        PromptBuilder(schema, user_template=bad_attr).messages(QUERY)
    with pytest.raises(ConfigError, match="style"):
        PromptBuilder(schema, "xml")
    assert "text" in TEMPLATE_VARIABLES and "examples" in TEMPLATE_VARIABLES


def test_instruction_style_is_the_tuning_chat_record(demo):
    from socialens.llm.prompts import default_instruction
    from socialens.tuning.instructions import chat_messages

    schema, task = demo
    builder = PromptBuilder(schema, "instruction", task=task)
    assert builder.messages(QUERY) == chat_messages(default_instruction(schema, task), QUERY.text)
    assert builder.choices() == ["Label: belief", "Label: debunk", "Label: other"]
    assert parse_label("Label: debunk", schema).label == "debunk"
    given = PromptBuilder(
        schema, "instruction", instruction="Is it belief, debunk or other?", system_prompt=""
    )
    assert given.messages(QUERY) == chat_messages("Is it belief, debunk or other?", QUERY.text, system=None)
    shot_turns = given.messages(QUERY, SHOTS[:1])
    assert shot_turns[1] == {"role": "assistant", "content": "Label: debunk"}
    with pytest.raises(ConfigError, match="instruction"):
        PromptBuilder(schema, "instruction", user_template=Path("x.jinja"))


# A template file is shared like a config: it renders in Jinja's sandbox (docs/security.md).
ESCAPES = {
    # object's subclasses -> warnings.catch_warnings -> the builtins module -> open()
    "subclasses": "{{% for c in ''.__class__.__mro__[1].__subclasses__() if c.__name__ == 'catch_warnings' %}}"
    "{{{{ c()._module.__builtins__['open']('{marker}', 'w').write('pwned') }}}}{{% endfor %}}",
    # the same walk from a template variable, then a function's __globals__ -> os.system
    "globals": "{{% for c in labels.__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close' %}}"
    "{{{{ c.__init__.__globals__['system']('touch {marker}') }}}}{{% endfor %}}",
    # Jinja's own global helper: a Python function, whose module imports os
    "cycler": "{{{{ cycler.__init__.__globals__.os.system('touch {marker}') }}}}",
}


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_a_template_cannot_run_python(demo, tmp_path, name):
    schema, _ = demo
    marker = tmp_path / "marker"
    path = tmp_path / "evil.jinja"
    path.write_text("Classify: {{ text }}\n" + ESCAPES[name].format(marker=marker), encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        PromptBuilder(schema, path).messages(QUERY)
    assert not marker.exists()
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:2: not allowed in the template sandbox: ")
    assert "unsafe" in message


def test_undefined_variable_names_template_file_and_line(demo, tmp_path):
    schema, _ = demo
    path = tmp_path / "typo.jinja"
    path.write_text("Text: {{ text }}\n\nTopic: {{ metadata.topik }}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        PromptBuilder(schema, path).messages(QUERY)
    assert (
        str(error.value) == f"{path}:3: undefined in prompt template: 'dict object' has no attribute 'topik'"
    )
    unknown = tmp_path / "unknown.jinja"
    unknown.write_text("Text: {{ text }}\n{{ txet }}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{unknown}:2: unknown prompt template variable\(s\) txet;"):
        PromptBuilder(schema, unknown)


def test_sandboxed_templates_still_render_loops_filters_and_dicts(demo, tmp_path):
    schema, _ = demo
    path = tmp_path / "ok.jinja"
    path.write_text(
        "{% for name in labels %}{{ loop.index }}. {{ name | upper }}: {{ label_descriptions[name] }}\n"
        "{% endfor %}{{ metadata.get('topic', 'none') }} | {{ text | truncate(20) }}",
        encoding="utf-8",
    )
    content = PromptBuilder(schema, path).messages(QUERY)[-1]["content"]
    assert content.startswith(f"1. BELIEF: {schema.description('belief')}\n")
    assert content.endswith("vaccines | My nephew got...")


def test_the_chat_record_format_is_owned_here_and_read_back_here():
    import ast
    import inspect

    import socialens.llm.prompts as prompts
    import socialens.tuning.instructions as instructions
    from socialens.llm.prompts import (
        ANSWER_PREFIX,
        DEFAULT_SYSTEM,
        chat_messages,
        join_record,
        record_instruction,
        split_record,
        split_user_content,
        text_start,
    )

    record = chat_messages("Say a or b.", "the text\n\nText: inside", "a")
    assert record == [
        {"role": "system", "content": DEFAULT_SYSTEM},
        {"role": "user", "content": "Say a or b.\n\nText: the text\n\nText: inside"},
        {"role": "assistant", "content": f"{ANSWER_PREFIX}a"},
    ]
    prompt, answer = split_record(record)
    assert prompt == chat_messages("Say a or b.", "the text\n\nText: inside") and answer == "Label: a"
    assert join_record(prompt, answer) == record
    user = record[1]["content"]
    assert split_user_content(user) == ("Say a or b.", "the text\n\nText: inside")  # the first marker
    assert user[text_start(user) :] == "the text\n\nText: inside"
    assert record_instruction(record) == "Say a or b."
    assert split_user_content("Summarise it.\n\nArticle: x") == ("", "Summarise it.\n\nArticle: x")
    assert text_start("no marker") == 0 and record_instruction([]) == ""
    with pytest.raises(ValueError, match="assistant"):
        split_record(prompt)
    # tuning builds records with these very functions; llm never imports tuning (one layer)
    assert instructions.chat_messages is chat_messages and instructions.DEFAULT_SYSTEM is DEFAULT_SYSTEM
    imported = {
        node.module
        for node in ast.walk(ast.parse(inspect.getsource(prompts)))
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not any(name.startswith("socialens.tuning") for name in imported)
