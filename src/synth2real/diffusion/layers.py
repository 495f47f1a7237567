"""Which attention layers of a UNet take part, found by role and resolution.

The cross-image methods edit the *decoder self-attention layers of the two finest
resolutions* (SD 1.5: every ``attn1`` of ``up_blocks.2`` and ``up_blocks.3``, i.e. latent/2
and latent/1). Nothing here relies on layer names or token counts: the spatial factor of
each block is computed from the UNet's structure (how many down-samplers run before it,
how many up-samplers undo them), and the role of a layer from its attention module
(self-attention: keys come from the same hidden states). Any working size and any UNet of
the same family (``UNet2DConditionModel`` with down/mid/up blocks) work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from synth2real.errors import ConfigError

Part = Literal["down", "mid", "up"]


@dataclass(frozen=True)
class AttentionLayer:
    """One attention module of a UNet.

    Attributes:
        key: its processor key in ``unet.attn_processors`` (``"<module path>.processor"``).
        part: ``"down"`` (encoder), ``"mid"`` or ``"up"`` (decoder).
        block: index of its block inside ``part`` (0 for the mid block).
        factor: spatial down-sampling factor of its tokens relative to the latent (1 =
            latent resolution, 2 = latent/2, ...).
        is_self: True for self-attention (keys/values from the same tokens), False for
            cross-attention on the prompt.
        module: the attention module itself.
    """

    key: str
    part: Part
    block: int
    factor: int
    is_self: bool
    module: nn.Module


def _has(block: nn.Module, attr: str) -> bool:
    return getattr(block, attr, None) is not None


def unet_parts(unet: nn.Module, *names: str, what: str) -> list[Any]:
    """The attributes ``names`` of ``unet`` (dotted: ``config.block_out_channels``), or a
    one-line :class:`ConfigError` saying that ``what`` needs a UNet of the Stable
    Diffusion family."""
    found = []
    for name in names:
        value: Any = unet
        for attr in name.split("."):
            value = getattr(value, attr, None)
        found.append(value)
    if any(v is None for v in found):
        missing = "/".join(n.rsplit(".", 1)[-1] for n in names)
        raise ConfigError(
            f"{type(unet).__name__} has no {missing}: {what} needs a "
            "UNet2DConditionModel-like UNet (Stable Diffusion 1.x/2.x family)"
        )
    return found


def block_factors(unet: nn.Module) -> dict[Part, list[int]]:
    """Spatial factor of every down, mid and up block, from the UNet's structure.

    A down block runs at the factor reached by the down-samplers of the blocks before it;
    the mid block at the coarsest factor; an up block at the coarsest factor divided by
    the up-samplers of the blocks before it (each block up-samples at its end).

    Returns:
        ``{"down": [...], "mid": [f], "up": [...]}`` with powers of two.
    """
    down_blocks, up_blocks = unet_parts(unet, "down_blocks", "up_blocks", what="the layer search")
    down, f = [], 1
    for block in down_blocks:
        down.append(f)
        if _has(block, "downsamplers"):
            f *= 2
    coarsest = f
    up = []
    for block in up_blocks:
        up.append(f)
        if _has(block, "upsamplers"):
            f //= 2
    if f != 1:
        raise ConfigError(
            f"UNet structure not understood: the decoder ends at factor {f}, not 1 "
            "(down- and up-samplers do not match)"
        )
    return {"down": down, "mid": [coarsest], "up": up}


def size_multiple(unet: nn.Module) -> int:
    """The latent side lengths must be multiples of this (2 ** number of down-samplers)."""
    return block_factors(unet)["mid"][0]


def attention_layers(unet: nn.Module) -> list[AttentionLayer]:
    """Every attention module of the UNet with its part, block, spatial factor and role."""
    factors = block_factors(unet)
    out: list[AttentionLayer] = []
    parts: list[tuple[Part, list[nn.Module]]] = [
        ("down", list(unet.down_blocks)),
        ("mid", [unet.mid_block] if getattr(unet, "mid_block", None) is not None else []),
        ("up", list(unet.up_blocks)),
    ]
    prefix = {"down": "down_blocks.{i}", "mid": "mid_block", "up": "up_blocks.{i}"}
    for part, blocks in parts:
        for i, block in enumerate(blocks):
            base = prefix[part].format(i=i)
            for name, module in block.named_modules():
                if not hasattr(module, "set_processor"):
                    continue
                is_cross = bool(getattr(module, "is_cross_attention", False)) or bool(
                    getattr(module, "only_cross_attention", False)
                )
                path = f"{base}.{name}" if name else base
                out.append(
                    AttentionLayer(
                        key=f"{path}.processor",
                        part=part,
                        block=i,
                        factor=factors[part][i] if part != "mid" else factors["mid"][0],
                        is_self=not is_cross,
                        module=module,
                    )
                )
    return out


def select_layers(
    unet: nn.Module,
    *,
    part: Part = "up",
    self_attention: bool = True,
    resolutions: int = 2,
) -> list[AttentionLayer]:
    """The attention layers of ``part`` with the given role at the finest resolutions.

    Args:
        unet: a ``UNet2DConditionModel`` (or one built the same way).
        part: ``"up"`` (decoder, the default), ``"down"`` or ``"mid"``.
        self_attention: True for self-attention layers (the default), False for
            cross-attention layers.
        resolutions: how many of the finest resolutions that hold such layers to take
            (2 = SD 1.5's latent/1 and latent/2).

    Returns:
        The layers, in module order.

    Raises:
        ConfigError: ``resolutions < 1``, or the UNet has no such layer.
    """
    if resolutions < 1:
        raise ConfigError(f"resolutions must be >= 1, got {resolutions}")
    cands = [
        layer
        for layer in attention_layers(unet)
        if layer.part == part and layer.is_self == self_attention
    ]
    if not cands:
        role = "self" if self_attention else "cross"
        raise ConfigError(f"the UNet has no {role}-attention layer in its {part} blocks")
    keep = sorted({layer.factor for layer in cands})[:resolutions]
    return [layer for layer in cands if layer.factor in keep]
