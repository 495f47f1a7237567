"""What every command that writes checks first, and the lock it holds while it writes.

::

    check_output(out, {"--source": source, "--references": refs})  # before any write
    with output_lock(out, "translate"):
        ...  # write into out

:func:`check_output` refuses an output folder that is one of the command's inputs, lies
inside one, or contains one (symbolic links resolved), an output that is a file or lies
under a file, and a folder that cannot be written (read-only file system, no
permission), each with one line naming the paths, before anything is created.

:class:`OutputLock` is an OS file lock (``flock``) on ``OUT/.synth2real.lock`` held for a
run's whole life, so that a second run into the same folder is refused with a message
naming the running process instead of deleting its temporary files. The kernel drops
the lock when its process dies however it dies (even ``kill -9``), so a stale lock never
blocks: the next run takes it over and says so. The file records who holds it (pid,
command, start time, host) and is removed when the run ends. Shards of one run (``shard
i of n``) share the folder: each holds the folder's lock shared and its own shard's lock
exclusively.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import inspect
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from synth2real.errors import ConfigError, Synth2RealError

try:  # POSIX; elsewhere runs are not locked (a warning says so)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("synth2real.guard")

LOCK_NAME = ".synth2real.lock"
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, getattr(errno, "ENOTSUP", -1)}

#: what an input may be: a path, something with a ``root`` (a dataset), or several
Inputs = Mapping[str, Any]


class OutputLockedError(Synth2RealError):
    """Another run is writing into the same output folder."""


# -- the output folder ---------------------------------------------------------------------
def _paths(value: Any) -> list[Path]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [Path(value)]
    root = getattr(value, "root", None)
    if root is not None:
        return [Path(root)]
    if isinstance(value, Iterable):
        return [p for v in value for p in _paths(v)]
    raise TypeError(f"not a path: {value!r}")


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path.expanduser()))


def check_output(
    out: str | os.PathLike, inputs: Inputs | None = None, *, option: str = "--out"
) -> Path:
    """Refuse ``out`` unless a command may write into it; nothing is created here.

    Args:
        out: the output folder (need not exist).
        inputs: ``{option or description: path(s)}`` of everything the command reads:
            dataset folders, files (checkpoints, class specs, name lists), or objects
            with a ``root`` (datasets); ``None`` values are skipped.
        option: how the output is named in messages (``--out``, ``--save-predictions``).

    Returns:
        ``Path(out)``.

    Raises:
        ConfigError: ``out`` is, lies inside, or contains an input; ``out`` is a file or
            lies under one; ``out`` is on a read-only file system or not writable.
    """
    out = Path(out)
    real = _real(out)
    if out.is_symlink() and not out.exists():
        raise ConfigError(f"{option} {out} is a link to {real}, which does not exist")
    if real.exists() and not real.is_dir():
        raise ConfigError(f"{option} {out} is a file, not a folder: choose a folder")
    existing = real
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(
            f"{option} {out}: {existing} is a file, so no folder can be made under it"
        )
    via = f" ({out} resolves to {real})" if real != Path(os.path.abspath(out)) else ""
    for what, value in (inputs or {}).items():
        for p in _paths(value):
            r = _real(p)
            if r == real:
                how = "the output would be the input itself"
            elif r in real.parents:
                how = "the output lies inside the input"
            elif real in r.parents:
                how = "the output contains the input"
            else:
                continue
            raise ConfigError(
                f"{option} {out} overlaps {what} {p}: {how}{via}; choose a folder outside "
                "it (synth2real never writes into its inputs; nothing was written)"
            )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {out}: {_not_writable(existing)}")
    return out


def _not_writable(folder: Path) -> str:
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        read_only = False
    if read_only:
        return f"{folder} is on a read-only file system; choose a folder you can write to"
    return f"{folder} is not writable (permission denied); choose a folder you can write to"


def names_file(spec: object) -> Path | None:
    """The file a name selection (``FILE``, ``FILE.json:key``, ``a,b,c``) reads, if any."""
    if not isinstance(spec, (str, os.PathLike)):
        return None
    spec = os.fspath(spec).strip()
    for candidate in (spec, spec.rpartition(":")[0]):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def is_lock_file(path: str | os.PathLike) -> bool:
    """``.synth2real.lock`` or a shard's ``.synth2real.shard-I-of-N.lock``."""
    name = Path(path).name
    return name == LOCK_NAME or (name.startswith(".synth2real.shard-") and name.endswith(".lock"))


def is_empty(folder: str | os.PathLike) -> bool:
    """``folder`` is missing or holds nothing but lock files."""
    folder = Path(folder)
    return not folder.is_dir() or all(is_lock_file(p) for p in folder.iterdir())


# -- the lock ------------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(info: dict) -> str:
    pid = info.get("pid")
    what = f"pid {pid}" if pid else "another process"
    if info.get("host") not in (None, socket.gethostname()):
        what += f" on {info['host']}"
    details = [f"`{info['command']}`"] if info.get("command") else []
    if info.get("started"):
        details.append(f"started {info['started']}")
    return what + (f" ({', '.join(details)})" if details else "")


