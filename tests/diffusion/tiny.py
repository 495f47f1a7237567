"""Tiny random Stable-Diffusion-layout models, built in code (no download).

For the tests, benchmarks and smoke runs of the whole diffusion path on a CPU in
seconds (run from the repository root: ``from tests.diffusion.tiny import ...``): a few-channel
``UNet2DConditionModel`` whose decoder has cross-attention up-blocks at two resolutions,
an ``AutoencoderKL`` with SD's 8x down-sampling, and a one-layer ``CLIPTextModel`` with a
``CLIPTokenizer`` built from a six-token vocabulary. The weights are random: outputs are
noise-like, but every code path (loading, inversion, attention edits, AdaIN, decoding)
runs as with SD 1.5.

``save_tiny_model(path)`` writes them in diffusers layout, loadable with
``--param model=PATH``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from synth2real.diffusion.loading import DiffusionModels, empty_prompt_embeddings

#: latent channels x 8 = image side multiple is VAE 8 x UNet 4 = 32 for the tiny UNet.
TINY_TEXT_DIM = 8


def tiny_unet(seed: int = 0, *, sd_layout: bool = False):
    """A few-thousand-parameter ``UNet2DConditionModel``.

    Default: 3 blocks (2 down-samplers), decoder ``UpBlock2D, CrossAttnUpBlock2D,
    CrossAttnUpBlock2D`` (self-attention at latent/2 and latent/1). ``sd_layout=True``:
    SD 1.5's block layout (4 blocks, 3 down-samplers, 2 layers per block) with tiny
    channels.
    """
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    if sd_layout:
        return UNet2DConditionModel(
            sample_size=8,
            block_out_channels=(8, 8, 16, 16),
            layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=TINY_TEXT_DIM,
            attention_head_dim=2,
            norm_num_groups=4,
        )
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16, 16),
        norm_num_groups=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TINY_TEXT_DIM,
        attention_head_dim=2,
    )


def tiny_vae(seed: int = 0):
    """``AutoencoderKL`` with 4 blocks (8x down-sampling, like SD), 4 latent channels."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(4, 4, 4, 4),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=2,
        layers_per_block=1,
        sample_size=32,
    )


def tiny_scheduler():
    """SD 1.5's own scheduler: the ``PNDMScheduler`` configuration its weights ship with
    (scaled-linear betas, "leading" spacing, offset 1); the pipelines read the noise
    schedule from it and run their own DDPM/DDIM steps."""
    from diffusers import PNDMScheduler

    return PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        set_alpha_to_one=False,
        skip_prk_steps=True,
        steps_offset=1,
        trained_betas=None,
    )


def tiny_text(folder: Path, seed: int = 0):
    """A ``CLIPTokenizer`` from a tiny vocabulary written to ``folder`` and a one-layer
    ``CLIPTextModel``."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2, "a</w>": 3, "b</w>": 4, "c</w>": 5}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=8
    )
    torch.manual_seed(seed)
    encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=TINY_TEXT_DIM,
            intermediate_size=16,
            num_attention_heads=2,
            num_hidden_layers=1,
            max_position_embeddings=8,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    return tokenizer, encoder


def tiny_models(
    seed: int = 0, *, device: str = "cpu", prompt_embeds: torch.Tensor | None = None
) -> DiffusionModels:
    """Tiny :class:`DiffusionModels` in float32, with given or random prompt embeddings
    (no tokenizer needed)."""
    dev = torch.device(device)
    if prompt_embeds is None:
        g = torch.Generator().manual_seed(seed)
        prompt_embeds = torch.randn((1, 8, TINY_TEXT_DIM), generator=g)
    return DiffusionModels(
        unet=tiny_unet(seed).to(dev),
        vae=tiny_vae(seed).to(dev),
        scheduler=tiny_scheduler(),
        prompt_embeds=prompt_embeds.to(dev),
        device=dev,
        dtype=torch.float32,
        source="tiny",
    )


def save_tiny_model(path: str | Path, seed: int = 0, variant: str | None = None) -> Path:
    """Write a tiny random model in diffusers layout (``unet/``, ``vae/``, ``scheduler/``,
    ``text_encoder/``, ``tokenizer/``, ``model_index.json``) and return ``path``.
    ``variant="fp16"`` names the weight files as SD's fp16 branch does."""
    from diffusers import StableDiffusionPipeline

    path = Path(path)
    tokenizer, encoder = tiny_text(path / "_vocab", seed)
    pipe = StableDiffusionPipeline(
        vae=tiny_vae(seed),
        text_encoder=encoder,
        tokenizer=tokenizer,
        unet=tiny_unet(seed),
        scheduler=tiny_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path, variant=variant)
    for f in (path / "_vocab").iterdir():
        f.unlink()
    (path / "_vocab").rmdir()
    return path


__all__ = [
    "empty_prompt_embeddings",
    "save_tiny_model",
    "tiny_models",
    "tiny_scheduler",
    "tiny_text",
    "tiny_unet",
    "tiny_vae",
]
