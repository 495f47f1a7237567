"""FDA: Fourier domain adaptation (Yang and Soatto, CVPR 2020).

The low-frequency amplitude spectrum carries global appearance (illumination, colour
cast, large-scale texture energy); the phase carries structure. FDA swaps a centred
square of the content's amplitude spectrum for the reference's and keeps the content's
phase. Global only: the amplitude spectrum is a property of the whole image, and a
masked (per-class) spectrum mixes the mask's own edges into it, so there is no sound
class-wise form; the class-wise methods are Reinhard and histogram matching.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from synth2real.errors import ConfigError
from synth2real.methods import functional as F
from synth2real.methods.base import Method, References
from synth2real.methods.registry import register


@register("fda", summary="Fourier domain adaptation: swap the low-frequency amplitude spectrum")
class FDA(Method):
    """Swap the low-frequency amplitude of the content for the reference's (per RGB channel).

    The swapped window is the square of frequencies ``-b..b`` cycles per image in both
    directions around the zero frequency, ``b = floor(beta * min(H, W))`` of the
    *content*: symmetric, so the result is real (no imaginary residue is thrown away).
    References of another size contribute their amplitude at the same frequencies in
    cycles per image, normalised per unit area: exactly what resizing the reference to
    the content's size with an ideal filter would give, without resampling it.

    Args:
        beta: half-width of the swapped square as a fraction of the content's shorter
            side. The paper uses 0.01 to 0.09 and its artefacts (ringing, colour blotches)
            grow with beta; 0.01 (a 11x11-bin square at 512 px, i.e. the mean colour and
            the slowest illumination gradients) is the safe default. Default ``0.01``.
        amplitude: ``chosen`` uses the reference chosen for each image
            (``--reference-choice``); ``mean`` the mean normalised amplitude of all
            references. Default ``chosen``.
    """

    def __init__(self, beta: float = 0.01, amplitude: Literal["chosen", "mean"] = "chosen"):
        super().__init__()
        if not 0.0 <= float(beta) <= 0.5:
            raise ConfigError(f"beta must be in [0, 0.5], got {beta}")
        if amplitude not in ("chosen", "mean"):
            raise ConfigError(f"amplitude must be 'chosen' or 'mean', got {amplitude!r}")
        self.beta = float(beta)
        self.amplitude = amplitude
        self._windows: dict[int, np.ndarray] = {}

    def prepare(self, references: References) -> None:
        super().prepare(references)
        self._windows = {}

    def _window(self, ref: int, b: int) -> np.ndarray:
        """Normalised amplitude of reference ``ref`` at ``-b..b``, cached at the largest b."""
        have = self._windows.get(ref)
        if have is None or have.shape[0] < 2 * b + 1:
            refs = self.check_prepared()
            have = F.low_frequency_amplitude(refs.images[ref], b)
            self._windows[ref] = have
        c = (have.shape[0] - 1) // 2
        return have[c - b : c + b + 1, c - b : c + b + 1]

    def apply(self, image: np.ndarray, label: np.ndarray | None, ref: int) -> np.ndarray:
        refs = self.check_prepared()
        image = F.check_image(image)
        if not 0 <= ref < len(refs):
            raise IndexError(f"reference index {ref} out of range (0..{len(refs) - 1})")
        h, w = image.shape[:2]
        b = F.fda_half_width(h, w, self.beta)
        if self.amplitude == "mean":
            amp = np.mean([self._window(i, b) for i in range(len(refs))], axis=0)
        else:
            amp = self._window(ref, b)
        return F.fourier_domain_adaptation(image, amp)

    def reference_indices(self, ref: int) -> list[int]:
        refs = self.check_prepared()
        return list(range(len(refs))) if self.amplitude == "mean" else [ref]
