"""Progress bars for long work (rich), written to stderr and easy to switch off.

    with progress_bar(total=len(ds), description="scanning", enabled=True) as advance:
        for item in items:
            ...
            advance()          # or advance(n)

When ``enabled`` is false, or stderr is not a terminal and ``force`` is not set, nothing is
drawn and ``advance`` is a no-op, so library code can always call it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


@contextmanager
def progress_bar(
    total: int | None, description: str = "", enabled: bool = True, force: bool = False
) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr; yields ``advance(n=1)``.

    Args:
        total: number of steps, or ``None`` when unknown.
        description: text left of the bar.
        enabled: ``False`` draws nothing.
        force: draw even when stderr is not a terminal (logs, CI).
    """
    if not enabled or not (force or sys.stderr.isatty()):
        yield lambda n=1: None
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
        console=Console(stderr=True),
        transient=False,
    ) as prog:
        task = prog.add_task(description, total=total)
        yield lambda n=1: prog.advance(task, n)


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
