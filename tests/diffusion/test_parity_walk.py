"""The whole walk: the official CACTIF code (edit-friendly inversion, 20 steps of its
sampling loop with its attention processors and AdaIN callback) against synth2real's
three-branch walk in reference-quirks mode, fed the official inversion's levels, on a
tiny random UNet in SD 1.5's block layout (CPU).

What is asserted is what already agrees; the known gaps are documented and measured by
``benchmarks/parity_probe.py`` (``docs/benchmarks/parity_probe.md``):

- the UNet here is narrow (8/8/16/16 channels), so the reference's FreeU, keyed on 1280
  and 640 channels, does nothing: synth2real runs with FreeU off. FreeU's own parity is
  ``test_parity_freeu.py`` (SD 1.5's widths);
- the last step's AdaIN: the reference aims at its style row after the last step, whose
  noise map is zero (the style's posterior mean), synth2real at the style's clean latent.
  The latents entering that AdaIN agree; the result after it is not compared;
- class-wise AdaIN: the reference's erosion (``scipy.ndimage.binary_erosion``,
  ``border_value=0``) erodes the image border, synth2real's does not; with labels that
  keep every class off the border, the class-wise presets agree;
- AdaIN statistics: the reference uses ``sqrt(var + 1e-5)`` (unbiased variance for global
  AdaIN), synth2real the population std. At 16 x 32 latents with SD-scaled latents this
  stays below 1e-5; for classes of a few latent pixels (small variance) it reaches a few
  1e-4 (measured by the probe).
"""

from __future__ import annotations

import pytest

from tests.diffusion.reference import cactif, loader, models, ours

TOL = 1e-4


@pytest.fixture(scope="module")
def setup():
    loader.cactif()  # skips the module's tests without the reference code
    tiny = models.tiny_sd(sample_size=16)  # latents 16 x 32, images 128 x 256
    style = models.random_image(tiny.image_hw, seed=1)
    content = models.random_image(tiny.image_hw, seed=2)
    official = cactif.OfficialCACTIF(tiny, "cross-image")
    inverted = official.invert_pair(style, content)  # the inversion is the same for all presets
    return tiny, inverted, official


def _ours(tiny, inverted, preset, labels=None):
    s_inv, c_inv = inverted
    lc, ls = labels if labels is not None else (None, None)
    return ours.walk(
        tiny,
        s_inv.xts,
        c_inv.xts,
        ours.WalkOptions(preset, quirks=True, swap_steps=(2, 20), freeu="off"),
        label_content=lc,
        label_style=ls,
        num_classes=models.LABEL_CLASSES,
    )


def _check(official: cactif.OfficialWalk, mine: ours.WalkRecord) -> None:
    before = ours.per_step(official.out_before_adain, mine.before)
    after = ours.per_step(official.out[:-1], mine.after[:-1])
    assert max(before) <= TOL, before  # every step's DDPM update, the last one included
    assert max(after) <= TOL, after  # every AdaIN but the last (see the module docstring)


@pytest.mark.slow
def test_cross_image_walk_agrees_at_every_step(setup):
    tiny, inverted, official = setup
    walk = official.walk(*inverted)
    assert walk.swapped == [False, False] + [True] * 18  # swap_steps=(2, 20), first image
    _check(walk, _ours(tiny, inverted, "cross-image"))


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["cacti", "cactif"])
def test_classwise_walks_agree_when_no_class_touches_the_border(setup, preset):
    tiny, inverted, _ = setup
    labels = models.latent_labels(tiny.latent_hw, framed=True)
    walk = cactif.OfficialCACTIF(tiny, preset).walk(*inverted, *labels)
    _check(walk, _ours(tiny, inverted, preset, labels))


@pytest.mark.slow
def test_the_official_rows_reproduce_their_inversion_and_later_images_skip_step_1(setup):
    tiny, inverted, official = setup
    s_inv, c_inv = inverted
    walk = official.walk(s_inv, c_inv, first_image=False)
    # the step counter is set after each step and never reset: a later image swaps at its
    # step 0 (counter still at the previous image's 19), not at step 1, then from step 2
    assert walk.swapped == [True, False] + [True] * 18
    skip = walk.skip
    for j, rows in enumerate(walk.steps[:-1]):  # style and content follow their own levels
        assert ours.max_abs(rows[1], s_inv.xts[skip + j + 1]) <= TOL
        assert ours.max_abs(rows[2], c_inv.xts[skip + j + 1]) <= TOL
    # ... except after the last step, whose noise map the reference zeroes
    assert ours.max_abs(walk.steps[-1][2], c_inv.x0) > 10 * TOL


def test_the_reference_draws_its_levels_from_the_global_stream_last_level_first(setup):
    _, (s_inv, c_inv), _ = setup
    # the style is inverted first after torch.manual_seed(42) (run.py's set_seed)
    draws = cactif.reference_draws(s_inv.x0, seed=42)
    assert ours.max_abs(draws, s_inv.xts) <= 1e-5  # levels 1..T carry the float correction
    # the content, inverted next, continues the stream: other draws
    assert ours.max_abs(cactif.noise_of(c_inv), cactif.noise_of(s_inv)) > 1.0
