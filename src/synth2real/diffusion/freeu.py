"""FreeU on Stable-Diffusion-family UNets: the CACTIF reference code's form, diffusers'
built-in form, or none.

**reference** (what the published CACTI/CACTIF numbers ran with). The reference code's
hand-modified UNet (``models/unet_2d_condition.py`` of the official CACTIF code), before
every up-block, looks at the channel count of the hidden state coming up the decoder
(not at the skip features, which it leaves alone):

- 1280 channels: the first 640 channels are multiplied by ``b1 = 1.2``, then the whole
  hidden state is Fourier-filtered with scale ``s1 = 0.9``;
- 640 channels: the first 320 channels are multiplied by ``b2 = 1.4``, then the whole
  hidden state is Fourier-filtered with scale ``s2 = 0.2``.

It runs in every UNet call, inversion included. With SD 1.5's (and SD 2.x's) widths
320/640/1280/1280 the inputs of ``up_blocks.0..3`` have 1280, 1280, 1280 and 640 channels:
the first rule acts on the three coarser stages (latent/8, /4, /2), the second on the
full-resolution stage ``up_blocks.3``, where the cross-image methods swap keys and
values. On other widths the reference's literal channel tests act on whatever happens to
have 1280 or 640 channels, and on nothing for narrow test UNets. Here the rule is
expressed by stage, from the UNet's configuration: the up-blocks whose input has the
deepest width (``block_out_channels[-1]``) get ``(b1, s1)``, those whose input has the
next narrower width of ``block_out_channels`` get ``(b2, s2)``, and in both the first half
of the channels is scaled. On SD 1.5 and 2.x this is the reference exactly (1280 -> first
640, 640 -> first 320); other SD-family UNets get the analogous stages (SDXL's
320/640/1280: ``up_blocks.0, .1`` and ``.2``; the tiny test UNets likewise).

**diffusers**: ``UNet2DConditionModel.enable_freeu(s1, s2, b1, b2)``, the FreeU paper's
form: inside ``up_blocks.0`` and ``.1`` only, half the backbone channels scaled by ``b``
and the *skip* features Fourier-filtered with ``s``.

**off**: neither.

:func:`install_freeu` applies one of them to a UNet (the reference's as forward
pre-hooks on the up-blocks, no copied UNet code) and returns a handle that undoes it.

The Fourier filter (:func:`fourier_filter`) is the reference's: ``fftn`` over the two
spatial axes, ``fftshift``, the centred ``2t x 2t`` block of frequencies (``t`` =
threshold = 1) multiplied by the scale, ``ifftshift``, ``ifftn``, real part. The
reference computes in the input's dtype (float32 in its runs); half-precision inputs are
filtered in float32 here (CPU FFTs have no half precision; CUDA ones only for powers of
two) and cast back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from synth2real.diffusion.config import FREEU_FACTORS, FREEU_MODES, FreeUMode, parse_freeu
from synth2real.diffusion.layers import unet_parts
from synth2real.errors import ConfigError

_DIFFUSERS_KEYS = ("s1", "s2", "b1", "b2")


@dataclass(frozen=True)
class FreeUOptions:
    """Which FreeU runs, with its factors.

    Attributes:
        mode: ``reference`` (the CACTIF code's form), ``diffusers`` (``enable_freeu``)
            or ``off``.
        s1, s2: Fourier scales of the low frequencies, stage 1 and 2 (0.9, 0.2:
            :data:`~synth2real.diffusion.config.FREEU_FACTORS`).
        b1, b2: backbone factors, stage 1 and 2 (1.2, 1.4).
        threshold: half-size of the centred block of frequencies that is scaled (1).
    """

    mode: FreeUMode = "reference"
    s1: float = FREEU_FACTORS[0]
    s2: float = FREEU_FACTORS[1]
    b1: float = FREEU_FACTORS[2]
    b2: float = FREEU_FACTORS[3]
    threshold: int = 1

    def __post_init__(self) -> None:
        if self.mode not in FREEU_MODES:
            raise ConfigError(f"freeu must be one of {', '.join(FREEU_MODES)}, got {self.mode!r}")
        if int(self.threshold) < 1:
            raise ConfigError(f"FreeU threshold must be >= 1, got {self.threshold}")

    @classmethod
    def parse(
        cls, value: FreeUOptions | str | bool, params: tuple[float, ...] | None = None
    ) -> FreeUOptions:
        """From the method parameters ``freeu`` (a mode name, or a bool: True =
        ``diffusers``, False = ``off``; :func:`~.config.parse_freeu`) and optional
        ``freeu_params`` ``[s1, s2, b1, b2]``."""
        if isinstance(value, FreeUOptions):
            opts = value
        else:
            opts = cls(mode=parse_freeu(value))  # type: ignore[arg-type]
        if params is None:
            return opts
        if len(params) != 4:
            raise ConfigError(f"freeu_params must be [s1, s2, b1, b2], got {list(params)}")
        s1, s2, b1, b2 = (float(v) for v in params)
        return FreeUOptions(opts.mode, s1, s2, b1, b2, opts.threshold)


@dataclass(frozen=True)
class FreeUStage:
    """One up-block the reference form acts on.

    Attributes:
        block: index in ``unet.up_blocks``.
        width: channels of its input hidden state.
        scaled: how many leading channels are multiplied by ``backbone`` (half the width).
        backbone: the factor ``b``.
        fourier: the Fourier scale ``s``.
    """

    block: int
    width: int
    scaled: int
    backbone: float
    fourier: float


def fourier_filter(x: Tensor, threshold: int, scale: float) -> Tensor:
    """The reference's FreeU Fourier filter of ``x (B, C, H, W)``: the centred
    ``2 threshold x 2 threshold`` block of the shifted 2-D spectrum times ``scale``.

    Float32 and float64 inputs are filtered in their dtype (float32 as in the reference);
    other dtypes in float32, and the result comes back in ``x``'s dtype.
    """
    if x.ndim != 4:
        raise ConfigError(f"fourier_filter expects (B, C, H, W), got shape {tuple(x.shape)}")
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    freq = torch.fft.fftshift(torch.fft.fftn(work, dim=(-2, -1)), dim=(-2, -1))
    h, w = freq.shape[-2:]
    mask = torch.ones((h, w), dtype=work.dtype, device=x.device)
    crow, ccol = h // 2, w // 2
    mask[crow - threshold : crow + threshold, ccol - threshold : ccol + threshold] = scale
    freq = torch.fft.ifftshift(freq * mask, dim=(-2, -1))
    return torch.fft.ifftn(freq, dim=(-2, -1)).real.to(x.dtype)


def reference_freeu(hidden: Tensor, stage: FreeUStage, threshold: int = 1) -> Tensor:
    """The reference's operation on an up-block's input: the first ``stage.scaled``
    channels times ``stage.backbone``, then the Fourier filter with ``stage.fourier``.
    Returns a new tensor (the reference scales its input in place)."""
    out = hidden.clone()
    out[:, : stage.scaled] *= stage.backbone
    return fourier_filter(out, threshold, stage.fourier)


def _unwrap(unet: nn.Module) -> nn.Module:
    return getattr(unet, "_orig_mod", unet)  # torch.compile keeps the module here


def up_block_input_widths(unet: nn.Module) -> list[int]:
    """Channels of the hidden state entering each up-block, from the UNet's
    configuration: the mid block's output (the deepest width) for ``up_blocks.0``, then
    each up-block's output width (``block_out_channels`` reversed)."""
    widths, up_blocks = unet_parts(
        _unwrap(unet), "config.block_out_channels", "up_blocks", what="FreeU"
    )
    rev = list(reversed([int(w) for w in widths]))
    if len(rev) != len(up_blocks):
        raise ConfigError(
            f"UNet structure not understood: {len(widths)} block widths for "
            f"{len(up_blocks)} up-blocks"
        )
    return [rev[0]] + rev[:-1]


def reference_stages(unet: nn.Module, options: FreeUOptions | None = None) -> list[FreeUStage]:
    """The up-blocks the reference form acts on (see the module docstring)."""
    opts = options or FreeUOptions()
    inputs = up_block_input_widths(unet)
    widths = sorted({int(w) for w in _unwrap(unet).config.block_out_channels}, reverse=True)
    rules = {widths[0]: (opts.b1, opts.s1)}
    if len(widths) > 1:
        rules[widths[1]] = (opts.b2, opts.s2)
    return [FreeUStage(i, w, w // 2, *rules[w]) for i, w in enumerate(inputs) if w in rules]


@dataclass
class FreeUHandle:
    """What :func:`install_freeu` did to a UNet; :meth:`remove` undoes it (also on leaving
    a ``with`` block).

    Attributes:
        options: what was installed.
        stages: the reference form's stages (empty for the other modes).
    """

    unet: nn.Module
    options: FreeUOptions
    stages: list[FreeUStage] = field(default_factory=list)
    _hooks: list = field(default_factory=list, repr=False)
    _previous: list[dict] = field(default_factory=list, repr=False)
    _removed: bool = field(default=False, repr=False)

    def remove(self) -> None:
        """Remove the hooks and give the up-blocks back their previous diffusers FreeU
        settings. Idempotent."""
        if self._removed:
            return
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        for block, attrs in zip(self.unet.up_blocks, self._previous, strict=True):
            for key, value in attrs.items():
                setattr(block, key, value)
        if getattr(self.unet, _MARK, None) is self:
            delattr(self.unet, _MARK)
        self._removed = True

    def __enter__(self) -> FreeUHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


_MARK = "_synth2real_freeu"


def _pre_hook(stage: FreeUStage, threshold: int):
    def hook(module: nn.Module, args: tuple, kwargs: dict):
        if args:
            hidden, rest = args[0], args[1:]
        elif "hidden_states" in kwargs:
            hidden, rest = kwargs["hidden_states"], ()
        else:
            raise RuntimeError(f"FreeU: up_blocks.{stage.block} was called without hidden states")
        if hidden.shape[1] != stage.width:
            raise RuntimeError(
                f"FreeU: up_blocks.{stage.block} received {hidden.shape[1]} channels, the "
                f"UNet's configuration says {stage.width}"
            )
        new = reference_freeu(hidden, stage, threshold)
        if args:
            return (new, *rest), kwargs
        return args, {**kwargs, "hidden_states": new}

    return hook


def install_freeu(unet: nn.Module, options: FreeUOptions | str | bool) -> FreeUHandle:
    """Apply FreeU ``options`` to ``unet`` (see the module docstring).

    Whatever the mode, diffusers' own FreeU settings of the up-blocks are replaced (set by
    ``enable_freeu`` for ``diffusers``, cleared otherwise) and come back on
    :meth:`FreeUHandle.remove`. One handle at a time per UNet.

    Raises:
        ConfigError: not an SD-family UNet, or FreeU already installed by this module.
    """
    opts = FreeUOptions.parse(options)
    base = _unwrap(unet)
    if getattr(base, _MARK, None) is not None:
        raise ConfigError("FreeU is already installed on this UNet: remove that handle first")
    stages = reference_stages(base, opts) if opts.mode == "reference" else []
    up_blocks = getattr(base, "up_blocks", None)
    if up_blocks is None:
        raise ConfigError(f"{type(base).__name__} has no up_blocks: not an SD-family UNet")
    handle = FreeUHandle(base, opts, stages)
    handle._previous = [{k: getattr(b, k, None) for k in _DIFFUSERS_KEYS} for b in up_blocks]
    for block in up_blocks:
        for key in _DIFFUSERS_KEYS:
            setattr(block, key, None)
    if opts.mode == "diffusers":
        base.enable_freeu(s1=opts.s1, s2=opts.s2, b1=opts.b1, b2=opts.b2)
    for stage in stages:
        handle._hooks.append(
            up_blocks[stage.block].register_forward_pre_hook(
                _pre_hook(stage, int(opts.threshold)), with_kwargs=True
            )
        )
    setattr(base, _MARK, handle)
    return handle


__all__ = [
    "FREEU_MODES",
    "FreeUHandle",
    "FreeUMode",
    "FreeUOptions",
    "FreeUStage",
    "fourier_filter",
    "install_freeu",
    "reference_freeu",
    "reference_stages",
    "up_block_input_widths",
]
