"""Rare-class sampling (RCS, Hoyer et al., DAFormer, CVPR 2022), pure numpy.

Labelled crops are drawn class first: a class ``c`` with probability
``P(c) = softmax((1 - f_c) / T)`` over the classes present in the data (``f_c``: the share
of the labelled pixels that belong to ``c``), then uniformly one of the images holding more
than ``rcs_min_pixels`` pixels of ``c``, then a random crop of it, redrawn up to
``rcs_crop_retries`` times until it holds enough of ``c``. Source: DAFormer
``mmseg/datasets/uda_dataset.py`` (``get_rcs_class_probs``, ``get_rare_class_sample``) with
its config ``rare_class_sampling=dict(min_pixels=3000, class_temp=0.01, min_crop_ratio=0.5)``.

RCS does not need unlabelled data: it is an option of any training mix. With several
labelled datasets (translated + references) the intended use is one sampler per dataset:
the dataset is drawn by its mixing weight as now, then the crop by RCS inside it, so the
mixing weights keep their meaning. Pixel counts are those of the decoded (``max_size``
capped) label maps, computed by :func:`class_pixel_counts`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from synth2real.errors import ConfigError
from synth2real.segment.recipe_options import RCSConfig

__all__ = [
    "RCSConfig", "RareClassSampler", "class_pixel_counts", "class_probabilities",
    "crop_with_class", "image_pools",
]  # fmt: skip

Crop = TypeVar("Crop", bound=tuple)


def class_pixel_counts(label: np.ndarray, num_classes: int, ignore_index: int) -> np.ndarray:
    """``K int64`` pixel count of each class in a label map (``ignore_index`` and values
    ``>= K`` not counted)."""
    counts = np.bincount(np.asarray(label).ravel(), minlength=num_classes)[:num_classes]
    counts = counts.astype(np.int64)
    if 0 <= ignore_index < num_classes:
        counts[ignore_index] = 0
    return counts


def _check_counts(counts: np.ndarray) -> np.ndarray:
    c = np.asarray(counts)
    if c.ndim != 2 or c.shape[0] == 0:
        raise ConfigError(f"class counts must be N x K with N >= 1, got shape {c.shape}")
    if (c < 0).any():
        raise ConfigError("class counts must be >= 0")
    if c.sum() <= 0:
        raise ConfigError("rare-class sampling needs labelled pixels; every count is 0")
    return c.astype(np.int64)


def class_probabilities(counts: np.ndarray, temperature: float) -> np.ndarray:
    """``P(c) = softmax((1 - f_c) / T)`` over the classes present, 0 for absent ones.

    Args:
        counts: ``NxK`` pixel counts per image and class.
        temperature: ``T > 0``.

    Returns:
        ``K float64`` summing to 1.
    """
    c = _check_counts(counts)
    total = c.sum(axis=0).astype(np.float64)
    present = total > 0
    f = total / total.sum()
    z = np.where(present, (1.0 - f) / float(temperature), -np.inf)
    e = np.exp(z - z[present].max())
    return e / e.sum()


def image_pools(counts: np.ndarray, min_pixels: int) -> list[np.ndarray]:
    """Per class, the indices of the images that hold more than ``min_pixels`` of it (or,
    when none does, more than 0); empty for an absent class."""
    c = _check_counts(counts)
    pools = []
    for k in range(c.shape[1]):
        idx = np.flatnonzero(c[:, k] > min_pixels)
        if idx.size == 0:
            idx = np.flatnonzero(c[:, k] > 0)
        pools.append(idx)
    return pools


class RareClassSampler:
    """Draws ``(class, image index)`` pairs by rare-class sampling.

    Args:
        counts: ``NxK`` pixel counts of the ``N`` labelled images (:func:`class_pixel_counts`).
        cfg: :class:`RCSConfig` (its ``rcs`` flag is not looked at).

    Attributes:
        probs: ``K`` class probabilities (:func:`class_probabilities`).
        pools: per class, the candidate images (:func:`image_pools`).
    """

    def __init__(self, counts: np.ndarray, cfg: RCSConfig):
        self.counts = _check_counts(counts)
        self.cfg = cfg
        self.probs = class_probabilities(self.counts, cfg.rcs_temperature)
        self.pools = image_pools(self.counts, cfg.rcs_min_pixels)
        if np.count_nonzero(self.counts.sum(axis=0)) == 2:
            warn_two_classes(self.probs)

    def draw(self, rng: np.random.Generator) -> tuple[int, int]:
        """A class, then uniformly one of its candidate images."""
        c = int(rng.choice(len(self.probs), p=self.probs))
        pool = self.pools[c]
        return c, int(pool[rng.integers(len(pool))])

    def crop_threshold(self, c: int, image: int) -> float:
        """Pixels of ``c`` a crop of ``image`` must exceed to be kept (see
        :class:`RCSConfig`)."""
        held = int(self.counts[image, c])
        return self.cfg.rcs_min_crop_ratio * min(self.cfg.rcs_min_pixels, held)


def warn_two_classes(probs: np.ndarray) -> None:
    """Warn that with two classes RCS puts the rare one in nearly every crop (on cracks
    the model then over-predicted it: docs/SEGMENT.md, Rare-class sampling)."""
    c = int(np.argmax(probs))
    warnings.warn(
        f"rare-class sampling with two classes draws class {c} for {probs[c]:.1%} of the "
        "crops, so nearly every crop holds it and the model learns to over-predict it "
        "(on the cracks benchmark every setting lost with rcs=true; docs/SEGMENT.md)",
        RuntimeWarning,
        stacklevel=3,
    )


def crop_with_class(
    make_crop: Callable[[], Crop],
    c: int,
    threshold: float,
    retries: int,
) -> tuple[Crop, int]:
    """DAFormer's crop loop: draw a crop, redraw while it holds ``<= threshold`` pixels of
    class ``c``, at most ``retries`` times; the last crop is kept whatever it holds.

    Args:
        make_crop: draws one random crop ``(image, label, ...)`` (e.g.
            ``lambda: augment(image, label, rng, crop=...)``); ``label`` is its second item.
        c: the class drawn by :meth:`RareClassSampler.draw`.
        threshold: :meth:`RareClassSampler.crop_threshold`; ``<= 0`` keeps the first crop
            (DAFormer skips the loop when ``min_crop_ratio`` is 0).
        retries: at most this many redraws.

    Returns:
        ``(crop, crops drawn)``.
    """
    crop = make_crop()
    drawn = 1
    if threshold <= 0:
        return crop, drawn
    for _ in range(retries):
        if int(np.count_nonzero(np.asarray(crop[1]) == c)) > threshold:
            break
        crop = make_crop()
        drawn += 1
    return crop, drawn
