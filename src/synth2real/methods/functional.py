"""Pure array maths of the classical methods (no files, no classes, no state).

Conventions used by every function here:

- ``image``: ``HxWx3 uint8`` RGB.
- ``label``: ``HxW uint8`` class indices ``0..K-1``; any other value (the ignore index,
  stray ids) belongs to no class and is treated as "other".
- ``lab``: ``HxWx3 float32`` CIELAB as OpenCV computes it from float RGB in ``[0, 1]``
  (D65 white; ``L`` in ``[0, 100]``, ``a`` and ``b`` roughly in ``[-127, 127]``). We never
  use OpenCV's 8-bit LAB, whose quantisation (``L*255/100``, ``a+128``) costs up to half a
  level per channel and clips saturated colours.
- Per-class tables have 256 rows, one per possible label value, so that a label map can
  index them directly (no remapping pass). Rows of values that are not a class are filled
  by the caller with the global (whole-image) entry.
- Reference statistics are *pooled as if every reference had the same area*: a pixel of a
  reference with ``N`` pixels weighs ``1/N``. A 12-megapixel photo thus counts as much as
  a 0.3-megapixel one, and a class contributes in proportion to its share of each image.

The classes in the sibling modules hold parameters, validate them and prepare reference
statistics; the maths lives here so it can be tested on arrays alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import scipy.fft as sfft

NUM_SLOTS = 256  # one row per possible uint8 label value


# -- checks and conversions --------------------------------------------------------------
def check_image(image: np.ndarray, what: str = "image") -> np.ndarray:
    """Raise ``ValueError`` unless ``image`` is ``HxWx3 uint8``; returns it contiguous."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ValueError(f"{what}: expected an HxWx3 RGB array, got shape {shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"{what}: expected uint8, got {image.dtype}")
    return np.ascontiguousarray(image)


def check_label(label: np.ndarray, image: np.ndarray, what: str = "label") -> np.ndarray:
    """Raise ``ValueError`` unless ``label`` is ``HxW uint8`` of the image's size."""
    if not isinstance(label, np.ndarray) or label.shape != image.shape[:2]:
        raise ValueError(
            f"{what}: shape {getattr(label, 'shape', None)} differs from the image's {image.shape[:2]}"
        )
    if label.dtype != np.uint8:
        raise ValueError(f"{what}: expected uint8 class indices, got {label.dtype}")
    return np.ascontiguousarray(label)


_UNIT_LUT = np.arange(256, dtype=np.float32) / np.float32(255)


def rgb_to_lab(image: np.ndarray) -> np.ndarray:
    """``HxWx3 uint8`` RGB -> ``HxWx3 float32`` CIELAB (L 0..100)."""
    x = cv2.LUT(image, _UNIT_LUT)  # uint8 -> float32 in [0, 1] in one pass
    return cv2.cvtColor(x, cv2.COLOR_RGB2Lab, dst=x)


def rgb_to_lab_where(image: np.ndarray, where: np.ndarray) -> np.ndarray:
    """:func:`rgb_to_lab` of the pixels where ``where`` (``HxW bool``) is True; 0 elsewhere.

    The conversion is per pixel, so the values equal a full conversion's; converting a
    sparse region this way costs a fraction of the whole image. Falls back to the full
    conversion when the region covers most of the image.
    """
    idx = np.flatnonzero(where.reshape(-1))
    if idx.size > 0.6 * where.size:
        return rgb_to_lab(image)
    out = np.zeros(image.shape, np.float32)
    if idx.size:
        px = image.reshape(-1, 3)[idx].reshape(-1, 1, 3)
        out.reshape(-1, 3)[idx] = rgb_to_lab(px).reshape(-1, 3)
    return out


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """``HxWx3 float32`` CIELAB -> ``HxWx3 uint8`` RGB (out-of-gamut colours clipped)."""
    rgb = cv2.cvtColor(np.ascontiguousarray(lab, dtype=np.float32), cv2.COLOR_Lab2RGB)
    return unit_to_uint8(rgb)


