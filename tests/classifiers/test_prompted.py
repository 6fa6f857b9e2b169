import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from socialens.classifiers.prompted import PromptedClassifier, PromptedParams
from socialens.core.errors import ConfigError
from socialens.core.types import Example, LabelSchema, Status

pytest.importorskip("llama_cpp")
FIXTURES = Path(__file__).parents[1] / "fixtures" / "bench"
SCHEMA = LabelSchema.from_names(["belief", "debunk", "other"])
TEXTS = [
    ("a", "Climate change is a hoax invented for grant money, wake up people", "belief"),
    ("b", "No, the temperature record from satellites shows warming clearly.", "debunk"),
    ("c", "Anyone know a good pizza place downtown?", "other"),
    ("d", "Vaccines cause autism, my cousin saw it happen", "belief"),
]
EXAMPLES = [Example(i, t, lab, {"topic": "climate"}) for i, t, lab in TEXTS]


@pytest.fixture(scope="module")
def smollm2():
    from socialens.llm.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend("builtin:smollm2-135m-instruct", n_ctx=1024, n_threads=1)
    yield backend
    backend.close()


def make(smollm2, tmp_path, **params):
    clf = PromptedClassifier(
        PromptedParams(cache_path=str(tmp_path / "cache.sqlite"), **params), backend=smollm2
    )
    return clf.fit(EXAMPLES, schema=SCHEMA, task="misinformation response")


@pytest.mark.parametrize("decoding", ["generate", "constrained", "scored"])
def test_every_decoding_mode_gives_one_valid_record_per_example(smollm2, tmp_path, decoding):
    clf = make(smollm2, tmp_path, decoding=decoding)
    records = clf.predict(EXAMPLES)
    assert [r.id for r in records] == ["a", "b", "c", "d"]
    for record in records:
        assert record.status in (Status.OK, Status.REFUSED, Status.INVALID)
        assert (record.predicted is None) == (record.status != Status.OK)
        assert record.predicted is None or record.predicted in SCHEMA.names
        assert record.tokens_in > 0 and record.latency_s > 0
    if decoding in ("constrained", "scored"):
        assert all(r.status == Status.OK for r in records)  # the label set is enforced
    if decoding == "scored":
        for record in records:
            assert set(record.scores) == set(SCHEMA.names)
            assert abs(sum(record.scores.values()) - 1) < 1e-6
            assert record.predicted == max(record.scores, key=record.scores.get)
    again = make(smollm2, tmp_path / "fresh", decoding=decoding).predict(EXAMPLES)
    assert [r.predicted for r in again] == [r.predicted for r in records]  # deterministic, no cache shared


def test_json_prompt_with_few_shots(smollm2, tmp_path):
    pool = [Example(f"p{i}", f"{t} (variant {i})", lab) for i, (_, t, lab) in enumerate(TEXTS * 2)]
    clf = PromptedClassifier(
        PromptedParams(
            prompt="json",
            shots=1,
            shot_selection="stratified",
            decoding="constrained",
            cache_path=str(tmp_path / "c.sqlite"),
        ),
        backend=smollm2,
    ).fit(pool, schema=SCHEMA)
    messages = clf.prompts(EXAMPLES[:1])[0]
    assert [m["role"] for m in messages].count("assistant") == 3  # one shot per class
    records = clf.predict(EXAMPLES)
    assert all(r.status == Status.OK for r in records)
    assert all(r.raw_output.startswith('{"label": ') for r in records)


def test_price_gives_cost(smollm2, tmp_path):
    clf = make(smollm2, tmp_path, price={"input_per_1m": 1000.0, "output_per_1m": 2000.0})
    record = clf.predict(EXAMPLES[:1])[0]
    assert record.cost == pytest.approx((record.tokens_in * 1000 + record.tokens_out * 2000) / 1e6)


def test_save_load_round_trip(smollm2, tmp_path):
    clf = make(smollm2, tmp_path, decoding="scored")
    clf.save(tmp_path / "model")
    loaded = PromptedClassifier.load(tmp_path / "model")
    loaded._backend = smollm2
    assert loaded.schema.names == SCHEMA.names and loaded.task == "misinformation response"
    again, first = loaded.predict(EXAMPLES), clf.predict(EXAMPLES)
    # batched scores round with their batch (llamacpp_batch): the same labels, close probabilities
    assert [r.predicted for r in again] == [r.predicted for r in first]
    for a, b in zip(again, first, strict=True):
        assert a.scores == pytest.approx(b.scores, abs=0.05)


def test_a_saved_cache_path_does_not_choose_where_a_loaded_model_writes(smollm2, tmp_path):
    clf = make(smollm2, tmp_path, decoding="scored")
    assert clf.params.cache_path == str(tmp_path / "cache.sqlite")
    clf.save(tmp_path / "model")
    loaded = PromptedClassifier.load(tmp_path / "model")
    assert loaded.params.cache_path is None  # the default response cache


