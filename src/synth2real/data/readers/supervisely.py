"""Supervisely projects: ``img/NAME`` + ``ann/NAME.json``, classes from ``meta.json``.

Objects are drawn into a raw id map (0 = background, then the meta classes in order).
Every malformed part of an annotation (its ``size``, an object that is not a JSON
object, points that are not number pairs, a bitmap ``origin`` that is not ``[x, y]``)
raises a :class:`~synth2real.errors.DataError` naming the annotation file; objects that
reach outside the image are clipped and say so in a note.
"""

from __future__ import annotations

import base64
import io
import json
import math
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from synth2real.data.classes import ClassSpec, default_color
from synth2real.data.classmap import MAX_RAW_ID, ClassMap, LabelDecoder, Vocabulary, spec_decoder
from synth2real.data.dataset import Dataset, Problem, Sample
from synth2real.data.io import IMAGE_EXTENSIONS, check_pixel_count, image_size, open_image
from synth2real.data.readers.base import (
    Reader,
    index_files,
    map_decoder,
    no_images_error,
    walk_files,
)
from synth2real.errors import DataError

#: decoded label maps are uint8 with 255 = ignore: at most 255 classes (0..254)
MAX_CLASSES = 255
#: polygon coordinates beyond this many pixels from the origin are clipped (exactly, in
#: float64) before they are rounded to OpenCV's int32 points
COORD_LIMIT = 2.0**24


# -- annotation files ----------------------------------------------------------------------
def _read_json(path: Path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(path, f"not valid JSON ({e})") from None
    except RecursionError:
        raise DataError(path, "not valid JSON (nested too deeply)") from None
    except OSError as e:
        raise DataError(path, f"cannot read ({e})") from None


def _load_annotation(path: Path) -> dict:
    """An annotation file's JSON object (its ``objects`` checked by :func:`_objects`)."""
    ann = _read_json(path)
    if not isinstance(ann, dict):
        raise DataError(
            path, f"annotation is not a JSON object (found a JSON {type(ann).__name__})"
        )
    return ann


def _objects(ann: dict, path: Path) -> list[dict]:
    """The ``objects`` list of an annotation (missing or null: none)."""
    objs = ann.get("objects")
    if objs is None:
        return []
    if not isinstance(objs, list):
        raise DataError(path, f"'objects' must be a list, found {_short(objs)}")
    for k, obj in enumerate(objs):
        if not isinstance(obj, dict):
            raise DataError(path, f"object {k} is not a JSON object: {_short(obj)}")
    return objs


def _short(value, limit: int = 60) -> str:
    s = repr(value)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _positive_int(value) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value) or value != int(value) or value < 1:
        return None
    return int(value)


def _annotation_size(ann: dict, path: Path, image: Path) -> tuple[int, int]:
    """``(height, width)`` from the annotation's ``size``, or the image's when absent."""
    size = ann.get("size")
    if size is None:
        return image_size(image)
    h = _positive_int(size.get("height")) if isinstance(size, dict) else None
    w = _positive_int(size.get("width")) if isinstance(size, dict) else None
    if h is None or w is None:
        raise DataError(
            path, f"'size' must hold a positive integer height and width, found {_short(size)}"
        )
    check_pixel_count(path, w, h)
    return h, w


def _hex(c: str) -> tuple[int, int, int] | None:
    try:
        c = c.lstrip("#")
        return (int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16))
    except (ValueError, AttributeError, IndexError):
        return None


# -- geometry ------------------------------------------------------------------------------
def _points(value, path: Path, what: str) -> np.ndarray:
    """``[[x, y], ...]`` -> ``(N, 2) float64``; anything else is an error naming ``path``."""
    try:
        arr = np.asarray(value if value is not None else [])
    except (ValueError, TypeError):
        arr = None
    if arr is not None and arr.size == 0:
        return np.zeros((0, 2))
    if (
        arr is None
        or arr.dtype.kind not in "iuf"
        or arr.ndim != 2
        or arr.shape[1] != 2
        or not np.isfinite(arr).all()
    ):
        raise DataError(path, f"{what}: points must be [x, y] number pairs, found {_short(value)}")
    return arr.astype(np.float64)


