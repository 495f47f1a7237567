"""Scan a whole dataset: sizes, class shares and every problem, without stopping at one.

:func:`inspect_dataset` decodes every image (so truncated files are found) and every label
map (unknown ids or colours, size mismatches) on a thread pool, and returns an
:class:`InspectReport`; ``synth2real inspect`` only renders it. Nothing is written.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from synth2real.data.classes import ClassSpec
from synth2real.data.dataset import Dataset, Problem, Sample
from synth2real.data.io import verify_image
from synth2real.errors import DataError
from synth2real.progress import progress_bar

#: image modes that are converted on reading (reported as notes, not problems)
_CONVERTED = {
    "L": "grayscale (read as RGB)",
    "LA": "grayscale with alpha (alpha dropped)",
    "1": "1-bit (read as RGB)",
    "P": "palette (read as RGB)",
    "PA": "palette with alpha (alpha dropped)",
    "RGBA": "RGBA (composited on black, alpha dropped)",
    "I;16": "16-bit (scaled to 8 bits)",
    "I;16B": "16-bit (scaled to 8 bits)",
    "I;16L": "16-bit (scaled to 8 bits)",
    "I": "32-bit integer (scaled to 8 bits)",
    "F": "floating point (scaled to 8 bits)",
    "CMYK": "CMYK (converted to RGB)",
}


@dataclass
class _Scan:
    height: int | None = None
    width: int | None = None
    mode: str | None = None
    rotated: bool = False
    counts: np.ndarray | None = None  # 256 pixel counts of the decoded label
    problems: list[Problem] = field(default_factory=list)
    bad: bool = False


@dataclass
class InspectReport:
    """What a dataset holds. All counts are over the samples scanned.

    Attributes:
        root: the dataset folder. format: the reader used.
        classes, colors, ignore_index: the class spec (colours ``None`` when it has none).
        num_samples, num_labelled, num_unlabelled: samples (images) and how many have a
            label file.
        image_sizes: ``"HxW" -> number of images`` (as displayed), most common first.
        size_stats: ``{"height": {"min", "median", "max"}, "width": {...}}`` in pixels.
        image_modes: Pillow mode -> number of images (``RGB``, ``L``, ``RGBA``, ...).
        class_pixels: pixels per class over all readable label maps.
        class_pixel_share: ``class_pixels`` / all labelled pixels (ignored ones included),
            so that ``sum(class_pixel_share) + ignored_share == 1``.
        ignored_pixels, ignored_share: pixels with ``ignore_index``.
        images_per_class: number of label maps in which each class appears.
        problems: ``{"severity", "kind", "path", "message"}`` per problem; severity
            ``error`` (the sample cannot be used), ``warning`` or ``info``.
        bad_samples: names of samples that failed to decode (image or label).
        seconds: scan wall time. workers: threads used.
    """

    root: str
    format: str
    classes: list[str]
    colors: list[list[int]] | None
    ignore_index: int
    num_samples: int
    num_labelled: int
    num_unlabelled: int
    image_sizes: dict[str, int]
    size_stats: dict[str, dict[str, float]]
    image_modes: dict[str, int]
    class_pixels: list[int]
    class_pixel_share: list[float]
    ignored_pixels: int
    ignored_share: float
    images_per_class: list[int]
    problems: list[dict]
    bad_samples: list[str]
    seconds: float
    workers: int

    def to_dict(self) -> dict:
        """JSON-ready dict (plain types only)."""
        return asdict(self)

    def share(self, name: str) -> float:
        """Pixel share of class ``name``."""
        return self.class_pixel_share[self.classes.index(name)]

    @property
    def num_errors(self) -> int:
        return sum(p["severity"] == "error" for p in self.problems)


_INFO_KINDS = {"inferred-classes", "empty-annotations", "no-labels", "exif", "converted"}


def _size_stats(scans: list[_Scan]) -> dict[str, dict[str, float]]:
    hs = np.array([r.height for r in scans if r.height is not None], np.float64)
    ws = np.array([r.width for r in scans if r.width is not None], np.float64)
    if not len(hs):
        return {}
    return {
        k: {"min": float(v.min()), "median": float(np.median(v)), "max": float(v.max())}
        for k, v in (("height", hs), ("width", ws))
    }


def _severity(p: Problem) -> str:
    return "info" if p.kind in _INFO_KINDS else "warning"


def _scan_sample(ds: Dataset, s: Sample) -> _Scan:
    out = _Scan()
    try:
        info = verify_image(s.image_path)
        out.height, out.width, out.mode = info["height"], info["width"], info["mode"]
        out.rotated = info["orientation"] != 1
    except DataError as e:
        out.problems.append(Problem("unreadable-image", e.path, e.message))
        out.bad = True
    if s.label_path is None:
        return out
    try:
        if hasattr(ds, "decode_label_notes"):
            label, notes = ds.decode_label_notes(s)  # type: ignore[attr-defined]
        else:
            label, notes = ds.decode_label(s), []
        out.problems += [Problem("label-note", s.label_path, n) for n in notes]
        if out.height is not None:
            ds.check_size(s, label.shape[:2], (out.height, out.width))
        out.counts = np.bincount(label.ravel(), minlength=256)
    except DataError as e:
        kind = "size-mismatch" if "label map is" in e.message else "bad-label"
        out.problems.append(Problem(kind, e.path, e.message))
        out.bad = True
    return out


def inspect_dataset(
    dataset: Dataset | str | Path,
    *,
    format: str | None = None,
    classes: ClassSpec | str | Path | None = None,
    class_map: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> InspectReport:
    """Decode every image and label map of ``dataset`` and report what it holds.

    Args:
        dataset: a :class:`Dataset`, or a folder opened with :func:`open_dataset` using
            ``format``, ``classes`` and ``class_map``.
        workers: scanning threads (default: CPU count, at most 8).
        progress: draw a progress bar on stderr (when it is a terminal).

    Returns:
        An :class:`InspectReport`; problems are collected, never raised (except for
        those that stop the dataset from being opened at all).
    """
    from synth2real.data.readers import default_workers, open_dataset, parallel_map

    t0 = time.perf_counter()
    ds = (
        dataset
        if isinstance(dataset, Dataset)
        else open_dataset(dataset, format=format, classes=classes, class_map=class_map)
    )
    workers = default_workers() if workers is None else max(1, int(workers))
    samples = list(ds.samples)
    with progress_bar(len(samples), f"scanning {ds.root.name or ds.root}", progress) as advance:

        def job(s: Sample) -> _Scan:
            r = _scan_sample(ds, s)
            advance(1)
            return r

        scans = parallel_map(job, samples, workers)

    k = ds.classes.num_classes
    total = np.zeros(256, np.int64)
    per_class = np.zeros(k, np.int64)
    sizes: Counter[str] = Counter()
    modes: Counter[str] = Counter()
    problems: list[dict] = [
        {"severity": _severity(p), **p.to_dict()}
        if isinstance(p, Problem)
        else {"severity": "warning", "kind": "reader", "path": None, "message": str(p)}
        for p in ds.problems
    ]
    bad: list[str] = []
    rotated = 0
    for s, r in zip(samples, scans, strict=True):
        if r.height is not None:
            sizes[f"{r.height}x{r.width}"] += 1
            modes[str(r.mode)] += 1
            rotated += r.rotated
        if r.counts is not None:
            total += r.counts
            per_class += r.counts[:k] > 0
        for p in r.problems:
            sev = "warning" if p.kind == "label-note" else "error"
            problems.append({"severity": sev, **p.to_dict()})
        if r.bad:
            bad.append(s.name)
    for mode, n in sorted(modes.items()):
        if mode in _CONVERTED:
            problems.append(
                {
                    "severity": "info",
                    "kind": "converted",
                    "path": str(ds.root),
                    "message": f"{n} image(s) are {_CONVERTED[mode]}",
                }
            )
    if rotated:
        problems.append(
            {
                "severity": "info",
                "kind": "exif",
                "path": str(ds.root),
                "message": f"{rotated} image(s) carry an EXIF orientation and are read "
                "rotated, as a viewer shows them; their labels must match the rotated image",
            }
        )
    labelled_px = int(total.sum())
    class_px = total[:k]
    stray = int(total[k:].sum() - total[ds.classes.ignore_index])
    if stray:  # only a third-party Dataset subclass could decode to such values
        problems.append(
            {
                "severity": "error",
                "kind": "bad-label",
                "path": str(ds.root),
                "message": f"{stray} decoded pixels hold values that are neither a class "
                "index nor the ignore index",
            }
        )
    ignored = int(total[ds.classes.ignore_index])
    shares = (class_px / labelled_px).tolist() if labelled_px else [0.0] * k
    return InspectReport(
        root=str(ds.root),
        format=ds.format,
        classes=list(ds.classes.names),
        colors=[list(c) for c in ds.classes.colors] if ds.classes.colors else None,
        ignore_index=ds.classes.ignore_index,
        num_samples=len(samples),
        num_labelled=sum(s.label_path is not None for s in samples),
        num_unlabelled=sum(s.label_path is None for s in samples),
        image_sizes=dict(sizes.most_common()),
        size_stats=_size_stats(scans),
        image_modes=dict(modes.most_common()),
        class_pixels=[int(v) for v in class_px],
        class_pixel_share=[float(v) for v in shares],
        ignored_pixels=ignored,
        ignored_share=ignored / labelled_px if labelled_px else 0.0,
        images_per_class=[int(v) for v in per_class],
        problems=problems,
        bad_samples=bad,
        seconds=time.perf_counter() - t0,
        workers=workers,
    )
