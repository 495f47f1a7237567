"""Tiny random models in Stable Diffusion 1.5's block layout, built in code (no download).

The UNets and the VAE are built here rather than taken from ``tests.diffusion.tiny``:
the harness needs SD 1.5's block layout at chosen widths and latents at SD's scale.

- :func:`sd_layout_unet`: SD 1.5's UNet layout (``CrossAttnDownBlock2D`` x 3 +
  ``DownBlock2D``, mid block, ``UpBlock2D`` + ``CrossAttnUpBlock2D`` x 3, 3 down-samplers)
  with any widths. The walk tests use narrow widths (8/8/16/16, 2 heads);
  :func:`sd15_width_unet` has SD 1.5's own widths 320/640/1280/1280 (one layer per block)
  for FreeU, whose reference form is keyed on the channel counts 1280 and 640.
- :func:`tiny_vae`: 8x down-sampling, 4 latent channels, scaling factor 0.18215.
- :func:`tiny_text`: a CLIP tokenizer over a six-token vocabulary and a one-layer
  ``CLIPTextModel`` (synth2real's; the reference code encodes its empty prompt with them).
- :data:`SD15_SCHEDULER`: SD 1.5's scheduler configuration (the reference builds a
  ``DDIMScheduler`` from it).

The reference's inversion draws noise of shape ``(sample_size, 2 * sample_size)``, so the
UNet's ``sample_size`` is the latent height and latents are twice as wide as high.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

TEXT_DIM = 8
SD15_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "clip_sample": False,
    "trained_betas": None,
}


def sd_layout_unet(
    widths: tuple[int, int, int, int] = (8, 8, 16, 16),
    *,
    layers_per_block: int = 2,
    heads: int = 2,
    norm_num_groups: int = 4,
    sample_size: int = 8,
    seed: int = 0,
):
    """A random ``UNet2DConditionModel`` in SD 1.5's block layout (float32, eval mode).

    ``layers_per_block=2`` is SD 1.5's (three resnets and attentions per up-block, which
    StyleID's layer numbering needs); ``heads`` is the number of attention heads.
    """
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=widths,
        layers_per_block=layers_per_block,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=heads,
        norm_num_groups=norm_num_groups,
    )
    return unet.eval().requires_grad_(False)


def sd15_width_unet(sample_size: int = 8, seed: int = 0):
    """SD 1.5's widths 320/640/1280/1280 and 8 heads, one layer per block.

    Such a UNet has about 570 M parameters (2.3 GB in float32, tens of seconds to
    initialise on a busy CPU). Its weights are therefore views into a few shared random
    buffers (one per fan-in, uniform in ``+-1/sqrt(fan_in)`` as PyTorch's default
    initialisation, each parameter at its own offset), norm weights 1 and biases small:
    about 0.4 GB, built in a second or two. The FreeU comparison only needs the same
    weights on both sides, whatever they are.
    """
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(
            sample_size=sample_size,
            in_channels=4,
            out_channels=4,
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=TEXT_DIM,
            attention_head_dim=8,
        )
    _shared_random_parameters(unet, seed)
    return unet.eval().requires_grad_(False)


def _shared_random_parameters(module: torch.nn.Module, seed: int) -> None:
    """Give every meta parameter of ``module`` a view into a shared random buffer."""
    g = torch.Generator().manual_seed(seed)
    params = [
        (mod, name, p)
        for mod in module.modules()
        for name, p in list(mod._parameters.items())
        if p is not None
    ]
    need: dict[int, int] = {}
    for _, _, p in params:
        if p.ndim > 1:
            fan_in = p[0].numel()
            need[fan_in] = max(need.get(fan_in, 0), p.numel())
    stride = 7919  # offset between consecutive parameters of one fan-in
    buffers = {}
    for fan_in, numel in sorted(need.items()):
        bound = 1.0 / fan_in**0.5
        buffers[fan_in] = (torch.rand(numel + 64 * stride, generator=g) * 2 - 1) * bound
    small = (torch.rand(1 << 16, generator=g) * 2 - 1) * 0.02
    ones = torch.ones(1)
    counters: dict[int, int] = {}
    for i, (mod, name, p) in enumerate(params):
        if p.ndim > 1:
            fan_in = p[0].numel()
            k = counters.get(fan_in, 0)
            counters[fan_in] = k + 1
            off = (k % 64) * stride
            data = buffers[fan_in][off : off + p.numel()].view(p.shape)
        elif name == "weight":  # norm layers
            data = ones.expand(p.shape)
        else:
            off = (i * 131) % (small.numel() - p.numel()) if p.numel() < small.numel() else 0
            data = (
                small[off : off + p.numel()] if p.numel() <= small.numel() else torch.zeros(p.shape)
            )
        mod._parameters[name] = torch.nn.Parameter(data, requires_grad=False)
    for mod in module.modules():
        for name, b in list(mod._buffers.items()):
            if b is not None and b.is_meta:
                mod._buffers[name] = torch.zeros(b.shape, dtype=b.dtype)


def tiny_vae(seed: int = 0):
    """A random ``AutoencoderKL`` with SD's 8x down-sampling and 4 latent channels whose
    latents (times 0.18215) have SD's scale: per-channel std about 1 on images in [-1, 1].

    synth2real's tiny VAE, whose random encoder gives latents with a std of about 0.03:
    AdaIN's ``+ 1e-5`` on variances would weigh a thousand times more than with SD's
    latents, so the mean half of its ``quant_conv`` is scaled to bring the std to 1 on a
    fixed random image.
    """
    from tests.diffusion.tiny import tiny_vae as build

    vae = build(seed).eval().requires_grad_(False)
    with torch.no_grad():
        probe = random_image((64, 128), seed=12345)
        std = (vae.encode(probe).latent_dist.mode() * 0.18215).std(dim=(2, 3)).mean()
        c = vae.config.latent_channels
        vae.quant_conv.weight[:c] /= std
        vae.quant_conv.bias[:c] /= std
    return vae


def tiny_text(seed: int = 0):
    """``(tokenizer, text_encoder)``: synth2real's tiny CLIP (a six-token vocabulary, one
    layer, 8 positions, width :data:`TEXT_DIM`)."""
    from tests.diffusion.tiny import TINY_TEXT_DIM
    from tests.diffusion.tiny import tiny_text as build

    assert TINY_TEXT_DIM == TEXT_DIM
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer, encoder = build(Path(tmp), seed)
    return tokenizer, encoder.eval().requires_grad_(False)


def ddim_scheduler():
    """SD 1.5's schedule in a ``DDIMScheduler`` (what the reference code uses)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(SD15_SCHEDULER)


