"""Photometric "strong" augmentation of DACS / DAFormer, on the ClassMix images (pure torch).

Colour jitter (brightness, contrast, saturation, hue in a random order) and a Gaussian
blur, applied to ``Bx3xHxW`` float RGB in ``[0, 1]``; every random choice is drawn from
the step's CPU generator (:func:`synth2real.segment.selftrain.step_generator`), so a
resumed run draws the same. Parameters: :class:`~synth2real.segment.recipe_options.SelfTrainConfig`
(``st_jitter_*``, ``st_blur_*``). Sources: DACS ``utils/transformmasks.py`` /
``transformsgpu.py`` and DAFormer ``mmseg/models/utils/dacs_transforms.py``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from synth2real.segment.recipe_options import SelfTrainConfig

# -- DACS strong augmentation (photometric, on the mixed images) ----------------------------
_GRAY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


def _gray(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(-3)
    return (_GRAY[0] * r + _GRAY[1] * g + _GRAY[2] * b).unsqueeze(-3)


def adjust_brightness(x: torch.Tensor, factor: float) -> torch.Tensor:
    """``x * factor`` clipped to ``[0, 1]`` (``x``: ``...x3xHxW`` RGB in ``[0, 1]``)."""
    return (x * factor).clamp(0, 1)


def adjust_contrast(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend with the image's mean grey level: ``factor`` 0 gives a flat grey image."""
    mean = _gray(x).mean(dim=(-3, -2, -1), keepdim=True)
    return (factor * x + (1 - factor) * mean).clamp(0, 1)


