"""Training data: decoding with an in-RAM cache, weighted sampling and augmentation.

Pure array functions (:func:`augment`, :func:`crop_transform`) are separate from the
decoding (:class:`SampleLoader`). Augmentation is geometric by default (random scale,
crop, horizontal flip): colour jitter is off by default because it would change the
colours that a translation method is being judged on.

Every random choice of iteration ``i`` comes from ``numpy.random.default_rng([seed, i])``,
so a resumed run draws exactly the batches an uninterrupted run would have drawn.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence

import cv2
import numpy as np

from synth2real.data.dataset import Dataset, Sample
from synth2real.errors import ConfigError, DataError

cv2.setNumThreads(1)


# -- decoding + cache ------------------------------------------------------------------------
def downscale(
    image: np.ndarray, label: np.ndarray | None, max_size: int | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Shrink so that the shorter side is at most ``max_size`` (no-op when ``None``).

    The image is resized with area averaging, the label map with nearest neighbour.
    """
    if not max_size:
        return image, label
    h, w = image.shape[:2]
    s = max_size / min(h, w)
    if s >= 1:
        return image, label
    size = (max(1, round(w * s)), max(1, round(h * s)))
    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    if label is not None:
        label = cv2.resize(label, size, interpolation=cv2.INTER_NEAREST)
    return image, label


class _LRUCache:
    """A process-wide byte-bounded LRU of decoded ``(image, label)`` pairs.

    Shared by every training run of the process (the pilot trains several models on the
    same data), bounded by the largest budget any run asked for.
    """

    def __init__(self) -> None:
        self._items: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._bytes = 0
        self.max_bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple) -> tuple[np.ndarray, np.ndarray] | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: tuple, item: tuple[np.ndarray, np.ndarray]) -> None:
        size = item[0].nbytes + item[1].nbytes
        with self._lock:
            if key in self._items or size > self.max_bytes:
                return
            self._items[key] = item
            self._bytes += size
            while self._bytes > self.max_bytes and self._items:
                _, old = self._items.popitem(last=False)
                self._bytes -= old[0].nbytes + old[1].nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes


_CACHE = _LRUCache()


def clear_cache() -> None:
    """Free the decoded images kept in RAM by training runs of this process."""
    _CACHE.clear()


