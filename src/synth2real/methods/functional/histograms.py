"""Per-class histograms, CDF matching (global and class-wise) and rank mapping onto a
weighted distribution, on arrays.

The conventions are those of :mod:`synth2real.methods.functional`.
"""

from __future__ import annotations

import cv2
import numpy as np

from synth2real.methods.functional.colour import NUM_SLOTS


def class_histograms(
    image: np.ndarray, label: np.ndarray | None, weight: float = 1.0
) -> np.ndarray:
    """Per-label-value, per-channel histograms: ``(256, C, 256)`` float64, pixels weighing ``weight``.

    One 2-D ``cv2.calcHist`` of ``(label, value)`` per channel builds every class's
    histogram at once, whatever the number of classes (about 5x faster than ``bincount``
    of ``label * 256 + value``). With ``label=None`` all pixels count under label value 0.
    Counts are exact up to 2**24 pixels of one colour in one class.
    """
    c = image.shape[2]
    out = np.zeros((NUM_SLOTS, c, 256), dtype=np.float64)
    channels = cv2.split(image)
    for k in range(c):
        if label is None:
            out[0, k] = cv2.calcHist([channels[k]], [0], None, [256], [0, 256]).reshape(-1)
        else:
            out[:, k] = cv2.calcHist(
                [label, channels[k]], [0, 1], None, [256, 256], [0, 256, 0, 256]
            )
    return out * weight if weight != 1.0 else out


def match_lut(src_hist: np.ndarray, ref_hist: np.ndarray) -> np.ndarray:
    """The ``0..255 -> 0..255`` lookup table taking histogram ``src_hist`` to ``ref_hist``.

    Classic CDF matching, as scikit-image and albumentations compute it: each source level
    ``v`` goes to the reference value at the quantile ``CDF_src(v)`` (upper end of ``v``'s
    bin), linearly interpolated between the reference's occupied levels, then *rounded*
    (albumentations truncates, which darkens by half a level on average).

    Args:
        src_hist, ref_hist: ``(256,)`` non-negative weights (any scale).

    Returns:
        ``(256,) uint8``; the identity when either histogram is empty.
    """
    s_tot, r_tot = src_hist.sum(), ref_hist.sum()
    if s_tot <= 0 or r_tot <= 0:
        return np.arange(256, dtype=np.uint8)
    src_q = np.cumsum(src_hist) / s_tot
    levels = np.flatnonzero(ref_hist > 0)
    ref_q = np.cumsum(ref_hist[levels]) / r_tot
    mapped = np.interp(src_q, ref_q, levels.astype(np.float64))
    return np.clip(np.rint(mapped), 0, 255).astype(np.uint8)


def apply_luts(image: np.ndarray, label: np.ndarray | None, luts: np.ndarray) -> np.ndarray:
    """Per-pixel lookup ``out[..., k] = luts[label, k, image[..., k]]``.

    Args:
        image: ``HxWxC uint8``.
        label: ``HxW uint8`` or ``None`` (then row 0 of ``luts`` is used everywhere).
        luts: ``(256, C, 256) uint8`` (or ``(1, C, 256)``) tables.
    """
    c = image.shape[2]
    if label is None or luts.shape[0] == 1:
        return np.stack([cv2.LUT(image[..., k], luts[0, k]) for k in range(c)], axis=2)
    base = label.astype(np.intp)
    base <<= 8
    idx = np.empty_like(base)
    outs = []
    for k, chan in enumerate(cv2.split(image)):
        np.add(base, chan, out=idx)
        outs.append(np.take(np.ascontiguousarray(luts[:, k, :]).reshape(-1), idx))
    return cv2.merge(outs)


def histogram_match(image: np.ndarray, ref_hist: np.ndarray) -> np.ndarray:
    """Global per-channel histogram matching of ``image`` to ``ref_hist`` (``(C, 256)``)."""
    src = class_histograms(image, None)[0]
    luts = np.stack([match_lut(src[k], ref_hist[k]) for k in range(image.shape[2])])[None]
    return apply_luts(image, None, luts)


def histogram_match_classwise(
    image: np.ndarray,
    label: np.ndarray,
    ref_hist: np.ndarray,
    ref_valid: np.ndarray,
    ref_global_hist: np.ndarray,
) -> np.ndarray:
    """Class-wise per-channel histogram matching.

    Args:
        image: ``HxWxC uint8``.
        label: ``HxW uint8`` label map.
        ref_hist: ``(256, C, 256)`` reference histograms per label value.
        ref_valid: ``(256,)`` bool, True where the references have the class.
        ref_global_hist: ``(C, 256)`` histogram of whole reference images.

    Pixels of classes missing from the references, and pixels of no class, get the global
    mapping (the image's own histogram -> ``ref_global_hist``).
    """
    c = image.shape[2]
    src = class_histograms(image, label)
    src_global = src.sum(0)
    global_luts = np.stack([match_lut(src_global[k], ref_global_hist[k]) for k in range(c)])
    luts = np.empty((NUM_SLOTS, c, 256), dtype=np.uint8)
    luts[:] = global_luts
    present = np.flatnonzero(ref_valid & (src.sum(axis=(1, 2)) > 0))
    for v in present:
        for k in range(c):
            luts[v, k] = match_lut(src[v, k], ref_hist[v, k])
    return apply_luts(image, label, luts)


def quantile_map(values: np.ndarray, ref_sorted: np.ndarray, ref_cdf: np.ndarray) -> np.ndarray:
    """Map ``values`` (``(N,)`` float) onto a weighted reference distribution by rank.

    Each value goes to the reference quantile at its mid-rank ``(rank + 0.5) / N``.
    ``ref_sorted`` are the reference values in ascending order, ``ref_cdf`` their
    mid-point cumulative weights in ``(0, 1)``.
    """
    n = values.shape[0]
    if n == 0:
        return values.copy()
    order = np.argsort(values, kind="stable")
    q = (np.arange(n, dtype=np.float64) + 0.5) / n
    out = np.empty(n, dtype=np.float64)
    out[order] = np.interp(q, ref_cdf, ref_sorted)
    return out


def weighted_distribution(values: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted values and mid-point CDF of a weighted sample (for :func:`quantile_map`)."""
    order = np.argsort(values, kind="stable")
    v = values[order].astype(np.float64)
    w = weights[order].astype(np.float64)
    cw = np.cumsum(w)
    total = cw[-1] if cw.size else 1.0
    return v, (cw - 0.5 * w) / total
