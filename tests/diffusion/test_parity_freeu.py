"""FreeU (``synth2real.diffusion.freeu``): the reference code's form as pre-hooks on the
up-blocks, checked against the official ``FreeUUNet2DConditionModel.forward``; diffusers'
form and "off"; installing and removing."""

from __future__ import annotations

import pytest
import torch

from synth2real.diffusion.freeu import (
    FreeUOptions,
    FreeUStage,
    fourier_filter,
    install_freeu,
    reference_freeu,
    reference_stages,
)
from synth2real.errors import ConfigError
from tests.diffusion.reference import loader, models


def _inputs(unet, batch: int = 2, hw: tuple[int, int] = (8, 24), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, 4, *hw), generator=g)
    emb = torch.randn((batch, 8, unet.config.cross_attention_dim), generator=g)
    return x, emb


def _forward(unet, x, emb, t: int = 381) -> torch.Tensor:
    with torch.no_grad():
        return unet(x, t, encoder_hidden_states=emb).sample


@pytest.fixture
def narrow():
    return models.sd_layout_unet((8, 8, 16, 16), layers_per_block=1)


@pytest.mark.slow
def test_reference_hooks_equal_the_official_unet_forward_at_sd15_widths():
    ref = loader.cactif()  # skips without the reference code
    unet = models.sd15_width_unet()
    # latent 8 x 24: the up-blocks see 1x3 (odd, and a size-1 axis), 2x6, 4x12, 8x24
    x, emb = _inputs(unet, batch=1)
    official_forward = ref.models_unet_2d_condition.FreeUUNet2DConditionModel.forward
    with torch.no_grad(), loader.cuda_is_cpu():
        official = official_forward(unet, x.clone(), 381, encoder_hidden_states=emb).sample
    plain = _forward(unet, x, emb)
    with install_freeu(unet, "reference") as handle:
        ours = _forward(unet, x, emb)
    assert [(s.block, s.width, s.scaled) for s in handle.stages] == [
        (0, 1280, 640),
        (1, 1280, 640),
        (2, 1280, 640),
        (3, 640, 320),
    ]
    assert float((official - plain).abs().max()) > 1e-2  # FreeU does change the output
    assert float((ours - official).abs().max()) <= 1e-6
    torch.testing.assert_close(_forward(unet, x, emb), plain, rtol=0, atol=0)  # removed


def test_stages_follow_the_unet_configuration():
    from diffusers import UNet2DConditionModel

    def stages(widths, **kw):
        with torch.device("meta"):
            unet = UNet2DConditionModel(block_out_channels=widths, **kw)
        return [(s.block, s.width, s.scaled, s.backbone, s.fourier) for s in reference_stages(unet)]

    # SD 1.5 / 2.x: the reference's literal 1280 and 640
    assert stages((320, 640, 1280, 1280)) == [
        (0, 1280, 640, 1.2, 0.9),
        (1, 1280, 640, 1.2, 0.9),
        (2, 1280, 640, 1.2, 0.9),
        (3, 640, 320, 1.4, 0.2),
    ]
    # SDXL-like widths: the same stages, one level less
    sdxl = stages(
        (320, 640, 1280),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    )
    assert sdxl == [(0, 1280, 640, 1.2, 0.9), (1, 1280, 640, 1.2, 0.9), (2, 640, 320, 1.4, 0.2)]
    # narrow test UNets get the analogous stages (the reference's literal test: none)
    assert stages((8, 8, 16, 16), norm_num_groups=4) == [
        (0, 16, 8, 1.2, 0.9),
        (1, 16, 8, 1.2, 0.9),
        (2, 16, 8, 1.2, 0.9),
        (3, 8, 4, 1.4, 0.2),
    ]


@pytest.mark.parametrize("hw", [(1, 3), (2, 6), (4, 12), (5, 7), (8, 8)])
def test_fourier_filter_equals_the_reference(hw):
    ref = loader.cactif()
    x = torch.randn((2, 6, *hw), generator=torch.Generator().manual_seed(1))
    with loader.cuda_is_cpu():
        official = ref.models_unet_2d_condition.Fourier_filter(x, threshold=1, scale=0.2)
    assert torch.equal(fourier_filter(x, 1, 0.2), official)


