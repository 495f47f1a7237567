"""The three-branch walk (cross-image attention, CACTI, CACTIF) on a tiny random model,
at latent level."""

from __future__ import annotations

import pytest
import torch

from synth2real.diffusion.adain import class_masks
from synth2real.diffusion.bank import ReferenceBank
from synth2real.diffusion.config import CrossImageConfig
from synth2real.diffusion.inversion import Schedule
from synth2real.diffusion.layers import select_layers
from synth2real.diffusion.processors import SwapProcessor
from synth2real.diffusion.walk import cross_image_walk
from synth2real.errors import ConfigError

STEPS, SKIP = 8, 3


def latents(n: int, seed: int, h: int = 8, w: int = 12) -> torch.Tensor:
    return torch.randn(n, 4, h, w, generator=torch.Generator().manual_seed(seed))


def count_rows(unet) -> tuple[list[int], object]:
    rows: list[int] = []
    handle = unet.register_forward_pre_hook(
        lambda m, args, kw: rows.append(args[0].shape[0]), with_kwargs=True
    )
    return rows, handle


@pytest.fixture
def setup(tiny):
    return tiny, Schedule.from_scheduler(tiny.scheduler, STEPS), select_layers(tiny.unet)


def Cfg(**kw) -> CrossImageConfig:  # noqa: N802 - reads like the class it builds
    return CrossImageConfig(num_inference_steps=STEPS, skip=SKIP, **kw)


def walk(setup, cfg: CrossImageConfig, content, refs, bank, masks=None, seeds=None):
    models, sch, layers = setup
    seeds = seeds if seeds is not None else list(range(100, 100 + content.shape[0]))
    with torch.no_grad():
        return cross_image_walk(models, layers, sch, cfg, content, seeds, bank, refs, masks)


def make_bank(setup, n_refs=2, slots=None, k=0, h=8, w=12):
    sch = setup[1]
    return ReferenceBank(
        latents(n_refs, 7, h, w),
        slots or [None] * n_refs,
        sch,
        SKIP,
        [1, 2, 3][:n_refs],
        num_classes=k,
        erosion=0,
    )


def test_without_edits_the_output_is_the_content_reconstruction(setup):
    content = latents(2, 0)
    cfg = Cfg(swap=False, adain="none")
    out = walk(setup, cfg, content, [0, 1], make_bank(setup))
    torch.testing.assert_close(out, content, atol=1e-4, rtol=1e-4)


def test_reference_quirks_zero_the_last_noise_map(setup):
    content = latents(2, 0)
    cfg = Cfg(swap=False, adain="none", reference_quirks=True)
    out = walk(setup, cfg, content, [0, 1], make_bank(setup))
    # the last step lands on its posterior mean, not on x0: a small, non-zero difference
    diff = (out - content).abs().max()
    assert 1e-4 < diff < 0.5


def test_swap_changes_the_output_and_only_out_rows_are_edited(setup):
    content = latents(2, 0)
    base = Cfg(swap=True, adain="none")
    out = walk(setup, base, content, [0, 1], make_bank(setup))
    assert (out - content).abs().max() > 1e-3  # the style's keys/values changed out


def test_batch_layout_and_no_wasted_unet_rows(setup):
    models = setup[0]
    content = latents(3, 1)
    bank = make_bank(setup)
    rows, handle = count_rows(models.unet)
    try:
        walk(
            setup,
            Cfg(swap=False),
            content,
            [0, 1, 0],
            bank,
        )
        assert rows == [6] * (STEPS - SKIP)  # [out x3, content x3]: no style row without swap
        rows.clear()
        walk(setup, Cfg(), content, [0, 1, 0], bank)
        assert rows == [8] * (STEPS - SKIP)  # + one style row per distinct reference
        rows.clear()
        cfg = Cfg(swap_steps=(1, 3))
        walk(setup, cfg, content, [1, 1, 1], bank)
        assert rows == [6, 7, 7, 6, 6]  # style rows only while swapping
    finally:
        handle.remove()


