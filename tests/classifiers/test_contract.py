"""One contract over every registered model family, LLM backend and task: the bench, predict and
the server drive them all through the same signatures, so each must have them."""

from __future__ import annotations

import inspect

import pytest
from pydantic import BaseModel

from socialens.classifiers.base import Classifier
from socialens.core.errors import ConfigError
from socialens.core.params import FamilyParams
from socialens.core.registry import BACKENDS, FAMILIES, TASKS
from socialens.core.types import Example, LabelSchema
from socialens.llm.base import LLMBackend
from socialens.tasks.base import TARGET_FORMS, Task


def keyword_only(function) -> set[str]:
    return {
        name
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }


@pytest.mark.parametrize("name", FAMILIES.names())
def test_every_family_has_the_one_classifier_signature(name):
    cls = FAMILIES.get(name)
    assert cls.family == name
    assert issubclass(cls.Params, FamilyParams)
    assert cls.task_types and set(cls.task_types) <= set(TASKS.names())
    assert "classification" in cls.task_types
    init = list(inspect.signature(cls.__init__).parameters)
    assert init[:3] == ["self", "params", "seed"]
    assert {"progress", "estimate"} <= keyword_only(cls.__init__)
    assert {"schema", "task", "task_type"} <= keyword_only(cls.fit)
    assert list(inspect.signature(cls.fit).parameters)[:3] == ["self", "train", "dev"]
    assert {"trust", "progress"} <= keyword_only(cls.load)

    def progress(stage, done, total):
        return None

    def estimate(found):
        return None

    model = cls(cls.Params(), 3, progress=progress, estimate=estimate)  # unfitted: nothing loads
    assert isinstance(model, Classifier)
    assert (model.seed, model.progress, model.estimate, model.stopped_) == (3, progress, estimate, None)
    assert model.task_type == "classification" and model.schema is None


@pytest.mark.parametrize("name", FAMILIES.names())
def test_a_family_refuses_a_task_type_it_does_not_handle_in_one_line(name):
    cls = FAMILIES.get(name)
    schema = LabelSchema.from_names(["a", "b"])
    with pytest.raises(ConfigError, match="unknown task 'no-such-task': expected one of"):
        cls().fit([Example("1", "x", "a")], schema=schema, task_type="no-such-task")
    for task_type in sorted(set(TASKS.names()) - set(cls.task_types)):
        with pytest.raises(ConfigError, match=f"model family '{name}' does not handle the task type"):
            cls().fit([Example("1", "x", "a")], schema=schema, task_type=task_type)


@pytest.mark.parametrize("name", BACKENDS.names())
def test_every_backend_has_the_llm_backend_protocol(name):
    cls = BACKENDS.get(name)
    assert cls.name == name
    assert issubclass(cls.Options, FamilyParams)
    for method in ("render", "generate", "score", "close"):
        assert callable(getattr(cls, method)), method
    protocol = {m for m in dir(LLMBackend) if not m.startswith("_") and callable(getattr(LLMBackend, m))}
    assert protocol <= set(dir(cls))


@pytest.mark.parametrize("name", TASKS.names())
def test_every_task_has_the_task_protocol(name):
    task = TASKS.get(name)()
    assert isinstance(task, Task)
    assert task.name == name
    assert task.headline_metric in task.scalar_metrics
    assert task.output_formats
    assert isinstance(task.label_prompts, bool)
    assert task.target_form in TARGET_FORMS
    assert task.stop_rules and task.stop_rules[0] == "eos"


def test_an_unknown_name_in_a_registry_is_one_line_naming_the_known_ones():
    with pytest.raises(ConfigError) as caught:
        FAMILIES.get("svm")
    assert str(caught.value) == f"unknown model family 'svm': expected one of {', '.join(FAMILIES.names())}"
    with pytest.raises(ConfigError, match="unknown LLM backend 'vllm': expected one of hf, llamacpp, openai"):
        BACKENDS.get("vllm")


def test_a_registry_entry_is_imported_only_when_used(tmp_path):
    """Looking a family up imports its module, and only its: the tfidf family does not load torch,
    llama.cpp or the LLM backends."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from socialens.core.registry import FAMILIES\n"
        "FAMILIES.get('tfidf')\n"
        "heavy = [m for m in ('torch', 'llama_cpp', 'transformers', 'socialens.classifiers.prompted',"
        " 'socialens.llm.llamacpp') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_params_are_pydantic_models_that_forbid_unknown_fields():
    for name in FAMILIES.names():
        params = FAMILIES.get(name).Params
        assert issubclass(params, BaseModel)
        with pytest.raises(ValueError):
            params(no_such_field=1)
