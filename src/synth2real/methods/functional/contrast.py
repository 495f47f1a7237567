"""Local contrast of a class against its surroundings (the ring maths of the
contrast-preserving ``-cwc`` variants), on arrays.

The conventions are those of :mod:`synth2real.methods.functional`.
"""

from __future__ import annotations

import cv2
import numpy as np


def thin_fraction(label: np.ndarray, cls: int, radius: int) -> tuple[int, int]:
    """``(pixels of cls within radius of another value, pixels of cls)``.

    A class is *thin* (cracks, wires, poles, lane marks) when most of its pixels lie close
    to its boundary: an erosion with a ``(2r+1)`` square removes them.
    """
    mask = (label == cls).view(np.uint8)
    n = int(np.count_nonzero(mask))
    if n == 0:
        return 0, 0
    k = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    core = cv2.erode(mask, k, borderType=cv2.BORDER_REPLICATE)
    return n - int(np.count_nonzero(core)), n


def context_sums(x: np.ndarray, context: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum of ``x`` and count over the ``context`` pixels of each ``(2r+1)`` square window.

    Args:
        x: ``HxWxC float32``.
        context: ``HxW bool``, the pixels allowed to count as surroundings.
        radius: half-size ``r`` of the square window, in pixels.

    Returns:
        ``(sums HxWxC float32, counts HxW float32)``. Pixels outside the image do not count
        (zero padding). Divide only where needed: the mean is ``sums / counts``.
    """
    ksize = (2 * radius + 1, 2 * radius + 1)
    w = context.astype(np.float32)
    kw = dict(ddepth=-1, ksize=ksize, normalize=False, borderType=cv2.BORDER_CONSTANT)
    xw = np.multiply(x, w[..., None])
    num = cv2.boxFilter(xw, **kw).reshape(x.shape)
    den = cv2.boxFilter(w, **kw)
    return num, den


def context_mean(x: np.ndarray, context: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``x`` over the ``context`` pixels of each pixel's ``(2r+1)`` window.

    Returns ``(mean HxWxC float32, count HxW float32)``; ``mean`` is 0 where ``count`` is 0.
    """
    num, den = context_sums(x, context, radius)
    ok = den > 0.5
    mean = np.zeros_like(num)
    mean[ok] = num[ok] / den[ok][:, None]
    return mean, den


def _bbox(mask: np.ndarray, pad: int) -> tuple[slice, slice] | None:
    rows = np.flatnonzero(mask.any(1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(0))
    h, w = mask.shape
    return (
        slice(max(rows[0] - pad, 0), min(rows[-1] + pad + 1, h)),
        slice(max(cols[0] - pad, 0), min(cols[-1] + pad + 1, w)),
    )


def class_contrast(
    x: np.ndarray, label: np.ndarray, cls: int, radius: int
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]] | None:
    """Each pixel of class ``cls`` minus the mean of its surroundings.

    The surroundings of a pixel are the pixels of *other* values (any class, or no class)
    inside its ``(2r+1)`` square window: the dilated ring around the class, seen locally.

    Returns:
        ``(d, ctx, where)`` with ``where`` a ``(rows, cols)`` index tuple of the class
        pixels that have surroundings, ``d`` and ``ctx`` ``(N, C) float32`` at those
        pixels; ``None`` when the class is absent. Only the class's bounding box (padded
        by ``r``) is filtered, and the means are divided out at the class pixels only.
    """
    mask = label == cls
    box = _bbox(mask, radius)
    if box is None:
        return None
    xs, ms = x[box], mask[box]
    num, den = context_sums(xs, ~ms, radius)
    sel = ms & (den > 0.5)
    rr, cc = np.nonzero(sel)
    ctx = num[rr, cc] / den[rr, cc][:, None]
    where = (rr + box[0].start, cc + box[1].start)
    return xs[rr, cc] - ctx, ctx, where


def context_at(
    x: np.ndarray, label: np.ndarray, cls: int, radius: int, where: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Surroundings mean of ``x`` (as in :func:`class_contrast`) at the pixels ``where``."""
    mask = label == cls
    box = _bbox(mask, radius)
    if box is None:
        raise ValueError(f"class {cls} is absent from the label map")
    num, den = context_sums(x[box], ~mask[box], radius)
    rr, cc = where[0] - box[0].start, where[1] - box[1].start
    return num[rr, cc] / den[rr, cc][:, None]