class SampleLoader:
    """Decodes a dataset's ``(image, label)`` pairs, downscaled, cached in RAM.

    Args:
        dataset: a labelled dataset.
        max_size: shorter-side cap in pixels (``None``: full size).
        cache: keep decoded pairs in RAM (process-wide LRU) so that each file is decoded
            once per process rather than once per draw.
        cache_max_bytes: the cache budget (the largest budget asked for wins).
        labels: ``False`` for unlabelled images (self-training): label files are not
            read and :meth:`load` returns an all-zero label map.
    """

    def __init__(
        self,
        dataset: Dataset,
        max_size: int | None = None,
        cache: bool = True,
        cache_max_bytes: int = 4 << 30,
        labels: bool = True,
    ):
        self.dataset = dataset
        self.max_size = max_size
        self.cache = cache
        self.labels = labels
        if cache:
            _CACHE.max_bytes = max(_CACHE.max_bytes, int(cache_max_bytes))

    def __len__(self) -> int:
        return len(self.dataset)

    def _key(self, s: Sample) -> tuple:
        def stamp(p):
            if p is None:
                return None
            try:
                st = p.stat()
                return (str(p), st.st_mtime_ns, st.st_size)
            except OSError:
                return (str(p), 0, 0)

        ign = self.dataset.classes.ignore_index
        return (
            type(self.dataset).__qualname__,
            stamp(s.image_path),
            stamp(s.label_path) if self.labels else "no-labels",
            self.max_size,
            ign,
            s.name,
        )

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(HxWx3 uint8 image, HxW uint8 label)`` of sample ``i`` (downscaled).

        Raises:
            DataError: unlabelled sample, unreadable files, or label and image sizes differ.
        """
        s = self.dataset.samples[i]
        key = self._key(s) if self.cache else None
        if key is not None:
            hit = _CACHE.get(key)
            if hit is not None:
                return hit
        if not self.labels:
            image = self.dataset.image(s)
            label = np.zeros(image.shape[:2], np.uint8)
        elif s.label_path is None:
            raise DataError(
                s.image_path, "training needs a label map for every image; this one has none"
            )
        else:
            image, label = self.dataset.pair(s)  # checks that the sizes agree
        assert label is not None
        image, label = downscale(image, label.astype(np.uint8, copy=False), self.max_size)
        image.setflags(write=False)
        label.setflags(write=False)
        if key is not None:
            _CACHE.put(key, (image, label))
        return image, label


def dataset_fingerprint(dataset: Dataset) -> str:
    """A short hash of the dataset's sample names and class names.

    The folder is left out on purpose: a dataset moved or copied elsewhere is the same
    training data (a resumed run must not restart because its data moved).
    """
    h = hashlib.sha1()
    for s in dataset.samples:
        h.update(b"\0" + s.name.encode())
    h.update(repr(dataset.classes.names).encode())
    return h.hexdigest()[:16]


# -- mixing ----------------------------------------------------------------------------------
def mixing_weights(
    sizes: Sequence[int], weights: Sequence[float] | None, real_fraction: float | None
) -> np.ndarray:
    """Probability of drawing from each dataset.

    ``weights`` (normalised to sum 1) win; else ``real_fraction`` gives the *last* dataset
    that probability and shares the rest among the others in proportion to their size;
    else proportional to size.

    Raises:
        ConfigError: wrong length, negative or all-zero weights, a fraction outside [0, 1],
            or both ``weights`` and ``real_fraction``.
    """
    n = len(sizes)
    if weights is not None and real_fraction is not None:
        raise ConfigError("give either sampling weights or real_fraction, not both")
    if weights is not None:
        w = np.asarray([float(x) for x in weights], dtype=np.float64)
        if len(w) != n:
            raise ConfigError(f"{len(w)} sampling weights given for {n} datasets")
        if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
            raise ConfigError(f"sampling weights must be >= 0 and not all 0, got {list(w)}")
    elif real_fraction is not None:
        r = float(real_fraction)
        if not 0 <= r <= 1:
            raise ConfigError(f"real_fraction must be in [0, 1], got {r}")
        if n == 1:
            w = np.ones(1)
        else:
            rest = np.asarray(sizes[:-1], dtype=np.float64)
            w = np.append((1 - r) * rest / rest.sum(), r)
    else:
        w = np.asarray(sizes, dtype=np.float64)
    return w / w.sum()


# -- augmentation (pure) ---------------------------------------------------------------------
def crop_transform(
    rng: np.random.Generator,
    height: int,
    width: int,
    crop: tuple[int, int],
    scale_range: tuple[float, float],
    hflip: bool,
    vflip: bool,
) -> np.ndarray:
    """A random ``2x3`` affine map from source pixels to a ``crop`` window.

    The source is scaled by ``s ~ U(scale_range)`` (log-uniform), a ``crop`` window is
    placed uniformly (at whole pixels) where it fits (the scaled image is placed uniformly
    inside the window when it is smaller), and the window is flipped with probability 0.5 each when asked.
    """
    ch, cw = crop
    lo, hi = scale_range
    s = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if hi > lo else float(lo)
    sh, sw = height * s, width * s
    # top-left of the window in scaled coordinates (negative: image inside the window),
    # whole pixels so that at scale 1 pixels are copied, not blurred (1-px cracks survive)
    ty = round(rng.uniform(0, sh - ch)) if sh > ch else -round(rng.uniform(0, ch - sh))
    tx = round(rng.uniform(0, sw - cw)) if sw > cw else -round(rng.uniform(0, cw - sw))
    fx = hflip and rng.random() < 0.5
    fy = vflip and rng.random() < 0.5
    m = np.array([[s, 0.0, -tx], [0.0, s, -ty]])
    if fx:
        m[0] = [-m[0, 0], 0.0, cw - 1 - m[0, 2]]
    if fy:
        m[1] = [0.0, -m[1, 1], ch - 1 - m[1, 2]]
    return m


def color_jitter(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Random brightness, contrast and saturation factors in ``[1-strength, 1+strength]``."""
    if strength <= 0:
        return image
    b, c, s = rng.uniform(1 - strength, 1 + strength, size=3)
    x = image.astype(np.float32) * b
    mean = x.mean()
    x = (x - mean) * c + mean
    gray = x.mean(axis=2, keepdims=True)
    x = (x - gray) * s + gray
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def augment(
    image: np.ndarray,
    label: np.ndarray,
    rng: np.random.Generator,
    *,
    crop: tuple[int, int],
    scale_range: tuple[float, float] = (0.75, 1.5),
    hflip: bool = True,
    vflip: bool = False,
    jitter: float = 0.0,
    ignore_index: int = 255,
) -> tuple[np.ndarray, np.ndarray]:
    """One random training crop.

    Args:
        image: ``HxWx3 uint8``.
        label: ``HxW uint8`` class indices.
        rng: the random source.
        crop: ``(height, width)`` of the output.
        scale_range: ``(min, max)`` scale factors.
        hflip, vflip: allow horizontal / vertical flips (probability 0.5).
        jitter: colour jitter strength (0: off).
        ignore_index: label of padding pixels (outside the scaled image).

    Returns:
        ``crop x 3 uint8`` image (padding 0) and ``crop uint8`` label (padding
        ``ignore_index``), resampled once (bilinear / nearest) from the source.
    """
    m = crop_transform(rng, image.shape[0], image.shape[1], crop, scale_range, hflip, vflip)
    size = (crop[1], crop[0])
    img = cv2.warpAffine(
        image,
        m,
        size,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    lab = cv2.warpAffine(
        label,
        m,
        size,
        flags=cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=int(ignore_index),
    )
    img = color_jitter(img, rng, jitter)
    return img, lab
