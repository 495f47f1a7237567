"""Worker processes that behave: quiet on Ctrl-C, gone when their parent dies.

::

    with process_pool(4, initializer=init, initargs=(...)) as pool:
        ...

:func:`process_pool` is a ``ProcessPoolExecutor`` on spawned processes (no fork: safe
with threads in the parent) whose workers

- start with Ctrl-C (SIGINT) ignored: the terminal sends it to the whole process group,
  and the parent alone decides what an interrupt means (a worker interrupted while it
  starts would print "Exception in initializer" and a traceback). SIGINT is blocked in
  the parent while the workers are started, so they never see one before they ignore
  it; the parent receives any Ctrl-C of that moment right after. A task that should
  stop on Ctrl-C itself (a training run saves its state) runs under
  :func:`interruptible`; between tasks a worker stays deaf to it;
- exit when their parent dies, however it dies (``kill -9`` included): on Linux through
  ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, elsewhere through a thread that watches the
  parent's pid. Without this an orphaned worker waits on its pipe for ever and keeps
  multiprocessing's resource tracker alive with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, wait
from typing import Any

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int | None = None) -> None:
    """Make this process exit as soon as ``parent`` (default: the multiprocessing parent)
    is gone."""
    if parent is None:
        proc = mp.parent_process()
        if proc is None or proc.pid is None:
            return
        parent = proc.pid
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # it died before we asked to be told
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="s2r-parent-watch", daemon=True).start()


#: in a worker: set by the parent when it stops the pool (see :func:`stop`)
_STOPPING: Any = None


def _start(stopping: Any, initializer: Callable[..., None] | None, initargs: tuple) -> None:
    global _STOPPING
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):  # blocked by the parent while it started us
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    die_with_parent()
    _STOPPING = stopping
    if initializer is not None:
        initializer(*initargs)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """In a worker of :func:`process_pool`: Ctrl-C raises ``KeyboardInterrupt`` inside
    this block (and is ignored again after it); once the parent is stopping the pool, a
    task that has not begun raises it at once instead of starting."""
    if _STOPPING is not None and _STOPPING.is_set():
        raise KeyboardInterrupt
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@contextlib.contextmanager
def sigint_blocked() -> Iterator[None]:
    """Block SIGINT in this thread (processes started meanwhile inherit the mask)."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - Windows
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def process_pool(
    max_workers: int, initializer: Callable[..., None] | None = None, initargs: tuple = ()
) -> ProcessPoolExecutor:
    """A spawned ``ProcessPoolExecutor`` whose workers ignore Ctrl-C (outside
    :func:`interruptible`) and exit when this process dies; all are started now."""
    ctx = mp.get_context("spawn")
    stopping = ctx.Event()
    pool = ProcessPoolExecutor(  # (this may start multiprocessing's resource tracker,
        max_workers=max_workers,  # which unblocks SIGINT in this thread when it does)
        mp_context=ctx,
        initializer=_start,
        initargs=(stopping, initializer, initargs),
    )
    pool._s2r_stopping = stopping  # type: ignore[attr-defined]
    try:
        with sigint_blocked():
            _start_all(pool)
    except BaseException:  # a Ctrl-C of that moment arrives as SIGINT is unblocked
        stop(pool)
        raise
    return pool


def _start_all(pool: ProcessPoolExecutor) -> None:
    """Start every worker and the executor's thread now, while SIGINT is blocked (the
    executor would otherwise start them on the first ``submit``, as it still does
    without these private hooks)."""
    launch: Any = getattr(pool, "_launch_processes", None)
    manager: Any = getattr(pool, "_start_executor_manager_thread", None)
    if launch is None or manager is None or getattr(pool, "_executor_manager_thread", 1):
        return  # pragma: no cover - another Python's executor
    with pool._shutdown_lock:  # type: ignore[attr-defined]
        launch()
        manager()


def stop(pool: ProcessPoolExecutor, running: Iterable[Future] = (), grace: float = 0.0) -> None:
    """Stop ``pool`` after an error or an interrupt: no task starts any more, ``running``
    tasks get up to ``grace`` seconds to end (a training run that got the Ctrl-C saves
    its state), then the workers are ended (what they were writing is a temporary file
    a resume removes)."""
    stopping = getattr(pool, "_s2r_stopping", None)
    if stopping is not None:
        stopping.set()
    for f in running:
        f.cancel()
    left = [f for f in running if not f.done()]
    if left and grace > 0:
        wait(left, timeout=grace)
    terminate = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if terminate is not None:  # pragma: no cover
        terminate()
    else:
        for p in list((getattr(pool, "_processes", None) or {}).values()):
            with contextlib.suppress(Exception):
                p.terminate()
    # wait=True: the executor's own thread finishes cleanly (with wait=False its exit
    # hook may write to a closed pipe and print "Bad file descriptor" at exit)
    pool.shutdown(wait=True, cancel_futures=True)
