"""Progress bars for long work (rich), written to stderr and easy to switch off.

    from synth2real.progress import progress_bar, track

    with progress_bar(total=len(ds), description="scanning", enabled=True) as advance:
        for item in items:
            ...
            advance()          # or advance(n), or advance(loss="0.123") to show fields

    for item in track(items, description="reading"):
        ...

The yielded object is callable (``advance(n=1, **fields)``) and also has ``.advance`` and
``.update(completed=None, **fields)``; extra keyword fields are shown after the bar
(``loss=0.123  it_s=2.1``). Bars show done/total, the rate (``img/s``), elapsed time and
ETA. When stderr is not a terminal (a log file, ``nohup``, a batch job) and ``force`` is
not set, no bar is drawn: a plain line with the same numbers is printed every
:data:`LOG_EVERY_S` seconds instead (``S2R_PROGRESS_EVERY=SECONDS`` changes it), so work
shorter than that prints nothing. When ``enabled`` is false or ``S2R_NO_PROGRESS=1`` is
set, every call is a no-op, so library code can always call it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

#: seconds between two progress lines when stderr is not a terminal
LOG_EVERY_S = 60.0


def progress_enabled(enabled: bool = True) -> bool:
    """``enabled`` unless the environment variable ``S2R_NO_PROGRESS`` is set to 1/true."""
    env = os.environ.get("S2R_NO_PROGRESS", "").strip().lower()
    return bool(enabled) and env not in ("1", "true", "yes")


class Bar:
    """Handle of one running bar (a no-op when nothing is drawn)."""

    def __init__(self, progress: Any = None, task: Any = None, unit: str = ""):
        self._progress = progress
        self._task = task
        self._unit = unit

    def __call__(self, n: float = 1, **fields: object) -> None:
        self.advance(n, **fields)

    def advance(self, n: float = 1, **fields: object) -> None:
        """Move ``n`` steps forward; ``fields`` replace the text shown after the bar."""
        if self._progress is not None:
            kw: dict = {"info": _fmt(fields)} if fields else {}
            self._progress.update(self._task, advance=n, **kw)
            self._show_speed()

    def update(self, completed: float | None = None, **fields: object) -> None:
        """Set the absolute position and/or the fields shown after the bar."""
        if self._progress is not None:
            kw: dict = {"info": _fmt(fields)} if fields else {}
            if completed is not None:
                kw["completed"] = completed
            self._progress.update(self._task, **kw)

    def _show_speed(self) -> None:
        if not self._unit:
            return
        speed = self._progress.tasks[self._task].speed
        if speed:
            self._progress.update(self._task, speed_str=f"{speed:.2f} {self._unit}/s")


class LogBar(Bar):
    """A bar for logs: one line ``description: done/total (pct) rate elapsed ETA fields``
    on stderr at most every ``every`` seconds, the first one ``every`` seconds in."""

    def __init__(
        self,
        total: float | None,
        description: str,
        completed: float = 0,
        unit: str = "",
        every: float = LOG_EVERY_S,
        clock: Any = time.monotonic,
    ):
        super().__init__()
        self.total, self.description, self.unit = total, description, unit
        self.every, self._clock = every, clock
        self.completed, self._start_at = completed, completed
        self._t0 = self._last = clock()
        self._info = ""

    def advance(self, n: float = 1, **fields: object) -> None:
        self.update(self.completed + n, **fields)

    def update(self, completed: float | None = None, **fields: object) -> None:
        if completed is not None:
            self.completed = completed
        if fields:
            self._info = _fmt(fields)
        now = self._clock()
        if now - self._last >= self.every:
            self._last = now
            print(self.line(now - self._t0), file=sys.stderr, flush=True)

    def line(self, elapsed: float) -> str:
        """The progress line after ``elapsed`` seconds."""
        done, total = self.completed, self.total
        parts = [f"{self.description}: {done:g}" + (f"/{total:g}" if total else "")]
        if total:
            parts.append(f"({100 * done / total:.0f}%)")
        rate = (done - self._start_at) / elapsed if elapsed > 0 else 0.0
        if rate > 0 and self.unit:
            parts.append(f"{rate:.2f} {self.unit}/s")
        parts.append(f"{_hms(elapsed)} elapsed")
        if rate > 0 and total:
            parts.append(f"ETA {_hms(max(total - done, 0) / rate)}")
        return "  ".join(parts + ([self._info] if self._info else []))


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def log_every() -> float:
    """:data:`LOG_EVERY_S`, or ``S2R_PROGRESS_EVERY`` from the environment (seconds)."""
    try:
        return float(os.environ["S2R_PROGRESS_EVERY"])
    except (KeyError, ValueError):
        return LOG_EVERY_S


def _fmt(fields: dict) -> str:
    return "  ".join(f"{k}={v}" for k, v in fields.items())


@contextmanager
def progress_bar(
    total: float | None,
    description: str = "",
    enabled: bool = True,
    force: bool = False,
    *,
    completed: float = 0,
    unit: str = "",
) -> Iterator[Bar]:
    """A rich progress bar on stderr; yields a callable :class:`Bar` (``advance(n=1)``).

    Args:
        total: number of steps, or ``None`` when unknown.
        description: text left of the bar.
        enabled: ``False`` draws nothing.
        force: draw the bar even when stderr is not a terminal (else: log lines).
        completed: steps already done (a resumed job starts there).
        unit: the item's name shown in a rate column (``"img"`` -> ``2.10 img/s``);
            empty (default): no rate column.
    """
    if not progress_enabled(enabled):
        yield Bar()
        return
    if not (force or sys.stderr.isatty()):
        yield LogBar(total, description, completed, unit, every=log_every())
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
    ]
    if unit:
        columns.append(TextColumn("[dim]{task.fields[speed_str]}"))
    columns += [TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}")]
    with Progress(*columns, console=Console(stderr=True), transient=False) as prog:
        task = prog.add_task(description, total=total, completed=completed, info="", speed_str="")
        yield Bar(prog, task, unit)


def track(
    items: Iterable[T],
    description: str = "",
    *,
    total: int | None = None,
    enabled: bool = True,
    unit: str = "",
) -> Iterator[T]:
    """Iterate ``items`` with a progress bar (``total`` defaults to ``len(items)``)."""
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with progress_bar(total, description, enabled, unit=unit) as advance:
        for item in items:
            yield item
            advance(1)
