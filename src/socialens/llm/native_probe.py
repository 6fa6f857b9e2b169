"""Probe llama.cpp in a child process before the main process loads a model with it.

A llama.cpp build can hold CPU kernels this machine cannot run although its CPU flags say it can:
AMX tile instructions, listed in /proc/cpuinfo, trap under some hypervisors (SIGILL inside
``ggml_backend_amx_mul_mat``). Such a crash kills the whole process, so a bench grid would lose its
other cells. Before a model is loaded here, a child process loads it with the same settings and
evaluates a short batch and one decode step; a child killed by a signal becomes one
:class:`NativeCrash` line naming the backend, the signal and the setting to change.

``extra_buffers`` is llama.cpp's ``use_extra_bufts`` (weight repacking into the AMX or AVX2/AVX-512
"repack" buffer types). ``auto`` turns them on only where a probe with them on succeeded on this
machine. Results are cached per machine (CPU model and flags, kernel, the llama.cpp libraries) and
model file, in ``$SOCIALENS_CACHE_DIR/native-probes.json``, so the child runs once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator

from socialens.core.errors import SocialensError
from socialens.core.runtime import cache_dir

PROBE_FILE = "native-probes.json"
PROBE_TIMEOUT_S = 300.0
# A batch of several tokens and then single-token steps: llama.cpp picks matrix-matrix kernels for
# the first (where the repacked / AMX paths run) and matrix-vector ones for the second.
PROBE_TEXT = "A short probe sentence, evaluated as one batch of tokens before a decode step."
_PARAMS_LOCK = threading.Lock()


def _on_off_words(value: Any) -> Any:
    # YAML 1.1 reads a bare on / off as a boolean
    return {True: "on", False: "off"}[value] if isinstance(value, bool) else value


ExtraBuffers = Annotated[Literal["auto", "on", "off"], BeforeValidator(_on_off_words)]


class NativeCrash(SocialensError):
    """Native code crashed (or hung) in a probe process; the main process never loaded it."""


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    returncode: int | None
    detail: str  # "ok", "SIGILL (illegal instruction)", "exit code 1: ...", "timed out after 300 s"


def extra_buffers_flag(setting: str | bool) -> bool | None:
    """``on`` -> True, ``off`` -> False, ``auto`` -> None (decide by probing)."""
    if isinstance(setting, bool):
        return setting
    return {"on": True, "off": False, "auto": None}[setting]


@contextlib.contextmanager
def llama_model_params(use_extra_bufts: bool) -> Iterator[None]:
    """Make ``llama_cpp.Llama(...)`` built inside the block load with ``use_extra_bufts`` set.

    llama-cpp-python's ``Llama`` takes no argument for it and fills its model params from
    ``llama_model_default_params()`` inside ``__init__``; the block swaps that function for one
    that sets the field (under a lock: the swap is process-wide while the block runs)."""
    import llama_cpp.llama as llama_module

    low_level = llama_module.llama_cpp
    original = low_level.llama_model_default_params

    def with_setting():
        params = original()
        params.use_extra_bufts = use_extra_bufts
        return params

    with _PARAMS_LOCK:
        low_level.llama_model_default_params = with_setting
        try:
            yield
        finally:
            low_level.llama_model_default_params = original


def _cpu_identity() -> str:
    """The CPU model and feature flags (first processor), which decide which kernels run."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor()
    wanted = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in {"model name", "flags", "Features", "CPU implementer", "CPU part"} and key not in wanted:
            wanted[key] = value.strip()
        if not line.strip() and wanted:
            break
    return json.dumps(wanted, sort_keys=True)


