"""Noise schedules, edit-friendly DDPM inversion and DDIM inversion, on latents.

Everything here works on ``float32`` latents ``x: (B, C, h, w)`` and a *noise predictor*
``eps_fn(x, i) -> eps`` (the UNet's noise prediction for the latents at step index ``i``,
already converted to an epsilon prediction); no file, image or model loading. The
pipeline wraps the UNet into such a function; tests pass tiny random UNets.

Step indices ``i = 0 .. T-1`` name the scheduler timesteps ``t_0 > t_1 > ... > t_{T-1}``
(SD 1.5, 50 steps, "leading" spacing: 981, 961, ..., 1); a *level* ``i`` holds ``x`` at
noise level ``abar(t_i)``, level ``T`` is the clean latent ``x_0`` (``abar`` =
``final_alpha_cumprod`` when a step needs the level below ``t_{T-1}``). Starting at
step ``S`` (``skip``) runs ``T - S`` denoising steps from ``t_S`` (SD 1.5, T = 50, S = 30:
20 steps from t = 381). The coefficients are Python floats computed once on the host, so
the loops never synchronise with the device.

Edit-friendly DDPM inversion (Huberman-Spiegelglas et al., CVPR 2024; METHOD.md):
every ``x_i`` is drawn independently from ``q(x_i | x_0)``; walking down, the noise map
``z_i = (x_{i+1} - mu(x_i, i)) / sigma_i`` makes the DDPM (eta = 1) step
``x_{i+1} = mu(x_i, i) + sigma_i z_i`` land exactly on the drawn ``x_{i+1}``. Sampling from
``x_S`` with the same ``z`` reproduces ``x_0`` whatever the noise predictor (the tests
check it with a DDPM sampler of their own; the walk in :mod:`.walk` feeds the
drawn levels to the UNet directly).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from synth2real.errors import ConfigError

#: ``eps_fn(x, i)``: epsilon prediction for latents ``x`` (float32) at step index ``i``.
NoiseFn = Callable[[Tensor, int], Tensor]


@dataclass(frozen=True)
class Schedule:
    """A discrete noise schedule restricted to ``T`` inference steps.

    Attributes:
        timesteps: ``t_0 > ... > t_{T-1}`` as ints (training-timestep units, e.g. 0..999).
        alphas_cumprod: ``abar(t)`` for every training timestep, float64.
        final_alpha_cumprod: ``abar`` of the level below the last step.
        prediction_type: what the model predicts: ``"epsilon"`` or ``"v_prediction"``.
    """

    timesteps: tuple[int, ...]
    alphas_cumprod: np.ndarray
    final_alpha_cumprod: float
    prediction_type: str = "epsilon"

    def __post_init__(self) -> None:
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ConfigError(
                f"unsupported prediction_type {self.prediction_type!r} "
                "(epsilon and v_prediction models are supported)"
            )
        if len(self.timesteps) < 1:
            raise ConfigError("a schedule needs at least one step")

    @classmethod
    def from_scheduler(cls, scheduler, num_inference_steps: int) -> Schedule:
        """Build from a diffusers scheduler (DDIM/DDPM/PNDM configs alike).

        The scheduler's own ``set_timesteps`` decides the spacing (SD 1.5: "leading" with
        ``steps_offset = 1``), so nothing about the 50-step grid is hard-coded here.
        """
        if num_inference_steps < 1:
            raise ConfigError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        from diffusers import DDIMScheduler

        ddim = DDIMScheduler.from_config(scheduler.config)
        ddim.set_timesteps(num_inference_steps)
        return cls(
            timesteps=tuple(int(t) for t in ddim.timesteps.tolist()),
            alphas_cumprod=ddim.alphas_cumprod.double().cpu().numpy(),
            final_alpha_cumprod=float(ddim.final_alpha_cumprod),
            prediction_type=str(ddim.config.prediction_type),
        )

    # -- levels --------------------------------------------------------------------------
    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    def abar(self, level: int) -> float:
        """``abar`` at level ``level`` (``0 .. T``; level ``T`` is the final level)."""
        if level >= self.num_steps:
            return self.final_alpha_cumprod
        return float(self.alphas_cumprod[self.timesteps[level]])

    def check_skip(self, skip: int) -> None:
        if not 0 <= skip < self.num_steps:
            raise ConfigError(
                f"skip must be in [0, {self.num_steps - 1}] for {self.num_steps} steps, got {skip}"
            )

    # -- step coefficients -----------------------------------------------------------------
    def ddpm_coefficients(self, i: int) -> tuple[float, float, float]:
        """``(c_x, c_eps, sigma)`` of the DDPM (eta = 1) step from level ``i`` to ``i + 1``:
        ``mu = c_x * x + c_eps * eps`` and the posterior standard deviation ``sigma``.

        With ``a = abar(i)``, ``a' = abar(i + 1)``: ``x0 = (x - sqrt(1 - a) eps) / sqrt(a)``,
        ``var = (1 - a') / (1 - a) * (1 - a / a')``,
        ``mu = sqrt(a') x0 + sqrt(1 - a' - var) eps``.
        """
        a, ap = self.abar(i), self.abar(i + 1)
        var = (1.0 - ap) / (1.0 - a) * (1.0 - a / ap)
        var = min(max(var, 0.0), 1.0 - ap)
        c_x = math.sqrt(ap / a)
        c_eps = math.sqrt(max(1.0 - ap - var, 0.0)) - math.sqrt(ap * (1.0 - a) / a)
        return c_x, c_eps, math.sqrt(var)

    def ddim_coefficients(self, i: int) -> tuple[float, float]:
        """``(c_x, c_eps)`` of the deterministic DDIM (eta = 0) step from level ``i`` to
        ``i + 1``: ``x' = c_x * x + c_eps * eps``."""
        return _ddim_move(self.abar(i), self.abar(i + 1))

    def ddim_inverse_coefficients(self, i: int) -> tuple[float, float]:
        """``(c_x, c_eps)`` of the DDIM inversion step from level ``i + 1`` up to ``i``."""
        return _ddim_move(self.abar(i + 1), self.abar(i))

    def to_epsilon(self, model_output: Tensor, x: Tensor, i: int) -> Tensor:
        """Convert the model's raw output at level ``i`` to an epsilon prediction."""
        if self.prediction_type == "epsilon":
            return model_output
        a = self.abar(i)
        return math.sqrt(a) * model_output + math.sqrt(1.0 - a) * x


