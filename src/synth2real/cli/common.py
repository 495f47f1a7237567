"""What the commands of the CLI share: the error console, :func:`option` (an option in
one expression) and the dataset options, helpers, and :func:`command`, which turns an
interrupt or a failed write into one line."""

from __future__ import annotations

import errno
import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

#: status lines and errors, on stderr; never wrapped, so a path in a message stays whole
#: whatever the terminal's width
console = Console(stderr=True, soft_wrap=True)


def option(kind: Any, flag: str, help: str, *aliases: str, **kw: Any) -> Any:
    """An option's type and declaration in one expression, for a command's signature:
    ``Annotated[kind, typer.Option(flag, *aliases, help=help, **kw)]``, as in
    ``seed: option(int, "--seed", "Run seed.") = 0`` (the default stays in the signature,
    so the function can also be called as plain Python)."""
    return Annotated[kind, typer.Option(flag, *aliases, help=help, **kw)]


# Options shared by every command that opens a dataset.
FormatOpt = option(
    str | None,
    "--format",
    "Dataset format (generic, supervisely, cityscapes, gta5, camvid, images); detected when omitted.",
)
ClassesOpt = option(
    Path | None, "--classes", "Class spec YAML (names, optional colours, ignore_index)."
)
ClassMapOpt = option(
    Path | None,
    "--class-map",
    "Class-map YAML mapping this dataset's raw ids/colours onto your classes.",
)

# Options of the commands that translate a source (translate, pilot).
SourceNamesOpt = option(
    str | None,
    "--source-names",
    "Use only these --source images: FILE (one name a line), FILE.json:KEY or a,b,c.",
)
SourceLimitOpt = option(
    int | None,
    "--source-limit",
    "Use a fixed random subset of N --source images (after --source-names; seed 0).",
)

# Options of the commands that take unlabelled real images (train, pilot).
UnlabeledOpt = option(
    Path | None,
    "--unlabeled",
    "Unlabelled real images for the selftrain recipe: any image folder, or a dataset "
    "whose labels are then not read (in the pilot, none may be a test image).",
)
UnlabeledNamesOpt = option(
    str | None,
    "--unlabeled-names",
    "Use only these --unlabeled images: FILE, FILE.json:key (e.g. splits.json:unlabeled) "
    "or a,b,c (default: all).",
)


def table_console(min_width: int = 120) -> Console:
    """A stdout console at least ``min_width`` columns wide, for tables: a narrow terminal
    (or ``COLUMNS=40``) folds the screen lines, but never the text of a cell, so a log or
    a pipe keeps every word and path whole."""
    out = Console(soft_wrap=True)
    return out if out.width >= min_width else Console(soft_wrap=True, width=min_width)


def show_library_log() -> None:
    """Print the library's log lines (``synth2real.*``, INFO and up) on the console:
    e.g. which device, dtype and model a diffusion method loaded, once, and a warning
    when it runs on the CPU."""
    import logging

    from rich.markup import escape

    class _ConsoleHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            msg = escape(record.getMessage())
            if record.levelno >= logging.WARNING:
                console.print(f"[bold yellow]warning:[/] {msg}")
            else:
                console.print(f"[dim]{msg}[/]")

    logger = logging.getLogger("synth2real")
    if not any(type(h).__name__ == "_ConsoleHandler" for h in logger.handlers):
        logger.addHandler(_ConsoleHandler())
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)


def omp_passive() -> None:
    """Let idle OpenMP threads sleep instead of spinning (set before torch loads).

    On CPUs shared with other jobs, spinning threads slow torch down by 10-50x; on a
    quiet machine the cost is a few percent. ``OMP_WAIT_POLICY`` set by the user wins.
    """
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


class Interrupted(Exception):
    """Ctrl-C during a command; ``hint`` says what was kept and how to continue."""

    def __init__(self, hint: str):
        super().__init__(hint)
        self.hint = hint


#: file-system errors that are the user's to fix: one line naming the path, exit 2
_OS_ERRORS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for this file system or limit",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "not a folder",
    errno.EISDIR: "is a folder",
    errno.EEXIST: "already exists",
    errno.ENOENT: "no such file or folder",
    errno.ENAMETOOLONG: "file name too long",
}
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
#: the temporary name of an atomic write (synth2real.data.io): ``.<name>.<8 hex>.tmp``
_TEMP = re.compile(r"^\.(.+)\.[0-9a-f]{8}\.tmp$")


def os_error_message(e: OSError, out: object = None, resume: str = "") -> str | None:
    """One line for a file-system error the user can fix (``None`` for others): the file
    (or, when the error names none, the output folder ``out``) and what went wrong; for a
    full disk, that finished outputs are kept and how to continue (``resume``)."""
    if e.errno not in _OS_ERRORS:
        return None
    what = (e.strerror or _OS_ERRORS[e.errno]).rstrip(".")
    written = e.filename2 if e.filename2 is not None else e.filename
    if written is not None and _TEMP.match(Path(written).name):  # an atomic write's file
        target = Path(written).with_name(_TEMP.match(Path(written).name).group(1))
        msg = f"writing {target}: {what}"
    elif e.filename is not None:
        where = str(e.filename) + (f" -> {e.filename2}" if e.filename2 is not None else "")
        msg = f"{where}: {what}"
    elif out is not None:
        msg = f"writing into {out}: {what}"
    else:
        msg = what
    if e.errno in _FULL:
        msg += "; finished outputs are kept: free some space, then " + (
            resume or "rerun the same command to continue"
        )
    return msg


def command(
    fn: Callable[..., Any], *, out: str | None = None, hint: str = "", resume: str = ""
) -> Callable[..., Any]:
    """Wrap a command: Ctrl-C becomes :class:`Interrupted` (``hint`` is printed once, exit
    130) and a file-system error the user can fix a
    :class:`~synth2real.errors.Synth2RealError` naming the path (exit 2). ``out`` is the
    parameter holding the command's output folder, ``resume`` how to continue it."""
    from synth2real.errors import Synth2RealError

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            raise Interrupted(hint or "interrupted") from None
        except OSError as e:
            if isinstance(e, Synth2RealError):
                raise
            msg = os_error_message(e, kwargs.get(out) if out else None, resume)
            if msg is None:
                raise
            raise Synth2RealError(msg) from None

    return wrapper


def plain_warnings() -> None:
    """Print Python warnings as one console line each (``warning: <message>``), not with
    the file, line and source line of the code that warned."""
    import warnings

    from rich.markup import escape

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        console.print(f"[bold yellow]warning:[/] {escape(str(message))}")

    warnings.showwarning = show
