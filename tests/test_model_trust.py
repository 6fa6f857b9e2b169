"""What a model directory (or an experiment) someone else made may do: no code of theirs runs
(pickle), no text or secret goes where they chose without the user's say, and the model version
covers every file the model loads. See docs/security.md."""

from __future__ import annotations

import importlib.util
import json
import pickle
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from socialens.classifiers import base
from socialens.classifiers.tfidf import TfidfClassifier
from socialens.cli import app
from socialens.core.errors import ConfigError
from socialens.core.types import Example, LabelSchema
from socialens.data.readers import read_examples
from socialens.data.stream import RowStream
from socialens.serving.app import load_served_model

FIXTURES = Path(__file__).parent / "fixtures" / "bench"
TINY = FIXTURES / "tiny.csv"
SCHEMA = LabelSchema.from_names(["belief", "debunk", "other"])
runner = CliRunner()

_spec = importlib.util.spec_from_file_location(
    "fault_server", Path(__file__).parent / "llm" / "fault_server.py"
)
fault_server = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("fault_server", fault_server)
_spec.loader.exec_module(fault_server)


def lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def examples() -> list[Example]:
    return read_examples(TINY, label="label", id="id", schema=SCHEMA).examples


@pytest.fixture(scope="module")
def fitted(examples) -> TfidfClassifier:
    return TfidfClassifier(seed=0).fit(examples, schema=SCHEMA)


# -- pickle ------------------------------------------------------------------------------------------


class RunsCode:
    """Unpickles by running code: writes ``marker``, then returns a working pipeline, so that the
    predictions look normal (as in the attack the issue measured)."""

    def __init__(self, marker: Path, pipeline) -> None:
        self.marker, self.pipeline = marker, pipeline

    def __reduce__(self):
        payload = pickle.dumps(self.pipeline)
        expression = (
            f"(open({str(self.marker)!r}, 'w').write('ran'), __import__('pickle').loads({payload!r}))[1]"
        )
        return (eval, (expression,))


@pytest.fixture
def crafted(tmp_path, fitted) -> tuple[Path, Path]:
    """(an old-format TF-IDF model directory whose pipeline.joblib runs code, the marker it writes)."""
    directory, marker = tmp_path / "crafted", tmp_path / "marker.txt"
    fitted.save(directory)
    for path in directory.iterdir():
        if path.name != base.MODEL_INFO_FILE:
            path.unlink()
    joblib.dump(RunsCode(marker, fitted.pipeline_), directory / "pipeline.joblib")
    return directory, marker


def test_a_crafted_pickle_is_refused_by_predict_and_serve_without_running(crafted, tmp_path):
    directory, marker = crafted
    out = tmp_path / "out.jsonl"
    with pytest.raises(ConfigError, match="pipeline.joblib: refused to load"):
        base.load_classifier(directory)
    assert not marker.exists()

    result = runner.invoke(app, ["predict", str(directory), str(TINY), "--out", str(out)])
    assert result.exit_code == 2
    [line] = lines(result.output)
    assert str(directory / "pipeline.joblib") in line
    assert "runs any code" in line and "--trust-pickle" in line
    assert not marker.exists() and not out.exists()

    with pytest.raises(ConfigError, match="--trust-pickle"):
        load_served_model(directory)
    assert not marker.exists()
    result = runner.invoke(app, ["serve", str(directory)])
    assert result.exit_code == 2 and "--trust-pickle" in lines(result.output)[0]
    assert len(lines(result.output)) == 1
    assert not marker.exists()


def test_trust_pickle_loads_an_old_pickled_directory(crafted, tmp_path, fitted, examples):
    directory, marker = crafted
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["predict", str(directory), str(TINY), "--out", str(out), "--trust-pickle"])
    assert result.exit_code == 0, result.output
    assert marker.exists()  # the user said they trust its author: the file's code ran
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    expected = fitted.predict(examples)
    assert [row["label"] for row in rows] == [record.predicted for record in expected]
    served = load_served_model(directory, trust_pickle=True)
    assert served.classifier.predict(examples[:3])[0].predicted == expected[0].predicted


def test_pickled_torch_weights_need_trust_pickle(tmp_path):
    """An instruct model directory whose LoRA adapter is a pickled adapter_model.bin."""
    from socialens.classifiers.instruct import InstructParams

    directory = tmp_path / "instruct"
    base.write_model_info(
        directory, "instruct", SCHEMA, InstructParams(), extra={"instructions": ["Label the text."]}
    )
    (directory / "adapter").mkdir()
    (directory / "adapter" / "adapter_config.json").write_text("{}")
    (directory / "adapter" / "adapter_model.bin").write_bytes(pickle.dumps({"weights": []}))
    with pytest.raises(ConfigError, match=r"adapter_model\.bin: refused to load pickled torch weights"):
        base.load_classifier(directory)
    assert base.load_classifier(directory, trust_pickle=True).adapter_dir == directory / "adapter"

    # a prompted model naming that folder as its adapter, outside its own directory, is no different
    prompted = prompted_dir(tmp_path / "prompted", backend="hf", adapter=str(directory / "adapter"))
    with pytest.raises(ConfigError, match=r"adapter_model\.bin: refused to load pickled torch weights"):
        base.load_classifier(prompted)
    assert base.load_classifier(prompted, trust_pickle=True).params.adapter == str(directory / "adapter")


