"""A tiny progress-bar helper on top of ``rich.progress`` (one look for every command).

Usage::

    from synth2real.progress import progress_bar, track

    with progress_bar(total=len(samples), description="translate") as advance:
        for s in samples:
            ...
            advance()          # or advance(n) for n items at once

    for item in track(items, description="reading"):
        ...

Bars go to stderr, show done/total, elapsed time, rate and ETA, and disappear into a
single summary line when finished. ``enabled=False`` (or ``S2R_NO_PROGRESS=1`` in the
environment) turns them into no-ops, which tests and worker processes use.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


def progress_enabled(enabled: bool = True) -> bool:
    """``enabled`` unless the environment variable ``S2R_NO_PROGRESS`` is set to 1/true."""
    env = os.environ.get("S2R_NO_PROGRESS", "").strip().lower()
    return bool(enabled) and env not in ("1", "true", "yes")


@contextmanager
def progress_bar(
    total: int | None, description: str = "", *, enabled: bool = True, unit: str = "img"
) -> Iterator[Callable[..., None]]:
    """Show a progress bar for ``total`` items; yields ``advance(n=1)``.

    Args:
        total: number of items, or ``None`` when unknown (the bar then only counts).
        description: short label shown left of the bar.
        enabled: ``False`` yields a no-op ``advance`` and draws nothing.
        unit: the item's name shown in the rate column (``img/s``).
    """
    if not progress_enabled(enabled):
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

    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[dim]{task.fields[speed_str]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=Console(stderr=True), transient=False) as prog:
        task = prog.add_task(description, total=total, speed_str="")

        def advance(n: int = 1) -> None:
            prog.advance(task, n)
            speed = prog.tasks[task].speed
            if speed:
                prog.update(task, speed_str=f"{speed:.2f} {unit}/s")

        yield advance


def track(
    items: Iterable[T],
    description: str = "",
    *,
    total: int | None = None,
    enabled: bool = True,
    unit: str = "img",
) -> Iterator[T]:
    """Iterate over ``items`` with a progress bar (``total`` defaults to ``len(items)``)."""
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with progress_bar(total, description, enabled=enabled, unit=unit) as advance:
        for item in items:
            yield item
            advance()
