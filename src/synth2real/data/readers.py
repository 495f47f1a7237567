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
See ``docs/DATA.md``.
"""

from __future__ import annotations

import base64
import io
import json
import os
import unicodedata
import warnings
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import numpy as np

from synth2real.data.classes import (
    CAMVID,
    CITYSCAPES,
    CITYSCAPES_LABELS,
    ClassSpec,
    load_class_spec,
)
from synth2real.data.classmap import (
    MAX_RAW_ID,
    ClassMap,
    LabelDecoder,
    Vocabulary,
    load_class_map,
    spec_decoder,
)
from synth2real.data.dataset import Dataset, Problem, Sample
from synth2real.data.io import IMAGE_EXTENSIONS, read_label_raw
from synth2real.errors import ConfigError, DataError

FORMATS = ("generic", "supervisely", "cityscapes", "gta5", "camvid", "images")

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
def _nfc(s: str) -> str:
    return unicodedata.normalize("NFC", s)


def _walk_files(folder: Path) -> list[Path]:
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


def _rel_name(path: Path, base: Path, strip: str = "") -> str:
    rel = path.relative_to(base).with_suffix("").as_posix()
    if strip and rel.endswith(strip):
        rel = rel[: -len(strip)]
    return _nfc(rel)


def _index_files(
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
    for f in _walk_files(folder):
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
        name = _rel_name(f, folder, strip)
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


def _pair(
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


def _no_images(path: Path, where: Path) -> DataError:
    if not any(path.iterdir()):
        return DataError(path, "empty folder")
    return DataError(where, f"no images found (looked for {', '.join(IMAGE_EXTENSIONS)})")


def _as_spec(classes: ClassSpec | str | Path | None) -> ClassSpec | None:
    if classes is None or isinstance(classes, ClassSpec):
        return classes
    return load_class_spec(classes)


def _find_spec_file(path: Path) -> Path | None:
    for folder in (path, path.parent):
        f = folder / CLASS_SPEC_FILE
        if f.is_file():
            return f
    return None


def _check_fixed_classes(fmt: str, given: ClassSpec | None, fixed: ClassSpec) -> None:
    if given is not None and given.names != fixed.names:
        raise ConfigError(
            f"{fmt} labels have fixed classes {list(fixed.names)[:5]}...; --classes "
            f"{list(given.names)[:5]} does not match them. Use a class map (--class-map) to "
            "map them onto other classes"
        )


# -- base reader ---------------------------------------------------------------------------
class _Reader(Dataset):
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


def _decoder(
    spec: ClassSpec, class_map: ClassMap | None, vocab: Vocabulary | None = None
) -> tuple[ClassSpec, LabelDecoder, list[Problem]]:
    """(dataset classes, decoder, notices) for a source ``spec`` and an optional map."""
    if class_map is None:
        return spec, spec_decoder(spec), []
    dec, notes = class_map.decoder(vocab or Vocabulary.from_spec(spec))
    return class_map.classes, dec, [Problem("class-map", class_map.source, n) for n in notes]


# -- generic -------------------------------------------------------------------------------
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
            "[r, g, b] per class) or pass --classes",
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


class GenericDataset(_Reader):
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
        images = _index_files(image_dir, IMAGE_EXTENSIONS, "image", problems=problems)
        if not images:
            raise _no_images(path, image_dir)
        labels: dict[str, Path] = {}
        if label_dir.is_dir():
            labels = _index_files(
                label_dir, LABEL_EXTENSIONS, "label", problems=problems, lossy_labels=True
            )
            labels = _strip_label_suffixes(labels, images)
        else:
            problems.append(
                Problem("no-labels", path, "no labels/ folder: every image is unlabelled")
            )
        samples = _pair(images, labels, problems, label_dir)
        spec_file = None if classes is not None else _find_spec_file(path)
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
            dec, notes = class_map.decoder(Vocabulary())
            ds_classes, decoder = class_map.classes, dec
            problems += [Problem("class-map", class_map.source, n) for n in notes]
        else:
            ds_classes, decoder, notes = _decoder(spec, class_map)
            problems += notes
        ds = cls(path, samples, ds_classes, problems)
        ds.decoder = decoder
        return ds


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
        first = next((f for f in _walk_files(path / "labels") if f.suffix.lower() == ".png"), None)
        return first is not None and has_cityscapes_palette(first)

    @classmethod
    def open(cls, path: Path, classes: ClassSpec | None, class_map: ClassMap | None) -> Dataset:
        _check_fixed_classes("gta5", classes, CITYSCAPES)
        ds = GenericDataset.open(path, CITYSCAPES, None)
        problems = [p for p in ds.problems if p.kind != "class-map"]
        gta = cls(path, ds.samples, CITYSCAPES, problems)
        gta.classes, gta.decoder, notes = _cityscapes_decoder("labelIds", class_map)
        gta.problems += notes
        return gta


def has_cityscapes_palette(path: Path) -> bool:
    """True when ``path`` is a palette PNG whose palette is Cityscapes' (GTA5 labels)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode != "P":
                return False
            pal = im.getpalette() or []
    except OSError:
        return False
    for lid in (7, 8, 11, 21, 23, 26):
        colour = CITYSCAPES_LABELS[lid][3]
        if tuple(pal[3 * lid : 3 * lid + 3]) != colour:
            return False
    return True


