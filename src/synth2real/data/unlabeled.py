"""Unlabelled real images (self-training's ``--unlabeled``): any image folder, or a
labelled dataset whose labels are then not read."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from synth2real.data.dataset import Dataset, Sample
from synth2real.data.io import image_size
from synth2real.errors import DataError


def open_unlabeled(
    path: str | Path,
    names: Sequence[str] | str | None = None,
    *,
    format: str | None = None,
    check: bool = True,
) -> Dataset:
    """The images of ``path`` as a dataset without labels.

    Args:
        path: a folder of images (nested folders fine; ``images/`` alone when present) or
            a dataset in any format :func:`~synth2real.data.readers.open_dataset` reads;
            its label files are dropped, never decoded.
        names: the images to use: a list, or a selection string (``FILE``,
            ``FILE.json:key`` such as ``splits.json:unlabeled``, ``a,b,c``; the syntax of
            :func:`~synth2real.data.select.parse_names`); ``None`` or ``"all"``: every image.
        format: dataset format; detected when ``None``.
        check: read every image's header now, so that an unreadable file fails here,
            naming it, rather than in the middle of a training run.

    Returns:
        a :class:`Dataset` whose samples all have ``label_path=None``.

    Raises:
        DataError: naming the folder when it is missing or holds no image, or a name
            matches none; naming the file when an image cannot be read.
    """
    from synth2real.data.readers import open_dataset
    from synth2real.data.select import select_names

    path = Path(path)
    ds = open_dataset(path, format=format)
    ds = select_names(ds, names, "unlabelled images", path)
    if len(ds) == 0:
        raise DataError(path, "no unlabelled images in this folder")
    if check:
        for s in ds.samples:
            image_size(s.image_path)  # DataError naming the file
    return ds.subset([Sample(s.name, s.image_path, None) for s in ds.samples])
