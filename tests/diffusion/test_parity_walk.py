"""The whole walk: the official CACTIF code (edit-friendly inversion, the 20 steps of its
sampling loop with its attention processors and AdaIN callback) against synth2real's
three-branch walk with ``reference_quirks``, on a tiny random UNet in SD 1.5's block
layout (CPU), compared at every step before and after AdaIN, the last step included.

The label maps have classes on the image border (where the reference's erosion differs
from synth2real's default), a one-pixel line that erosion removes, a class missing from
the style, and pixels of no class. The UNet is narrow (8/8/16/16 channels), so the
reference's FreeU, keyed on 1280 and 640 channels, does nothing here and synth2real runs
with ``freeu="off"``; FreeU's own parity is ``test_parity_freeu.py`` (SD 1.5's widths).
What each quirk is worth is measured by ``benchmarks/parity_probe.py``.
"""

from __future__ import annotations

import pytest
import torch

from tests.diffusion.reference import cactif, loader, models, ours

TOL = 1e-4
SEED = 42  # run.py's set_seed, and the torch.manual_seed(42) of utils/adain.py


@pytest.fixture(scope="module")
def setup():
    loader.cactif()  # skips the module's tests without the reference code
    tiny = models.tiny_sd(sample_size=8)  # latents 8 x 16, images 64 x 128
    style = models.random_image(tiny.image_hw, seed=1)
    content = models.random_image(tiny.image_hw, seed=2)
    official = cactif.OfficialCACTIF(tiny, "cross-image")
    # both inverted right after torch.manual_seed(42): the state of every style and of
    # every content image but the first in the reference's CACTI/CACTIF runs
    with loader.preserved_rng():
        torch.manual_seed(SEED)
        s_inv = official.invert(style)
        torch.manual_seed(SEED)
        c_inv = official.invert(content)
    labels = models.latent_labels(tiny.latent_hw)  # classes touch the border
    return tiny, (s_inv, c_inv), labels


def _ours(tiny, inverted, preset, labels=None, **options):
    s_inv, c_inv = inverted
    lc, ls = labels if labels is not None else (None, None)
    return ours.walk(
        tiny,
        s_inv.xts,
        c_inv.xts,
        ours.WalkOptions(preset, **options),
        label_content=lc,
        label_style=ls,
        num_classes=models.LABEL_CLASSES,
        levels=not options.get("shared_noise", False),
    )


def _check(official: cactif.OfficialWalk, mine: ours.WalkRecord) -> list[float]:
    assert mine.swapped == official.swapped
    before = ours.per_step(official.out_before_adain, mine.before)
    after = ours.per_step(official.out, mine.after)
    assert max(before) <= TOL, before  # every step's DDPM update
    assert max(after) <= TOL, after  # every AdaIN, the last one included
    print(f"max abs difference: before AdaIN {max(before):.1e}, after {max(after):.1e}")
    return after


@pytest.mark.slow
def test_cross_image_walk_agrees_at_every_step_of_a_runs_first_image(setup):
    tiny, inverted, _ = setup
    walk = cactif.OfficialCACTIF(tiny, "cross-image").walk(*inverted)
    # the reference's step counter is set after each step and starts at 0: no swap on
    # steps 0 and 1 of a run's first image; swap_steps=[2, 20] says the same
    assert walk.swapped == [False, False] + [True] * 18
    _check(walk, _ours(tiny, inverted, "cross-image", swap_steps=(2, 20)))


@pytest.mark.slow
def test_cacti_walk_agrees_at_every_step_with_classes_on_the_border(setup):
    tiny, inverted, labels = setup
    walk = cactif.OfficialCACTIF(tiny, "cacti").walk(*inverted, *labels, first_image=False)
    # a later image of a run: the counter still holds the previous image's last step
    assert walk.swapped == [True, False] + [True] * 18
    _check(walk, _ours(tiny, inverted, "cacti", labels, swap_steps=None))


@pytest.mark.slow
def test_cactif_walk_with_its_own_shared_noise_draws_agrees_at_every_step(setup):
    """synth2real draws the levels itself (``shared_noise``) instead of being fed the
    official inversion's: the reference's draws after ``torch.manual_seed(42)``."""
    tiny, inverted, labels = setup
    s_inv, c_inv = inverted
    walk = cactif.OfficialCACTIF(tiny, "cactif").walk(*inverted, *labels, first_image=False)
    _check(walk, _ours(tiny, inverted, "cactif", labels, swap_steps=None, shared_noise=True))
    # the style and content rows reproduce their own levels, but the last, whose noise
    # map the reference zeroes
    skip = walk.skip
    for j, rows in enumerate(walk.steps[:-1]):
        assert ours.max_abs(rows[1], s_inv.xts[skip + j + 1]) <= TOL
        assert ours.max_abs(rows[2], c_inv.xts[skip + j + 1]) <= TOL
    assert ours.max_abs(walk.steps[-1][2], c_inv.x0) > 10 * TOL


def test_shared_noise_draws_are_the_official_inversions_levels(setup):
    from synth2real.diffusion.quirks import reference_levels

    _, (s_inv, c_inv), _ = setup
    sch = ours.schedule(50)
    for inv in (s_inv, c_inv):
        mine = reference_levels(inv.x0[None], sch, 0)[:, 0]
        # levels 1..T of the official ones carry the inversion's float correction
        assert ours.max_abs(mine, inv.xts) <= 1e-5
        # level 0 is never corrected: the same formula, equal up to the float rounding
        # of the machine's vector kernels (not bit-equal on every CPU)
        assert ours.max_abs(mine[0], inv.xts[0]) <= 1e-6
    # contents and styles share the draws: the same unit noise at every level
    assert ours.max_abs(cactif.noise_of(c_inv), cactif.noise_of(s_inv)) <= 1e-4
    # the recipe of the harness (randn_like on the global generator) draws the same
    assert ours.max_abs(cactif.reference_draws(s_inv.x0, seed=SEED), s_inv.xts) <= 1e-5
