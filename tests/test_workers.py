"""Worker processes (synth2real.workers): deaf to Ctrl-C outside ``interruptible``, and
no task starts once the parent stops the pool. (Dying with the parent after ``kill -9``
is checked through the CLI in tests/test_cli_safety.py.)"""

from __future__ import annotations

import os
import signal
import time

import pytest

from synth2real.workers import interruptible, process_pool, stop


def _sigint_ignored() -> bool:
    return signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def _interrupt_self(inside: bool) -> str:
    """Send this worker SIGINT, inside ``interruptible`` or not."""
    if not inside:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)
        return "ignored"
    with interruptible():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    return "not interrupted"


def _slow_interruptible(seconds: float) -> str:
    with interruptible():
        time.sleep(seconds)
    return "ran"


def test_workers_ignore_ctrl_c_except_inside_interruptible():
    pool = process_pool(1)
    try:
        assert pool.submit(_sigint_ignored).result(timeout=60)
        assert pool.submit(_interrupt_self, False).result(timeout=60) == "ignored"
        with pytest.raises(KeyboardInterrupt):
            pool.submit(_interrupt_self, True).result(timeout=60)
        assert pool.submit(_sigint_ignored).result(timeout=60)  # deaf again after it
    finally:
        stop(pool)


def test_stop_lets_running_tasks_end_and_starts_no_queued_one():
    pool = process_pool(1)
    try:
        pool.submit(_sigint_ignored).result(timeout=60)  # the worker is up
        running = pool.submit(_slow_interruptible, 1.0)
        queued = pool.submit(_slow_interruptible, 30.0)  # in the call queue already
        time.sleep(0.3)
        t0 = time.monotonic()
        stop(pool, [running, queued], grace=20)
        assert running.result(timeout=1) == "ran"  # given its grace
        # the queued task (already handed to the executor, so not cancellable) refused to
        # start: it did not sleep its 30 s until the grace ran out and the pool was ended
        assert isinstance(queued.exception(timeout=5), KeyboardInterrupt)
        assert time.monotonic() - t0 < 10
    finally:
        stop(pool)
