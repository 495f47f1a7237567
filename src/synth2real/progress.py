"""One progress-bar helper for every long job (rich), silent when disabled.

Usage::

    with progress_bar(total=n, description="training", enabled=progress) as bar:
        for ...:
            bar.advance(loss=f"{loss:.3f}")

Extra keyword fields passed to :meth:`Bar.advance` / :meth:`Bar.update` are shown after
the bar (``loss=0.123``). With ``enabled=False`` nothing is drawn and the calls cost
nothing, so library functions can take a ``progress: bool`` argument and pass it on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Bar:
    """Handle of one running bar (a no-op when the bar is disabled)."""

    def __init__(self, progress: Progress | None, task: int | None):
        self._progress = progress
        self._task = task

    def advance(self, n: float = 1, **fields: object) -> None:
        """Move ``n`` steps forward and update the extra fields shown after the bar."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=n, info=_fmt(fields))

    def update(self, completed: float | None = None, **fields: object) -> None:
        """Set the absolute position and/or the extra fields."""
        if self._progress is not None and self._task is not None:
            kw: dict = {"info": _fmt(fields)} if fields else {}
            if completed is not None:
                kw["completed"] = completed
            self._progress.update(self._task, **kw)


def _fmt(fields: dict) -> str:
    return "  ".join(f"{k}={v}" for k, v in fields.items())


@contextlib.contextmanager
def progress_bar(
    total: float | None,
    description: str = "",
    *,
    enabled: bool = True,
    completed: float = 0,
    console: Console | None = None,
    transient: bool = False,
) -> Iterator[Bar]:
    """A rich progress bar on stderr: ``description  [bar]  n/total  elapsed  eta  info``.

    Args:
        total: number of steps (``None`` for an indeterminate bar).
        description: text before the bar.
        enabled: draw nothing when False.
        completed: steps already done (a resumed job starts there).
        console: the rich console to draw on (stderr by default).
        transient: remove the bar when done.
    """
    if not enabled:
        yield Bar(None, None)
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console or Console(stderr=True),
        transient=transient,
    )
    with progress:
        task = progress.add_task(description, total=total, completed=completed, info="")
        yield Bar(progress, task)