def _cityscapes_decoder(
    kind: str, class_map: ClassMap | None
) -> tuple[ClassSpec, LabelDecoder, list[Problem]]:
    """Decoder for Cityscapes ``labelIds`` (-> train ids) or ``labelTrainIds`` files."""
    if kind == "labelIds":
        vocab = Vocabulary(names={lid: n for lid, n, _, _ in CITYSCAPES_LABELS})
        lut = np.full(MAX_RAW_ID + 1, 255, np.int16)  # everything else: ignore
        for lid, _, tid, _ in CITYSCAPES_LABELS:
            lut[lid] = tid
        default = LabelDecoder(lut, describe="Cityscapes label ids")
    else:
        vocab = Vocabulary.from_spec(CITYSCAPES)
        vocab = Vocabulary(names=vocab.names)
        lut = np.full(MAX_RAW_ID + 1, -1, np.int16)
        lut[:19] = np.arange(19)
        lut[255] = 255
        default = LabelDecoder(lut, describe="Cityscapes train ids (0..18, 255)")
    if class_map is None:
        return CITYSCAPES, default, []
    dec, notes = class_map.decoder(vocab)
    return class_map.classes, dec, [Problem("class-map", class_map.source, n) for n in notes]


# -- cityscapes ----------------------------------------------------------------------------
class CityscapesDataset(_Reader):
    """Cityscapes: ``leftImg8bit/<split>/<city>/<id>_leftImg8bit.png`` with
    ``gtFine/<split>/<city>/<id>_gtFine_labelIds.png`` (preferred, mapped to train ids) or
    ``<id>_gtFine_labelTrainIds.png`` (used as they are).

    Open the root (every split; names ``<split>/<city>/<id>``) or one split,
    ``ROOT/leftImg8bit/<split>`` (names ``<city>/<id>``).
    """

    format = "cityscapes"
    decoders: dict[str, LabelDecoder]

    @classmethod
    def detect(cls, path: Path) -> bool:
        return (path / "leftImg8bit").is_dir() or (
            path.parent.name == "leftImg8bit" and path.is_dir()
        )

    @classmethod
    def open(cls, path: Path, classes: ClassSpec | None, class_map: ClassMap | None) -> Dataset:
        _check_fixed_classes("cityscapes", classes, CITYSCAPES)
        if (path / "leftImg8bit").is_dir():
            root, image_dir, gt_dir = path, path / "leftImg8bit", path / "gtFine"
        elif path.parent.name == "leftImg8bit":
            root, image_dir = path.parent.parent, path
            gt_dir = root / "gtFine" / path.name
        else:
            raise DataError(path, "not a Cityscapes folder: no leftImg8bit/")
        problems: list[Problem] = []
        images = _index_files(
            image_dir, IMAGE_EXTENSIONS, "image", strip="_leftImg8bit", problems=problems
        )
        if not images:
            raise _no_images(path, image_dir)
        labels: dict[str, Path] = {}
        if gt_dir.is_dir():
            ids = _index_files(gt_dir, (".png",), "label", strip="_gtFine_labelIds")
            ids = {n: p for n, p in ids.items() if p.name.endswith("_gtFine_labelIds.png")}
            train = _index_files(gt_dir, (".png",), "label", strip="_gtFine_labelTrainIds")
            train = {n: p for n, p in train.items() if p.name.endswith("_gtFine_labelTrainIds.png")}
            labels = {**train, **ids}  # labelIds win where both exist
        else:
            problems.append(
                Problem("no-labels", root, "no gtFine/ folder: every image is unlabelled")
            )
        samples = _pair(images, labels, problems, gt_dir)
        ds = cls(path, samples, CITYSCAPES, problems)
        ds.decoders = {}
        for kind in ("labelIds", "labelTrainIds"):
            ds.classes, ds.decoders[kind], notes = _cityscapes_decoder(kind, class_map)
        ds.problems += notes
        return ds

    def decoder_for(self, sample: Sample) -> LabelDecoder:
        assert sample.label_path is not None
        kind = "labelIds" if sample.label_path.name.endswith("_labelIds.png") else "labelTrainIds"
        return self.decoders[kind]


