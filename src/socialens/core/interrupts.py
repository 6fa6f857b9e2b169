"""Ctrl-C that ends a command within seconds, even while a model runs native code.

Python runs a signal handler only in the main thread, between two bytecodes, so a SIGINT that
arrives while llama.cpp evaluates a long prompt (one C call of many seconds) waits for that call
to return, and the exit after it can wait again on threads (an HTTP pool finishing its requests,
retries included). ``stop_promptly_on_sigint`` has the C-level handler also write the signal to a
socket (``signal.set_wakeup_fd``) that a watcher thread reads; native code releases the GIL, so the
watcher runs at once. The main thread still gets its KeyboardInterrupt and may stop cleanly; if the
process is still alive ``grace_s`` seconds after the first Ctrl-C, or at a second one, the watcher
prints one line and ends it with exit code 130 (``os._exit``: no clean-up runs). A command may
use it only when what it writes is safe to cut off at any point, as predict's committed chunks are.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator

INTERRUPTED_EXIT = 130  # 128 + SIGINT, what a shell reports for a process ended by Ctrl-C
GRACE_S = 1.5


def _end_process(describe: Callable[[], str] | None) -> None:
    try:
        line = describe() if describe is not None else "interrupted"
        sys.stdout.flush()
        sys.stdout.write(f"\n{line}\n")
        sys.stdout.flush()
    except Exception:  # noqa: BLE001, S110 - the process ends whatever printing does
        pass
    os._exit(INTERRUPTED_EXIT)


def _watch(reader: socket.socket, grace_s: float, describe, interrupted: threading.Event) -> None:
    deadline = None
    while True:
        reader.settimeout(None if deadline is None else max(0.0, deadline - time.monotonic()))
        try:
            data = reader.recv(64)
        except TimeoutError:
            _end_process(describe)
        except OSError:
            return
        if not data:  # the writer closed: the block ended without a Ctrl-C
            return
        if signal.SIGINT in data:
            if deadline is not None:
                _end_process(describe)
            interrupted.set()
            deadline = time.monotonic() + grace_s


@contextlib.contextmanager
def stop_promptly_on_sigint(
    describe: Callable[[], str] | None = None, grace_s: float = GRACE_S
) -> Iterator[None]:
    """Within the block, Ctrl-C raises KeyboardInterrupt as usual and the process ends with exit
    code 130 at the latest ``grace_s`` seconds later (at once on a second Ctrl-C), printing
    ``describe()``. Outside the main thread (where signals cannot be set up) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)  # the C handler must never block on a full socket
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    previous_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    interrupted = threading.Event()
    watcher = threading.Thread(
        target=_watch, args=(reader, grace_s, describe, interrupted), name="sigint-watcher", daemon=True
    )
    watcher.start()
    stays_armed = False
    try:
        yield
    except KeyboardInterrupt:
        stays_armed = True  # the exit that follows is bounded too
        raise
    finally:
        if stays_armed:  # a KeyboardInterrupt raised by code, not by a signal, disarms as usual
            stays_armed = interrupted.wait(0.2)
        if not (stays_armed or interrupted.is_set()):
            signal.set_wakeup_fd(previous_fd)
            signal.signal(signal.SIGINT, previous_handler)
            writer.close()
            watcher.join()
            reader.close()
