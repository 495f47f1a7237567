"""Reinhard colour transfer (Reinhard et al. 2001): match per-channel mean and std in CIELAB.

Three presets of one class: ``reinhard`` (global), ``reinhard-cw`` (class-wise) and
``reinhard-cwc`` (class-wise, contrast-preserving for thin classes). The maths is in
:mod:`synth2real.methods.functional.moments` (``reinhard``, ``reinhard_classwise``).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from synth2real.errors import ConfigError
from synth2real.methods import functional as F
from synth2real.methods.classwise import ColourTransfer, ContrastStats, Stage
from synth2real.methods.registry import register


# stacked decorators run bottom-up: the global preset is registered (and listed) first
@register(
    "reinhard-cwc",
    summary="class-wise Reinhard that keeps thin classes' contrast against their surroundings",
    mode="class-contrast",
)
@register(
    "reinhard-cw",
    summary="class-wise Reinhard: each class gets the references' class mean and std (CIELAB)",
    mode="class",
)
@register(
    "reinhard", summary="global colour transfer: mean and std per CIELAB channel", mode="global"
)
class Reinhard(ColourTransfer):
    """Reinhard colour transfer: per channel, ``(x - mean) / std * ref_std + ref_mean``.

    Statistics are computed in float32 CIELAB (never 8-bit LAB), pooled over all
    references as if each had the same area. Class-wise modes use, for each class, the
    reference pixels of that class; classes with fewer than ``min_pixels`` reference
    pixels, and pixels of no class, get the global transfer. The parameters shared with
    histogram matching are those of :class:`~synth2real.methods.classwise.ColourTransfer`.

    Args:
        contrast: ``match`` maps the content's class-vs-surroundings contrast (mean and std
            per LAB channel) onto the references'; ``preserve`` keeps the content's
            contrast as it is. Default ``match``.
        color_space: ``lab`` (CIELAB, the method as published) or ``rgb`` (per RGB
            channel, as albumentations' PixelDistributionAdaptation ``standard``).
            Default ``lab``.
        min_std: floor of the content's standard deviation, in the working space's units
            (LAB: L in 0..100; RGB: 0..255), so flat regions do not get their noise
            amplified. Default ``1.0``.
    """

    def __init__(
        self, *, color_space: Literal["lab", "rgb"] = "lab", min_std: float = 1.0, **common: Any
    ):
        super().__init__(**common)
        if color_space not in ("lab", "rgb"):
            raise ConfigError(f"color_space must be 'lab' or 'rgb', got {color_space!r}")
        if float(min_std) <= 0:
            raise ConfigError(f"min_std must be > 0, got {min_std}")
        self.color_space = color_space
        self.min_std = float(min_std)

    def _summarise(self, image: np.ndarray, label: np.ndarray | None, weight: float) -> F.Moments:
        return F.class_moments(F.to_colorspace(image, self.color_space), label, weight)

    def _transfer(
        self, image: np.ndarray, label: np.ndarray | None, target: Any, want_lab: bool
    ) -> Stage:
        moments, valid, glob = target
        gmean, gstd = glob.total().mean_std()
        x = F.to_colorspace(image, self.color_space)
        if label is None:
            y = F.reinhard(x, gmean[0], gstd[0], min_std=self.min_std)
        else:
            mean, std = moments.mean_std()
            y = F.reinhard_classwise(
                x, label, mean, std, valid, gmean[0], gstd[0], min_std=self.min_std
            )
        if self.color_space == "lab":
            return Stage(None if want_lab else F.lab_to_rgb(y), x, y)
        return Stage(F.to_uint8(y))

    def _map_contrast(self, d: np.ndarray, ref: ContrastStats) -> np.ndarray:
        mean, std = d.mean(0), d.std(0)
        rmean, rstd = ref.mean_std()
        return (d - mean) / np.maximum(std, self.min_std) * rstd + rmean
