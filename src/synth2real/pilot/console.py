"""The pilot's status lines: one console on stderr, silent when ``progress`` is off."""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=True, highlight=False, soft_wrap=True)  # paths stay whole


def say(msg: str, progress: bool = True) -> None:
    """Print ``msg`` (rich markup) on stderr when ``progress`` is set."""
    if progress:
        console.print(msg)
