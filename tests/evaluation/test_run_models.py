"""A run folder as a model source: its recommended model, and nothing outside the run."""

import json
import shutil
from pathlib import Path

import pytest

from socialens.classifiers.tfidf import TfidfClassifier
from socialens.core.errors import ConfigError
from socialens.core.types import Example
from socialens.evaluation.run_models import is_run_dir, resolve_model

TEXTS = [
    ("a1", "this is true", "pos"),
    ("a2", "so true", "pos"),
    ("b1", "this is false", "neg"),
    ("b2", "false", "neg"),
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("model") / "model"
    TfidfClassifier().fit([Example(id=i, text=t, label=lab) for i, t, lab in TEXTS]).save(directory)
    return directory


def make_run(root: Path, recommendations: dict) -> Path:
    run = root / "runs" / "t"
    run.mkdir(parents=True)
    (run / "experiment.yaml").write_text("name: t\n")
    (run / "summary.json").write_text(json.dumps({"recommendations": recommendations, "rows": []}))
    return run


def keep(run: Path, model_dir: Path, relative: str = "tiny/tf/seed-0/model") -> Path:
    target = run / relative
    shutil.copytree(model_dir, target)
    return target


def test_a_model_directory_is_used_as_it_is(model_dir):
    found = resolve_model(model_dir)
    assert found.path == model_dir and found.describe() is None and not is_run_dir(model_dir)
    with pytest.raises(ConfigError, match="is a model directory, not a run directory"):
        resolve_model(model_dir, "tiny")


def test_a_run_folder_gives_its_recommended_model(tmp_path, model_dir):
    run = make_run(
        tmp_path, {"tiny": {"recommended": "tf", "model_dir": "tiny/tf/seed-0/model", "sentence": "s"}}
    )
    kept = keep(run, model_dir)
    found = resolve_model(run)
    assert found.path == kept.resolve() and (found.dataset, found.model, found.sentence) == (
        "tiny",
        "tf",
        "s",
    )
    assert found.describe() == f"run {run}: using the recommended model of tiny, tf ({kept.resolve()})"
    assert resolve_model(run, "tiny").path == kept.resolve()


@pytest.mark.parametrize("relative", ["../../model", "/etc", "tiny/../../../model"])
def test_a_model_dir_outside_the_run_is_refused(tmp_path, model_dir, relative):
    run = make_run(tmp_path, {"tiny": {"recommended": "tf", "model_dir": relative}})
    shutil.copytree(model_dir, tmp_path / "model")
    with pytest.raises(ConfigError, match="resolves outside the run directory"):
        resolve_model(run)


def test_a_symlink_planted_in_the_run_is_not_followed_out(tmp_path, model_dir):
    run = make_run(tmp_path, {"tiny": {"recommended": "tf", "model_dir": "tiny/tf/seed-0/model"}})
    (run / "tiny" / "tf").mkdir(parents=True)
    (run / "tiny" / "tf" / "seed-0").symlink_to(model_dir.parent, target_is_directory=True)
    assert (run / "tiny" / "tf" / "seed-0" / "model" / "socialens_model.json").is_file()
    with pytest.raises(
        ConfigError, match="field 'recommendations.tiny.model_dir' = 'tiny/tf/seed-0/model': resolves outside"
    ):
        resolve_model(run)


def test_what_a_run_folder_lacks_is_one_line(tmp_path):
    run = make_run(tmp_path, {})
    with pytest.raises(ConfigError, match="the run recommends no model"):
        resolve_model(run)
    (run / "summary.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"summary\.json: unreadable \(JSONDecodeError\)"):
        resolve_model(run)
    (run / "summary.json").write_text(
        json.dumps({"recommendations": {"tiny": {"recommended": "tf", "model_dir": 3}}})
    )
    with pytest.raises(
        ConfigError, match="field 'recommendations.tiny.model_dir' is missing or not a string"
    ):
        resolve_model(run)