# -- supervisely ---------------------------------------------------------------------------
def _read_json(path: Path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(path, f"not valid JSON ({e})") from None
    except OSError as e:
        raise DataError(path, f"cannot read ({e})") from None


def _hex(c: str) -> tuple[int, int, int] | None:
    try:
        c = c.lstrip("#")
        return (int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16))
    except (ValueError, AttributeError, IndexError):
        return None


def _bitmap_mask(data: str, where: Path) -> np.ndarray:
    """Supervisely ``bitmap.data`` (base64 of zlib of a PNG) -> ``hxw bool``."""
    from PIL import Image

    try:
        png = zlib.decompress(base64.b64decode(data))
        im = Image.open(io.BytesIO(png))
        im.load()
    except (ValueError, zlib.error, OSError) as e:
        raise DataError(where, f"unreadable bitmap object ({e})") from None
    if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        return np.asarray(im.convert("RGBA"))[..., 3] > 0
    return np.asarray(im.convert("L")) > 0


class SuperviselyDataset(_Reader):
    """Supervisely project: ``img/NAME`` + ``ann/NAME.json``, classes from ``meta.json``.

    Open a dataset folder (holding ``img/`` and ``ann/``; ``meta.json`` in it or in its
    parent) or a project folder (``meta.json`` + dataset folders; names are then
    ``<dataset>/<name>``). Class 0 is ``background`` (pixels no object covers), then the
    meta classes in order (a meta class titled ``background`` *is* class 0).
    ``bitmap`` (and ``alpha_mask``), ``polygon`` (exterior minus interior holes, drawn
    like the Supervisely SDK: the outline of a hole belongs to the object) and
    ``rectangle`` objects are drawn in the order listed, so later objects win where they
    overlap; other geometries (points, lines, graphs) are skipped with a warning.

    A dataset folder whose annotations *all* hold no objects is unlabelled (Supervisely
    writes such files for images nobody annotated); where only some are empty, those
    images are labelled all background.
    """

    format = "supervisely"
    titles: dict[str, int]

    @classmethod
    def detect(cls, path: Path) -> bool:
        if (path / "img").is_dir() and (path / "ann").is_dir():
            return True
        return (path / "meta.json").is_file() and bool(cls._dataset_dirs(path))

    @staticmethod
    def _dataset_dirs(path: Path) -> list[Path]:
        if (path / "img").is_dir() and (path / "ann").is_dir():
            return [path]
        return sorted(
            d for d in path.iterdir()
            if d.is_dir() and not d.name.startswith(".") and (d / "img").is_dir()
            and (d / "ann").is_dir()
        )  # fmt: skip

    @classmethod
    def open(cls, path: Path, classes: ClassSpec | None, class_map: ClassMap | None) -> Dataset:
        dirs = cls._dataset_dirs(path)
        if not dirs:
            raise DataError(path, "not a Supervisely project: no img/ and ann/ folders")
        single = dirs == [path]
        problems: list[Problem] = []
        samples: list[Sample] = []
        for d in dirs:
            samples += cls._read_folder(d, "" if single else d.name + "/", problems)
        if not samples:
            raise _no_images(path, dirs[0] / "img")
        meta_file = next(
            (f for f in (path / "meta.json", path.parent / "meta.json") if f.is_file()), None
        )
        if meta_file is not None:
            titles, colors = cls._meta_classes(meta_file)
        else:
            titles, colors = cls._titles_from_annotations(samples)
            problems.append(
                Problem(
                    "no-meta",
                    path,
                    f"no meta.json here or in the parent folder: classes {titles[1:]} "
                    "taken from the annotations in order of appearance",
                )  # fmt: skip
            )
        spec = ClassSpec(names=tuple(titles), colors=tuple(colors))
        vocab = Vocabulary(names=dict(enumerate(titles)))
        if classes is not None:
            lut = np.full(MAX_RAW_ID + 1, -1, np.int16)
            for rid, t in enumerate(titles):
                if t in classes.names:
                    lut[rid] = classes.index(t)
            if "background" not in classes.names:
                lut[0] = 0
            decoder = LabelDecoder(lut, describe=f"the class spec {list(classes.names)}")
            ds_classes = classes
            missing = [t for t in titles[1:] if t not in classes.names]
            if missing:
                problems.append(
                    Problem(
                        "class-spec",
                        meta_file or path,
                        f"Supervisely classes {missing} are not in the given class spec: "
                        "an annotation using them is an error",
                    )  # fmt: skip
                )
        else:
            ds_classes, decoder, notes = _decoder(spec, class_map, vocab)
            problems += notes
        ds = cls(path, samples, ds_classes, problems)
        ds.decoder = decoder
        ds.titles = {t: i for i, t in enumerate(titles)}
        return ds

    @staticmethod
    def _meta_classes(meta_file: Path) -> tuple[list[str], list[tuple[int, int, int]]]:
        meta = _read_json(meta_file)
        entries = meta.get("classes") if isinstance(meta, dict) else None
        if not isinstance(entries, list):
            raise DataError(meta_file, "no 'classes' list in meta.json")
        titles, colors = ["background"], [(0, 0, 0)]
        for e in entries:
            if not isinstance(e, dict) or not isinstance(e.get("title"), str):
                raise DataError(meta_file, f"class entry without a title: {e!r}")
            t = e["title"]
            if t.strip().lower() == "background":
                continue  # the implicit class 0
            if t in titles:
                raise DataError(meta_file, f"class {t!r} listed twice")
            titles.append(t)
            colors.append(_hex(e.get("color", "")) or (255, 255, 255))
        return titles, colors

    @staticmethod
    def _titles_from_annotations(samples: Sequence[Sample]):
        titles = ["background"]
        for s in samples:
            if s.label_path is None:
                continue
            for o in _read_json(s.label_path).get("objects", []):
                t = o.get("classTitle")
                if isinstance(t, str) and t not in titles and t.lower() != "background":
                    titles.append(t)
        from synth2real.data.classes import default_color

        return titles, [default_color(i) for i in range(len(titles))]

    @classmethod
    def _read_folder(cls, folder: Path, prefix: str, problems: list[Problem]) -> list[Sample]:
        img_dir, ann_dir = folder / "img", folder / "ann"
        images = _index_files(img_dir, IMAGE_EXTENSIONS, "image", problems=problems)
        used: set[str] = set()
        samples = []
        for name, img in sorted(images.items()):
            rel = img.relative_to(img_dir)
            cand = [(rel.parent / (rel.name + ".json")), (rel.parent / (rel.stem + ".json"))]
            ann = next((ann_dir / c for c in cand if (ann_dir / c).is_file()), None)
            if ann is None:
                problems.append(
                    Problem("missing-label", img, f"no annotation {ann_dir / cand[0]}; unlabelled")
                )
            else:
                used.add(str(ann))
            samples.append(Sample(prefix + name, img, ann))
        for f in _walk_files(ann_dir):
            if f.suffix.lower() == ".json" and str(f) not in used:
                problems.append(Problem("orphan-label", f, "annotation without an image; ignored"))
        labelled = [s for s in samples if s.label_path is not None]
        if labelled and all(cls._is_empty(s.label_path) for s in labelled):  # type: ignore[arg-type]
            problems.append(
                Problem(
                    "empty-annotations",
                    ann_dir,
                    f"all {len(labelled)} annotations hold no objects: this folder is read "
                    "as unlabelled images (images with empty annotations are labelled all "
                    "background only where other images of the folder have objects)",
                )  # fmt: skip
            )
            samples = [Sample(s.name, s.image_path, None) for s in samples]
        return samples

    @staticmethod
    def _is_empty(ann: Path) -> bool:
        data = _read_json(ann)
        return not (isinstance(data, dict) and data.get("objects"))

    def read_raw(self, sample: Sample) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
        import cv2

        path = sample.label_path
        assert path is not None
        ann = _read_json(path)
        if not isinstance(ann, dict):
            raise DataError(path, "annotation is not a JSON object")
        size = ann.get("size") or {}
        try:
            h, w = int(size["height"]), int(size["width"])
        except (KeyError, TypeError, ValueError):
            from synth2real.data.io import image_size

            h, w = image_size(sample.image_path)
        dtype = np.uint8 if len(self.titles) < 255 else np.uint16
        raw = np.zeros((h, w), dtype)
        notes: list[str] = []
        for k, obj in enumerate(ann.get("objects") or []):
            title = obj.get("classTitle")
            rid = self.titles.get(title)
            if rid is None and isinstance(title, str) and title.strip().lower() == "background":
                rid = 0
            if rid is None:
                raise DataError(
                    path,
                    f"object {k} has class {title!r}, which is not in meta.json "
                    f"(classes: {list(self.titles)[1:]})",
                )
            geo = obj.get("geometryType")
            mask = np.zeros((h, w), np.uint8)
            if geo in ("bitmap", "alpha_mask"):
                bm = obj.get(geo) or obj.get("bitmap") or {}
                m = _bitmap_mask(bm.get("data", ""), path)
                ox, oy = (int(v) for v in bm.get("origin", [0, 0]))
                y0, x0 = max(oy, 0), max(ox, 0)
                y1, x1 = min(oy + m.shape[0], h), min(ox + m.shape[1], w)
                if y1 > y0 and x1 > x0:
                    mask[y0:y1, x0:x1] = m[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
                if (oy < 0 or ox < 0 or oy + m.shape[0] > h or ox + m.shape[1] > w) and m.any():
                    notes.append(f"object {k} ({title}) reaches outside the image; clipped")
            elif geo == "polygon":
                pts = obj.get("points") or {}
                ext = np.round(np.asarray(pts.get("exterior", []), np.float64)).astype(np.int32)
                if len(ext) >= 3:
                    # one fillPoly call with the holes, as the Supervisely SDK draws it:
                    # the pixels inside a hole stay empty, the hole's outline is drawn
                    polys = [ext.reshape(-1, 1, 2)]
                    for hole in pts.get("interior", []) or []:
                        hp = np.round(np.asarray(hole, np.float64)).astype(np.int32)
                        if len(hp) >= 3:
                            polys.append(hp.reshape(-1, 1, 2))
                    cv2.fillPoly(mask, polys, 1)
                else:
                    notes.append(f"object {k} ({title}): polygon with fewer than 3 points skipped")
            elif geo == "rectangle":
                ext = (obj.get("points") or {}).get("exterior", [])
                if len(ext) == 2:
                    (xa, ya), (xb, yb) = ext
                    xa, xb = sorted((int(round(xa)), int(round(xb))))
                    ya, yb = sorted((int(round(ya)), int(round(yb))))
                    mask[max(ya, 0) : max(yb + 1, 0), max(xa, 0) : max(xb + 1, 0)] = 1
            else:
                notes.append(f"object {k} ({title}): geometry {geo!r} has no area; skipped")
                continue
            raw[mask.astype(bool)] = rid
        return raw, None, notes


# -- camvid --------------------------------------------------------------------------------
_CAMVID_LABEL_SUFFIXES = ("_labels", "annot")


class CamVidDataset(_Reader):
    """CamVid-style split folders: ``<split>/`` images with ``<split>_labels/`` or
    ``<split>annot/`` labels (split = train, val, test, ...), or ``images/`` + ``labels/``.

    Labels are index PNGs of the 11 SegNet CamVid classes (id 11 = void -> ignored), or,
    when ``class_dict.csv`` (``name,r,g,b``) sits in the root, colour PNGs of its classes
    (a class named ``void`` is ignored). Label files may carry an ``_L`` suffix
    (``0001TP_006690_L.png``). Open the root (names ``<split>/<name>`` when there are
    several splits) or one split folder.
    """

    format = "camvid"

    @staticmethod
    def _split_pairs(path: Path) -> list[tuple[Path, Path]]:
        pairs = []
        for suffix in _CAMVID_LABEL_SUFFIXES:
            if path.name.endswith(suffix):
                continue
            cand = path.parent / (path.name + suffix)
            if cand.is_dir():
                return [(path, cand)]
        for d in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for suffix in _CAMVID_LABEL_SUFFIXES:
                if (path / (d.name + suffix)).is_dir() and not d.name.endswith(suffix):
                    pairs.append((d, path / (d.name + suffix)))
                    break
        if not pairs and (path / "images").is_dir():
            pairs = [(path / "images", path / "labels")]
        return pairs

    @classmethod
    def detect(cls, path: Path) -> bool:
        if (path / "images").is_dir():
            return (path / "class_dict.csv").is_file()
        return bool(cls._split_pairs(path))

    @classmethod
    def open(cls, path: Path, classes: ClassSpec | None, class_map: ClassMap | None) -> Dataset:
        pairs = cls._split_pairs(path)
        if not pairs:
            raise DataError(path, "not a CamVid folder: no <split>/ + <split>_labels/ folders")
        problems: list[Problem] = []
        samples: list[Sample] = []
        multi = len(pairs) > 1
        for img_dir, lab_dir in pairs:
            images = _index_files(img_dir, IMAGE_EXTENSIONS, "image", problems=problems)
            labels = (
                _index_files(lab_dir, LABEL_EXTENSIONS, "label", strip="_L", problems=problems,
                             lossy_labels=True)
                if lab_dir.is_dir() else {}
            )  # fmt: skip
            prefix = img_dir.name + "/" if multi else ""
            for s in _pair(images, labels, problems, lab_dir):
                samples.append(Sample(prefix + s.name, s.image_path, s.label_path))
        if not samples:
            raise _no_images(path, pairs[0][0])
        root = pairs[0][0].parent
        class_dict = next(
            (f for f in (path / "class_dict.csv", root / "class_dict.csv") if f.is_file()), None
        )
        if classes is not None:
            spec, vocab_spec = classes, classes
            decoder = spec_decoder(classes)
        elif class_dict is not None:
            spec, decoder = cls._class_dict(class_dict)
            vocab_spec = spec
        else:
            spec, vocab_spec = CAMVID, CAMVID
            lut = np.full(MAX_RAW_ID + 1, -1, np.int16)
            lut[:11] = np.arange(11)
            lut[11] = lut[255] = 255
            decoder = LabelDecoder(lut, describe="the 11 CamVid classes (0..10, 11 = void)")
        vocab = Vocabulary.from_spec(vocab_spec)
        if class_dict is not None and classes is None:
            vocab = cls._class_dict_vocab(class_dict)
        if class_map is not None:
            decoder, notes = class_map.decoder(vocab)
            spec = class_map.classes
            problems += [Problem("class-map", class_map.source, n) for n in notes]
        ds = cls(path, samples, spec, problems)
        ds.decoder = decoder
        return ds

    @staticmethod
    def _class_dict_rows(f: Path) -> list[tuple[str, tuple[int, int, int]]]:
        import csv

        rows = []
        try:
            with open(f, newline="", encoding="utf-8") as fh:
                for i, row in enumerate(csv.reader(fh)):
                    if not row or (i == 0 and not row[1].strip().isdigit()):
                        continue
                    name, r, g, b = row[0].strip(), *(int(v) for v in row[1:4])
                    rows.append((name, (r, g, b)))
        except (ValueError, IndexError, OSError) as e:
            raise DataError(
                f, f"cannot read class_dict.csv (expected name,r,g,b rows: {e})"
            ) from None
        if not rows:
            raise DataError(f, "class_dict.csv lists no classes")
        return rows

    @classmethod
    def _class_dict(cls, f: Path) -> tuple[ClassSpec, LabelDecoder]:
        rows = cls._class_dict_rows(f)
        keep = [(n, c) for n, c in rows if n.lower() not in ("void", "unlabelled", "unlabeled")]
        spec = ClassSpec(names=tuple(n for n, _ in keep), colors=tuple(c for _, c in keep))
        colors = {c: i for i, (_, c) in enumerate(keep)}
        for n, c in rows:
            if n.lower() in ("void", "unlabelled", "unlabeled"):
                colors[c] = spec.ignore_index
        return spec, LabelDecoder(None, colors, describe=f"the classes of {f.name}")

    @classmethod
    def _class_dict_vocab(cls, f: Path) -> Vocabulary:
        rows = cls._class_dict_rows(f)
        return Vocabulary(
            names={i: n for i, (n, _) in enumerate(rows)},
            colors={c: i for i, (_, c) in enumerate(rows)},
        )


# -- plain images --------------------------------------------------------------------------
class ImageFolderDataset(_Reader):
    """Any folder of images (nested folders fine), without labels: unlabelled references.

    When the folder holds ``images/``, only that subfolder is read. Classes are those
    given, or ``classes.yaml`` of the folder, or a one-class stand-in (``unknown``).
    """

    format = "images"

    @classmethod
    def detect(cls, path: Path) -> bool:
        return any(f.suffix.lower() in IMAGE_EXTENSIONS for f in _walk_files(path))

    @classmethod
    def open(cls, path: Path, classes: ClassSpec | None, class_map: ClassMap | None) -> Dataset:
        base = path / "images" if (path / "images").is_dir() else path
        problems: list[Problem] = []
        images = _index_files(base, IMAGE_EXTENSIONS, "image", problems=problems)
        if not images:
            raise _no_images(path, base)
        if class_map is not None:
            spec = class_map.classes
        else:
            spec_file = None if classes is not None else _find_spec_file(path)
            spec = classes or (load_class_spec(spec_file) if spec_file else UNKNOWN_CLASSES)
        return cls(path, [Sample(n, p, None) for n, p in sorted(images.items())], spec, problems)


# -- entry points --------------------------------------------------------------------------
READERS: dict[str, type[_Reader]] = {
    "generic": GenericDataset,
    "supervisely": SuperviselyDataset,
    "cityscapes": CityscapesDataset,
    "gta5": GTA5Dataset,
    "camvid": CamVidDataset,
    "images": ImageFolderDataset,
}
#: detection order: specific markers first, plain image folders last
_DETECT_ORDER = ("cityscapes", "supervisely", "camvid", "gta5", "generic", "images")


def _check_folder(path: Path) -> None:
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
    _check_folder(path)
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
    _check_folder(path)
    if format is None:
        format = detect_format(path)
    fmt = format.lower()
    if fmt not in READERS:
        raise ConfigError(f"unknown dataset format {format!r}; choose one of {list(FORMATS)}")
    spec = _as_spec(classes)
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
