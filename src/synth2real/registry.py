"""A registry by name (timm-style), shared by the translation methods and the
segmentation models: entries added once under a unique name, listed in the order they
were added, looked up with an error that names what is available.

The methods' registry (presets, lazy targets, parameters) is
:mod:`synth2real.methods.registry`; the segmentation models' is
:mod:`synth2real.segment.models`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from synth2real.errors import ConfigError

E = TypeVar("E")


class Registry(Generic[E]):
    """Entries of one kind by name.

    Args:
        kind: what the entries are, for messages (``"method"``, ``"model"``).
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, E] = {}

    def add(self, name: str, entry: E) -> E:
        """Register ``entry`` under ``name``; a name is registered once (ValueError)."""
        if name in self._entries:
            raise ValueError(f"{self.kind} name {name!r} registered twice")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> E:
        """The entry of ``name``; :class:`ConfigError` naming every registered one if none."""
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; available: {', '.join(self._entries)}"
            ) from None

    def names(self) -> list[str]:
        """Registered names, in the order they were added."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def items(self):
        return self._entries.items()
