"""The generic layout: ``images/`` + ``labels/`` (or ``masks/``) + optional ``classes.yaml``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from synth2real.data.classes import ClassSpec, load_class_spec
from synth2real.data.classmap import MAX_RAW_ID, ClassMap, LabelDecoder, Vocabulary, spec_decoder
from synth2real.data.dataset import Dataset, Problem
from synth2real.data.io import IMAGE_EXTENSIONS, read_label_raw
from synth2real.data.readers.base import (
    CLASS_SPEC_FILE,
    LABEL_EXTENSIONS,
    UNKNOWN_CLASSES,
    Reader,
    classes_and_decoder,
    find_spec_file,
    index_files,
    map_decoder,
    no_images_error,
    pair_samples,
    parallel_map,
)
from synth2real.errors import DataError


def _scan_label_values(paths: Sequence[Path]) -> tuple[set[int], set[tuple[int, int, int]]]:
    """The distinct ids and (non-grey) colours used by ``paths`` (thread pool)."""

    def one(p: Path):
        raw, _ = read_label_raw(p)
        if raw.ndim == 3:
            if (raw[..., 0] == raw[..., 1]).all() and (raw[..., 1] == raw[..., 2]).all():
                return set(np.unique(raw[..., 0]).tolist()), set()
            cols = np.unique(raw.reshape(-1, 3), axis=0)
            return set(), {tuple(int(v) for v in c) for c in cols}
        return set(np.unique(raw).tolist()), set()

    ids: set[int] = set()
    colors: set[tuple[int, int, int]] = set()
    for i, c in parallel_map(one, list(paths)):
        ids |= i
        colors |= c
    return ids, colors


def _infer_spec(root: Path, label_paths: Sequence[Path]) -> tuple[ClassSpec, LabelDecoder, Problem]:
    """Class names ``class_0..`` from the ids found in every label file (no class spec)."""
    ids, colors = _scan_label_values(label_paths)
    if colors:
        shown = ", ".join(str(list(c)) for c in sorted(colors)[:10])
        raise DataError(
            root,
            f"colour label maps ({len(colors)} colours: {shown}{' ...' if len(colors) > 10 else ''}) "
            f"need a class spec: write {CLASS_SPEC_FILE} with 'names' and 'colors' (one "
            "[r, g, b] per class) in this folder, or pass --classes FILE (translate's "
            "references: --reference-classes FILE)",
        )
    if not ids:
        ids = {0}
    lut = np.full(MAX_RAW_ID + 1, -1, np.int16)
    if ids <= {0, 255} and 255 in ids:
        spec = ClassSpec(names=("class_0", "class_1"))
        lut[0], lut[255] = 0, 1
        note = (
            f"no {CLASS_SPEC_FILE}: labels hold only 0 and 255, read as a binary mask "
            "(class_0 = 0, class_1 = 255); write a class spec to name the classes"
        )
    else:
        top = max(i for i in ids if i != 255) if ids - {255} else 0
        if top >= 255:
            raise DataError(
                root,
                f"label ids up to {max(ids)} found and no class spec: write {CLASS_SPEC_FILE} "
                "or use a class map (--class-map) to say which ids are which classes",
            )
        spec = ClassSpec(names=tuple(f"class_{i}" for i in range(top + 1)))
        lut[: top + 1] = np.arange(top + 1)
        lut[255] = 255
        note = (
            f"no {CLASS_SPEC_FILE}: {top + 1} classes inferred from the label ids found "
            f"(class_0..class_{top}{', 255 = ignore' if 255 in ids else ''}); write a class "
            "spec to name them"
        )
    dec = LabelDecoder(lut, describe=f"the inferred classes (ids 0..{spec.num_classes - 1})")
    return spec, dec, Problem("inferred-classes", root, note)


#: label-name suffixes tried when a label's name matches no image (``a_mask.png`` -> ``a``)
LABEL_SUFFIXES = ("_mask", "_masks", "_label", "_labels", "_gt", "_seg", "_L", "-mask", "-label")


def _strip_label_suffixes(labels: dict[str, Path], images: dict[str, Path]) -> dict[str, Path]:
    """Re-key labels named ``<image name><suffix>`` (see :data:`LABEL_SUFFIXES`) to the
    image's name, where that is unambiguous."""
    out = dict(labels)
    for name, p in labels.items():
        if name in images:
            continue
        for suf in LABEL_SUFFIXES:
            if name.endswith(suf) and name[: -len(suf)] in images and name[: -len(suf)] not in out:
                out[name[: -len(suf)]] = p
                del out[name]
                break
    return out


class GenericDataset(Reader):
    """``ROOT/images/<name>.<ext>`` + ``ROOT/labels/<name>.png`` (+ ``ROOT/classes.yaml``).

    Labels are index PNGs (pixel value = class index, ``ignore_index`` = ignored; 8- or
    16-bit; palette PNGs count by index unless every colour they use is a class colour)
    or RGB PNGs decoded through the class spec's ``colors``. Nested folders are fine: the
    sample name is the path under ``images/`` without extension. ``masks/`` is accepted
    in place of ``labels/``, and a label named ``<name>_mask.png`` (or ``_label``,
    ``_gt``, ``_seg``, ``_L``...) pairs with image ``<name>`` when nothing else does. ``classes.yaml`` is
    looked for in ROOT and its parent; without one, classes ``class_0..`` are inferred
    from the ids found (recorded as a problem).
    """

    format = "generic"

    @classmethod
    def detect(cls, path: Path) -> bool:
        return (path / "images").is_dir()

    @classmethod
    def open(cls, path: Path, classes: ClassSpec | None, class_map: ClassMap | None) -> Dataset:
        image_dir, label_dir = path / "images", path / "labels"
        if not label_dir.is_dir() and (path / "masks").is_dir():
            label_dir = path / "masks"
        if not image_dir.is_dir():
            raise DataError(path, "not a generic dataset: no images/ folder")
        problems: list[Problem] = []
        images = index_files(image_dir, IMAGE_EXTENSIONS, "image", problems=problems)
        if not images:
            raise no_images_error(path, image_dir)
        labels: dict[str, Path] = {}
        if label_dir.is_dir():
            labels = index_files(
                label_dir, LABEL_EXTENSIONS, "label", problems=problems, lossy_labels=True
            )
            labels = _strip_label_suffixes(labels, images)
        else:
            problems.append(
                Problem("no-labels", path, "no labels/ folder: every image is unlabelled")
            )
        samples = pair_samples(images, labels, problems, label_dir)
        spec_file = None if classes is not None else find_spec_file(path)
        spec = classes or (load_class_spec(spec_file) if spec_file else None)
        labelled = [s.label_path for s in samples if s.label_path is not None]
        if spec is None and class_map is None and labelled:
            spec, decoder, note = _infer_spec(path, labelled)
            problems.append(note)
            ds_classes = spec
        elif spec is None and class_map is None:
            ds_classes, decoder = UNKNOWN_CLASSES, spec_decoder(UNKNOWN_CLASSES)
        elif spec is None:
            assert class_map is not None
            ds_classes, decoder, notes = map_decoder(class_map, Vocabulary())
            problems += notes
        else:
            ds_classes, decoder, notes = classes_and_decoder(spec, class_map)
            problems += notes
        ds = cls(path, samples, ds_classes, problems)
        ds.decoder = decoder
        return ds
