"""Tiny on-disk datasets for the writer / translate tests (generic and Supervisely layouts)."""

from __future__ import annotations

import base64
import io
import json
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from tests.methods.scenes import scene

CLASSES_YAML = "names: [background, road, crack]\nignore_index: 255\n"


def write_generic(
    root: Path, sizes, seed: int = 0, tint=(0, 0, 0), labels: bool = True, nested: bool = False
) -> Path:
    """``root/images/*.png`` (+ ``labels/*.png`` index PNGs, ``classes.yaml``)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    if labels:
        (root / "labels").mkdir(parents=True, exist_ok=True)
        (root / "classes.yaml").write_text(CLASSES_YAML)
    for i, (h, w) in enumerate(sizes):
        img, lab = scene(h, w, seed + i, tint=tint)
        name = f"sub/img {i:02d}" if nested and i % 2 else f"img{i:02d}"
        (root / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / "images" / f"{name}.png")
        if labels:
            (root / "labels" / name).parent.mkdir(parents=True, exist_ok=True)
            lab = lab.copy()
            lab[:2, :2] = 255  # a few ignored pixels
            Image.fromarray(lab).save(root / "labels" / f"{name}.png")
    return root


def _bitmap(mask: np.ndarray) -> dict:
    ys, xs = np.nonzero(mask)
    y0, x0 = int(ys.min()), int(xs.min())
    crop = mask[y0 : ys.max() + 1, x0 : xs.max() + 1]
    buf = io.BytesIO()
    Image.fromarray((crop * 255).astype(np.uint8)).save(buf, format="PNG")
    return {"data": base64.b64encode(zlib.compress(buf.getvalue())).decode(), "origin": [x0, y0]}


def write_supervisely(root: Path, sizes, seed: int = 0, meta_in_parent: bool = True) -> Path:
    """A Supervisely dataset folder ``root`` (img/, ann/) with ``meta.json`` in its parent."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    (root / "ann").mkdir(parents=True, exist_ok=True)
    meta = {
        "classes": [
            {"title": "road", "shape": "bitmap", "color": "#808080"},
            {"title": "crack", "shape": "bitmap", "color": "#07FF00"},
        ],
        "tags": [],
    }
    (root.parent if meta_in_parent else root).joinpath("meta.json").write_text(json.dumps(meta))
    for i, (h, w) in enumerate(sizes):
        img, lab = scene(h, w, seed + i)
        name = f"photo {i:02d}.jpg"
        Image.fromarray(img).save(root / "img" / name, quality=95)
        objects = [
            {"classTitle": title, "geometryType": "bitmap", "bitmap": _bitmap(lab == c)}
            for c, title in ((1, "road"), (2, "crack"))
            if (lab == c).any()
        ]
        ann = {"size": {"height": h, "width": w}, "objects": objects, "tags": []}
        (root / "ann" / f"{name}.json").write_text(json.dumps(ann))
    return root
