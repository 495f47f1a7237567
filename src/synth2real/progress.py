"""Progress bars for long work (rich), written to stderr and easy to switch off.

    with progress_bar(total=len(ds), description="scanning", enabled=True) as advance:
        for item in items:
            ...
            advance()          # or advance(n), or advance(loss="0.123") to show fields

The yielded object is callable (``advance(n=1, **fields)``) and also has ``.advance`` and
``.update(completed=None, **fields)``; extra keyword fields are shown after the bar
(``loss=0.123  it_s=2.1``). When ``enabled`` is false, or stderr is not a terminal and
``force`` is not set, nothing is drawn and every call is a no-op, so library code can
always call it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


class Bar:
    """Handle of one running bar (a no-op when nothing is drawn)."""

    def __init__(self, progress: Any = None, task: Any = None):
        self._progress = progress
        self._task = task

    def __call__(self, n: float = 1, **fields: object) -> None:
        self.advance(n, **fields)

    def advance(self, n: float = 1, **fields: object) -> None:
        """Move ``n`` steps forward; ``fields`` replace the text shown after the bar."""
        if self._progress is not None:
            kw = {"info": _fmt(fields)} if fields else {}
            self._progress.update(self._task, advance=n, **kw)

    def update(self, completed: float | None = None, **fields: object) -> None:
        """Set the absolute position and/or the fields shown after the bar."""
        if self._progress is not None:
            kw: dict = {"info": _fmt(fields)} if fields else {}
            if completed is not None:
                kw["completed"] = completed
            self._progress.update(self._task, **kw)


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
) -> Iterator[Bar]:
    """A rich progress bar on stderr; yields a callable :class:`Bar` (``advance(n=1)``).

    Args:
        total: number of steps, or ``None`` when unknown.
        description: text left of the bar.
        enabled: ``False`` draws nothing.
        force: draw even when stderr is not a terminal (logs, CI).
        completed: steps already done (a resumed job starts there).
    """
    if not enabled or not (force or sys.stderr.isatty()):
        yield Bar()
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

    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=Console(stderr=True),
        transient=False,
    ) as prog:
        task = prog.add_task(description, total=total, completed=completed, info="")
        yield Bar(prog, task)


def track(
    items: Iterable[T], total: int | None = None, description: str = "", enabled: bool = True
) -> Iterator[T]:
    """Iterate ``items`` with a progress bar (see :func:`progress_bar`)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress_bar(total, description, enabled) as advance:
        for item in items:
            yield item
            advance(1)