def adjust_saturation(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend with the grey image: ``factor`` 0 gives grey, 1 the input."""
    return (factor * x + (1 - factor) * _gray(x)).clamp(0, 1)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """``...x3xHxW`` RGB in ``[0, 1]`` -> HSV with hue in ``[0, 1)`` (a full turn is 1)."""
    r, g, b = x.unbind(-3)
    v, _ = x.max(dim=-3)
    c = v - x.min(dim=-3).values
    safe = torch.where(c > 0, c, torch.ones_like(c))
    h = torch.where(
        v == r,
        ((g - b) / safe) % 6,
        torch.where(v == g, (b - r) / safe + 2, (r - g) / safe + 4),
    )
    h = torch.where(c > 0, h / 6, torch.zeros_like(h)) % 1.0
    s = torch.where(v > 0, c / torch.where(v > 0, v, torch.ones_like(v)), torch.zeros_like(v))
    return torch.stack((h, s, v), dim=-3)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hsv`: ``f(n) = v - v s clamp(min(k, 4 - k), 0, 1)``,
    ``k = (n + 6 h) mod 6`` for ``n = 5, 3, 1`` (R, G, B)."""
    h, s, v = x.unbind(-3)
    out = []
    for n in (5.0, 3.0, 1.0):
        k = (n + 6 * h) % 6
        out.append(v - v * s * torch.minimum(k, 4 - k).clamp(0, 1))
    return torch.stack(out, dim=-3)


def adjust_hue(x: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate the hue by ``shift`` turns (``1/3``: red -> green)."""
    if shift == 0:
        return x
    hsv = rgb_to_hsv(x)
    h, s, v = hsv.unbind(-3)
    return hsv_to_rgb(torch.stack(((h + shift) % 1.0, s, v), dim=-3)).clamp(0, 1)


def blur_kernel_size(size: int, frac: float = 0.1) -> int:
    """The largest odd number ``<= ceil(frac * size)`` (at least 1): DACS / DAFormer's
    ``floor(ceil(0.1 n) - 0.5 + ceil(0.1 n) % 2)``."""
    c = max(1, math.ceil(round(frac * size, 9)))
    return c if c % 2 else c - 1


def gaussian_kernel1d(size: int, sigma: float) -> torch.Tensor:
    """Normalised Gaussian taps ``exp(-x^2 / 2 sigma^2)`` at ``x = -(size-1)/2 .. (size-1)/2``."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    k = torch.exp(-(x**2) / (2 * float(sigma) ** 2))
    return (k / k.sum()).float()


def gaussian_blur(
    images: torch.Tensor, sigma: torch.Tensor | float, kernel_size: tuple[int, int]
) -> torch.Tensor:
    """Separable Gaussian blur of ``BxCxHxW`` with one sigma per image, reflect padding
    (kornia ``GaussianBlur2d``'s default border, used by DACS / DAFormer).

    Args:
        images: ``BxCxHxW`` float.
        sigma: ``B`` sigmas in pixels (or one for all).
        kernel_size: odd ``(kh, kw)``; 1 leaves that axis unchanged.
    """
    b, c, h, w = images.shape
    sig = torch.as_tensor(sigma, dtype=torch.float64).flatten().expand(b)
    kh, kw = kernel_size
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"kernel sizes must be odd, got {kernel_size}")
    x = images.reshape(1, b * c, h, w)
    for size, axis in ((kh, 0), (kw, 1)):
        if size == 1:
            continue
        taps = torch.stack([gaussian_kernel1d(size, float(s)) for s in sig])
        taps = taps.repeat_interleave(c, 0).to(images.device, images.dtype)
        shape = (b * c, 1, size, 1) if axis == 0 else (b * c, 1, 1, size)
        pad = (0, 0, size // 2, size // 2) if axis == 0 else (size // 2, size // 2, 0, 0)
        x = F.conv2d(F.pad(x, pad, mode="reflect"), taps.view(shape), groups=b * c)
    return x.reshape(b, c, h, w)


def jitter_factors(u: torch.Tensor, strength: float) -> torch.Tensor:
    """Uniform draws ``u`` (``...x4`` in ``[0, 1)``) -> ``(brightness, contrast, saturation,
    hue)``: the factors uniform in ``[max(0, 1 - s), 1 + s]``, ``[1 - s, 1 + s]`` (twice),
    the hue shift in ``[-s, s]`` turns (torchvision / kornia ``ColorJitter`` ranges)."""
    s = float(strength)
    lo = torch.tensor([max(0.0, 1 - s), 1 - s, 1 - s, -s], dtype=u.dtype)
    hi = torch.tensor([1 + s, 1 + s, 1 + s, s], dtype=u.dtype)
    return lo + (hi - lo) * u


class StrongParams(NamedTuple):
    """The random choices of :func:`strong_augment` for a batch of ``B`` images.

    Attributes:
        jitter: ``B bool``, colour-jitter this image.
        factors: ``Bx4 float64`` brightness, contrast, saturation factors and hue shift
            (:func:`jitter_factors`).
        order: ``Bx4 int64`` the order in which those four are applied (a permutation).
        blur: ``B bool``, blur this image.
        sigma: ``B float64`` blur sigma in pixels.
    """

    jitter: torch.Tensor
    factors: torch.Tensor
    order: torch.Tensor
    blur: torch.Tensor
    sigma: torch.Tensor


def draw_strong_params(
    batch: int, generator: torch.Generator, cfg: SelfTrainConfig
) -> StrongParams:
    """Draw :class:`StrongParams` from ``generator`` (the step's CPU generator,
    :func:`step_generator`); the same values are drawn whatever the probabilities.

    Per image (DACS / DAFormer decide jitter and blur once per batch, with factors and
    sigma per image; here each image decides for itself): jitter with probability
    ``st_jitter_p`` (never when ``st_jitter_strength`` is 0), the four colour ops in a
    random order (as torchvision's and kornia's ``ColorJitter``), blur with probability
    ``st_blur_p`` with sigma ``~U(st_blur_sigma)``.
    """
    u_jit = torch.rand(batch, generator=generator, dtype=torch.float64)
    u_fac = torch.rand(batch, 4, generator=generator, dtype=torch.float64)
    order = torch.rand(batch, 4, generator=generator).argsort(dim=1)
    u_blur = torch.rand(batch, generator=generator, dtype=torch.float64)
    u_sig = torch.rand(batch, generator=generator, dtype=torch.float64)
    lo, hi = cfg.st_blur_sigma
    return StrongParams(
        (u_jit < cfg.st_jitter_p) & (cfg.st_jitter_strength > 0),
        jitter_factors(u_fac, cfg.st_jitter_strength),
        order,
        u_blur < cfg.st_blur_p,
        lo + (hi - lo) * u_sig,
    )


def apply_strong(
    images: torch.Tensor, params: StrongParams, kernel_frac: float = 0.1
) -> torch.Tensor:
    """Colour jitter, then Gaussian blur, as chosen by ``params``.

    Args:
        images: ``Bx3xHxW`` float RGB in ``[0, 1]``.
        params: :class:`StrongParams` for ``B`` images.
        kernel_frac: blur kernel size per axis :func:`blur_kernel_size` of the crop's
            height and width with this fraction.

    Returns:
        a new ``Bx3xHxW`` tensor.
    """
    ops = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
    out = images.clone()
    for i in torch.nonzero(params.jitter).flatten().tolist():
        f = params.factors[i].tolist()
        x = out[i]
        for j in params.order[i].tolist():
            x = ops[j](x, f[j])
        out[i] = x
    blur = torch.nonzero(params.blur).flatten()
    ks = (
        blur_kernel_size(images.shape[2], kernel_frac),
        blur_kernel_size(images.shape[3], kernel_frac),
    )
    if blur.numel() and ks != (1, 1):
        idx = blur.to(out.device)
        out[idx] = gaussian_blur(out[idx], params.sigma[blur], ks)
    return out


def strong_augment(
    images: torch.Tensor, generator: torch.Generator, cfg: SelfTrainConfig
) -> torch.Tensor:
    """DACS's ``strongTransform`` after the mix: :func:`draw_strong_params`, then
    :func:`apply_strong` (``images``: ``Bx3xHxW`` in ``[0, 1]``; returns a new tensor).

    The per-op formulas are torchvision's definitions; kornia 0.5, which DAFormer pins,
    may differ in detail (not verified here).
    """
    params = draw_strong_params(images.shape[0], generator, cfg)
    return apply_strong(images, params, cfg.st_blur_kernel_frac)
