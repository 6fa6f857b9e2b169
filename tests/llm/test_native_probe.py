"""The llama.cpp probe: a native crash in a child process becomes one line, never a dead parent."""

from __future__ import annotations

import json
import platform
import sys

import pytest

from socialens.llm import native_probe
from socialens.llm.native_probe import (
    PROBE_FILE,
    NativeCrash,
    ProbeResult,
    crashed,
    describe_returncode,
    machine_key,
    probe_key,
    probe_llamacpp,
    record_probe,
    resolve_extra_buffers,
    run_probe_command,
)

# Executes ``ud2``, the instruction x86 defines to be invalid: the same SIGILL an AMX tile
# instruction raises where the hypervisor traps it.
ILLEGAL_INSTRUCTION = """
import ctypes, mmap
page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
page.write(b"\\x0f\\x0b")
ctypes.CFUNCTYPE(None)(ctypes.addressof(ctypes.c_char.from_buffer(page)))()
"""


SIGILL = ProbeResult(False, -4, "SIGILL (illegal instruction)")


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SOCIALENS_CACHE_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def smollm_path() -> str:
    pytest.importorskip("llama_cpp")
    from socialens.core.errors import ConfigError
    from socialens.core.models import resolve_model

    try:
        return resolve_model("builtin:smollm2-135m-instruct")
    except ConfigError as error:
        pytest.skip(str(error))


def test_signals_are_named():
    assert describe_returncode(-4) == "SIGILL (illegal instruction)"
    assert describe_returncode(-11) == "SIGSEGV (segmentation fault)"
    assert describe_returncode(3) == "exit code 3"
    assert crashed(ProbeResult(False, -4, "SIGILL"))
    assert crashed(ProbeResult(False, None, "timed out"))
    assert not crashed(ProbeResult(False, 1, "exit code 1"))
    assert not crashed(ProbeResult(True, 0, "ok"))


@pytest.mark.skipif(platform.machine() not in {"x86_64", "AMD64"}, reason="ud2 is an x86 instruction")
def test_a_real_illegal_instruction_in_the_child_is_reported_not_fatal():
    result = run_probe_command([sys.executable, "-c", ILLEGAL_INSTRUCTION], timeout_s=60)
    assert not result.ok
    assert result.returncode == -4
    assert result.detail == "SIGILL (illegal instruction)"
    assert crashed(result)


def test_a_python_error_in_the_child_is_not_a_crash():
    result = run_probe_command([sys.executable, "-c", "raise SystemExit('no such model')"], timeout_s=60)
    assert result.returncode == 1 and not crashed(result)
    assert "no such model" in result.detail


def test_hung_child_times_out():
    result = run_probe_command([sys.executable, "-c", "import time; time.sleep(30)"], timeout_s=1)
    assert result.returncode is None and crashed(result)
    assert "timed out" in result.detail


def test_probe_runs_the_real_model_once_per_machine(cache_dir, smollm_path, monkeypatch):
    first = probe_llamacpp(smollm_path, False)
    assert first.ok, first.detail
    stored = json.loads((cache_dir / PROBE_FILE).read_text())
    (key,) = stored
    assert key == probe_key(smollm_path, False)
    assert key.startswith(machine_key()) and key.endswith("extra_buffers=off")
    assert stored[key]["ok"] is True

    def must_not_run(*args, **kwargs):
        raise AssertionError("a cached probe ran its child again")

    monkeypatch.setattr(native_probe, "run_probe_command", must_not_run)
    assert probe_llamacpp(smollm_path, False).ok


def seed_crash(model_path: str, extra: str) -> None:
    """What a probe that died of SIGILL on this machine leaves in the cache."""
    record_probe(model_path, extra == "on", SIGILL)


def test_auto_turns_extra_buffers_off_where_they_crashed(cache_dir, smollm_path):
    seed_crash(smollm_path, "on")
    assert resolve_extra_buffers(smollm_path, "auto") is False
    assert resolve_extra_buffers(smollm_path, "off") is False
    with pytest.raises(NativeCrash) as info:
        resolve_extra_buffers(smollm_path, "on")
    message = str(info.value)
    assert "\n" not in message
    assert "llamacpp" in message and "SIGILL" in message and "extra_buffers: off" in message


def test_auto_follows_the_real_probe(cache_dir, smollm_path):
    """With the portable build the probe with extra buffers survives and auto keeps them; a build
    with AMX kernels on a CPU that traps them (seen: SIGSEGV at ldtilecfg) falls back to off."""
    chosen = resolve_extra_buffers(smollm_path, "auto")
    stored = json.loads((cache_dir / PROBE_FILE).read_text())
    by_setting = {key.rsplit("=", 1)[1]: entry for key, entry in stored.items()}
    assert chosen is by_setting["on"]["ok"]
    if chosen:
        assert list(by_setting) == ["on"]  # one child, the result cached
    else:
        assert by_setting["on"]["returncode"] < 0 and by_setting["off"]["ok"] is True


def test_both_settings_crashing_is_one_line_naming_the_build(cache_dir, smollm_path):
    seed_crash(smollm_path, "on")
    seed_crash(smollm_path, "off")
    with pytest.raises(NativeCrash, match=r"extra_buffers=off failed \(SIGILL.*rebuild llama-cpp-python"):
        resolve_extra_buffers(smollm_path, "auto")


def test_backend_never_loads_a_model_whose_probe_crashed(cache_dir, smollm_path):
    from socialens.llm.llamacpp import LlamaCppBackend

    seed_crash(smollm_path, "on")
    with pytest.raises(NativeCrash, match="SIGILL"):
        LlamaCppBackend(smollm_path, n_ctx=256, n_threads=1, extra_buffers="on")
    backend = LlamaCppBackend(smollm_path, n_ctx=256, n_threads=1)  # auto -> off here
    try:
        assert backend.extra_buffers is False
        assert backend.score([{"role": "user", "content": "Is water wet?"}], ["yes", "no"]).error is None
    finally:
        backend.close()


def test_yaml_booleans_mean_on_and_off():
    from socialens.llm.llamacpp import LlamaCppBackend

    assert LlamaCppBackend.Options(extra_buffers=False).extra_buffers == "off"
    assert LlamaCppBackend.Options(extra_buffers=True).extra_buffers == "on"
    with pytest.raises(ValueError, match="extra_buffers"):
        LlamaCppBackend.Options(extra_buffers="sometimes")