def unit_to_uint8(x: np.ndarray) -> np.ndarray:
    """Float image in ``[0, 1]`` (values outside are clipped) -> ``uint8``, rounded.

    ``x`` is clipped below in place; ``cv2.convertScaleAbs`` then scales, rounds to
    nearest and saturates at 255 in one pass.
    """
    np.maximum(x, 0, out=x)
    return cv2.convertScaleAbs(x, alpha=255.0)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Round to nearest and clip to ``0..255``: the float -> uint8 path of values in 0..255."""
    if x.dtype != np.float32 or not x.flags.writeable:
        x = x.astype(np.float32)
    np.maximum(x, 0, out=x)
    return cv2.convertScaleAbs(x)


def blend(original: np.ndarray, transformed: np.ndarray, strength: float) -> np.ndarray:
    """``(1 - strength) * original + strength * transformed`` on uint8 images (rounded)."""
    if strength >= 1.0:
        return transformed
    if strength <= 0.0:
        return original.copy()
    return cv2.addWeighted(transformed, float(strength), original, 1.0 - float(strength), 0.0)


def to_colorspace(image: np.ndarray, color_space: str) -> np.ndarray:
    """``uint8`` RGB -> float32 working space: ``"lab"`` (CIELAB) or ``"rgb"`` (0..255)."""
    if color_space == "lab":
        return rgb_to_lab(image)
    if color_space == "rgb":
        return image.astype(np.float32)
    raise ValueError(f"unknown colour space {color_space!r} (lab or rgb)")


# -- per-class moments (Reinhard) ---------------------------------------------------------
@dataclass
class Moments:
    """Weighted first and second moments per label value (rows) and channel (columns).

    Attributes:
        weight: ``(256,)`` float64 total weight of each label value's pixels.
        sum1: ``(256, C)`` float64 weighted sums.
        sum2: ``(256, C)`` float64 weighted sums of squares.
    """

    weight: np.ndarray
    sum1: np.ndarray
    sum2: np.ndarray

    def __add__(self, other: Moments) -> Moments:
        return Moments(self.weight + other.weight, self.sum1 + other.sum1, self.sum2 + other.sum2)

    def scaled(self, factor: float) -> Moments:
        return Moments(self.weight * factor, self.sum1 * factor, self.sum2 * factor)

    def total(self) -> Moments:
        """The moments of all pixels together (one row)."""
        return Moments(
            self.weight.sum(keepdims=True),
            self.sum1.sum(0, keepdims=True),
            self.sum2.sum(0, keepdims=True),
        )

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-row mean and (population) standard deviation; NaN rows where weight is 0."""
        w = self.weight[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.sum1 / w
            var = self.sum2 / w - mean**2
        return mean, np.sqrt(np.maximum(var, 0.0))


def class_moments(x: np.ndarray, label: np.ndarray | None, weight: float = 1.0) -> Moments:
    """Moments of ``x`` (``HxWxC float32``) per label value, each pixel weighing ``weight``.

    One masked ``cv2.meanStdDev`` per label value *present* (a vectorised C pass with
    double accumulators; a few milliseconds per class on a 2-megapixel image, and far
    faster than weighted ``bincount``). With ``label=None`` every pixel counts under
    label value 0.
    """
    c = x.shape[2]
    mom = Moments(np.zeros(NUM_SLOTS), np.zeros((NUM_SLOTS, c)), np.zeros((NUM_SLOTS, c)))
    if label is None:
        present = [(0, None, x.shape[0] * x.shape[1])]
    else:
        counts = np.bincount(label.reshape(-1), minlength=NUM_SLOTS)
        present = [(int(v), None, int(counts[v])) for v in np.flatnonzero(counts)]
        if len(present) == 1:
            present = [(present[0][0], None, present[0][2])]
        else:
            present = [(v, (label == v).view(np.uint8), n) for v, _, n in present]
    for v, mask, n in present:
        mean, std = cv2.meanStdDev(x, mask=mask)
        mean, std = mean.reshape(-1)[:c], std.reshape(-1)[:c]
        mom.weight[v] = n
        mom.sum1[v] = mean * n
        mom.sum2[v] = (std**2 + mean**2) * n
    return mom.scaled(weight) if weight != 1.0 else mom


def reinhard_tables(
    src_mean: np.ndarray,
    src_std: np.ndarray,
    dst_mean: np.ndarray,
    dst_std: np.ndarray,
    min_std: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row affine maps ``y = gain * x + offset`` taking (mean, std) src -> dst.

    ``gain = dst_std / max(src_std, min_std)``: the floor keeps near-flat regions from
    having their noise blown up. All arrays ``(rows, C)``; returns float32 tables.
    """
    gain = dst_std / np.maximum(src_std, min_std)
    offset = dst_mean - src_mean * gain
    return gain.astype(np.float32), offset.astype(np.float32)


def apply_affine(
    x: np.ndarray, label: np.ndarray | None, gain: np.ndarray, offset: np.ndarray
) -> np.ndarray:
    """``y = gain[label] * x + offset[label]`` per pixel and channel.

    Args:
        x: ``HxWx3 float32``.
        label: ``HxW uint8``, or ``None`` to use row 0 everywhere.
        gain, offset: ``(256, 3)`` (or ``(1, 3)``) float32 tables.

    The per-pixel tables are gathered with ``cv2.LUT`` on the 3-channel label map, much
    faster than numpy fancy indexing.
    """
    c = x.shape[2]
    if label is None or gain.shape[0] == 1:
        # one SIMD pass: y = M @ [x, 1] with M = [diag(gain) | offset]
        m = np.hstack([np.diag(gain[0]), offset[0][:, None]]).astype(np.float32)
        return cv2.transform(x, m)
    lab_c = cv2.merge([label] * c)
    g = cv2.LUT(lab_c, np.ascontiguousarray(gain.reshape(256, 1, c), dtype=np.float32))
    o = cv2.LUT(lab_c, np.ascontiguousarray(offset.reshape(256, 1, c), dtype=np.float32))
    np.multiply(x, g, out=g)
    g += o
    return g


def reinhard(
    x: np.ndarray,
    target_mean: np.ndarray,
    target_std: np.ndarray,
    *,
    min_std: float = 1.0,
) -> np.ndarray:
    """Global Reinhard transfer: per channel, ``(x - mean(x)) / std(x) * target_std + target_mean``.

    Args:
        x: ``HxWxC float32`` image in the working colour space (usually LAB).
        target_mean, target_std: ``(C,)`` target statistics (pooled over the references).
        min_std: floor for ``std(x)`` (same units as ``x``).

    Returns:
        ``HxWxC float32``.
    """
    mean, std = class_moments(x, None).total().mean_std()
    gain, offset = reinhard_tables(mean, std, target_mean[None], target_std[None], min_std)
    return apply_affine(x, None, gain, offset)


def reinhard_classwise(
    x: np.ndarray,
    label: np.ndarray,
    target_mean: np.ndarray,
    target_std: np.ndarray,
    target_valid: np.ndarray,
    global_mean: np.ndarray,
    global_std: np.ndarray,
    *,
    min_std: float = 1.0,
) -> np.ndarray:
    """Class-wise Reinhard: each class's pixels take the target statistics of that class.

    Args:
        x: ``HxWxC float32`` image in the working colour space.
        label: ``HxW uint8`` label map.
        target_mean, target_std: ``(256, C)`` target statistics per label value.
        target_valid: ``(256,)`` bool, True where the target has the class.
        global_mean, global_std: ``(C,)`` target statistics of whole images.
        min_std: floor for the content's per-class std.

    Pixels whose class is missing from the target (``target_valid`` False), and pixels of
    no class, get the *global* transfer instead: image statistics -> ``global_*``. That
    keeps them consistent with the rest of the image rather than pulling them to a mean.

    Returns:
        ``HxWxC float32``.
    """
    mom = class_moments(x, label)
    mean, std = mom.mean_std()
    gmean, gstd = mom.total().mean_std()
    gain, offset = reinhard_tables(mean, std, target_mean, target_std, min_std)
    ggain, goffset = reinhard_tables(gmean, gstd, global_mean[None], global_std[None], min_std)
    use_global = ~target_valid | (mom.weight == 0)
    gain[use_global] = ggain[0]
    offset[use_global] = goffset[0]
    return apply_affine(x, label, gain, offset)


# -- histograms (histogram matching) -------------------------------------------------------
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


# -- local contrast (contrast-preserving class-wise variants) -------------------------------
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


# -- Fourier domain adaptation --------------------------------------------------------------
def fda_half_width(height: int, width: int, beta: float) -> int:
    """Half-width ``b = floor(beta * min(H, W))`` of the swapped square, in frequency bins.

    Capped at ``(min(H, W) - 1) // 2`` so the window ``-b..b`` never wraps onto itself.
    """
    b = int(np.floor(beta * min(height, width)))
    return max(0, min(b, (min(height, width) - 1) // 2))


def low_frequency_amplitude(image: np.ndarray, half_width: int) -> np.ndarray:
    """Normalised amplitude spectrum at frequencies ``-b..b`` (cycles per image) per channel.

    Args:
        image: ``HxWxC`` (uint8 or float) image of any size.
        half_width: ``b``.

    Returns:
        ``(2b+1, 2b+1, C) float64``: ``|FFT(image)| / (H*W)`` (the amplitude of a unit-area
        image) with the zero frequency at the centre ``[b, b]``. Frequencies the image
        cannot hold (beyond its Nyquist limit) are 0, as for an ideally upsampled image.
        Indexing by cycles per image is what resizing the reference to the content's size
        with an ideal (sinc) filter would give, without resampling the reference.
    """
    h, w, c = image.shape
    b = half_width
    out = np.zeros((2 * b + 1, 2 * b + 1, c), dtype=np.float64)
    fy = np.arange(-b, b + 1)
    oky = np.abs(fy) <= (h - 1) // 2
    okx = np.abs(fy) <= (w - 1) // 2
    rows, cols = np.ix_(fy[oky] % h, fy[okx] % w)
    dst = np.ix_(np.flatnonzero(oky), np.flatnonzero(okx))
    for k in range(c):
        spec = sfft.fft2(np.asarray(image[..., k], dtype=np.float64))
        out[(*dst, k)] = np.abs(spec[rows, cols]) / (h * w)
    return out


def fourier_domain_adaptation(image: np.ndarray, ref_amplitude: np.ndarray) -> np.ndarray:
    """FDA (Yang and Soatto, CVPR 2020): swap the low-frequency amplitude for the reference's.

    Full complex 2-D FFT per channel (not a real-FFT half spectrum); the square of
    frequencies ``-b..b`` in both directions (``b`` from ``ref_amplitude``'s size) gets the
    reference's amplitude and keeps the image's phase. The window is symmetric about the
    zero frequency and the reference amplitude is symmetric (it comes from a real image),
    so the modified spectrum stays Hermitian and the inverse transform is real: the
    imaginary residue (float32 rounding noise, ~1e-4 of a grey level) is checked against
    a bound before it is dropped.

    Args:
        image: ``HxWx3 uint8`` RGB content image.
        ref_amplitude: ``(2b+1, 2b+1, 3)`` normalised reference amplitude from
            :func:`low_frequency_amplitude` (per unit area; rescaled here to ``H*W``).

    Returns:
        ``HxWx3 uint8``.
    """
    h, w, c = image.shape
    n = ref_amplitude.shape[0]
    b = (n - 1) // 2
    if n != 2 * b + 1 or ref_amplitude.shape[1] != n or b > (min(h, w) - 1) // 2:
        raise ValueError(f"reference amplitude {ref_amplitude.shape} does not fit an image {h}x{w}")
    rows, cols = np.ix_(np.arange(-b, b + 1) % h, np.arange(-b, b + 1) % w)
    out = np.empty((h, w, c), dtype=np.float32)
    for k in range(c):
        spec = sfft.fft2(np.ascontiguousarray(image[..., k], dtype=np.float32))
        win = spec[rows, cols].astype(np.complex128)
        amp = np.abs(win)
        unit = np.where(amp > 0, win / np.where(amp > 0, amp, 1.0), 1.0)
        spec[rows, cols] = unit * (ref_amplitude[..., k] * (h * w))
        res = sfft.ifft2(spec, overwrite_x=True)
        residue = float(np.abs(res.imag).max())
        if residue > 0.05:
            raise RuntimeError(
                f"FDA: imaginary residue {residue:.3g} grey levels (spectrum not Hermitian)"
            )
        out[..., k] = res.real
    return to_uint8(out)
