"""Dataset readers: one small class per on-disk layout, detected or chosen by name.

=============  =====================================================================
format         layout
=============  =====================================================================
generic        ``images/`` + ``labels/`` (index or colour PNGs) + optional ``classes.yaml``
supervisely    ``img/NAME`` + ``ann/NAME.json`` (+ ``meta.json`` here or one level up)
cityscapes     ``leftImg8bit/<split>/<city>/*`` + ``gtFine/...`` (``labelIds`` or
               ``labelTrainIds``); 19 train classes
gta5           ``images/`` + ``labels/`` holding Cityscapes label ids; 19 train classes
camvid         ``train/`` + ``train_labels/`` or ``trainannot/`` (and val/test), or
               ``images/`` + ``labels/`` with ``--format camvid``
images         any folder of images, no labels (unlabelled real references)
=============  =====================================================================

Reading a dataset lists files and reads at most a few headers: pixels are decoded on
demand (:meth:`Dataset.image`, :meth:`Dataset.label`). Problems that make the dataset
ambiguous (no images, duplicate stems, unknown format) raise
:class:`~synth2real.errors.DataError` at once; problems that concern single files
(an image without a label, a label without an image, an ignored file) are recorded in
``dataset.problems``; problems that need the pixels (unknown ids or colours, size
mismatch, truncated files) raise when that sample is decoded, and
``synth2real inspect`` (:func:`synth2real.data.checks.inspect_dataset`) finds them all.
One module per format (``generic``, ``supervisely``, ``cityscapes``, ``gta5``, ``camvid``,
``images``), what they share in ``base``, detection and :func:`open_dataset` in
``detect``. See ``docs/DATA.md``.
"""

from synth2real.data.readers.base import (
    CLASS_SPEC_FILE,
    LABEL_EXTENSIONS,
    Reader,
    default_workers,
    parallel_map,
)
from synth2real.data.readers.camvid import CamVidDataset
from synth2real.data.readers.cityscapes import CityscapesDataset
from synth2real.data.readers.detect import FORMATS, READERS, detect_format, open_dataset
from synth2real.data.readers.generic import GenericDataset
from synth2real.data.readers.gta5 import GTA5Dataset, has_cityscapes_palette
from synth2real.data.readers.images import ImageFolderDataset
from synth2real.data.readers.supervisely import SuperviselyDataset

__all__ = [
    "CLASS_SPEC_FILE",
    "FORMATS",
    "LABEL_EXTENSIONS",
    "READERS",
    "CamVidDataset",
    "CityscapesDataset",
    "GTA5Dataset",
    "GenericDataset",
    "ImageFolderDataset",
    "Reader",
    "SuperviselyDataset",
    "default_workers",
    "detect_format",
    "has_cityscapes_palette",
    "open_dataset",
    "parallel_map",
]