@pytest.mark.slow
def test_an_encoder_with_only_pytorch_model_bin_needs_trust_pickle(tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from socialens.classifiers.encoder import EncoderParams
    from socialens.core.models import resolve_model

    path, directory = resolve_model("builtin:minilm-l6"), tmp_path / "encoder"
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=3)
    model.save_pretrained(directory)
    (directory / "model.safetensors").unlink()  # the same weights, pickled as older tools wrote them
    torch.save(model.state_dict(), directory / "pytorch_model.bin")
    AutoTokenizer.from_pretrained(path).save_pretrained(directory)
    base.write_model_info(directory, "encoder", SCHEMA, EncoderParams(num_threads=1))
    assert (directory / "pytorch_model.bin").is_file() and not (directory / "model.safetensors").exists()
    with pytest.raises(ConfigError, match=r"pytorch_model\.bin: refused to load pickled torch weights"):
        base.load_classifier(directory)
    loaded = base.load_classifier(directory, trust_pickle=True)
    assert loaded.predict([Example("a", "some text")])[0].status.value == "ok"


# -- the model version ---------------------------------------------------------------------------------


def test_the_model_version_changes_with_the_weights_file(tmp_path, fitted, examples):
    from safetensors.numpy import load_file, save_file

    from socialens.predict import run_fingerprint

    directory = tmp_path / "m"
    fitted.save(directory)
    info_before = (directory / base.MODEL_INFO_FILE).read_bytes()
    stream = RowStream(TINY, schema=SCHEMA)
    version = load_served_model(directory).ref.version
    recorded = run_fingerprint(stream, directory, {})["model_digest"]

    weights = next(directory.glob("*.safetensors"), None) or directory / "pipeline.joblib"
    if weights.suffix == ".safetensors":
        tensors = load_file(str(weights))
        tensors["coef"] = tensors["coef"] * 2  # same file size, same JSON: only the weights differ
        save_file(tensors, str(weights))
    else:  # the pickled format of old
        pipeline = joblib.load(weights)
        pipeline.steps[-1][1].coef_ *= 2
        joblib.dump(pipeline, weights)
    assert (directory / base.MODEL_INFO_FILE).read_bytes() == info_before
    served = load_served_model(directory)
    changed = served.classifier.predict_proba([ex.text for ex in examples[:5]])
    assert not np.allclose(changed, fitted.predict_proba([ex.text for ex in examples[:5]]))
    assert served.ref.version != version
    assert run_fingerprint(stream, directory, {})["model_digest"] != recorded
    digest = base.model_digest(directory)  # the one function both use
    assert served.ref.version == digest[:12]
    assert run_fingerprint(stream, directory, {})["model_digest"] == digest


# -- endpoints and API keys ------------------------------------------------------------------------------

SECRET = "victim-secret-Xq93-never-send-me"


@pytest.fixture(scope="module")
def server():
    with fault_server.FaultServer() as running:
        yield running


