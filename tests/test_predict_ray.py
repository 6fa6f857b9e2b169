"""`predict --engine ray` on a local 2-CPU Ray: the same output as the local engine, byte for byte."""

import json
import sys
from pathlib import Path

import pytest

from socialens.classifiers.base import load_classifier
from socialens.classifiers.tfidf import TfidfClassifier
from socialens.core.errors import ConfigError
from socialens.core.types import LabelSchema
from socialens.data.readers import read_examples
from socialens.data.stream import RowStream
from socialens.predict import predict_stream, progress_path

TINY = Path(__file__).resolve().parent / "fixtures" / "bench" / "tiny.csv"
SCHEMA = LabelSchema.from_names(["belief", "debunk", "other"])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("model")
    examples = read_examples(TINY, label="label", id="id", schema=SCHEMA).examples
    TfidfClassifier(seed=0).fit(examples, schema=SCHEMA).save(directory)
    return directory


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def both_engines(model_dir, source, tmp_path, suffix, chunk_rows, **stream_options):
    from socialens.predict_ray import predict_stream_ray

    classifier = load_classifier(model_dir)
    local_out, ray_out = tmp_path / f"local{suffix}", tmp_path / f"ray{suffix}"
    stream = RowStream(source, schema=classifier.schema, **stream_options)
    local = predict_stream(classifier, stream, local_out, model_dir=model_dir, chunk_rows=chunk_rows)
    distributed = predict_stream_ray(
        stream, ray_out, model_dir=model_dir, labels=classifier.schema.names, chunk_rows=chunk_rows, actors=2
    )
    return local, distributed, local_out, ray_out


@pytest.mark.slow
def test_ray_engine_output_is_identical_to_the_local_engine(local_ray, model_dir, tmp_path):
    source = tmp_path / "in.jsonl"
    lines = [json.dumps({"text": t, "topic": "x"}) for t in TINY.read_text().splitlines()[1:61]]
    lines[5] = "{broken json"
    lines[17] = json.dumps({"text": "  "})
    source.write_text("\n".join(lines) + "\n")
    local, distributed, local_out, ray_out = both_engines(
        model_dir, source, tmp_path, ".parquet", chunk_rows=8, metadata={"topic": "topic"}
    )
    assert ray_out.read_bytes() == local_out.read_bytes()
    assert distributed.rows == local.rows == 60
    assert distributed.statuses == local.statuses == {"ok": 58, "invalid": 2}
    assert not progress_path(ray_out).exists()

    local, distributed, local_out, ray_out = both_engines(
        model_dir, TINY, tmp_path, ".jsonl", chunk_rows=25, label="label"
    )
    assert ray_out.read_text() == local_out.read_text() and local.rows == 90


def test_missing_ray_is_a_one_line_install_hint(model_dir, tmp_path, monkeypatch):
    from socialens.predict_ray import predict_stream_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees where it is not installed
    stream = RowStream(TINY, schema=SCHEMA)
    with pytest.raises(ConfigError, match=r"pip install 'socialens\[ray\]'"):
        predict_stream_ray(stream, tmp_path / "o.parquet", model_dir=model_dir, labels=SCHEMA.names)
