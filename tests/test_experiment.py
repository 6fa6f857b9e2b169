import pytest

from socialens.core.errors import ConfigError
from socialens.experiment import load_experiment


def write(tmp_path, text):
    path = tmp_path / "exp.yaml"
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """
name: t1
datasets: [builtin:reddit-misinfo-demo, {config: x.yaml, cap: 100}]
models:
  - {id: tf, family: tfidf, C: 2.0}
  - {id: enc, family: encoder, epochs: 2}
seeds: [0, 1]
"""


def test_valid_experiment_parses_family_params(tmp_path):
    experiment = load_experiment(write(tmp_path, GOOD))
    assert experiment.name == "t1"
    assert [d.config for d in experiment.datasets] == ["builtin:reddit-misinfo-demo", "x.yaml"]
    assert experiment.datasets[1].cap == 100
    assert experiment.models[0].params == {"C": 2.0}
    assert experiment.seeds == [0, 1]


@pytest.mark.parametrize(
    "text, expected",
    [
        (GOOD.replace("epochs: 2", "epochs: lots"), "field 'models[1].epochs' = 'lots'"),
        (GOOD.replace("C: 2.0", "C: 2.0, colour: red"), "field 'models[0].colour' = 'red': unknown field"),
        (GOOD.replace("family: tfidf", "family: magic"), "field 'models[0].family' = 'magic'"),
        (GOOD.replace("cap: 100", "cap: -5"), "field 'datasets[1].cap' = -5"),
        (GOOD.replace("seeds: [0, 1]", "seeds: []"), "field 'seeds'"),
        (GOOD.replace("name: t1", "name: 'bad name/..'"), "field 'name'"),
        ("name: x\nmodels: []\n", "field 'datasets': required field is missing"),
        (GOOD.replace("id: enc", "id: tf"), "model id 'tf' appears twice"),
        (GOOD + "energy: {country: ZZZ}\n", "field 'energy.country' = 'ZZZ': no grid carbon intensity"),
        (GOOD + "energy: {watts: 3}\n", "field 'energy.watts' = 3: unknown field"),
    ],
)
def test_bad_field_is_named_with_value_and_file(tmp_path, text, expected):
    with pytest.raises(ConfigError) as info:
        load_experiment(write(tmp_path, text))
    message = str(info.value)
    assert expected in message
    assert "exp.yaml" in message


def test_invalid_yaml_names_the_line(tmp_path):
    with pytest.raises(ConfigError, match=r"exp.yaml:3: not valid YAML \(mapping values are not allowed"):
        load_experiment(write(tmp_path, "name: x\nseeds: [1]\nmodels: a: b\n"))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="experiment file not found"):
        load_experiment(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("name: t1", "name: ../../../tmp/x", "name"),
        ("name: t1", "name: .hidden", "name"),
        ("id: tf,", "id: ../tf,", "models[0].id"),
        ("id: enc,", "id: 'a/b',", "models[1].id"),
    ],
)
def test_names_that_become_folders_must_be_safe_names(tmp_path, old, new, field):
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    value = new.split(": ")[1].rstrip(",").strip("'")
    assert str(info.value) == (
        f"{path}: field '{field}' = {value!r}: not a safe name (it names a folder); "
        "expected letters, digits, '.', '_' and '-', not starting with '.'"
    )


def test_yaml_1_1_boolean_words_stay_strings():
    from socialens.core.yaml_io import load_yaml_text

    words = "[OFF, off, On, yes, No, y, N, NOT]"
    assert load_yaml_text(f"labels: {words}") == {
        "labels": ["OFF", "off", "On", "yes", "No", "y", "N", "NOT"]
    }
    assert load_yaml_text("a: [true, False, TRUE, 1, 0, null, ~, 1.5]") == {
        "a": [True, False, True, 1, 0, None, None, 1.5]
    }


def test_boolean_fields_still_take_yes_and_no(tmp_path):
    text = GOOD + "energy: {enabled: no}\n"
    assert load_experiment(write(tmp_path, text)).energy.enabled is False