@dataclass
class TinySD:
    """One set of tiny models shared by the official code and synth2real's."""

    unet: torch.nn.Module
    vae: torch.nn.Module
    tokenizer: object
    text_encoder: torch.nn.Module

    @property
    def latent_hw(self) -> tuple[int, int]:
        s = int(self.unet.config.sample_size)
        return s, 2 * s

    @property
    def image_hw(self) -> tuple[int, int]:
        h, w = self.latent_hw
        f = 2 ** (len(self.vae.config.block_out_channels) - 1)
        return h * f, w * f

    def prompt(self) -> torch.Tensor:
        """``(1, L, D)`` embeddings of the empty prompt: synth2real's
        ``empty_prompt_embeddings``, which tokenizes as the reference's ``encode_text``
        (padding to the maximum length, truncation)."""
        from synth2real.diffusion.loading import empty_prompt_embeddings

        with torch.no_grad():
            return empty_prompt_embeddings(self.tokenizer, self.text_encoder, torch.device("cpu"))


def tiny_sd(seed: int = 0, **unet_kwargs) -> TinySD:
    """Narrow SD-layout UNet (:func:`sd_layout_unet`), tiny VAE and text encoder."""
    tokenizer, encoder = tiny_text(seed)
    return TinySD(sd_layout_unet(seed=seed, **unet_kwargs), tiny_vae(seed), tokenizer, encoder)


def random_image(hw: tuple[int, int], seed: int) -> torch.Tensor:
    """``(1, 3, H, W)`` smooth random image in [-1, 1] (float32)."""
    g = torch.Generator().manual_seed(seed)
    h, w = hw
    low = torch.rand((1, 3, max(1, h // 8), max(1, w // 8)), generator=g) * 2 - 1
    img = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    return (img + 0.1 * torch.randn((1, 3, h, w), generator=g)).clamp(-1, 1)


#: classes of :func:`latent_labels` (ids < 19, as the reference knows only 19)
LABEL_CLASSES = 5


def latent_labels(hw: tuple[int, int], framed: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(content, style)`` label maps at latent size ``hw`` (uint8, 255 = no class) that
    exercise every branch of the reference's class-wise AdaIN:

    - class 0 (background) and class 1 (a block) in both, with eroded interiors;
    - class 2 along the top border in both (the image border erodes in the reference);
    - class 3 a one-pixel line in the content only (erosion removes it entirely);
    - class 4 in the content only (missing from the style);
    - a few pixels of no class (255) in both.

    ``framed=True`` puts a one-pixel frame of no class around both maps, so that no class
    touches the image border (where the reference's erosion differs from synth2real's).
    """
    h, w = hw
    content = np.zeros((h, w), np.uint8)
    content[: max(2, h // 4), : w // 2] = 2
    content[h // 3 : h // 3 + max(3, h // 2), w // 2 : w // 2 + max(3, w // 3)] = 1
    content[h - 2, 1 : w // 2] = 3
    content[h // 2 :, : max(3, w // 6)] = 4
    content[h - 1, w - 3 :] = 255
    style = np.zeros((h, w), np.uint8)
    style[: max(3, h // 3), w // 3 :] = 2
    style[h // 2 :, w // 4 : w // 4 + max(4, w // 3)] = 1
    style[h - 1, :2] = 255
    if framed:
        for lab in (content, style):
            lab[[0, -1], :] = 255
            lab[:, [0, -1]] = 255
    return content, style