def _ddim_move(a_from: float, a_to: float) -> tuple[float, float]:
    # x0 = (x - sqrt(1 - a_from) eps) / sqrt(a_from);  x' = sqrt(a_to) x0 + sqrt(1 - a_to) eps
    c_x = math.sqrt(a_to / a_from)
    c_eps = math.sqrt(1.0 - a_to) - math.sqrt(a_to * (1.0 - a_from) / a_from)
    return c_x, c_eps


# ---------------------------------------------------------------------------------------
# edit-friendly DDPM inversion
# ---------------------------------------------------------------------------------------
def make_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per batch element (draws never depend on the batch layout)."""
    return [torch.Generator("cpu").manual_seed(int(s) % (2**63 - 1)) for s in seeds]


def sample_levels(
    x0: Tensor, schedule: Schedule, skip: int, generators: Sequence[torch.Generator]
) -> Tensor:
    """Draw ``x_i ~ q(x_i | x_0) = N(sqrt(abar_i) x_0, (1 - abar_i) I)`` independently for
    every level ``i = skip .. T - 1``, and append ``x_0`` itself as level ``T``.

    Args:
        x0: ``(B, C, h, w)`` clean latents (any float dtype; the result is float32).
        schedule: the schedule.
        skip: first level drawn (``S``).
        generators: one CPU generator per batch element; noise is drawn on the CPU (the
            same numbers on every device) and moved to ``x0``'s device.

    Returns:
        ``(T - S + 1, B, C, h, w)`` float32: position ``j`` holds level ``S + j``.
    """
    schedule.check_skip(skip)
    b = x0.shape[0]
    if len(generators) != b:
        raise ConfigError(f"{len(generators)} generators for a batch of {b}")
    n = schedule.num_steps - skip
    noise = torch.stack(
        [torch.randn((n, *x0.shape[1:]), generator=g, dtype=torch.float32) for g in generators],
        dim=1,
    ).to(x0.device)
    x0 = x0.float()
    levels = torch.empty((n + 1, *x0.shape), dtype=torch.float32, device=x0.device)
    for j in range(n):
        a = schedule.abar(skip + j)
        levels[j] = math.sqrt(a) * x0 + math.sqrt(1.0 - a) * noise[j]
    levels[n] = x0
    return levels


@dataclass
class Inversion:
    """Result of :func:`edit_friendly_inversion`.

    Attributes:
        xs: ``(T - S + 1, B, C, h, w)`` latents at levels ``S .. T`` (``xs[-1] = x_0``).
        zs: ``(T - S, B, C, h, w)`` noise maps of the steps ``S .. T - 1``.
        skip: ``S``.
    """

    xs: Tensor
    zs: Tensor
    skip: int


def _sigma_or_one(sigma: float) -> float:
    # a step with sigma = 0 (final_alpha_cumprod = 1) is deterministic: keep the residual
    # x_{i+1} - mu itself as its "noise map" so that sampling stays exact.
    return sigma if sigma > 0.0 else 1.0


def edit_friendly_inversion(
    eps_fn: NoiseFn,
    x0: Tensor,
    schedule: Schedule,
    skip: int,
    generators: Sequence[torch.Generator],
) -> Inversion:
    """Edit-friendly DDPM inversion of ``x0`` for the steps ``skip .. T - 1``.

    The first ``skip`` noise maps are never used by sampling from level ``skip``, so they
    are not computed (``T - S`` noise predictions, not ``T``).

    Args:
        eps_fn: noise predictor ``eps_fn(x, i)``.
        x0: ``(B, C, h, w)`` latents of the images.
        schedule: the schedule.
        skip: ``S``, the level sampling will start from.
        generators: one CPU generator per batch element (see :func:`sample_levels`).
    """
    xs = sample_levels(x0, schedule, skip, generators)
    zs = torch.empty_like(xs[:-1])
    for j in range(schedule.num_steps - skip):
        i = skip + j
        c_x, c_eps, sigma = schedule.ddpm_coefficients(i)
        mu = c_x * xs[j] + c_eps * eps_fn(xs[j], i).float()
        s = _sigma_or_one(sigma)
        zs[j] = (xs[j + 1] - mu) / s
        xs[j + 1] = mu + s * zs[j]  # removes the rounding error of the division
    return Inversion(xs=xs, zs=zs, skip=skip)


# ---------------------------------------------------------------------------------------
# DDIM (eta = 0) inversion and sampling, for StyleID
# ---------------------------------------------------------------------------------------
def ddim_inversion(eps_fn: NoiseFn, x0: Tensor, schedule: Schedule, stop: int = 0) -> Tensor:
    """Deterministic DDIM inversion from ``x_0`` up to level ``stop``.

    Step ``i`` (from ``T - 1`` down to ``stop``) moves ``x`` from level ``i + 1`` to level
    ``i`` with the noise predicted at step ``i`` (timestep ``t_i``) on the current ``x``,
    as StyleID does; ``eps_fn`` is called with that ``i`` (processors that record
    features key them by it).

    Returns:
        ``(B, C, h, w)`` float32 latents at level ``stop`` (``z_T`` when ``stop = 0``).
    """
    schedule.check_skip(stop)
    x = x0.float()
    for i in range(schedule.num_steps - 1, stop - 1, -1):
        c_x, c_eps = schedule.ddim_inverse_coefficients(i)
        x = c_x * x + c_eps * eps_fn(x, i).float()
    return x


def ddim_sample(
    eps_fn: NoiseFn,
    x_start: Tensor,
    schedule: Schedule,
    start: int = 0,
    *,
    x0_last: bool = False,
    callback: Callable[[int, Tensor], None] | None = None,
) -> Tensor:
    """Deterministic DDIM (eta = 0) sampling from level ``start`` to the clean latent.

    Args:
        x0_last: return the last step's predicted clean latent
            ``(x - sqrt(1 - abar) eps) / sqrt(abar)`` instead of the step itself (what the
            StyleID port decodes; the step goes to ``final_alpha_cumprod``, not 1).
        callback: called as ``callback(level, x)`` with the starting latent (level
            ``start``) and after every step (level ``i + 1``, the returned latent last).
    """
    schedule.check_skip(start)
    x = x_start.float()
    if callback is not None:
        callback(start, x)
    for i in range(start, schedule.num_steps):
        eps = eps_fn(x, i).float()
        if x0_last and i == schedule.num_steps - 1:
            a = schedule.abar(i)
            x = (x - math.sqrt(1.0 - a) * eps) / math.sqrt(a)
        else:
            c_x, c_eps = schedule.ddim_coefficients(i)
            x = c_x * x + c_eps * eps
        if callback is not None:
            callback(i + 1, x)
    return x