def _llama_library_identity() -> str:
    """Name, size and modification time of each shared library of the installed llama-cpp-python."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("llama_cpp")
    except (ImportError, ValueError):
        return "llama_cpp missing"
    if spec is None or spec.origin is None:
        return "llama_cpp missing"
    lib = Path(spec.origin).parent / "lib"
    parts = []
    for path in sorted(lib.glob("*")) if lib.is_dir() else []:
        stat = path.stat()
        parts.append(f"{path.name}:{stat.st_size}:{int(stat.st_mtime)}")
    return ";".join(parts)


def machine_key() -> str:
    """What a probe result depends on besides the model: CPU, kernel, interpreter, llama.cpp build."""
    identity = "|".join(
        [platform.machine(), platform.release(), _cpu_identity(), sys.version, _llama_library_identity()]
    )
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:24]


def model_key(model_path: str) -> str:
    path = Path(model_path).resolve()
    stat = path.stat()
    return f"{path.name}:{stat.st_size}:{int(stat.st_mtime)}"


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(path)


def describe_returncode(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        meaning = {"SIGILL": "illegal instruction", "SIGSEGV": "segmentation fault", "SIGBUS": "bus error"}
        return f"{name} ({meaning[name]})" if name in meaning else name
    return f"exit code {returncode}"


def run_probe_command(argv: list[str], timeout_s: float = PROBE_TIMEOUT_S) -> ProbeResult:
    """Run one probe child; a signal, a non-zero exit or a time-out is a failed probe."""
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL, check=False
        )
    except subprocess.TimeoutExpired:
        return ProbeResult(False, None, f"timed out after {timeout_s:g} s")
    if done.returncode == 0:
        return ProbeResult(True, 0, "ok")
    detail = describe_returncode(done.returncode)
    last = [line for line in done.stderr.splitlines() if line.strip()][-1:]
    if done.returncode > 0 and last:
        detail += f": {last[0].strip()[:200]}"
    return ProbeResult(False, done.returncode, detail)


def probe_argv(model_path: str, use_extra_bufts: bool, n_threads: int = 1) -> list[str]:
    return [
        sys.executable,
        "-m",
        "socialens.llm.native_probe",
        model_path,
        "on" if use_extra_bufts else "off",
        str(n_threads),
    ]


def crashed(result: ProbeResult) -> bool:
    """Killed by a signal or hung: a native failure. A Python error (exit code > 0) is not one: the
    main process then fails to load the model with its own, clearer message."""
    return not result.ok and (result.returncode is None or result.returncode < 0)


def probe_key(model_path: str, use_extra_bufts: bool) -> str:
    """The cache key of one probe: this machine, this model file, this setting."""
    return f"{machine_key()}|{model_key(model_path)}|extra_buffers={'on' if use_extra_bufts else 'off'}"


def record_probe(model_path: str, use_extra_bufts: bool, result: ProbeResult) -> None:
    """Keep a probe's outcome in the per-machine cache (best effort: an unwritable cache only means
    the child runs again next time)."""
    path = cache_dir() / PROBE_FILE
    data = _read_cache(path)
    data[probe_key(model_path, use_extra_bufts)] = {
        "ok": result.ok,
        "returncode": result.returncode,
        "detail": result.detail,
    }
    with contextlib.suppress(OSError):
        _write_cache(path, data)


def probe_llamacpp(
    model_path: str, use_extra_bufts: bool, *, n_threads: int = 1, use_cache: bool = True
) -> ProbeResult:
    """Whether loading ``model_path`` with this setting and evaluating a few tokens survives here."""
    if use_cache:
        cached = _read_cache(cache_dir() / PROBE_FILE).get(probe_key(model_path, use_extra_bufts))
        if isinstance(cached, dict) and "ok" in cached:
            return ProbeResult(bool(cached["ok"]), cached.get("returncode"), str(cached.get("detail", "")))
    result = run_probe_command(probe_argv(model_path, use_extra_bufts, n_threads))
    if result.returncode is not None and (result.ok or result.returncode < 0):
        # Only outcomes of the machine itself are kept: a time-out or a Python error may be passing.
        record_probe(model_path, use_extra_bufts, result)
    return result


def resolve_extra_buffers(model_path: str, setting: str | bool, n_threads: int = 1) -> bool:
    """The ``use_extra_bufts`` to load with, after probing in a child; raises :class:`NativeCrash`.

    ``on`` / ``off``: that setting, unless its probe crashed. ``auto``: on where a probe with extra
    buffers did not crash on this machine, else off (unless that crashed too)."""
    wanted = extra_buffers_flag(setting)
    name = Path(model_path).name
    if wanted is None:
        if not crashed(probe_llamacpp(model_path, True, n_threads=n_threads)):
            return True
        wanted = False
    result = probe_llamacpp(model_path, wanted, n_threads=n_threads)
    if not crashed(result):
        return wanted
    state = "on" if wanted else "off"
    hint = (
        "set extra_buffers: off in the model's options"
        if wanted
        else "rebuild llama-cpp-python portable (make setup; see the Makefile's CMAKE_ARGS)"
    )
    raise NativeCrash(
        f"llamacpp backend: a probe process loading {name} with extra_buffers={state} failed "
        f"({result.detail}); the model was not loaded in this process; {hint}"
    )


def _child(model_path: str, extra: str, n_threads: int) -> None:
    import llama_cpp

    with llama_model_params(extra == "on"):
        llm = llama_cpp.Llama(
            model_path=model_path,
            n_ctx=256,
            n_batch=64,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            logits_all=False,
            verbose=False,
        )
    tokens = llm.tokenize(PROBE_TEXT.encode("utf-8"), add_bos=True)
    llm.eval(tokens)
    llm.eval([tokens[-1]])
    sys.stdout.write(llama_cpp.llama_print_system_info().decode("utf-8", "replace") + "\n")
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: only the kernels above are under test


if __name__ == "__main__":  # pragma: no cover - runs in the probe child
    _child(sys.argv[1], sys.argv[2], int(sys.argv[3]))