def _clip_ring(ring: np.ndarray, limit: float) -> np.ndarray:
    """The closed polygon ``ring`` clipped to the square ``[-limit, limit]^2``
    (Sutherland-Hodgman; the square is convex, so the area inside it is unchanged)."""
    out = ring
    for axis in (0, 1):
        for sign in (1.0, -1.0):
            if len(out) == 0:
                return out
            pts = []
            prev = out[-1]
            prev_in = sign * prev[axis] <= limit
            for cur in out:
                cur_in = sign * cur[axis] <= limit
                if cur_in != prev_in:
                    t = (sign * limit - prev[axis]) / (cur[axis] - prev[axis])
                    pts.append(prev + t * (cur - prev))
                if cur_in:
                    pts.append(cur)
                prev, prev_in = cur, cur_in
            out = np.array(pts).reshape(-1, 2)
    return out


def _int_ring(ring: np.ndarray) -> np.ndarray:
    """Rounded OpenCV points of a ring; far coordinates are clipped first (exactly)."""
    if len(ring) and np.abs(ring).max() > COORD_LIMIT:
        ring = _clip_ring(ring, COORD_LIMIT)
    return np.round(ring).astype(np.int32).reshape(-1, 1, 2)


def _outside(ring: np.ndarray, h: int, w: int) -> bool:
    """True when a rounded vertex of ``ring`` lies outside the image's pixels."""
    r = np.round(ring)
    return bool((r[:, 0] < 0).any() or (r[:, 0] > w - 1).any() or (r[:, 1] < 0).any()
                or (r[:, 1] > h - 1).any())  # fmt: skip


def _bitmap_mask(data, where: Path, what: str) -> np.ndarray:
    """Supervisely ``bitmap.data`` (base64 of zlib of a PNG) -> ``hxw bool``."""
    if not isinstance(data, str):
        raise DataError(where, f"{what}: bitmap 'data' must be a base64 string")
    try:
        png = zlib.decompress(base64.b64decode(data))
    except (ValueError, zlib.error) as e:
        raise DataError(where, f"{what}: unreadable bitmap ({e})") from None
    im = open_image(io.BytesIO(png), where, what=f"{what}: bitmap")
    if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        return np.asarray(im.convert("RGBA"))[..., 3] > 0
    return np.asarray(im.convert("L")) > 0


