"""Small data builders and reference maths shared by the diffusion tests."""

from __future__ import annotations

import numpy as np
import torch

from synth2real.data.classes import ClassSpec
from synth2real.diffusion.adain import adain, channel_stats
from synth2real.diffusion.inversion import NoiseFn, Schedule
from synth2real.errors import ConfigError
from synth2real.methods.base import References


def blobs(h: int, w: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random image and a label map of ``k`` rectangular regions (HxW uint8)."""
    rng = np.random.default_rng(seed)
    label = np.zeros((h, w), np.uint8)
    for c in range(1, k):
        y, x = rng.integers(0, h), rng.integers(0, w)
        label[y : y + max(4, h // 3), x : x + max(4, w // 3)] = c
    base = rng.integers(0, 255, (k, 3))
    image = base[label].astype(np.float64) + rng.normal(0, 12, (h, w, 3))
    return np.clip(image, 0, 255).astype(np.uint8), label


def make_references(n: int = 2, h: int = 64, w: int = 64, k: int = 3, seed: int = 10) -> References:
    images, labels = zip(*(blobs(h, w, k, seed + i) for i in range(n)), strict=True)
    names = tuple(f"c{i}" for i in range(k))
    return References(list(images), list(labels), [f"ref{i}" for i in range(n)], ClassSpec(names))


def adain_to(x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """Global AdaIN of ``x`` towards the statistics of ``style`` (same shape or batch 1)."""
    sm, ss = channel_stats(style)
    return adain(x, sm, ss)


def ddpm_sample(
    eps_fn: NoiseFn, x_start: torch.Tensor, zs: torch.Tensor, schedule: Schedule, skip: int
) -> torch.Tensor:
    """DDPM (eta = 1) sampling from level ``skip`` with given noise maps:
    ``x_{i+1} = mu(x_i, i) + sigma_i z_i``; with the ``zs`` of ``edit_friendly_inversion``
    this reproduces the inverted ``x_0`` (a step with ``sigma = 0`` adds ``z`` itself, as
    the inversion keeps the residual as its noise map there).

    Args:
        eps_fn: noise predictor.
        x_start: ``(B, C, h, w)`` latents at level ``skip``.
        zs: ``(T - skip, B, C, h, w)`` noise maps.
        schedule: the schedule.
        skip: the starting level.

    Returns:
        ``(B, C, h, w)`` float32 latents at level ``T``.
    """
    schedule.check_skip(skip)
    if zs.shape[0] != schedule.num_steps - skip:
        raise ConfigError(f"{zs.shape[0]} noise maps for {schedule.num_steps - skip} steps")
    x = x_start.float()
    for j in range(schedule.num_steps - skip):
        i = skip + j
        c_x, c_eps, sigma = schedule.ddpm_coefficients(i)
        x = c_x * x + c_eps * eps_fn(x, i).float() + (sigma if sigma > 0.0 else 1.0) * zs[j]
    return x
