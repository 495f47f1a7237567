"""Write a translated copy of a dataset: images, unchanged labels, class spec, manifest.

The output is a dataset :func:`~synth2real.data.readers.open_dataset` reads back with the
same classes and the same decoded label maps as the source:

- **generic layout** (``images/<name>.png``, ``labels/<name>.<ext>``, ``classes.yaml``):
  label files are copied byte for byte when the source is a generic dataset whose files
  decode through its class spec as they are; otherwise (Cityscapes ids, CamVid colours, a
  class map, ...) the *decoded* label map is written as an index PNG.
- **Supervisely layout** (``img/<name>.png``, ``ann/<name>.png.json``, ``meta.json``):
  for Supervisely sources read with their own ``meta.json``; annotations and
  ``meta.json`` are copied byte for byte.

Images are always written as PNG (lossless), at the source's exact size. Every file is
written atomically (temporary file + rename), so a killed run leaves only whole files;
stale temporary files of a killed run are removed when it resumes.

Run bookkeeping, all in the output folder:

- ``run.json``: what produced the folder (method, parameters, source, references, seed,
  reference choice). A folder holding a different run is refused unless ``overwrite``.
- ``manifest.parts/shard-<i>-of-<n>.jsonl``: one JSON line per finished image, appended by
  the process running shard ``i`` (a single process is shard 0 of 1);
- ``manifest.jsonl``: all parts merged in source order once every sample is done.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synth2real.data.classes import ClassSpec, save_class_spec
from synth2real.data.dataset import Dataset, Sample
from synth2real.data.io import atomic_copy, atomic_write_bytes, atomic_write_text, encode_image
from synth2real.errors import ConfigError, DataError, OutputExistsError

RUN_FILE = "run.json"
MANIFEST = "manifest.jsonl"
PARTS_DIR = "manifest.parts"
#: everything a run writes into its output folder (what ``overwrite`` may remove)
OWNED = (
    RUN_FILE,
    MANIFEST,
    PARTS_DIR,
    "images",
    "labels",
    "classes.yaml",
    "img",
    "ann",
    "meta.json",
)
#: keys of run.json that must agree for two runs to be "the same run"
RUN_KEYS = ("method", "params", "source", "references", "seed", "reference_choice", "layout")


@dataclass(frozen=True)
class LabelPlan:
    """How labels are written: the layout and whether files are copied or re-encoded.

    Attributes:
        layout: ``generic`` or ``supervisely``.
        copy: ``True`` to copy label files byte for byte, ``False`` to write the decoded
            label map as an index PNG (generic layout only).
        spec_file: a source file to copy as the output's ``classes.yaml`` / ``meta.json``,
            or ``None`` to write ``classes.yaml`` from the class spec.
        reason: one line saying why (recorded in run.json).
    """

    layout: str
    copy: bool
    spec_file: Path | None
    reason: str


def _find_up(path: Path, filename: str) -> Path | None:
    for folder in (path, path.parent):
        f = folder / filename
        if f.is_file():
            return f
    return None


def _decodes_as_spec(source: Dataset) -> bool:
    """True when the source decodes its label files through its class spec unchanged
    (no class map, no spec override): copied files then decode identically."""
    from synth2real.data.classmap import spec_decoder

    dec = getattr(source, "decoder", None)
    if dec is None or getattr(dec, "id_lut", None) is None:
        return False
    ref = spec_decoder(source.classes)
    if not np.array_equal(dec.id_lut, ref.id_lut):
        return False
    return (dec.colors or None) == (ref.colors or None) and getattr(dec, "id_channel", None) is None


def plan_labels(source: Dataset, layout: str = "auto", copy_labels: bool = True) -> LabelPlan:
    """Choose the output layout and label handling for ``source`` (see module docstring).

    Args:
        source: the dataset being translated.
        layout: ``auto`` (the source's own layout where that is simple, else generic),
            ``generic`` or ``supervisely``.
        copy_labels: ``False`` always writes the decoded label maps (generic layout):
            for label maps that were changed, e.g. resized.
    """
    if layout not in ("auto", "generic", "supervisely"):
        raise ConfigError(f"layout must be auto, generic or supervisely, got {layout!r}")
    if not copy_labels:
        if layout == "supervisely":
            raise ConfigError("label maps that are not copied are written in the generic layout")
        return LabelPlan("generic", False, None, "label maps written as index PNGs")
    fmt = getattr(source, "format", "base")
    same_spec = _decodes_as_spec(source)
    if fmt == "supervisely" and layout in ("auto", "supervisely"):
        meta = _find_up(source.root, "meta.json")
        titles = getattr(source, "titles", None)
        if meta is not None and titles is not None and list(titles) == list(source.classes.names):
            if same_spec:
                return LabelPlan("supervisely", True, meta, "Supervisely annotations copied")
        if layout == "supervisely":
            raise ConfigError(
                "the Supervisely layout needs a source read with its own meta.json "
                "(no --classes/--class-map); use the generic layout"
            )
    elif layout == "supervisely":
        raise ConfigError(f"cannot write a {fmt} source in the Supervisely layout")
    if fmt == "generic" and same_spec:
        spec_file = _find_up(source.root, "classes.yaml")
        if spec_file is not None:
            from synth2real.data.classes import load_class_spec

            try:
                same_file = load_class_spec(spec_file) == source.classes
            except DataError:
                same_file = False
            if not same_file:
                spec_file = None
        return LabelPlan("generic", True, spec_file, "label files copied")
    return LabelPlan("generic", False, None, f"{fmt} labels decoded and written as index PNGs")


def _is_temp_name(name: str) -> bool:
    """``.<name>.<token>.tmp``: a file of our atomic writers (``data/io.py``) in flight."""
    return name.startswith(".") and name.endswith(".tmp")


class DatasetWriter:
    """Writes translated samples of ``source`` into ``out`` (picklable: workers use it).

    Args:
        out: the output folder.
        source: the dataset being translated (its root, layout and label files).
        layout: ``auto``, ``generic`` or ``supervisely`` (see :func:`plan_labels`).
        protect: ``(description, folder)`` pairs ``out`` must not overlap (the
            references' folder), besides the source's.
        copy_labels: ``False``: write the label maps given to :meth:`write` (see
            :func:`plan_labels`).
    """

    def __init__(
        self,
        out: str | Path,
        source: Dataset,
        layout: str = "auto",
        protect: Iterable[tuple[str, str | Path]] = (),
        copy_labels: bool = True,
    ):
        self.out = Path(out)
        self.protect = [(what, Path(p)) for what, p in protect]
        self.classes: ClassSpec = source.classes
        self.plan = plan_labels(source, layout, copy_labels)
        self.source_root = Path(source.root)

    # -- paths ---------------------------------------------------------------------------
    def image_path(self, sample: Sample) -> Path:
        folder = "img" if self.plan.layout == "supervisely" else "images"
        return self.out / folder / f"{sample.name}.png"

    def label_path(self, sample: Sample) -> Path | None:
        if sample.label_path is None:
            return None
        if self.plan.layout == "supervisely":
            return self.out / "ann" / f"{sample.name}.png.json"
        ext = sample.label_path.suffix.lower() if self.plan.copy else ".png"
        return self.out / "labels" / f"{sample.name}{ext}"

    def part_path(self, shard: tuple[int, int]) -> Path:
        i, n = shard
        return self.out / PARTS_DIR / f"shard-{i}-of-{n}.jsonl"

    def relative(self, path: Path | None) -> str | None:
        return None if path is None else path.relative_to(self.out).as_posix()

    # -- the run -------------------------------------------------------------------------
    def check_folder(
        self, run: dict, *, resume: bool, overwrite: bool, shard: tuple[int, int]
    ) -> str:
        """Validate ``out`` for this run; returns ``"new"``, ``"same"`` or ``"cleared"``.

        Raises:
            OutputExistsError: the folder holds a different run (and not ``overwrite``),
                files that are not a synth2real run, or this shard's progress without
                ``resume``.
            ConfigError: ``out`` overlaps the source folder.
        """
        from synth2real.guard import check_output, is_lock_file

        check_output(self.out, {"the source dataset": self.source_root, **dict(self.protect)})
        # lock files and atomic writes in flight (a shard that started a moment earlier is
        # writing run.json) do not make the folder someone else's
        if not self.out.is_dir() or all(
            is_lock_file(p) or _is_temp_name(p.name) for p in self.out.iterdir()
        ):
            return "new"
        run_file = self.out / RUN_FILE
        if not run_file.is_file():
            raise OutputExistsError(
                f"{self.out} is not empty and holds no {RUN_FILE}: it is not a synth2real "
                "output folder; choose a new or empty folder (nothing was changed)"
            )
        try:
            old = json.loads(run_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            old = {}
        same = all(old.get(k) == run.get(k) for k in RUN_KEYS)
        if overwrite:
            self.clear()
            return "cleared"
        if not same:
            diff = [k for k in RUN_KEYS if old.get(k) != run.get(k)]
            raise OutputExistsError(
                f"{self.out} holds a different run (differs in: {', '.join(diff)}); pass "
                "--overwrite to replace it or choose another --out"
            )
        if not resume and self.done(shard):
            raise OutputExistsError(
                f"{self.out} already holds this run ({len(self.done(shard))} images done in "
                "this shard); pass --resume to continue it or --overwrite to start again"
            )
        return "same"

    def clear(self) -> None:
        """Remove what a previous run wrote (only the entries in :data:`OWNED`)."""
        for name in OWNED:
            p = self.out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()

    def start(
        self, run: dict, *, remove_temp: bool = True, temp_before: float | None = None
    ) -> None:
        """Write run.json and the class spec / meta file, remove stale temp files (unless
        ``remove_temp`` is false: another shard may be writing; with ``temp_before``, only
        those last modified before that time, so a shard that started after the caller
        checked it was alone keeps its files in flight)."""
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / RUN_FILE, json.dumps(run, indent=2, sort_keys=True) + "\n")
        if self.plan.layout == "supervisely":
            assert self.plan.spec_file is not None
            atomic_copy(self.plan.spec_file, self.out / "meta.json")
        elif self.plan.spec_file is not None:
            atomic_copy(self.plan.spec_file, self.out / "classes.yaml")
        else:
            save_class_spec(self.classes, self.out / "classes.yaml")
        if remove_temp:
            self.remove_temp_files(before=temp_before)

    def remove_temp_files(self, before: float | None = None) -> int:
        """Delete ``.<name>.*.tmp`` files left by a killed run (our atomic writers' names);
        with ``before``, only those last modified before that time (``time.time()``)."""
        n = 0
        for name in ("images", "labels", "img", "ann", PARTS_DIR, "."):
            folder = self.out / name
            if not folder.is_dir():
                continue
            for dirpath, _dirnames, filenames in os.walk(folder):
                for f in filenames:
                    if _is_temp_name(f):
                        path = Path(dirpath, f)
                        try:
                            if before is not None and path.stat().st_mtime >= before:
                                continue  # written since the caller started: a live peer's
                        except FileNotFoundError:
                            continue
                        path.unlink(missing_ok=True)
                        n += 1
                if name == ".":
                    break
        return n

    # -- samples (any process) -----------------------------------------------------------
    def write(self, sample: Sample, image: np.ndarray, label: np.ndarray | None) -> dict[str, Any]:
        """Write one translated image and its label; returns the manifest fields.

        Args:
            sample: the source sample.
            image: ``HxWx3 uint8`` translated image.
            label: the sample's decoded label map (``HxW uint8``), needed when labels are
                re-encoded; may be ``None`` when they are copied.
        """
        lpath = self.label_path(sample)
        if lpath is not None:
            assert sample.label_path is not None
            if self.plan.copy:
                atomic_copy(sample.label_path, lpath)
            else:
                if label is None:
                    raise ValueError(f"{sample.name}: the decoded label map is needed")
                atomic_write_bytes(
                    lpath, encode_image(np.ascontiguousarray(label, np.uint8), "png")
                )
        ipath = self.image_path(sample)
        atomic_write_bytes(ipath, encode_image(image, "png"))
        return {
            "image": self.relative(ipath),
            "label": self.relative(lpath),
            "label_written": None if lpath is None else ("copied" if self.plan.copy else "decoded"),
        }

    def is_written(self, sample: Sample) -> bool:
        lpath = self.label_path(sample)
        return self.image_path(sample).is_file() and (lpath is None or lpath.is_file())

    # -- manifest ------------------------------------------------------------------------
    def done(self, shard: tuple[int, int]) -> set[str]:
        """Names recorded as finished in this shard's part (and in a merged manifest)."""
        names = {e["name"] for e in read_jsonl(self.part_path(shard))}
        names |= {e["name"] for e in read_jsonl(self.out / MANIFEST)}
        return names

    def finished(self) -> set[str]:
        """Names recorded as finished by any shard of any earlier call (all parts and the
        merged manifest), so a run resumed with another shard count skips them too."""
        names = {e["name"] for e in read_jsonl(self.out / MANIFEST)}
        folder = self.out / PARTS_DIR
        if folder.is_dir():
            for p in folder.glob("shard-*.jsonl"):
                names |= {e["name"] for e in read_jsonl(p)}
        return names

    def repair_part(self, shard: tuple[int, int]) -> None:
        """Rewrite this shard's part without a torn last line (a kill mid-append)."""
        p = self.part_path(shard)
        if not p.is_file():
            return
        entries = read_jsonl(p)
        text = "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries)
        if text.encode() != p.read_bytes():
            atomic_write_text(p, text)

    def append(self, shard: tuple[int, int], entry: dict) -> None:
        """Append one manifest line to this shard's part (one ``write`` call, flushed)."""
        p = self.part_path(shard)
        p.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(entry, sort_keys=True) + "\n").encode()
        fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def merge(self, order: Iterable[str]) -> Path | None:
        """Merge every part into ``manifest.jsonl`` in ``order`` once all names are done.

        Returns the manifest path, or ``None`` when some names are still missing.
        """
        order = list(order)
        entries: dict[str, dict] = {}
        folder = self.out / PARTS_DIR
        for p in sorted(folder.glob("shard-*.jsonl")) if folder.is_dir() else []:
            for e in read_jsonl(p):
                entries[e["name"]] = e
        for e in read_jsonl(self.out / MANIFEST):
            entries.setdefault(e["name"], e)
        if any(n not in entries for n in order):
            return None
        text = "".join(json.dumps(entries[n], sort_keys=True) + "\n" for n in order)
        atomic_write_text(self.out / MANIFEST, text)
        return self.out / MANIFEST


def read_manifest(folder: str | Path) -> list[dict]:
    """The entries of ``folder/manifest.jsonl`` (one per image, source order); ``[]`` when
    the folder holds no merged manifest (yet)."""
    return read_jsonl(Path(folder) / MANIFEST)


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of a ``.jsonl`` file; unparsable (torn) lines are skipped."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(e, dict) and "name" in e:
            out.append(e)
    return out
