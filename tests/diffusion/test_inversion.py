"""Schedules, edit-friendly DDPM inversion and DDIM inversion on tiny random UNets."""

from __future__ import annotations

import math

import pytest
import torch

from synth2real.diffusion.inversion import (
    Schedule,
    ddim_inversion,
    ddim_sample,
    edit_friendly_inversion,
    make_generators,
    sample_levels,
)
from synth2real.errors import ConfigError
from tests.diffusion.helpers import ddpm_sample
from tests.diffusion.tiny import tiny_scheduler, tiny_unet


def sd15_schedule(steps: int = 50) -> Schedule:
    # tiny_scheduler() is SD 1.5's scheduler config (a PNDM config, as shipped)
    return Schedule.from_scheduler(tiny_scheduler(), steps)


def unet_eps(unet, schedule: Schedule, emb: torch.Tensor):
    def eps_fn(x: torch.Tensor, i: int) -> torch.Tensor:
        out = unet(
            x, schedule.timesteps[i], encoder_hidden_states=emb.expand(x.shape[0], -1, -1)
        ).sample
        return schedule.to_epsilon(out, x, i)

    return eps_fn


def test_sd15_schedule_skip_30_starts_at_t381():
    sch = sd15_schedule()
    assert sch.num_steps == 50
    assert sch.timesteps[0] == 981 and sch.timesteps[-1] == 1
    assert sch.timesteps[30] == 381  # METHOD.md: skip 30 of 50 -> 20 steps from t = 381
    assert len(sch.timesteps[30:]) == 20
    # the level below the last step is alphas_cumprod[0] (set_alpha_to_one = False)
    assert sch.abar(50) == pytest.approx(float(sch.alphas_cumprod[0]))


def test_schedule_follows_the_scheduler_not_a_hard_coded_grid():
    sch = sd15_schedule(25)
    assert sch.timesteps[:2] == (961, 921)
    from diffusers import DDIMScheduler

    trailing = DDIMScheduler.from_config(tiny_scheduler().config, timestep_spacing="trailing")
    assert Schedule.from_scheduler(trailing, 10).timesteps[:2] == (999, 899)


@torch.no_grad()
@pytest.mark.parametrize("steps,skip", [(50, 30), (12, 0), (50, 47)])
def test_edit_friendly_inversion_then_sampling_reproduces_x0(steps, skip):
    sch = sd15_schedule(steps)
    unet = tiny_unet(seed=3).eval()
    emb = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(0))
    eps_fn = unet_eps(unet, sch, emb)
    x0 = torch.randn(2, 4, 8, 12, generator=torch.Generator().manual_seed(1))
    inv = edit_friendly_inversion(eps_fn, x0, sch, skip, make_generators([5, 6]))
    n = steps - skip
    assert inv.xs.shape == (n + 1, 2, 4, 8, 12) and inv.zs.shape == (n, 2, 4, 8, 12)
    torch.testing.assert_close(inv.xs[-1], x0)
    rec = ddpm_sample(eps_fn, inv.xs[0], inv.zs, sch, skip)
    torch.testing.assert_close(rec, x0, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_reconstruction_does_not_depend_on_the_noise_predictor():
    """Inverting and sampling with the same predictor reproduces x0, whatever the
    predictor: a random UNet or an arbitrary non-linear function."""
    sch = sd15_schedule(20)
    x0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))

    def weird(x, i):
        return torch.sin(3 * x) + 0.1 * i

    for eps_fn in (weird, unet_eps(tiny_unet(seed=9).eval(), sch, torch.zeros(1, 8, 8))):
        inv = edit_friendly_inversion(eps_fn, x0, sch, 5, make_generators([0]))
        torch.testing.assert_close(
            ddpm_sample(eps_fn, inv.xs[0], inv.zs, sch, 5), x0, atol=1e-5, rtol=1e-5
        )


def test_levels_are_independent_draws_per_element():
    sch = sd15_schedule()
    x0 = torch.randn(3, 4, 8, 8)
    a = sample_levels(x0, sch, 30, make_generators([1, 2, 3]))
    # element 1 alone, with its own seed: identical draws (no dependence on the batch)
    b = sample_levels(x0[1:2], sch, 30, make_generators([2]))
    torch.testing.assert_close(a[:, 1:2], b)
    # level i follows q(x_i | x0): (x_i - sqrt(abar) x0) / sqrt(1 - abar) is standard noise
    x0 = torch.zeros(1, 4, 64, 64)
    lv = sample_levels(x0, sch, 0, make_generators([7]))
    j = 10
    noise = lv[j] / math.sqrt(1 - sch.abar(j))
    assert abs(float(noise.mean())) < 0.05 and abs(float(noise.std()) - 1) < 0.05
    # consecutive levels are not a chain: their noises are uncorrelated
    n2 = lv[j + 1] / math.sqrt(1 - sch.abar(j + 1))
    assert abs(float((noise * n2).mean())) < 0.05


def test_ddpm_step_is_the_posterior_mean_and_std():
    sch = sd15_schedule()
    i = 30
    a, ap = sch.abar(i), sch.abar(i + 1)
    c_x, c_eps, sigma = sch.ddpm_coefficients(i)
    x, eps = torch.randn(4), torch.randn(4)
    x0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
    var = (1 - ap) / (1 - a) * (1 - a / ap)
    mu = math.sqrt(ap) * x0 + math.sqrt(1 - ap - var) * eps
    torch.testing.assert_close(c_x * x + c_eps * eps, mu)
    assert sigma == pytest.approx(math.sqrt(var))


def test_v_prediction_is_converted_to_epsilon():
    sch = Schedule(
        sd15_schedule().timesteps, sd15_schedule().alphas_cumprod, 0.9991, "v_prediction"
    )
    i = 12
    a = sch.abar(i)
    x0, e = torch.randn(5), torch.randn(5)
    x = math.sqrt(a) * x0 + math.sqrt(1 - a) * e
    v = math.sqrt(a) * e - math.sqrt(1 - a) * x0
    torch.testing.assert_close(sch.to_epsilon(v, x, i), e)
    with pytest.raises(ConfigError):
        Schedule(sch.timesteps, sch.alphas_cumprod, 0.9991, "sample")


@torch.no_grad()
def test_ddim_inversion_is_exact_for_a_predictor_independent_of_x():
    sch = sd15_schedule(20)
    x0 = torch.randn(2, 4, 8, 8)
    const = torch.randn(2, 4, 8, 8)

    def eps_fn(x, i):
        return const * (1 + 0.01 * i)

    for stop in (0, 7):
        z = ddim_inversion(eps_fn, x0, sch, stop=stop)
        torch.testing.assert_close(
            ddim_sample(eps_fn, z, sch, start=stop), x0, atol=1e-4, rtol=1e-4
        )


@torch.no_grad()
def test_ddim_inversion_calls_steps_from_the_last_down_to_stop():
    sch = sd15_schedule(10)
    seen = []
    ddim_inversion(
        lambda x, i: seen.append(i) or torch.zeros_like(x), torch.zeros(1, 4, 2, 2), sch, stop=3
    )
    assert seen == [9, 8, 7, 6, 5, 4, 3]


def test_bad_skip_is_a_config_error():
    sch = sd15_schedule(10)
    with pytest.raises(ConfigError):
        sample_levels(torch.zeros(1, 4, 2, 2), sch, 10, make_generators([0]))
    with pytest.raises(ConfigError):
        Schedule.from_scheduler(tiny_scheduler(), 0)