@pytest.fixture
def fresh(server, monkeypatch, tmp_path):
    server.reset()
    monkeypatch.setenv("SOCIALENS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("VICTIM_SECRET", SECRET)
    return server


def prompted_dir(directory: Path, **params) -> Path:
    """A prompted model directory written by hand, as an attacker would."""
    directory.mkdir(parents=True)
    defaults = {"backend": "openai", "model": "m", "decoding": "constrained"}
    if params.get("backend", "openai") == "openai":
        defaults["max_retries"] = 0
    info = {
        "family": "prompted",
        "schema": SCHEMA.to_dict(),
        "params": {**defaults, **params},
        "seed": 0,
        "task": "",
    }
    (directory / base.MODEL_INFO_FILE).write_text(json.dumps(info))
    return directory


def test_a_model_directory_cannot_send_texts_and_a_secret_to_its_own_endpoint(fresh, tmp_path):
    url = fresh.base_url
    directory = prompted_dir(tmp_path / "exfil", base_url=url, api_key_env="VICTIM_SECRET", cache=False)
    out = tmp_path / "out.jsonl"
    for extra in ([], ["--allow-endpoint", url], ["--allow-key-env", "VICTIM_SECRET"]):
        result = runner.invoke(app, ["predict", str(directory), str(TINY), "--out", str(out), *extra])
        assert result.exit_code == 2
        [line] = lines(result.output)
        assert url in line and "$VICTIM_SECRET" in line and SECRET not in line
        assert ("--allow-endpoint" in line) == (not extra or extra[0] != "--allow-endpoint")
        assert ("--allow-key-env VICTIM_SECRET" in line) == (not extra or extra[0] != "--allow-key-env")
    assert fresh.requests == [] and not out.exists()
    with pytest.raises(ConfigError, match="--allow-endpoint"):
        load_served_model(directory)
    assert fresh.requests == []

    allowed = ["--allow-endpoint", url + "/", "--allow-key-env", "VICTIM_SECRET"]
    result = runner.invoke(app, ["predict", str(directory), str(TINY), "--out", str(out), *allowed])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 90 and {row["status"] for row in rows} == {"ok"}
    # one request a text, and one first that asked the server how it constrains output
    assert len(fresh.requests) == 91 and set(fresh.auth_headers) == {f"Bearer {SECRET}"}
    served = load_served_model(directory, allow_endpoints=[url], allow_key_envs=["VICTIM_SECRET"])
    assert served.ref.family == "prompted"


def test_the_default_openai_endpoint_and_key_are_a_choice_too(fresh, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    directory = prompted_dir(tmp_path / "default", api_key_env="OPENAI_API_KEY")
    with pytest.raises(ConfigError) as refused:
        base.load_classifier(directory)
    message = str(refused.value)
    assert "https://api.openai.com/v1" in message and "$OPENAI_API_KEY" in message
    assert "--allow-endpoint https://api.openai.com/v1 --allow-key-env OPENAI_API_KEY" in message
    assert "\n" not in message


def test_api_key_env_null_sends_no_key(fresh, tmp_path, monkeypatch):
    """Not the backend's default variable (OPENAI_API_KEY): no key at all."""
    from socialens.classifiers.prompted import PromptedClassifier, PromptedParams

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    from socialens.experiment import ModelEntry, validate_model_params

    entry = yaml.safe_load(  # a model entry of an experiment file, as written in the README
        f"{{id: local, family: prompted, backend: openai, model: m, base_url: '{fresh.base_url}',\n"
        " api_key_env: null, decoding: constrained, cache: false, max_retries: 0}"
    )
    params = validate_model_params(ModelEntry(**entry), 0, "exp.yaml")
    assert params.api_key_env is None
    classifier = PromptedClassifier(params).fit([], schema=SCHEMA)
    records = classifier.predict([Example("a", "one text"), Example("b", "another")])
    assert [r.status.value for r in records] == ["ok", "ok"]
    # the placeholder local servers ignore, on the probe of how it constrains output and both texts
    assert fresh.auth_headers == ["Bearer none"] * 3

    classifier.save(tmp_path / "saved")  # the null survives a save and a load
    assert (
        json.loads((tmp_path / "saved" / base.MODEL_INFO_FILE).read_text())["params"]["api_key_env"] is None
    )
    loaded = base.load_classifier(tmp_path / "saved", allow_endpoints=[fresh.base_url])
    loaded.predict([Example("c", "a third")])
    assert fresh.auth_headers == ["Bearer none"] * 5  # a new backend: a probe and the text

    # left out, api_key_env is the backend's default, and a saved model says so
    default = PromptedParams(backend="openai", model="m", base_url=fresh.base_url)
    assert default.api_key_env == "OPENAI_API_KEY"


def make_experiment(tmp_path: Path, server_url: str) -> Path:
    for name in ("tiny.yaml", "tiny.csv"):
        (tmp_path / name).write_bytes((FIXTURES / name).read_bytes())
    path = tmp_path / "exp.yaml"
    path.write_text(
        f"name: t\noutput_dir: {tmp_path / 'runs'}\ndatasets: [{tmp_path / 'tiny.yaml'}]\nmodels:\n"
        "  - {id: tf, family: tfidf}\n"
        f"  - {{id: remote, family: prompted, backend: openai, model: m, base_url: '{server_url}',\n"
        "     api_key_env: VICTIM_SECRET, decoding: constrained, cache: false, max_retries: 0}\n"
        "seeds: [0]\nbootstrap: 0\n"
    )
    return path


def test_bench_needs_the_same_say_for_an_experiment_endpoint_and_prints_it(fresh, tmp_path):
    url = fresh.base_url
    experiment = make_experiment(tmp_path, url)
    result = runner.invoke(app, ["bench", str(experiment), "--data-root", str(tmp_path)])
    assert result.exit_code == 2
    [line] = lines(result.output)
    assert "remote sends texts to " + url in line and "$VICTIM_SECRET" in line
    assert f"--allow-endpoint {url} --allow-key-env VICTIM_SECRET" in line
    assert fresh.requests == [] and not (tmp_path / "runs").exists()

    allowed = ["--allow-endpoint", url, "--allow-key-env", "VICTIM_SECRET"]
    result = runner.invoke(app, ["bench", str(experiment), "--data-root", str(tmp_path), *allowed])
    assert result.exit_code == 0, result.output
    assert f"model remote sends texts to {url} with the API key from $VICTIM_SECRET" in result.output
    assert len(fresh.requests) > 0 and set(fresh.auth_headers) == {f"Bearer {SECRET}"}
