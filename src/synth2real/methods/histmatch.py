"""Histogram matching: per RGB channel, the content's CDF mapped onto the references'.

Three presets of one class: ``histmatch`` (global), ``histmatch-cw`` (class-wise) and
``histmatch-cwc`` (class-wise, contrast-preserving for thin classes). On uint8 images
the whole transfer is a lookup table per channel (and per class): one 2-D histogram
(``cv2.calcHist`` of label and value) and one gather per channel, whatever the number of
classes.
"""

from __future__ import annotations

from typing import Any

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
    pixels of no class, get the global mapping. The parameters are those of
    :class:`~synth2real.methods.classwise.ColourTransfer`.

    Args:
        contrast: ``match`` maps the distribution (quantiles, per LAB channel) of the
            content's class-vs-surroundings contrast onto the references'; ``preserve``
            keeps the content's contrast. Default ``match``.
    """

    color_space = "rgb"

    def prepare(self, references) -> None:  # noqa: D102 - see ColourTransfer.prepare
        super().prepare(references)
        self._dists: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}

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
