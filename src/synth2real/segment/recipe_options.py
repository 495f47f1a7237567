"""Settings of the self-training and rare-class-sampling recipes (torch-free).

:class:`SelfTrainConfig` (keys ``st_*``) and :class:`RCSConfig` (keys ``rcs*``) are
mixed into :class:`~synth2real.segment.config.TrainConfig`, so every key lives in the
one flat ``train --set`` / ``pilot --budget`` namespace, is parsed by
:func:`~synth2real.segment.config.parse_settings` and stored in the checkpoint's
``train_config``; each default is written once, here. The maths that uses them is in
:mod:`synth2real.segment.selftrain`, :mod:`synth2real.segment.photometric` and
:mod:`synth2real.segment.rcs`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from synth2real.errors import ConfigError

WEIGHT_SCOPES = ("image", "batch")


@dataclass
class SelfTrainConfig:
    """Hyper-parameters of self-training; each default with where it comes from.

    Args:
        st_ema_alpha: EMA decay of the teacher, ``alpha_t = min(1 - 1/(t+1), alpha)`` after
            the student's ``t``-th step (default 0.99: DACS ``trainUDA.py``
            ``alpha_teacher = 0.99``, DAFormer ``configs/_base_/uda/dacs.py`` ``alpha=0.99``;
            DAFormer's final 40k-iteration recipe raises it to 0.999, a time constant of
            1000 steps, half a default synth2real run).
        st_pseudo_threshold: a pseudo-label counts as confident when the teacher's max
            softmax probability is ``>=`` this (default 0.968: DACS hard-codes
            ``max_probs.ge(0.968)``, DAFormer ``pseudo_threshold=0.968``).
        st_weight_scope: ``"image"`` (default, as issue 9 asks: one confidence weight per
            mixed image) or ``"batch"`` (what DACS and DAFormer compute: one share over all
            the pixels of the batch).
        st_mix_weight: factor of the mixed-batch loss in ``L_sup + w * L_mix`` (default 1.0:
            DAFormer adds the two losses; DACS ``consistency_weight`` 1).
        st_mix_share: share of a labelled crop's classes that ClassMix pastes, rounded up
            (default 0.5: ClassMix / DACS "half of the classes", ``(n + n % 2) / 2``).
        st_jitter_p: probability that a mixed image is colour-jittered (default 0.8:
            DACS / DAFormer draw ``u ~ U(0, 1)`` and jitter when ``u > 0.2``; DAFormer's
            ``color_jitter_probability=0.2`` is that threshold, not the probability).
        st_jitter_strength: brightness, contrast and saturation factors in
            ``[1 - s, 1 + s]``, hue shift in ``[-s, s]`` of the colour circle (default 0.2:
            DAFormer ``color_jitter_strength=0.2``; DACS used 0.25).
        st_blur_p: probability of a Gaussian blur (default 0.5: DACS / DAFormer blur when
            ``u ~ U(0, 1) > 0.5``).
        st_blur_sigma: ``(min, max)`` of the blur's sigma in pixels, drawn uniformly
            (default ``(0.15, 1.15)``: DACS / DAFormer ``np.random.uniform(0.15, 1.15)``).
        st_blur_kernel_frac: kernel size per axis = the largest odd number
            ``<= ceil(frac * size)`` (default 0.1: DACS / DAFormer
            ``floor(ceil(0.1 n) - 0.5 + ceil(0.1 n) % 2)``; 25 px for a 256 px crop).
    """

    st_ema_alpha: float = 0.99
    st_pseudo_threshold: float = 0.968
    st_weight_scope: str = "image"
    st_mix_weight: float = 1.0
    st_mix_share: float = 0.5
    st_jitter_p: float = 0.8
    st_jitter_strength: float = 0.2
    st_blur_p: float = 0.5
    st_blur_sigma: tuple[float, float] = (0.15, 1.15)
    st_blur_kernel_frac: float = 0.1

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad field."""

        def bad(name: str, why: str) -> None:
            raise ConfigError(f"SelfTrainConfig.{name}: {why} (got {getattr(self, name)!r})")

        if not 0 <= self.st_ema_alpha < 1:
            bad("st_ema_alpha", "must be in [0, 1)")
        if not 0 < self.st_pseudo_threshold <= 1:
            bad("st_pseudo_threshold", "must be in (0, 1]")
        if self.st_weight_scope not in WEIGHT_SCOPES:
            bad("st_weight_scope", f"must be one of {WEIGHT_SCOPES}")
        if self.st_mix_weight < 0:
            bad("st_mix_weight", "must be >= 0")
        if not 0 < self.st_mix_share <= 1:
            bad("st_mix_share", "must be in (0, 1]")
        for name in ("st_jitter_p", "st_blur_p"):
            if not 0 <= getattr(self, name) <= 1:
                bad(name, "must be in [0, 1]")
        if not 0 <= self.st_jitter_strength <= 0.5:
            bad("st_jitter_strength", "must be in [0, 0.5] (a hue shift of 0.5 is a half turn)")
        if len(self.st_blur_sigma) != 2:
            bad("st_blur_sigma", "must be (min, max)")
        lo, hi = (float(v) for v in self.st_blur_sigma)
        if not 0 < lo <= hi:
            bad("st_blur_sigma", "needs 0 < min <= max")
        self.st_blur_sigma = (lo, hi)
        if not 0 < self.st_blur_kernel_frac <= 1:
            bad("st_blur_kernel_frac", "must be in (0, 1]")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["st_blur_sigma"] = list(d["st_blur_sigma"])
        return d


@dataclass
class RCSConfig:
    """Rare-class sampling options (keys ``rcs*`` of ``--set`` / ``--budget``).

    Args:
        rcs: draw labelled crops by rare-class sampling (default False: uniform, as now).
        rcs_temperature: ``T`` of ``softmax((1 - f_c) / T)``; smaller favours rare classes
            more (default 0.01: DAFormer ``class_temp=0.01``). With one class at 3 % of the
            pixels and background at 97 %, T = 0.01 draws the rare class with probability
            ``1 - e^-94``, i.e. always.
        rcs_min_pixels: an image is a candidate for class ``c`` when it holds more than
            this many pixels of ``c`` (default 3000: DAFormer ``min_pixels=3000``, counted
            on GTA's full-resolution labels). A class that no image holds that much of
            falls back to every image holding any of it (DAFormer asserts instead).
        rcs_min_crop_ratio: a crop is kept when it holds more than
            ``ratio * min(rcs_min_pixels, pixels of c in the image)`` pixels of ``c``
            (default 0.5: DAFormer ``min_crop_ratio=0.5``, whose threshold is
            ``ratio * min_pixels``; the ``min`` only changes fallback images); 0 keeps the
            first crop.
        rcs_crop_retries: crops redrawn at most before the last one is kept whatever it
            holds (default 10: DAFormer's ``for j in range(10)``).
    """

    rcs: bool = False
    rcs_temperature: float = 0.01
    rcs_min_pixels: int = 3000
    rcs_min_crop_ratio: float = 0.5
    rcs_crop_retries: int = 10

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad field."""

        def bad(name: str, why: str) -> None:
            raise ConfigError(f"RCSConfig.{name}: {why} (got {getattr(self, name)!r})")

        if not self.rcs_temperature > 0:
            bad("rcs_temperature", "must be > 0")
        if self.rcs_min_pixels < 0:
            bad("rcs_min_pixels", "must be >= 0")
        if not 0 <= self.rcs_min_crop_ratio <= 1:
            bad("rcs_min_crop_ratio", "must be in [0, 1]")
        if self.rcs_crop_retries < 0:
            bad("rcs_crop_retries", "must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