def _draw_bitmap(obj: dict, geo: str, mask: np.ndarray, path: Path, what: str) -> bool:
    """Draw a bitmap object into ``mask``; True when it reaches outside the image."""
    bm = obj.get(geo) or obj.get("bitmap") or {}
    if not isinstance(bm, dict):
        raise DataError(path, f"{what}: '{geo}' must be a JSON object, found {_short(bm)}")
    m = _bitmap_mask(bm.get("data", ""), path, what)
    origin = bm.get("origin", [0, 0])
    if (
        not isinstance(origin, (list, tuple))
        or len(origin) != 2
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in origin)
        or not np.isfinite(origin).all()
    ):
        raise DataError(path, f"{what}: bitmap 'origin' must be [x, y], found {_short(origin)}")
    ox, oy = (int(v) for v in origin)
    h, w = mask.shape
    y0, x0 = max(oy, 0), max(ox, 0)
    y1, x1 = min(oy + m.shape[0], h), min(ox + m.shape[1], w)
    if y1 > y0 and x1 > x0:
        mask[y0:y1, x0:x1] = m[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    return bool((oy < 0 or ox < 0 or oy + m.shape[0] > h or ox + m.shape[1] > w) and m.any())


def _draw_polygon(obj: dict, mask: np.ndarray, path: Path, what: str) -> bool | None:
    """Draw a polygon (exterior minus holes) into ``mask``; True when it reaches outside
    the image, ``None`` when it has fewer than 3 points."""
    import cv2

    pts = obj.get("points") or {}
    if not isinstance(pts, dict):
        raise DataError(path, f"{what}: 'points' must be a JSON object, found {_short(pts)}")
    ext = _points(pts.get("exterior"), path, f"{what} exterior")
    if len(ext) < 3:
        return None
    # one fillPoly call with the holes, as the Supervisely SDK draws it: the pixels
    # inside a hole stay empty, the hole's outline is drawn
    polys = [_int_ring(ext)]
    holes = pts.get("interior") or []
    if not isinstance(holes, list):
        raise DataError(path, f"{what}: 'interior' must be a list of rings, found {_short(holes)}")
    for i, hole in enumerate(holes):
        hp = _points(hole, path, f"{what} interior {i}")
        if len(hp) >= 3:
            polys.append(_int_ring(hp))
    cv2.fillPoly(mask, polys, 1)
    h, w = mask.shape
    return _outside(ext, h, w)


def _draw_rectangle(obj: dict, mask: np.ndarray, path: Path, what: str) -> bool:
    """Draw a rectangle (two corners) into ``mask``; True when it reaches outside."""
    pts = obj.get("points") or {}
    if not isinstance(pts, dict):
        raise DataError(path, f"{what}: 'points' must be a JSON object, found {_short(pts)}")
    ext = _points(pts.get("exterior"), path, f"{what} exterior")
    if len(ext) != 2:
        return False
    (xa, ya), (xb, yb) = np.round(ext).tolist()
    xa, xb = sorted((int(xa), int(xb)))
    ya, yb = sorted((int(ya), int(yb)))
    mask[max(ya, 0) : max(yb + 1, 0), max(xa, 0) : max(xb + 1, 0)] = 1
    h, w = mask.shape
    return _outside(ext, h, w)


class SuperviselyDataset(Reader):
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
            raise no_images_error(path, dirs[0] / "img")
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
        elif class_map is not None:
            ds_classes, decoder, notes = map_decoder(class_map, vocab)
            problems += notes
        else:
            if len(titles) > MAX_CLASSES:
                raise DataError(
                    meta_file or path,
                    f"{len(titles)} classes (background included); decoded label maps hold at "
                    f"most {MAX_CLASSES} classes (uint8, 255 = ignore): map them onto fewer "
                    "with a class map (--class-map)",
                )
            spec = ClassSpec(names=tuple(titles), colors=tuple(colors))
            ds_classes, decoder = spec, spec_decoder(spec)
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
            for o in _objects(_load_annotation(s.label_path), s.label_path):
                t = o.get("classTitle")
                if isinstance(t, str) and t not in titles and t.lower() != "background":
                    titles.append(t)
        return titles, [default_color(i) for i in range(len(titles))]

    @classmethod
    def _read_folder(cls, folder: Path, prefix: str, problems: list[Problem]) -> list[Sample]:
        img_dir, ann_dir = folder / "img", folder / "ann"
        images = index_files(img_dir, IMAGE_EXTENSIONS, "image", problems=problems)
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
        for f in walk_files(ann_dir):
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
        return not _objects(_load_annotation(ann), ann)

    def read_raw(self, sample: Sample) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
        path = sample.label_path
        assert path is not None
        ann = _load_annotation(path)
        h, w = _annotation_size(ann, path, sample.image_path)
        dtype = np.uint8 if len(self.titles) < 255 else np.uint16
        raw = np.zeros((h, w), dtype)
        notes: list[str] = []
        for k, obj in enumerate(_objects(ann, path)):
            title = obj.get("classTitle")
            rid = self.titles.get(title) if isinstance(title, str) else None
            if rid is None and isinstance(title, str) and title.strip().lower() == "background":
                rid = 0
            if rid is None:
                raise DataError(
                    path,
                    f"object {k} has class {_short(title)}, which is not in meta.json "
                    f"(classes: {list(self.titles)[1:]})",
                )
            what = f"object {k} ({title})"
            geo = obj.get("geometryType")
            mask = np.zeros((h, w), np.uint8)
            if geo in ("bitmap", "alpha_mask"):
                outside = _draw_bitmap(obj, geo, mask, path, what)
            elif geo == "polygon":
                outside = _draw_polygon(obj, mask, path, what)
                if outside is None:
                    notes.append(f"{what}: polygon with fewer than 3 points skipped")
                    continue
            elif geo == "rectangle":
                outside = _draw_rectangle(obj, mask, path, what)
            else:
                notes.append(f"{what}: geometry {_short(geo)} has no area; skipped")
                continue
            drawn = mask.astype(bool)
            if not drawn.any() and outside:
                notes.append(f"{what} lies outside the image ({h}x{w}); nothing drawn")
            elif outside:
                notes.append(f"{what} reaches outside the image; clipped")
            raw[drawn] = rid
        return raw, None, notes
