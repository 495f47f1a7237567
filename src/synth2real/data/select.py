"""Parse a selection of sample names from the command line.

One syntax everywhere a subset of a dataset is chosen by name (``--names``,
``--reference-names``):

- ``FILE``: a text file with one name per line (blank lines and ``#`` comments skipped);
- ``FILE.json:key``: the list stored under ``key`` in a JSON file (``splits.json:test``);
  ``key`` may be a dotted path (``splits.json:cracks.test``);
- ``a,b,c``: a comma-separated list of names.

Names are matched by :meth:`synth2real.data.dataset.Dataset.select` (sample name, image
file name, or file stem).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from synth2real.errors import ConfigError, DataError

if TYPE_CHECKING:
    from synth2real.data.dataset import Dataset


def parse_names(spec: str) -> list[str]:
    """Turn ``spec`` (``FILE``, ``FILE.json:key`` or ``a,b,c``) into a list of names.

    Raises:
        DataError: the file exists but cannot be read, or the JSON key is missing or not a
            list of strings.
        ConfigError: the spec is empty or selects no name.
    """
    spec = spec.strip()
    if not spec:
        raise ConfigError("empty name selection")
    names: list[str]
    file_part, sep, key = spec.rpartition(":")
    if sep and file_part.lower().endswith(".json") and Path(file_part).is_file():
        names = _json_names(Path(file_part), key)
    elif Path(spec).is_file():
        path = Path(spec)
        if path.suffix.lower() == ".json":
            raise DataError(
                path, "a JSON name list needs a key: FILE.json:key (e.g. splits.json:test)"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(path, f"cannot read the name list ({e})") from None
        names = [ln.strip() for ln in text.splitlines()]
        names = [n for n in names if n and not n.startswith("#")]
    elif sep and file_part.lower().endswith(".json"):
        raise DataError(file_part, "file not found")
    else:
        names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"the name selection {spec!r} selects no name")
    return names


def select_names(
    dataset: Dataset, names: Sequence[str] | str | None, what: str, path: str | Path | None = None
) -> Dataset:
    """``dataset`` cut to ``names`` (a list, or a selection string for :func:`parse_names`;
    ``None`` or ``"all"``: every sample).

    Raises:
        DataError: naming ``path`` (default: the dataset's folder) and ``what`` when a
            name matches no sample.
    """
    if names is None or (isinstance(names, str) and names.strip().lower() == "all"):
        return dataset
    if isinstance(names, str):
        names = parse_names(names)
    try:
        return dataset.select(list(names))
    except KeyError as e:
        raise DataError(
            path if path is not None else dataset.root, f"{what}: {e.args[0]}"
        ) from None


def random_subset(dataset: Dataset, n: int | None, seed: int = 0) -> Dataset:
    """A fixed random subset of ``n`` samples (in the dataset's order; the same for the
    same ``seed``); the whole dataset when ``n`` is ``None`` or not smaller than it.

    Raises:
        ConfigError: ``n < 1``.
    """
    import random

    if n is not None and n < 1:
        raise ConfigError(f"--source-limit must be >= 1, got {n}")
    if n is None or n >= len(dataset):
        return dataset
    picked = sorted(random.Random(seed).sample(range(len(dataset)), n))
    return dataset.subset([dataset.samples[i] for i in picked])


def _json_names(path: Path, key: str) -> list[str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(path, f"cannot read JSON ({e})") from None
    node = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            keys = sorted(node) if isinstance(node, dict) else []
            raise DataError(path, f"no key {key!r} (keys: {keys})")
        node = node[part]
    if not isinstance(node, list) or not all(isinstance(n, str) for n in node):
        raise DataError(path, f"{key!r} is not a list of names")
    return list(node)
