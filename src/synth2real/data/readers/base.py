"""What every reader shares: file listing and pairing, class-spec look-up, the base class.

Names are matched without extension and Unicode-normalised (NFC); hidden files and
folders are skipped. Errors that make a dataset ambiguous raise
:class:`~synth2real.errors.DataError` naming the folder or files; problems of single
files are returned as :class:`~synth2real.data.dataset.Problem` records.
"""

from __future__ import annotations

import os
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import numpy as np

from synth2real.data.classes import ClassSpec, load_class_spec
from synth2real.data.classmap import ClassMap, LabelDecoder, Vocabulary, spec_decoder
from synth2real.data.dataset import Dataset, Problem, Sample
from synth2real.data.io import IMAGE_EXTENSIONS, read_label_raw
from synth2real.errors import ConfigError, DataError

#: label files must be lossless
LABEL_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff")
LOSSY_EXTENSIONS = (".jpg", ".jpeg", ".webp")
CLASS_SPEC_FILE = "classes.yaml"
#: stand-in class spec of unlabelled datasets opened without one
UNKNOWN_CLASSES = ClassSpec(names=("unknown",))


def default_workers() -> int:
    """Threads for scanning files: the CPU count, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def parallel_map(fn: Callable, items: Sequence, workers: int | None = None) -> list:
    """``[fn(x) for x in items]`` on a thread pool (image decoding releases the GIL)."""
    workers = default_workers() if workers is None else max(1, workers)
    if workers == 1 or len(items) < 4:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


# -- file listing --------------------------------------------------------------------------
def nfc(s: str) -> str:
    return unicodedata.normalize("NFC", s)


def walk_files(folder: Path) -> list[Path]:
    """Every non-hidden file under ``folder`` (hidden folders skipped, symlinks followed
    once), sorted."""
    out: list[Path] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in filenames:
            if not f.startswith("."):
                out.append(Path(dirpath) / f)
    return sorted(out)


def rel_name(path: Path, base: Path, strip: str = "") -> str:
    rel = path.relative_to(base).with_suffix("").as_posix()
    if strip and rel.endswith(strip):
        rel = rel[: -len(strip)]
    return nfc(rel)


def index_files(
    folder: Path,
    extensions: Iterable[str],
    what: str,
    strip: str = "",
    problems: list[Problem] | None = None,
    lossy_labels: bool = False,
) -> dict[str, Path]:
    """Map ``name -> file`` for files under ``folder`` with one of ``extensions``.

    Raises:
        DataError: when two files share a name (``a.jpg`` and ``a.png``), naming both.
    """
    exts = tuple(e.lower() for e in extensions)
    found: dict[str, Path] = {}
    dups: list[tuple[Path, Path]] = []
    ignored: list[Path] = []
    for f in walk_files(folder):
        suf = f.suffix.lower()
        if suf not in exts:
            if lossy_labels and suf in LOSSY_EXTENSIONS and problems is not None:
                problems.append(
                    Problem(
                        "lossy-label",
                        f,
                        "label maps must be lossless (PNG): JPEG/WebP compression changes "
                        "label ids; file ignored",
                    )  # fmt: skip
                )
            else:
                ignored.append(f)
            continue
        name = rel_name(f, folder, strip)
        if name in found:
            dups.append((found[name], f))
            continue
        found[name] = f
    if dups:
        lines = "; ".join(f"{a.name!r} and {b.name!r}" for a, b in dups[:5])
        more = f" (and {len(dups) - 5} more)" if len(dups) > 5 else ""
        raise DataError(
            dups[0][1].parent,
            f"{len(dups)} {what} name(s) used twice: {lines}{more}. Files are matched by "
            "name without extension, so the pairing is ambiguous: remove or rename one of "
            "each pair (synth2real never changes input folders)",
        )
    if ignored and problems is not None:
        sample = ", ".join(repr(p.name) for p in ignored[:3])
        problems.append(
            Problem(
                "ignored-file",
                folder,
                f"{len(ignored)} file(s) that are not {what}s ignored ({sample}"
                f"{' ...' if len(ignored) > 3 else ''})",
            )  # fmt: skip
        )
    return found


def pair_samples(
    images: dict[str, Path],
    labels: dict[str, Path],
    problems: list[Problem],
    label_dir: Path | None,
) -> list[Sample]:
    samples = [Sample(n, p, labels.get(n)) for n, p in sorted(images.items())]
    if not labels and label_dir is not None and label_dir.is_dir():
        problems.append(
            Problem(
                "no-labels", label_dir, "no label files in this folder: every image is unlabelled"
            )
        )
    missing = [s for s in samples if s.label_path is None]
    if labels and missing:
        for s in missing:
            problems.append(
                Problem(
                    "missing-label",
                    s.image_path,
                    f"no label file found (expected {label_dir / s.name}.png); "
                    "kept as an unlabelled sample",
                )  # fmt: skip
            )
    for n in sorted(set(labels) - set(images)):
        problems.append(Problem("orphan-label", labels[n], "label without an image; ignored"))
    return samples


def no_images_error(path: Path, where: Path) -> DataError:
    if not any(path.iterdir()):
        return DataError(path, "empty folder")
    return DataError(where, f"no images found (looked for {', '.join(IMAGE_EXTENSIONS)})")


def as_spec(classes: ClassSpec | str | Path | None) -> ClassSpec | None:
    if classes is None or isinstance(classes, ClassSpec):
        return classes
    return load_class_spec(classes)


def find_spec_file(path: Path) -> Path | None:
    for folder in (path, path.parent):
        f = folder / CLASS_SPEC_FILE
        if f.is_file():
            return f
    return None


def check_fixed_classes(fmt: str, given: ClassSpec | None, fixed: ClassSpec) -> None:
    if given is not None and given.names != fixed.names:
        raise ConfigError(
            f"{fmt} labels have fixed classes {list(fixed.names)[:5]}...; --classes "
            f"{list(given.names)[:5]} does not match them. Use a class map (--class-map) to "
            "map them onto other classes"
        )


# -- base reader ---------------------------------------------------------------------------
class Reader(Dataset):
    """Common parts of the readers: the label decoder and per-format hooks."""

    format: ClassVar[str] = "base"
    decoder: LabelDecoder | None = None

    @classmethod
    def detect(cls, path: Path) -> bool:  # pragma: no cover - overridden
        return False

    @classmethod
    def open(
        cls, path: Path, classes: ClassSpec | None, class_map: ClassMap | None
    ) -> Dataset:  # pragma: no cover - overridden
        raise NotImplementedError

    def read_raw(self, sample: Sample) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
        """``(raw label, palette or None, notes)`` of one sample (before decoding)."""
        raw, palette = read_label_raw(sample.label_path)  # type: ignore[arg-type]
        return raw, palette, []

    def decoder_for(self, sample: Sample) -> LabelDecoder:
        assert self.decoder is not None
        return self.decoder

    def decode_label_notes(self, sample: Sample) -> tuple[np.ndarray, list[str]]:
        """Decode one label map, returning non-fatal notes instead of warning them."""
        raw, palette, notes = self.read_raw(sample)
        return self.decoder_for(sample)(raw, sample.label_path, palette), notes  # type: ignore[arg-type]

    def decode_label(self, sample: Sample) -> np.ndarray:
        label, notes = self.decode_label_notes(sample)
        for n in notes:
            warnings.warn(f"{sample.label_path}: {n}", RuntimeWarning, stacklevel=3)
        return label


def map_decoder(
    class_map: ClassMap, vocab: Vocabulary
) -> tuple[ClassSpec, LabelDecoder, list[Problem]]:
    """(the map's target classes, decoder, notices) of ``class_map`` over a dataset whose
    raw values ``vocab`` names."""
    dec, notes = class_map.decoder(vocab)
    return class_map.classes, dec, [Problem("class-map", class_map.source, n) for n in notes]


def classes_and_decoder(
    spec: ClassSpec, class_map: ClassMap | None, vocab: Vocabulary | None = None
) -> tuple[ClassSpec, LabelDecoder, list[Problem]]:
    """(dataset classes, decoder, notices) for a source ``spec`` and an optional map."""
    if class_map is None:
        return spec, spec_decoder(spec), []
    return map_decoder(class_map, vocab or Vocabulary.from_spec(spec))
