"""Helpers for the data-layer tests: tiny datasets written in code."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def tree_digest(root: Path) -> dict[str, str]:
    """``relative path -> sha256`` of every file under ``root`` (and the folder list)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "<dir>"
    return out


def save_png(path: Path, array: np.ndarray, mode: str | None = None, palette=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "P":
        im = Image.frombytes(
            "P", (array.shape[1], array.shape[0]), array.astype(np.uint8).tobytes()
        )
        pal = [v for c in (palette or []) for v in c]
        im.putpalette(pal + [0] * (768 - len(pal)))
    elif array.dtype == np.uint16:
        im = Image.fromarray(array)  # 16-bit grayscale
    else:
        im = Image.fromarray(array, mode=mode) if mode else Image.fromarray(array)
    im.save(path)
    return path


def save_jpeg(path: Path, array: np.ndarray, orientation: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(array)
    kw = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    im.save(path, format="JPEG", quality=95, **kw)
    return path


def rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def make_generic(
    root: Path,
    n: int = 3,
    h: int = 6,
    w: int = 8,
    classes: int = 3,
    spec: bool = True,
    colors: bool = False,
) -> Path:
    """``root/images/s{i}.png`` + ``root/labels/s{i}.png`` index labels (+ classes.yaml)."""
    from synth2real.data.classes import ClassSpec, save_class_spec

    names = tuple(f"c{i}" for i in range(classes))
    cols = tuple((40 * i, 255 - 40 * i, 10 * i) for i in range(classes)) if colors else None
    for i in range(n):
        save_png(root / "images" / f"s{i}.png", rgb(h, w, i))
        lab = (np.arange(h * w).reshape(h, w) + i) % classes
        if colors:
            save_png(root / "labels" / f"s{i}.png", np.array(cols, np.uint8)[lab])
        else:
            save_png(root / "labels" / f"s{i}.png", lab.astype(np.uint8))
    if spec:
        save_class_spec(ClassSpec(names, colors=cols), root / "classes.yaml")
    return root


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def bitmap_object(mask: np.ndarray, origin) -> dict:
    """A Supervisely ``bitmap`` field: base64 of zlib of a PNG of ``mask`` at ``origin``."""
    png = png_bytes((mask > 0).astype(np.uint8) * 255)
    return {"data": base64.b64encode(zlib.compress(png)).decode(), "origin": list(origin)}


def make_supervisely(root: Path, *, with_meta: bool = True, meta_in_parent: bool = False) -> Path:
    """``root/ds0`` with ``img/`` + ``ann/``: image ``a b é`` (a polygon with a hole, a bitmap
    drawn over it, a point) and ``empty`` (no objects); classes ``cracks``, ``plate``."""
    ds = root / "ds0"
    (ds / "img").mkdir(parents=True)
    (ds / "ann").mkdir()
    meta = {
        "classes": [
            {"title": "cracks", "shape": "bitmap", "color": "#07FF00"},
            {"title": "plate", "shape": "polygon", "color": "#0000FF"},
        ]
    }
    if with_meta:
        (root if meta_in_parent else ds).joinpath("meta.json").write_text(json.dumps(meta))
    save_jpeg(ds / "img" / "a b é.jpg", rgb(10, 12))
    m = np.zeros((3, 4), np.uint8)
    m[1, :] = 1
    ann = {
        "size": {"height": 10, "width": 12},
        "objects": [
            {  # square polygon with a square hole
                "classTitle": "plate", "geometryType": "polygon",
                "points": {
                    "exterior": [[1, 1], [8, 1], [8, 8], [1, 8]],
                    "interior": [[[3, 3], [6, 3], [6, 6], [3, 6]]],
                },
            },
            {"classTitle": "cracks", "geometryType": "bitmap", "bitmap": bitmap_object(m, [2, 4])},
            {"classTitle": "plate", "geometryType": "point", "points": {"exterior": [[0, 0]]}},
        ],
    }  # fmt: skip
    (ds / "ann" / "a b é.jpg.json").write_text(json.dumps(ann), encoding="utf-8")
    save_jpeg(ds / "img" / "empty.jpg", rgb(10, 12, 1))
    (ds / "ann" / "empty.jpg.json").write_text(
        json.dumps({"size": {"height": 10, "width": 12}, "objects": []})
    )
    return ds
