"""The in-memory view of a labelled dataset: ordered samples plus a class spec.

Images are ``HxWx3 uint8 RGB``; decoded label maps are ``HxW uint8`` class indices with
``classes.ignore_index`` for unlabelled pixels. A dataset never loads pixels until asked,
so opening a 100k-image dataset is cheap (:class:`CachedDataset` keeps decoded pixels of
a small set in RAM). Readers (``readers/``) build datasets; the writer (``writer.py``)
writes translated copies.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synth2real.data.classes import ClassSpec
from synth2real.data.io import ROTATING_ORIENTATIONS, image_size, read_image
from synth2real.errors import DataError


class Problem(str):
    """A non-fatal problem found in a dataset: the string ``"PATH: message"``, with fields.

    It *is* a ``str`` (so it prints, compares and serialises as one) and also carries
    ``kind`` (a short machine-readable tag such as ``missing-label``), ``path`` (the file
    or folder concerned, or ``None``) and ``message``.
    """

    kind: str
    path: str | None
    message: str

    def __new__(cls, kind: str, path: str | Path | None, message: str) -> Problem:
        text = f"{path}: {message}" if path is not None else message
        obj = super().__new__(cls, text)
        obj.kind = kind
        obj.path = str(path) if path is not None else None
        obj.message = message
        return obj

    def __getnewargs__(self):  # type: ignore[override]  # pickling
        return (self.kind, self.path, self.message)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "path": self.path, "message": self.message}


@dataclass(frozen=True)
class Sample:
    """One image and (optionally) its label file.

    Attributes:
        name: unique id inside the dataset: the image's path relative to the image folder,
            without extension, with ``/`` separators (``aachen/aachen_000000_000019``).
        image_path: the image file.
        label_path: the label file in the dataset's own format (index PNG, colour PNG,
            Supervisely JSON, ...), or ``None`` for an unlabelled image.
    """

    name: str
    image_path: Path
    label_path: Path | None = None


class Dataset(Sequence[Sample]):
    """Ordered samples with a class spec; subclasses decode their own label format.

    Args:
        root: the folder the dataset was read from.
        samples: the samples, in a stable order (sorted by name unless the format says).
        classes: the class spec shared by every label map.
        problems: non-fatal problems found while reading (shown by ``synth2real inspect``).
    """

    format: str = "base"

    def __init__(
        self,
        root: str | Path,
        samples: Sequence[Sample],
        classes: ClassSpec,
        problems: Sequence[str] = (),
    ):
        self.root = Path(root)
        self.samples = list(samples)
        self.classes = classes
        self.problems = list(problems)

    # -- sequence protocol -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return self.subset(self.samples[i])
        return self.samples[i]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, format={self.format!r}, "
            f"samples={len(self)}, classes={list(self.classes.names)})"
        )

    # -- pixels ------------------------------------------------------------------------
    @property
    def has_labels(self) -> bool:
        """True when every sample has a label file."""
        return bool(self.samples) and all(s.label_path is not None for s in self.samples)

    def labelled(self) -> Dataset:
        """The samples that have a label file (all of them when :attr:`has_labels`)."""
        return self.subset([s for s in self.samples if s.label_path is not None])

    @property
    def num_labelled(self) -> int:
        return sum(s.label_path is not None for s in self.samples)

    def image(self, item: int | Sample) -> np.ndarray:
        """The sample's image, ``HxWx3 uint8 RGB`` (EXIF orientation applied)."""
        s = self.samples[item] if isinstance(item, int) else item
        return read_image(s.image_path)

    def label(self, item: int | Sample) -> np.ndarray | None:
        """The sample's decoded label map, ``HxW uint8`` class indices, or ``None``.

        The label map is checked against the image's size (read from its header, EXIF
        rotation applied), so a mismatched pair fails here rather than in a training loop.

        Raises:
            DataError: naming the label file when it is unreadable, holds ids or colours
                outside the class spec, or differs in size from its image.
        """
        s = self.samples[item] if isinstance(item, int) else item
        if s.label_path is None:
            return None
        label = self.decode_label(s)
        self.check_size(s, label.shape[:2], image_size(s.image_path))
        return label

    def pair(self, item: int | Sample) -> tuple[np.ndarray, np.ndarray | None]:
        """``(image, label)``: ``HxWx3 uint8`` and ``HxW uint8`` (or ``None``), same size.

        Raises:
            DataError: as :meth:`image` and :meth:`label`.
        """
        s = self.samples[item] if isinstance(item, int) else item
        image = read_image(s.image_path)
        if s.label_path is None:
            return image, None
        label = self.decode_label(s)
        self.check_size(s, label.shape[:2], image.shape[:2])
        return image, label

    def decode_label(self, sample: Sample) -> np.ndarray:
        """Decode ``sample.label_path`` into class indices. Formats override this.

        Does not compare with the image size (:meth:`label` and :meth:`pair` do).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot decode labels")

    @staticmethod
    def check_size(sample: Sample, label_hw: tuple[int, ...], image_hw: tuple[int, ...]) -> None:
        """Raise a :class:`DataError` naming both files when the sizes differ."""
        lh, lw = int(label_hw[0]), int(label_hw[1])
        ih, iw = int(image_hw[0]), int(image_hw[1])
        if (lh, lw) == (ih, iw):
            return
        msg = f"label map is {lh}x{lw} (HxW) but its image {sample.image_path.name} is {ih}x{iw}"
        if (lh, lw) == (iw, ih):
            from PIL import Image

            from synth2real.data.io import exif_orientation

            try:
                with Image.open(sample.image_path) as im:
                    rotated = exif_orientation(im) in ROTATING_ORIENTATIONS
            except OSError:
                rotated = False
            if rotated:
                msg += (
                    " after applying its EXIF rotation; the label matches the stored, "
                    "unrotated pixels. synth2real shows images as a viewer does (EXIF "
                    "applied), so the label must be drawn on the rotated image: rotate the "
                    "label, or save the image without the EXIF orientation tag"
                )
        raise DataError(sample.label_path, msg)

    # -- selection ---------------------------------------------------------------------
    def subset(self, samples: Sequence[Sample]) -> Dataset:
        """A dataset of the same format holding only ``samples`` (same decoding)."""
        import copy

        new = copy.copy(self)
        new.samples = list(samples)
        return new

    def select(self, names: Sequence[str]) -> Dataset:
        """The samples whose name, or image file name, is in ``names``, in that order.

        Raises:
            KeyError: naming every entry of ``names`` that matches no sample.
        """
        by_key: dict[str, Sample] = {}
        for s in self.samples:
            by_key.setdefault(s.name, s)
            by_key.setdefault(s.image_path.name, s)
            by_key.setdefault(s.image_path.stem, s)
        missing = [n for n in names if n not in by_key]
        if missing:
            raise KeyError(
                f"{len(missing)} name(s) not found in {self.root}: {missing[:5]}"
                + (" ..." if len(missing) > 5 else "")
            )
        return self.subset([by_key[n] for n in names])


class CachedDataset(Dataset):
    """``base`` with every image and label map decoded once and kept in RAM.

    For sets read again and again in one process, such as the test images a pilot scores
    every run on (decoding JPEGs or Supervisely bitmaps costs a second or more per
    pass); meant for tens to a few hundred images, not for training sets. The cached
    arrays are read-only, so a consumer that would modify them in place fails loudly
    instead of corrupting the cache. Samples, classes and format-specific attributes
    are the base dataset's. Pickling (to a worker process) leaves the cache behind: each
    process decodes once.
    """

    def __init__(self, base: Dataset):
        super().__init__(base.root, base.samples, base.classes, base.problems)
        self.base = base
        self.format = base.format
        self._pairs: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}

    def __getattr__(self, name: str):
        base = self.__dict__.get("base")  # absent while unpickling
        if base is None:
            raise AttributeError(name)
        return getattr(base, name)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pairs": {}}

    def pair(self, item: int | Sample) -> tuple[np.ndarray, np.ndarray | None]:
        s = self.samples[item] if isinstance(item, int) else item
        hit = self._pairs.get(s.name)
        if hit is None:
            image, label = self.base.pair(s)
            for a in (image, label):
                if a is not None:
                    a.flags.writeable = False
            hit = self._pairs[s.name] = (image, label)
        return hit

    def image(self, item: int | Sample) -> np.ndarray:
        return self.pair(item)[0]

    def label(self, item: int | Sample) -> np.ndarray | None:
        return self.pair(item)[1]

    def decode_label(self, sample: Sample) -> np.ndarray:
        return self.base.decode_label(sample)

    def subset(self, samples: Sequence[Sample]) -> CachedDataset:
        """A cached view of ``base.subset(samples)`` sharing this view's cache."""
        new = CachedDataset(self.base.subset(samples))
        new._pairs = self._pairs
        return new
