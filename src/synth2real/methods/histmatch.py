"""Histogram matching: per RGB channel, the content's CDF mapped onto the references'.

Three presets of one class: ``histmatch`` (global), ``histmatch-cw`` (class-wise) and
``histmatch-cwc`` (class-wise, contrast-preserving for thin classes). On uint8 images
the whole transfer is a lookup table per channel (and per class): two ``bincount``
passes and one gather per channel, whatever the number of classes.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from synth2real.methods import functional as F
from synth2real.methods.classwise import ColourTransfer, ContrastStats, Stage
from synth2real.methods.registry import register


# stacked decorators run bottom-up: the global preset is registered (and listed) first
@register(
    "histmatch-cwc",
    summary="class-wise histogram matching that keeps thin classes' contrast against their surroundings",
    mode="class-contrast",
)
@register(
    "histmatch-cw",
    summary="class-wise histogram matching: each class's CDFs mapped to the references' class CDFs",
    mode="class",
)
@register("histmatch", summary="global histogram matching per RGB channel", mode="global")
class HistogramMatching(ColourTransfer):
    """Per-channel histogram (CDF) matching in RGB, globally or class by class.

    The reference histograms are pooled over all references as if each had the same
    area. A level ``v`` of the content goes to the reference value at quantile
    ``CDF_content(v)``, interpolated between occupied reference levels and rounded (the
    scikit-image / albumentations rule, except that they truncate). Class-wise modes use
    each class's own CDFs; classes with fewer than ``min_pixels`` reference pixels, and
    pixels of no class, get the global mapping.

    Args:
        mode: ``global`` (whole images), ``class`` (per class) or ``class-contrast`` (per
            class, then thin classes re-set against their transferred surroundings).
            Default ``global``; the presets ``histmatch-cw`` / ``histmatch-cwc`` set it.
        pooled: ``True`` pools the histograms of all references; ``False`` uses the
            reference chosen for each image (``--reference-choice``), with the other
            references' pooled histograms for classes it lacks. Default ``True``.
        min_pixels: reference pixels a class needs (over all references) to get its own
            mapping; fewer falls back to the global mapping. Default ``64``.
        ring: half-size in pixels of the square window whose non-class pixels are a thin
            class pixel's surroundings (``class-contrast`` only). Default ``7``.
        thin_classes: classes the contrast stage re-sets: ``auto`` (classes with at least
            half their reference pixels within ``ring`` pixels of their boundary and at
            most 20% of the reference area; decided on the image itself for classes no
            reference holds) or comma-separated class names. Default ``auto``.
        contrast: ``match`` maps the distribution (quantiles, per LAB channel) of the
            content's class-vs-surroundings contrast onto the references'; ``preserve``
            keeps the content's contrast. Default ``match``.
        strength: blend between the input (0) and the full transfer (1). Default ``1.0``.
    """

    color_space = "rgb"

    def __init__(
        self,
        mode: Literal["global", "class", "class-contrast"] = "global",
        pooled: bool = True,
        min_pixels: int = 64,
        ring: int = 7,
        thin_classes: str | tuple[str, ...] = "auto",
        contrast: Literal["match", "preserve"] = "match",
        strength: float = 1.0,
    ):
        self._init_common(mode, pooled, min_pixels, ring, thin_classes, contrast, strength)
        self._dists: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def prepare(self, references) -> None:  # noqa: D102 - see ColourTransfer.prepare
        super().prepare(references)
        self._dists = {}

    def _summarise(self, image: np.ndarray, label: np.ndarray | None, weight: float) -> np.ndarray:
        return F.class_histograms(image, label, weight)

    def _transfer(
        self, image: np.ndarray, label: np.ndarray | None, target: Any, want_lab: bool
    ) -> Stage:
        hists, valid, glob = target
        ghist = glob.sum(0)
        if label is None:
            return Stage(F.histogram_match(image, ghist))
        return Stage(F.histogram_match_classwise(image, label, hists, valid, ghist))

    def _map_contrast(self, d: np.ndarray, ref: ContrastStats) -> np.ndarray:
        key = id(ref)  # targets are cached by the base class, so ids are stable
        if key not in self._dists:
            self._dists[key] = [
                F.weighted_distribution(ref.values[:, k], ref.weights) for k in range(3)
            ]
        dists = self._dists[key]
        return np.stack([F.quantile_map(d[:, k], *dists[k]) for k in range(d.shape[1])], 1)