def test_a_saved_model_carries_its_template_and_reads_no_other_file(smollm2, tmp_path):
    template = tmp_path / "mine.jinja"
    template.write_text("Post: {{ text }}\nWhich of {{ labels | join(', ') }}?")
    clf = make(smollm2, tmp_path, decoding="scored", prompt=str(template))
    clf.save(tmp_path / "model")
    expected = clf.prompts(EXAMPLES[:1])
    template.unlink()  # the directory no longer depends on where the template was
    info = json.loads((tmp_path / "model" / "socialens_model.json").read_text())
    assert info["params"]["prompt"] == "prompt_template.jinja"
    loaded = PromptedClassifier.load(tmp_path / "model")
    loaded._backend = smollm2
    assert loaded.prompts(EXAMPLES[:1]) == expected
    assert "Post: " in loaded.prompts(EXAMPLES[:1])[0][-1]["content"]

    secret = tmp_path / "secret.jinja"  # e.g. a key file: it would be sent inside every prompt
    secret.write_text("hunter2")
    info["params"]["prompt"] = str(secret)
    (tmp_path / "model" / "socialens_model.json").write_text(json.dumps(info))
    with pytest.raises(ConfigError) as exc:
        PromptedClassifier.load(tmp_path / "model")
    message = str(exc.value)
    assert "\n" not in message and "params.prompt" in message and "hunter2" not in message
    info["params"]["prompt"] = "../secret.jinja"
    (tmp_path / "model" / "socialens_model.json").write_text(json.dumps(info))
    with pytest.raises(ConfigError, match="outside the model directory"):
        PromptedClassifier.load(tmp_path / "model")


def test_option_of_another_backend_is_a_config_error():
    with pytest.raises(ValueError, match="'base_url' does not apply to backend 'llamacpp'"):
        PromptedParams(backend="llamacpp", base_url="http://127.0.0.1:1")
    with pytest.raises(ConfigError, match="unknown LLM backend 'gpt5'"):
        PromptedParams(backend="gpt5")


@pytest.mark.slow
def test_killed_bench_resumes_from_the_cache_with_identical_records(tmp_path):
    (tmp_path / "tiny.csv").write_bytes((FIXTURES / "tiny.csv").read_bytes())  # data beside its YAML
    dataset = (FIXTURES / "tiny.yaml").read_text().replace("path: .", f"path: {tmp_path}")
    (tmp_path / "tiny.yaml").write_text(dataset)

    def experiment(name, cache):
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            f"name: {name}\noutput_dir: {tmp_path / 'runs'}\ndatasets: [{tmp_path / 'tiny.yaml'}]\n"
            f"models:\n  - {{id: llm, family: prompted, decoding: generate, max_tokens: 12, chunk_size: 1,"
            f" n_ctx: 1024, cache_path: {cache}}}\nbootstrap: 50\n"
        )
        return path

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "socialens.cli", "bench"]
    cache = tmp_path / "killed.sqlite"
    process = subprocess.Popen(
        [*command, experiment("killed", cache)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until a few answers are committed, then kill -9 mid-run
        if cache.exists() and _rows(cache) >= 3:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = _rows(cache)
    assert 3 <= done_before < 9, "the run must be killed mid-way"

    subprocess.run([*command, experiment("killed", cache)], env=env, check=True, capture_output=True)
    assert _rows(cache) == 9  # the resumed run only asked for what was missing
    subprocess.run(
        [*command, experiment("clean", tmp_path / "clean.sqlite")], env=env, check=True, capture_output=True
    )
    killed = (tmp_path / "runs" / "killed" / "tiny" / "llm" / "seed-0" / "predictions.jsonl").read_text()
    clean = (tmp_path / "runs" / "clean" / "tiny" / "llm" / "seed-0" / "predictions.jsonl").read_text()
    strip = [{k: v for k, v in json.loads(line).items() if k != "latency_s"} for line in clean.splitlines()]
    resumed = [
        {k: v for k, v in json.loads(line).items() if k != "latency_s"} for line in killed.splitlines()
    ]
    assert resumed == strip


def _rows(path):
    import sqlite3

    with sqlite3.connect(path) as db:
        try:
            return db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


@pytest.fixture(scope="module")
def smollm2_batched():
    from socialens.llm.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend("builtin:smollm2-135m-instruct", n_ctx=1024, n_threads=1, batch_texts="auto")
    yield backend
    backend.close()


def test_scored_few_shot_fixed_goes_in_one_batch_with_the_shots_as_the_shared_prefix(smollm2_batched):
    import numpy as np

    smollm2 = smollm2_batched
    pool = [Example(f"p{i}", f"{t} (variant {i})", lab) for i, (_, t, lab) in enumerate(TEXTS * 2)]
    params = PromptedParams(shots=3, shot_selection="fixed", decoding="scored", cache=False)
    clf = PromptedClassifier(params, backend=smollm2).fit(pool, schema=SCHEMA)
    prompts = clf.prompts(EXAMPLES)
    tokens = [smollm2.tokenize(smollm2.render(p)) for p in prompts]
    shared = min(
        next((k for k, (x, y) in enumerate(zip(tokens[0], t, strict=False)) if x != y), len(t))
        for t in tokens[1:]
    )
    assert shared > 150  # system text and the three shots
    decoded, calls = smollm2.engine.tokens_decoded, smollm2.engine.decode_calls
    records = clf.predict(EXAMPLES)
    # the prefix, the suffixes, a turn a label run (a text's runs take turns on its sequence)
    assert smollm2.engine.decode_calls - calls <= 2 + len(SCHEMA.names)
    assert smollm2.engine.tokens_decoded - decoded < sum(len(t) for t in tokens) - 2 * shared
    assert [r.tokens_in for r in records] == [len(t) for t in tokens]
    continuations = [clf.builder.answer(name) for name in SCHEMA.names]
    for record, prompt in zip(records, prompts, strict=True):  # the scores of one text at a time
        alone = smollm2.score(prompt, continuations)
        batched = json.loads(record.raw_output)
        assert record.status == Status.OK and record.predicted == max(batched, key=batched.get)
        # within the rounding of other batch shapes (tests/llm/test_llamacpp.py, SCORE_TOLERANCE)
        np.testing.assert_allclose([batched[n] for n in SCHEMA.names], alone.logprobs, atol=0.75)
