"""Label maps drawn for people: colour overlays and palette PNGs (pure numpy + Pillow).

One rule for every overlay (the pilot report's label thumbnails, ``evaluate
--save-predictions``): a class is drawn in its palette colour, blended over the image at
``alpha``, **unless its colour is black** (``(0, 0, 0)``, usually the background, so
thin classes stay visible on an untouched image); pixels whose index lies outside the
palette (``ignore_index``) are left as they are too.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

Color = tuple[int, int, int]


def overlay(
    image: np.ndarray, label: np.ndarray, palette: Sequence[Color], alpha: float = 0.5
) -> np.ndarray:
    """``label`` (``HxW`` class indices) drawn over ``image`` (``HxWx3 uint8``): see the
    module docstring for what is drawn. Returns ``HxWx3 uint8``."""
    pal = np.asarray(palette, dtype=np.float32).reshape(-1, 3)
    inside = label < len(pal)
    colour = pal[np.where(inside, label, 0)]
    draw = inside & (colour.sum(axis=2) > 0)
    out = image.astype(np.float32)
    out[draw] = (1 - alpha) * out[draw] + alpha * colour[draw]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def mask_png(mask: np.ndarray, palette: Sequence[Color]) -> bytes:
    """``mask`` (``HxW`` class indices) as an indexed PNG coloured with ``palette``."""
    from PIL import Image

    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    im = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.tobytes())
    flat = [v for c in palette for v in c]
    im.putpalette(flat + [0, 0, 0] * (256 - len(palette)))
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
