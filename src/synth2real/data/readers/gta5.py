"""GTA5 (Richter et al. 2016): the generic layout holding Cityscapes label ids."""

from __future__ import annotations

from pathlib import Path

from synth2real.data.classes import CITYSCAPES, CITYSCAPES_LABELS, ClassSpec
from synth2real.data.classmap import ClassMap
from synth2real.data.dataset import Dataset
from synth2real.data.io import open_image
from synth2real.data.readers.base import CLASS_SPEC_FILE, check_fixed_classes, walk_files
from synth2real.data.readers.cityscapes import cityscapes_decoder
from synth2real.data.readers.generic import GenericDataset
from synth2real.errors import DataError


class GTA5Dataset(GenericDataset):
    """GTA5 (Richter et al. 2016): ``images/`` + ``labels/`` whose pixels are Cityscapes
    label ids, decoded to the 19 Cityscapes train ids (everything else ignored).

    Detected when the label PNGs carry the Cityscapes colour palette (as in the official
    download) and there is no ``classes.yaml``; otherwise ask for it with
    ``--format gta5``: an index-PNG dataset with ids 0..33 looks the same as GTA5.
    """

    format = "gta5"

    @classmethod
    def detect(cls, path: Path) -> bool:
        if not ((path / "images").is_dir() and (path / "labels").is_dir()):
            return False
        if (path / CLASS_SPEC_FILE).is_file():
            return False
        first = next((f for f in walk_files(path / "labels") if f.suffix.lower() == ".png"), None)
        return first is not None and has_cityscapes_palette(first)

    @classmethod
    def open(cls, path: Path, classes: ClassSpec | None, class_map: ClassMap | None) -> Dataset:
        check_fixed_classes("gta5", classes, CITYSCAPES)
        ds = GenericDataset.open(path, CITYSCAPES, None)
        problems = [p for p in ds.problems if p.kind != "class-map"]
        gta = cls(path, ds.samples, CITYSCAPES, problems)
        gta.classes, gta.decoder, notes = cityscapes_decoder("labelIds", class_map)
        gta.problems += notes
        return gta


def has_cityscapes_palette(path: Path) -> bool:
    """True when ``path`` is a palette PNG whose palette is Cityscapes' (GTA5 labels)."""
    try:
        with open_image(path, path) as im:
            if im.mode != "P":
                return False
            pal = im.getpalette() or []
    except (DataError, OSError):
        return False
    for lid in (7, 8, 11, 21, 23, 26):
        colour = CITYSCAPES_LABELS[lid][3]
        if tuple(pal[3 * lid : 3 * lid + 3]) != colour:
            return False
    return True