class OutputLock:
    """An OS lock on ``out`` for a run's life (see the module docstring).

    Args:
        out: the output folder (created when the lock is taken).
        command: what the run is (recorded, and shown to a run that is refused).
        shard: ``(index, count)`` for one shard of a sharded run.
    """

    def __init__(self, out: str | os.PathLike, command: str, shard: tuple[int, int] | None = None):
        self.out = Path(out)
        self.command = command
        self.shard = shard if shard is not None and shard[1] > 1 else None
        self._held: list[tuple[Path, int, bool]] = []  # (path, fd, exclusive)
        self._made: list[Path] = []  # folders the lock created, removed again if empty

    @property
    def path(self) -> Path:
        return self.out / LOCK_NAME

    def _shard_path(self) -> Path:
        i, n = self.shard  # type: ignore[misc]
        return self.out / f".synth2real.shard-{i}-of-{n}.lock"

    def acquire(self) -> OutputLock:
        """Take the lock, or raise :class:`OutputLockedError` naming who holds it."""
        if fcntl is None:  # pragma: no cover - Windows
            log.warning("%s: runs are not locked on this system; run one at a time", self.out)
            return self
        missing = [p for p in [self.out, *self.out.parents] if not p.exists()]
        self.out.mkdir(parents=True, exist_ok=True)
        self._made = missing  # deepest first
        try:
            if self.shard is None:
                self._take(self.path, exclusive=True)
            else:
                self._take(self.path, exclusive=False)
                self._take(self._shard_path(), exclusive=True)
        except BaseException:
            self.release()
            raise
        return self

    def _take(self, path: Path, exclusive: bool) -> None:
        mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        for attempt in range(20):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            try:
                fcntl.flock(fd, mode)
            except OSError as e:
                os.close(fd)
                if e.errno in _NO_LOCKS:
                    log.warning(
                        "%s: this file system has no locks; two runs into this folder at "
                        "once would not be detected",
                        self.out,
                    )
                    return
                if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                if attempt < 2:  # the holder may be removing the file as it ends
                    time.sleep(0.05)
                    continue
                raise OutputLockedError(self._busy_message(path)) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous holder removed it between our open and flock
                os.close(fd)
                continue
            self._held.append((path, fd, exclusive))
            if exclusive:
                self._record(path, fd)
            return
        raise OutputLockedError(f"{path}: could not take the lock (it keeps changing)")

    def _record(self, path: Path, fd: int) -> None:
        old = _read_info(path)
        if old.get("pid"):
            log.warning(
                "%s: taking over the lock of an earlier run that did not finish (killed or "
                "crashed): %s; its finished outputs are kept",
                self.out,
                _describe(old),
            )
        info = {
            "pid": os.getpid(),
            "command": self.command,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "host": socket.gethostname(),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)

    def _busy_message(self, path: Path) -> str:
        holders = [_read_info(path)]
        if self.shard is None or path != self._shard_path():
            holders += [_read_info(p) for p in sorted(self.out.glob(".synth2real.shard-*.lock"))]
        holders = [h for h in holders if h] or [{}]
        who = "; ".join(_describe(h) for h in holders[:3])
        gone = [h for h in holders if h.get("pid") and h.get("host") == socket.gethostname()]
        if gone and not any(_pid_alive(int(h["pid"])) for h in gone):
            who += " (that process is gone, but one it started still holds the lock)"
        return (
            f"{self.out} is in use by another synth2real run: {who}. Wait for it to end or "
            f"stop it, or choose another output folder (nothing was written)"
        )

    def release(self) -> None:
        """Drop the lock and remove the lock files this run alone held."""
        if fcntl is None:  # pragma: no cover
            return
        for path, fd, exclusive in reversed(self._held):
            if not exclusive:  # the folder's lock of a shard: remove it if we are the last
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    exclusive = True
                except OSError:
                    pass
            if exclusive:
                with contextlib.suppress(OSError):
                    if os.fstat(fd).st_ino == os.stat(path).st_ino:
                        path.unlink()
            os.close(fd)
        self._held.clear()
        for folder in self._made:  # a run that wrote nothing leaves nothing behind
            try:
                folder.rmdir()
            except OSError:
                break
        self._made = []

    def alone(self) -> bool:
        """True when no other process holds this folder's lock (a shard checks before
        removing temporary files that another shard may be writing)."""
        if fcntl is None or self.shard is None:
            return True
        for path, fd, exclusive in self._held:
            if path == self.path and not exclusive:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    return False
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return True
        return True

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_info(path: Path) -> dict:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def output_lock(
    out: str | os.PathLike, command: str | None = None, shard: tuple[int, int] | None = None
) -> OutputLock:
    """``with output_lock(out, "translate"):`` hold ``out``'s lock (see :class:`OutputLock`);
    ``command`` defaults to the process's command line."""
    return OutputLock(out, command or command_line(), shard)


def command_line() -> str:
    """The command line of this process, shortened for a lock file."""
    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if prog in ("__main__.py", "-m", "-c"):
        prog = "synth2real"
    text = " ".join([prog, *sys.argv[1:]])
    return text if len(text) <= 300 else text[:297] + "..."


def guarded(
    out_arg: str,
    command: str,
    inputs: Callable[[Mapping[str, Any]], Inputs],
    option: str = "--out",
) -> Callable:
    """Decorate a function that writes into its argument ``out_arg``: it first runs
    :func:`check_output` with ``inputs(arguments)`` and then holds the folder's lock for
    the call (released when it returns or raises)."""

    def deco(fn: Callable) -> Callable:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            out = bound.arguments[out_arg]
            check_output(out, inputs(bound.arguments), option=option)
            with output_lock(out, command):
                return fn(*args, **kwargs)

        return wrapper

    return deco
