"""Fourier domain adaptation (Yang and Soatto, CVPR 2020) on arrays: the reference's
low-frequency amplitude and the swap.

The conventions are those of :mod:`synth2real.methods.functional`.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from synth2real.methods.functional.colour import to_uint8


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
