"""Name subsets on the command line: ``--reference-names SPEC`` and friends.

One parser for every command that takes a subset of a dataset's samples. A ``SPEC`` is:

- ``FILE.json:KEY`` - the list stored under ``KEY`` in a JSON file (``KEY`` may be a dotted
  path into nested objects: ``splits.json:cracks.test``);
- ``FILE.json`` - a JSON file holding a list of names;
- ``FILE`` (any other existing file) - one name per line; blank lines and lines starting
  with ``#`` are skipped, surrounding whitespace is stripped (names may contain spaces);
- anything else - a comma-separated list of names (``a.jpg,b.jpg``).

Names are matched by :meth:`synth2real.data.dataset.Dataset.select`: a sample's name,
its image file name, or the file name without extension.
"""

from __future__ import annotations

import json
from pathlib import Path

from synth2real.errors import ConfigError, DataError


def parse_names(spec: str | Path | None, *, base: str | Path | None = None) -> list[str] | None:
    """Read a name subset from ``spec`` (see the module docstring).

    Args:
        spec: the subset specification, or ``None`` / ``""`` for "all samples".
        base: folder that relative file paths in ``spec`` are resolved against
            (default: the current directory).

    Returns:
        the names in the order given (duplicates removed, first kept), or ``None``.

    Raises:
        DataError: the file exists but cannot be read or holds no list of names.
        ConfigError: the JSON key is missing or the spec yields no names.
    """
    if spec is None:
        return None
    text = str(spec).strip()
    if not text:
        return None

    def resolve(p: str) -> Path:
        path = Path(p).expanduser()
        if base is not None and not path.is_absolute():
            path = Path(base) / path
        return path

    names: list[str]
    path = resolve(text)
    head, sep, key = text.rpartition(":")
    if path.is_file():
        names = _read_file(path, None)
    elif sep and head and resolve(head).is_file():
        names = _read_file(resolve(head), key)
    else:
        names = [n.strip() for n in text.split(",")]
        names = [n for n in names if n]
        if len(names) == 1 and _looks_like_path(text):
            raise ConfigError(
                f"names: {text!r} looks like a file but does not exist "
                "(give FILE, FILE.json:KEY or a comma-separated list of names)"
            )
    if not names:
        raise ConfigError(f"names: {text!r} holds no names")
    seen: set[str] = set()
    out = []
    for n in names:
        if n not in seen:
            seen.add(n)
            out.append(n)
    return out


def _looks_like_path(text: str) -> bool:
    return text.endswith((".json", ".txt", ".lst", ".csv")) or "/" in text.split(":")[0]


def _read_file(path: Path, key: str | None) -> list[str]:
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot read name list ({e})") from None
    if key is not None or path.suffix.lower() == ".json":
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise DataError(path, f"not valid JSON ({e})") from None
        if key:
            for part in key.split("."):
                if not isinstance(data, dict) or part not in data:
                    avail = sorted(data) if isinstance(data, dict) else type(data).__name__
                    raise ConfigError(f"{path}: no key {key!r} (available: {avail})")
                data = data[part]
        if not isinstance(data, list) or not all(isinstance(n, (str, int)) for n in data):
            raise DataError(path, f"expected a list of names{f' under {key!r}' if key else ''}")
        return [str(n) for n in data]
    lines = (line.strip() for line in raw.splitlines())
    return [line for line in lines if line and not line.startswith("#")]
