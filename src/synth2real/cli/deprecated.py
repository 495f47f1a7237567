"""Old option spellings that still work: each one warns and says the new name.

``translate --model`` became ``--diffusion-model`` and ``pilot --model`` became
``--seg-model`` (the same word named diffusion weights in one command and a segmentation
model in the other); the old spellings are hidden from ``--help``.
"""

from __future__ import annotations

from typing import TypeVar

from rich.markup import escape

from synth2real.cli.common import console
from synth2real.errors import ConfigError

T = TypeVar("T")


def renamed(new: str, new_value: T | None, old: str, old_value: T | None, what: str) -> T | None:
    """The value of option ``new`` given either as ``new`` or as its deprecated spelling
    ``old`` (which prints a warning saying what ``what`` the option names).

    Raises:
        ConfigError: both spellings given with different values.
    """
    if old_value is None:
        return new_value
    if new_value is not None and new_value != old_value:
        raise ConfigError(f"{old} is the old name of {new}: give {new} only")
    console.print(
        f"[bold yellow]warning:[/] {escape(old)} is deprecated here: use {escape(new)} "
        f"({escape(what)})"
    )
    return old_value
