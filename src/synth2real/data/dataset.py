"""The in-memory view of a labelled dataset: ordered samples plus a class spec.

Images are ``HxWx3 uint8 RGB``; decoded label maps are ``HxW uint8`` class indices with
``classes.ignore_index`` for unlabelled pixels. A dataset never loads pixels until asked,
so opening a 100k-image dataset is cheap. Readers (``readers.py``) build datasets; the
writer (``writer.py``) writes translated copies.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synth2real.data.classes import ClassSpec
from synth2real.data.io import read_image


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

    def image(self, item: int | Sample) -> np.ndarray:
        """The sample's image, ``HxWx3 uint8 RGB`` (EXIF orientation applied)."""
        s = self.samples[item] if isinstance(item, int) else item
        return read_image(s.image_path)

    def label(self, item: int | Sample) -> np.ndarray | None:
        """The sample's decoded label map, ``HxW uint8`` class indices, or ``None``."""
        s = self.samples[item] if isinstance(item, int) else item
        if s.label_path is None:
            return None
        return self.decode_label(s)

    def decode_label(self, sample: Sample) -> np.ndarray:
        """Decode ``sample.label_path`` into class indices. Formats override this."""
        raise NotImplementedError(f"{type(self).__name__} cannot decode labels")

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
