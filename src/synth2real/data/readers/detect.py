"""Which reader a folder needs (:func:`detect_format`), and opening it (:func:`open_dataset`)."""

from __future__ import annotations

from pathlib import Path

from synth2real.data.classes import ClassSpec
from synth2real.data.classmap import ClassMap, load_class_map
from synth2real.data.dataset import Dataset
from synth2real.data.readers.base import Reader, as_spec
from synth2real.data.readers.camvid import CamVidDataset
from synth2real.data.readers.cityscapes import CityscapesDataset
from synth2real.data.readers.generic import GenericDataset
from synth2real.data.readers.gta5 import GTA5Dataset
from synth2real.data.readers.images import ImageFolderDataset
from synth2real.data.readers.supervisely import SuperviselyDataset
from synth2real.errors import ConfigError, DataError

READERS: dict[str, type[Reader]] = {
    "generic": GenericDataset,
    "supervisely": SuperviselyDataset,
    "cityscapes": CityscapesDataset,
    "gta5": GTA5Dataset,
    "camvid": CamVidDataset,
    "images": ImageFolderDataset,
}
FORMATS = tuple(READERS)
#: detection order: specific markers first, plain image folders last
_DETECT_ORDER = ("cityscapes", "supervisely", "camvid", "gta5", "generic", "images")


def check_folder(path: Path) -> None:
    if not path.exists():
        raise DataError(path, "no such folder")
    if not path.is_dir():
        raise DataError(path, "not a folder: give the dataset's folder")


def detect_format(path: str | Path) -> str:
    """The format of the dataset at ``path`` (one of :data:`FORMATS`).

    Rules, first match wins: ``leftImg8bit/`` -> cityscapes; ``img/`` + ``ann/`` (or
    ``meta.json`` + such folders) -> supervisely; ``<split>/`` + ``<split>_labels/`` or
    ``<split>annot/``, or ``images/`` + ``class_dict.csv`` -> camvid; ``images/`` +
    ``labels/`` whose PNGs carry the Cityscapes palette, without ``classes.yaml`` ->
    gta5; ``images/`` -> generic; any image file -> images.

    Raises:
        DataError: naming the folder when it is missing, empty or holds no images.
    """
    path = Path(path)
    check_folder(path)
    for name in _DETECT_ORDER[:-1]:
        if READERS[name].detect(path):
            return name
    children = sorted(
        d for d in path.iterdir()
        if d.is_dir() and not d.name.startswith(".")
        and any(READERS[n].detect(d) for n in _DETECT_ORDER[:-1])
    )  # fmt: skip
    if children:
        raise DataError(
            path,
            f"this folder holds {len(children)} datasets ({', '.join(d.name for d in children[:6])}"
            f"{' ...' if len(children) > 6 else ''}): open one of them",
        )
    if READERS["images"].detect(path):
        return "images"
    if not any(path.iterdir()):
        raise DataError(path, "empty folder")
    raise DataError(
        path,
        "no dataset found: expected images/ (+ labels/), img/ + ann/ (Supervisely), "
        "leftImg8bit/ (Cityscapes), <split>/ + <split>_labels/ (CamVid), or image files",
    )


def open_dataset(
    path: str | Path,
    format: str | None = None,
    classes: ClassSpec | str | Path | None = None,
    class_map: ClassMap | str | Path | None = None,
    require_labels: bool = False,
) -> Dataset:
    """Open the dataset at ``path``.

    Args:
        path: the dataset folder.
        format: one of :data:`FORMATS`; detected with :func:`detect_format` when ``None``.
        classes: the classes of the label files: a :class:`ClassSpec` or a class-spec YAML
            path. Default: the format's own (``classes.yaml``, ``meta.json``, Cityscapes
            train ids, ...). With ``class_map``, it describes the *source* classes.
        class_map: a :class:`ClassMap`, a class-map YAML path, or the name of a built-in
            map; decoded labels then hold the map's target classes.
        require_labels: raise unless every image has a label file.

    Returns:
        A :class:`Dataset` (its subclass decodes the format's labels).

    Raises:
        DataError: naming the file or folder for missing/empty folders, ambiguous names,
            unreadable class specs; ``ConfigError`` for an unknown format.
    """
    path = Path(path)
    check_folder(path)
    if format is None:
        format = detect_format(path)
    fmt = format.lower()
    if fmt not in READERS:
        raise ConfigError(f"unknown dataset format {format!r}; choose one of {list(FORMATS)}")
    spec = as_spec(classes)
    cmap = (
        class_map
        if isinstance(class_map, ClassMap) or class_map is None
        else load_class_map(class_map)
    )
    ds = READERS[fmt].open(path, spec, cmap)
    if require_labels:
        missing = [s for s in ds.samples if s.label_path is None]
        if missing:
            names = ", ".join(repr(s.image_path.name) for s in missing[:5])
            raise DataError(
                path,
                f"labels required, but {len(missing)} of {len(ds)} images have none ({names}"
                f"{' ...' if len(missing) > 5 else ''})",
            )
    return ds
