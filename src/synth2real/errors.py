"""Exceptions raised by synth2real. Every error about a file names the file."""

from __future__ import annotations

from pathlib import Path


class Synth2RealError(Exception):
    """Base class: an error the user can act on (the CLI prints it without a traceback)."""


class DataError(Synth2RealError, ValueError):
    """Bad input data. ``path`` names the offending file or folder."""

    def __init__(self, path: str | Path | None, message: str):
        self.path = Path(path) if path is not None else None
        self.message = message
        super().__init__(f"{path}: {message}" if path is not None else message)


class ConfigError(Synth2RealError, ValueError):
    """A bad argument, parameter or option."""


class OutputExistsError(Synth2RealError, FileExistsError):
    """The output folder holds a different run and neither resume nor overwrite was asked for."""


class ModelNotFoundError(Synth2RealError, FileNotFoundError):
    """Model weights are not reachable (no local folder, no cache, no network)."""


class RunsFailedError(Synth2RealError, RuntimeError):
    """Some of a pilot's parallel training runs failed; the others finished and are kept."""