def test_fourier_filter_scales_the_low_frequencies_only():
    x = torch.randn((1, 3, 8, 10), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(fourier_filter(x, 1, 1.0), x, rtol=0, atol=1e-6)
    # the mean is the zero frequency, inside the scaled block
    out = fourier_filter(x, 1, 0.5)
    torch.testing.assert_close(out.mean((2, 3)), 0.5 * x.mean((2, 3)), rtol=0, atol=1e-6)
    half = fourier_filter(x.half(), 1, 0.5)
    assert half.dtype == torch.float16
    torch.testing.assert_close(
        half.float(), fourier_filter(x.half().float(), 1, 0.5), atol=1e-3, rtol=0
    )


def test_reference_freeu_scales_half_the_channels_then_filters():
    x = torch.randn((1, 4, 4, 4), generator=torch.Generator().manual_seed(3))
    stage = FreeUStage(block=0, width=4, scaled=2, backbone=2.0, fourier=1.0)
    out = reference_freeu(x, stage)
    torch.testing.assert_close(out[:, :2], 2 * x[:, :2], rtol=0, atol=1e-6)
    torch.testing.assert_close(out[:, 2:], x[:, 2:], rtol=0, atol=1e-6)
    assert not torch.equal(out, x)  # the input is not modified in place
    torch.testing.assert_close(reference_freeu(x, stage), out)


def test_off_is_the_plain_unet_and_diffusers_is_enable_freeu(narrow):
    x, emb = _inputs(narrow, hw=(8, 16))
    plain = _forward(narrow, x, emb)
    with install_freeu(narrow, "off"):
        torch.testing.assert_close(_forward(narrow, x, emb), plain, rtol=0, atol=0)
    narrow.enable_freeu(s1=0.9, s2=0.2, b1=1.2, b2=1.4)
    builtin = _forward(narrow, x, emb)
    narrow.disable_freeu()
    with install_freeu(narrow, FreeUOptions(mode="diffusers")):
        torch.testing.assert_close(_forward(narrow, x, emb), builtin, rtol=0, atol=0)
    with install_freeu(narrow, "reference"):
        ours = _forward(narrow, x, emb)
    assert float((builtin - plain).abs().max()) > 1e-3
    assert float((ours - plain).abs().max()) > 1e-3
    assert float((ours - builtin).abs().max()) > 1e-3  # two different operations


def test_removing_restores_the_unet_exactly(narrow):
    x, emb = _inputs(narrow, hw=(8, 16))
    narrow.enable_freeu(s1=0.8, s2=0.3, b1=1.1, b2=1.3)  # someone's own settings
    before = _forward(narrow, x, emb)
    for mode in ("reference", "off", "diffusers"):
        handle = install_freeu(narrow, mode)
        with pytest.raises(ConfigError, match="already installed"):
            install_freeu(narrow, "off")
        handle.remove()
        handle.remove()  # idempotent
        assert not any(b._forward_pre_hooks for b in narrow.up_blocks)
        assert [b.s1 for b in narrow.up_blocks] == [0.8] * len(narrow.up_blocks)
        torch.testing.assert_close(_forward(narrow, x, emb), before, rtol=0, atol=0)


def test_hook_refuses_an_unexpected_width(narrow):
    with install_freeu(narrow, "reference"):
        x, emb = _inputs(narrow, hw=(8, 16))
        assert len(narrow.up_blocks[3]._forward_pre_hooks) == 1
        with pytest.raises(RuntimeError, match="received 5 channels"):
            narrow.up_blocks[3](
                hidden_states=torch.zeros((1, 5, 8, 16)), res_hidden_states_tuple=(), temb=None
            )


@pytest.mark.parametrize(
    ("value", "mode"),
    [("reference", "reference"), ("OFF", "off"), (True, "diffusers"), (False, "off")],
)
def test_options_parse_modes_and_factors(value, mode):
    opts = FreeUOptions.parse(value, (0.8, 0.3, 1.1, 1.3))
    assert (opts.mode, opts.s1, opts.s2, opts.b1, opts.b2) == (mode, 0.8, 0.3, 1.1, 1.3)
    with pytest.raises(ConfigError, match="freeu must be one of"):
        FreeUOptions.parse("paper")
    with pytest.raises(ConfigError, match=r"\[s1, s2, b1, b2\]"):
        FreeUOptions.parse("off", (1.0, 2.0))