@pytest.mark.parametrize("preset", ["cross-image", "cactif"])
def test_results_do_not_depend_on_the_batch(setup, preset):
    content = latents(3, 2)
    cfg = Cfg(filtering=preset == "cactif")
    bank = make_bank(setup)
    together = walk(setup, cfg, content, [0, 1, 1], bank, seeds=[5, 6, 7])
    for i, (r, s) in enumerate(zip([0, 1, 1], [5, 6, 7], strict=True)):
        alone = walk(setup, cfg, content[i : i + 1], [r], bank, seeds=[s])
        torch.testing.assert_close(together[i : i + 1], alone, atol=1e-4, rtol=1e-4)


def test_global_adain_gives_out_the_style_statistics_at_every_step(setup):
    content = latents(2, 3)
    bank = make_bank(setup)
    out = walk(setup, Cfg(), content, [1, 0], bank)
    var, mean = torch.var_mean(out, dim=(2, 3), correction=0)
    torch.testing.assert_close(mean, bank.global_mean[[1, 0], -1], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(var.sqrt(), bank.global_std[[1, 0], -1], atol=1e-4, rtol=1e-4)


def test_classwise_adain_in_the_walk_reaches_the_reference_class_statistics(setup):
    k = 3
    h, w = 8, 12
    s_ref = torch.zeros(h, w, dtype=torch.long)
    s_ref[:, 6:] = 1
    s_ref[5:, :] = 2
    s_content = torch.zeros(h, w, dtype=torch.long)
    s_content[:4, :] = 2
    s_content[:, 9:] = 1
    bank = make_bank(setup, n_refs=1, slots=[s_ref], k=k)
    masks = class_masks(s_content[None], k, 0)
    n = STEPS - SKIP
    cfg = Cfg(adain="classwise", classwise_steps=(n - 1, n))
    out = walk(setup, cfg, latents(1, 4), [0], bank, masks)
    ref_x0 = bank.xs[0, -1]
    for c in range(k):
        got = out[0][:, s_content == c]
        want = ref_x0[:, s_ref == c]
        torch.testing.assert_close(got.mean(1), want.mean(1), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(
            got.std(1, correction=0), want.std(1, correction=0), atol=1e-4, rtol=1e-4
        )


def test_classwise_needs_labels(setup):
    cfg = Cfg(adain="classwise")
    with pytest.raises(ConfigError):
        walk(setup, cfg, latents(1, 0), [0], make_bank(setup))
    with pytest.raises(ConfigError):
        CrossImageConfig(swap=False, filtering=True)


@pytest.mark.parametrize("hw", [(8, 24), (16, 8), (12, 20)])
def test_odd_latent_sizes_and_aspect_ratios(setup, hw):
    h, w = hw
    cfg = Cfg(filtering=True)
    out = walk(setup, cfg, latents(1, 5, h, w), [0], make_bank(setup, h=h, w=w))
    assert out.shape == (1, 4, h, w) and torch.isfinite(out).all()


def test_the_swap_processors_are_installed_only_while_the_walk_swaps(setup):
    """diffusers style: the edited layers get the swap processors for the swapped steps
    and their own processors back for the others and after the walk."""
    models, _, layers = setup
    key = layers[0].key
    before = dict(models.unet.attn_processors)
    seen = []
    hook = layers[0].module.register_forward_pre_hook(
        lambda mod, args: seen.append(type(mod.processor).__name__)
    )
    try:
        cfg = Cfg(swap_steps=(1, 3), adain="none")
        walk(setup, cfg, latents(1, 0), [0], make_bank(setup))
    finally:
        hook.remove()
    default = type(before[key]).__name__
    assert seen == [default, SwapProcessor.__name__, SwapProcessor.__name__, default, default]
    assert models.unet.attn_processors == before
