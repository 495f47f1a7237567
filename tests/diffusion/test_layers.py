"""Layer selection by role and resolution: tiny UNets and SD 1.5's architecture (no weights)."""

from __future__ import annotations

import pytest
import torch

from synth2real.diffusion.layers import (
    attention_layers,
    block_factors,
    select_layers,
    size_multiple,
)
from synth2real.errors import ConfigError
from tests.diffusion.tiny import tiny_unet

# unet/config.json of stable-diffusion-v1-5 (the architecture; weights are not needed)
SD15_UNET = dict(
    act_fn="silu",
    attention_head_dim=8,
    block_out_channels=[320, 640, 1280, 1280],
    center_input_sample=False,
    cross_attention_dim=768,
    down_block_types=[
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    downsample_padding=1,
    flip_sin_to_cos=True,
    freq_shift=0,
    in_channels=4,
    layers_per_block=2,
    mid_block_scale_factor=1,
    norm_eps=1e-05,
    norm_num_groups=32,
    out_channels=4,
    sample_size=64,
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
)
# stable-diffusion-2-1: same family, other head layout and linear projections
SD21_UNET = dict(
    SD15_UNET,
    attention_head_dim=[5, 10, 20, 20],
    cross_attention_dim=1024,
    use_linear_projection=True,
    sample_size=96,
)


def meta_unet(config: dict):
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        return UNet2DConditionModel(**config)


@pytest.mark.parametrize("config", [SD15_UNET, SD21_UNET], ids=["sd15", "sd21"])
def test_sd_architecture_selects_up_blocks_2_and_3_self_attention(config):
    unet = meta_unet(config)
    assert block_factors(unet) == {"down": [1, 2, 4, 8], "mid": [8], "up": [8, 4, 2, 1]}
    assert size_multiple(unet) == 8
    layers = select_layers(unet)
    keys = sorted(layer.key for layer in layers)
    assert keys == sorted(
        f"up_blocks.{b}.attentions.{a}.transformer_blocks.0.attn1.processor"
        for b in (2, 3)
        for a in range(3)
    )
    assert {layer.factor for layer in layers} == {1, 2}
    assert all(layer.is_self and layer.part == "up" for layer in layers)
    # the keys are real processor keys of the model
    assert set(keys) <= set(unet.attn_processors)
    # one resolution: only the finest
    assert {layer.block for layer in select_layers(unet, resolutions=1)} == {3}
    assert {layer.block for layer in select_layers(unet, resolutions=3)} == {1, 2, 3}


def test_tiny_unet_selects_its_two_finest_decoder_resolutions():
    unet = tiny_unet()
    assert block_factors(unet)["up"] == [4, 2, 1]
    layers = select_layers(unet)
    assert sorted({(layer.block, layer.factor) for layer in layers}) == [(1, 2), (2, 1)]
    assert all(layer.key.endswith("attn1.processor") for layer in layers)
    # cross-attention layers are told apart by role, not by name
    cross = select_layers(unet, self_attention=False)
    assert cross and all(layer.key.endswith("attn2.processor") for layer in cross)
    all_layers = attention_layers(unet)
    assert {layer.part for layer in all_layers} == {"down", "mid", "up"}
    assert len(all_layers) == len(unet.attn_processors)


def test_tiny_sd_layout_matches_sd15_selection():
    unet = tiny_unet(sd_layout=True)
    keys = sorted(layer.key.split(".transformer")[0] for layer in select_layers(unet))
    assert keys == [f"up_blocks.{b}.attentions.{a}" for b in (2, 3) for a in range(3)]


def test_factor_is_the_real_token_grid_of_each_layer():
    """Run the tiny UNet on an odd latent and record each selected layer's token count."""
    unet = tiny_unet().eval()
    h, w = 8, 20
    seen = {}
    hooks = [
        layer.module.register_forward_hook(
            lambda m, a, o, k=layer.key: seen.setdefault(k, a[0].shape[1])
        )
        for layer in select_layers(unet)
    ]
    with torch.no_grad():
        unet(torch.randn(1, 4, h, w), 10, encoder_hidden_states=torch.randn(1, 3, 8))
    for hk in hooks:
        hk.remove()
    for layer in select_layers(unet):
        assert seen[layer.key] == (h // layer.factor) * (w // layer.factor)


def test_bad_requests_are_config_errors():
    from diffusers import UNet2DConditionModel

    with pytest.raises(ConfigError):
        select_layers(tiny_unet(), resolutions=0)
    with pytest.raises(ConfigError, match="down_blocks"):
        select_layers(torch.nn.Linear(2, 2))
    no_decoder_attention = UNet2DConditionModel(
        block_out_channels=(8, 8),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        cross_attention_dim=8,
        attention_head_dim=2,
        layers_per_block=1,
    )
    with pytest.raises(ConfigError, match="no self-attention layer in its up blocks"):
        select_layers(no_decoder_attention)
