"""Segmentation models by name (timm-style): ``create_model("small-unet", num_classes=2)``.

Every model takes ``x: Bx3xHxW float32`` RGB in ``[0, 1]`` (normalisation to ImageNet mean
and std happens inside the model, so a checkpoint is self-contained) and returns logits
``BxKxHxW`` at the input resolution. ``H`` and ``W`` must be multiples of
``model.stride``; :func:`synth2real.segment.infer.predict_logits` pads any image size.

Models:
- ``small-unet``: a small UNet (~1.2M parameters) that learns from random init on a CPU
  in minutes; its first encoder level and last decoder level work at full resolution so
  1-3 px structures (cracks, wires, poles) survive.
- ``small-unet-add`` (the default of ``train`` and the pilot): the same UNet with
  additive skips (``skip="add"``), ~1.6x faster to train on a CPU.
- ``segformer``: transformers' ``SegformerForSemanticSegmentation`` (MiT-b0 by default),
  with pretrained encoder weights from a hub id or local folder when reachable.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from synth2real.errors import ConfigError, ModelNotFoundError
from synth2real.hub import cached_folder, hub_offline
from synth2real.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SegmentationModel(nn.Module):
    """Base class: input normalisation, ``stride``, and the arguments to rebuild it.

    Subclasses implement :meth:`forward_normalized` on ImageNet-normalised input.

    Attributes:
        name: registry name (set by :func:`create_model`).
        num_classes: K, the number of output channels.
        stride: input height and width must be multiples of this.
        init_kwargs: JSON-able keyword arguments that rebuild the architecture (stored in
            checkpoints; pretrained weights are not needed to rebuild).
    """

    name: str = ""
    stride: int = 32

    def __init__(self, num_classes: int):
        super().__init__()
        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.init_kwargs: dict[str, Any] = {}
        self.register_buffer(
            "_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer("_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: Bx3xHxW float`` in ``[0, 1]`` -> logits ``BxKxHxW``."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected Bx3xHxW input, got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % self.stride or w % self.stride:
            raise ValueError(
                f"input size {h}x{w} is not a multiple of the model stride {self.stride}; "
                "pad it (synth2real.segment.infer.predict_logits does)"
            )
        return self.forward_normalized((x - self._mean) / self._std)

    def forward_normalized(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


# -- registry --------------------------------------------------------------------------------
@dataclass
class ModelEntry:
    """A registered model: its factory, default learning rate and one-line summary."""

    name: str
    factory: Callable[..., SegmentationModel]
    summary: str
    default_lr: float
    defaults: dict[str, Any] = field(default_factory=dict)


_MODELS: Registry[ModelEntry] = Registry("model")


def register_model(name: str, *, summary: str, default_lr: float, **defaults: Any):
    """Decorator: register a model class or factory under ``name``."""

    def deco(factory):
        _MODELS.add(name, ModelEntry(name, factory, summary, default_lr, dict(defaults)))
        return factory

    return deco


def list_models() -> list[str]:
    """Registered model names."""
    return _MODELS.names()


def get_model_entry(name: str) -> ModelEntry:
    return _MODELS.get(name)


def create_model(
    name: str, num_classes: int, pretrained: bool | str | None = None, **kwargs: Any
) -> SegmentationModel:
    """Build model ``name`` with ``num_classes`` outputs.

    Args:
        name: a registered name (:func:`list_models`): ``small-unet``, ``segformer``.
        num_classes: K.
        pretrained: ``None``: the model's default pretrained weights when they are in
            the local cache (never downloaded), else random init with a warning; ``False``: random init; ``True`` or a hub id / local folder:
            those weights, or :class:`~synth2real.errors.ModelNotFoundError`. Models
            without pretrained weights (``small-unet``) accept only ``None``/``False``.
        **kwargs: architecture options of the model (see its docstring).

    Raises:
        ConfigError: unknown model or option.
    """
    entry = get_model_entry(name)
    params = inspect.signature(entry.factory).parameters
    accepts_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = sorted(set(kwargs) - set(params)) if not accepts_var_kw else []
    if unknown:
        opts = sorted(p for p in params if p not in ("num_classes", "pretrained"))
        raise ConfigError(f"model {name!r} has no option(s) {unknown}; options: {opts}")
    kw = {**entry.defaults, **kwargs}
    model = entry.factory(num_classes=num_classes, pretrained=pretrained, **kw)
    model.name = name
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# -- small-unet ------------------------------------------------------------------------------
def _norm(kind: str, ch: int) -> nn.Module:
    if kind == "bn":
        return nn.BatchNorm2d(ch)
    if kind == "gn":
        groups = 8 if ch % 8 == 0 else (4 if ch % 4 == 0 else 1)
        return nn.GroupNorm(groups, ch)
    raise ConfigError(f"norm must be 'bn' or 'gn', got {kind!r}")


def _conv(cin: int, cout: int, norm: str) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), _norm(norm, cout), nn.ReLU(inplace=True)
    )


class _Level(nn.Sequential):
    def __init__(self, cin: int, cout: int, norm: str, convs: int):
        super().__init__(*[_conv(cin if i == 0 else cout, cout, norm) for i in range(convs)])


@register_model(
    "small-unet",
    summary="small UNet (~1.2M params) with a full-resolution skip; fast on CPU from random init",
    default_lr=2e-3,
)
class SmallUNet(SegmentationModel):
    """A small UNet for CPUs, designed for thin structures.

    Encoder levels at 1, 1/2, 1/4 ... 1/2**(len(channels)-1) of the input (max-pool between
    levels), decoder with bilinear upsampling and skip concatenation at every level,
    including full resolution, so that 1-3 px structures are seen at their own scale. The
    full-resolution levels use one 3x3 convolution (they dominate the cost), the others two.

    Args:
        num_classes: K output classes.
        pretrained: must be ``None`` or ``False`` (no pretrained weights exist).
        channels: feature channels per level, finest first (default ``(8, 16, 32, 64, 128, 128)``;
            the stride is ``2**(len(channels)-1)``).
        norm: ``"bn"`` (BatchNorm, default) or ``"gn"`` (GroupNorm, for batch size 1-2).
        skip: how a decoder level joins the coarser features to the encoder's skip:
            ``"concat"`` (default: upsample, concatenate, convolve) or ``"add"`` (a 1x1
            convolution to the skip's width at the coarse resolution, upsample, add), which
            makes the decoder's convolutions and upsampling narrower.
    """

    def __init__(
        self,
        num_classes: int,
        pretrained: bool | str | None = None,
        channels: Sequence[int] = (8, 16, 32, 64, 128, 128),
        norm: str = "bn",
        skip: str = "concat",
    ):
        super().__init__(num_classes)
        if pretrained not in (None, False):
            raise ConfigError("small-unet has no pretrained weights; use pretrained=None")
        channels = [int(c) for c in channels]
        if len(channels) < 2 or min(channels) < 1:
            raise ConfigError(f"small-unet channels must list >= 2 positive ints, got {channels}")
        if skip not in ("concat", "add"):
            raise ConfigError(f"small-unet skip must be 'concat' or 'add', got {skip!r}")
        # checkpoints from before ``skip`` existed lack the key and rebuild as "concat"
        self.init_kwargs = {"channels": channels, "norm": norm, "skip": skip}
        self.skip = skip
        self.stride = 2 ** (len(channels) - 1)
        self.enc = nn.ModuleList()
        cin = 3
        for i, c in enumerate(channels):
            self.enc.append(_Level(cin, c, norm, 1 if i == 0 else 2))
            cin = c
        self.dec = nn.ModuleList()
        self.proj = nn.ModuleList()  # "add": coarse width -> skip width, before upsampling
        for i in range(len(channels) - 2, -1, -1):
            if skip == "add":
                self.proj.append(nn.Conv2d(cin, channels[i], 1, bias=False))
                self.dec.append(_Level(channels[i], channels[i], norm, 1 if i == 0 else 2))
            else:
                self.dec.append(_Level(cin + channels[i], channels[i], norm, 1 if i == 0 else 2))
            cin = channels[i]
        self.head = nn.Conv2d(cin, num_classes, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward_normalized(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, level in enumerate(self.enc):
            if i:
                x = F.max_pool2d(x, 2)
            x = level(x)
            skips.append(x)
        skips.pop()
        for i, level in enumerate(self.dec):
            skip = skips.pop()
            if self.skip == "add":
                x = F.interpolate(
                    self.proj[i](x), size=skip.shape[-2:], mode="bilinear", align_corners=False
                )
                x = level(x + skip)
            else:
                x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
                x = level(torch.cat([x, skip], dim=1))
        return self.head(x)


#: the same UNet with additive skips: narrower decoder convolutions and upsampling, ~1.6x
#: the training steps/s of ``small-unet`` on one CPU thread with crack IoU within the seed
#: spread (docs/benchmarks/train_throughput.md, docs/RESULTS.md); the CPU default
register_model(
    "small-unet-add",
    summary="small-unet with additive skips (~1.0M params); ~1.6x faster on CPU, the default",
    default_lr=2e-3,
    skip="add",
)(SmallUNet)


# -- segformer -------------------------------------------------------------------------------
#: MiT encoder sizes (Xie et al. 2021); the decode head width is 256 for b0/b1, 768 above.
MIT_VARIANTS: dict[str, dict[str, Any]] = {
    "b0": {"hidden_sizes": [32, 64, 160, 256], "depths": [2, 2, 2, 2], "decoder_hidden_size": 256},
    "b1": {"hidden_sizes": [64, 128, 320, 512], "depths": [2, 2, 2, 2], "decoder_hidden_size": 256},
    "b2": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 6, 3], "decoder_hidden_size": 768},
    "b3": {
        "hidden_sizes": [64, 128, 320, 512],
        "depths": [3, 4, 18, 3],
        "decoder_hidden_size": 768,
    },
    "b4": {
        "hidden_sizes": [64, 128, 320, 512],
        "depths": [3, 8, 27, 3],
        "decoder_hidden_size": 768,
    },
    "b5": {
        "hidden_sizes": [64, 128, 320, 512],
        "depths": [3, 6, 40, 3],
        "decoder_hidden_size": 768,
    },
}


@register_model(
    "segformer",
    summary="SegFormer (transformers; MiT-b0 by default), pretrained encoder when reachable",
    default_lr=6e-5,
)
class SegFormer(SegmentationModel):
    """transformers' ``SegformerForSemanticSegmentation``, logits upsampled to input size.

    Args:
        num_classes: K output classes.
        pretrained: ``None`` (default): load ``weights`` from the local Hugging Face
            cache when they are there (never from the network), else random init with
            a warning; ``False``: random init; ``True``: ``weights`` or an error; a hub id or
            local folder: those weights or :class:`~synth2real.errors.ModelNotFoundError`.
            The decode head is always newly initialised for K classes.
        variant: MiT encoder size ``"b0"`` .. ``"b5"`` (default ``"b0"``), used for random init.
        weights: default pretrained weights (default ``"nvidia/mit-b0"``).
        config: ``SegformerConfig`` fields overriding the variant (e.g. a tiny test model);
            with pretrained weights, the weights' own config wins.
    """

    stride = 32

    def __init__(
        self,
        num_classes: int,
        pretrained: bool | str | None = None,
        variant: str = "b0",
        weights: str = "nvidia/mit-b0",
        config: dict[str, Any] | None = None,
    ):
        super().__init__(num_classes)
        from transformers import SegformerConfig, SegformerForSemanticSegmentation

        if variant not in MIT_VARIANTS:
            raise ConfigError(
                f"segformer variant must be one of {list(MIT_VARIANTS)}, got {variant!r}"
            )
        source = weights if pretrained in (None, True) else pretrained
        net = None
        if pretrained is not False:
            net = self._load_pretrained(str(source), num_classes, explicit=pretrained is not None)
        if net is None:
            cfg = SegformerConfig(**{**MIT_VARIANTS[variant], **(config or {})})
            cfg.num_labels = num_classes
            net = SegformerForSemanticSegmentation(cfg)
        self.net = net
        self.pretrained_source = (
            str(source) if pretrained is not False and net is not None else None
        )
        cfg_dict = {
            k: v
            for k, v in self.net.config.to_diff_dict().items()
            if k
            not in (
                "id2label",
                "label2id",
                "transformers_version",
                "architectures",
                "_name_or_path",
            )
        }
        self.init_kwargs = {"variant": variant, "weights": weights, "config": cfg_dict}

    @staticmethod
    def _load_pretrained(source: str, num_classes: int, *, explicit: bool):
        from transformers import SegformerForSemanticSegmentation

        kw = {"num_labels": num_classes, "ignore_mismatched_sizes": True}
        path = Path(source).expanduser()
        attempts: list[dict[str, Any]] = []
        if path.is_dir():
            attempts.append({"pretrained_model_name_or_path": str(path)})
        elif not (path.suffix or source.startswith((".", "/", "~"))):
            cached = cached_folder(source)  # from the disk: no request at all
            if cached is not None:
                attempts.append({"pretrained_model_name_or_path": str(cached)})
            if explicit and not hub_offline():  # the hub only for weights the user named
                attempts.append({"pretrained_model_name_or_path": source})
        errors = []
        for a in attempts:
            try:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=".*newly initialized.*")
                    from transformers.utils import logging as hf_logging

                    level = hf_logging.get_verbosity()
                    hf_logging.set_verbosity_error()
                    try:
                        return SegformerForSemanticSegmentation.from_pretrained(**a, **kw)
                    finally:
                        hf_logging.set_verbosity(level)
            except (OSError, ValueError) as e:  # not found, offline, bad folder
                errors.append(str(e).splitlines()[0])
        msg = (
            f"segformer: pretrained weights {source!r} not found "
            f"({'no such folder' if not attempts else '; '.join(errors)[:300]})"
        )
        if explicit:
            raise ModelNotFoundError(
                msg + ". Give a local folder (--pretrained PATH) or run online once."
            )
        warnings.warn(
            f"segformer: default pretrained weights {source!r} are not in the local cache; "
            f"training from random init (expect much lower scores); pass --pretrained {source} "
            "to download them, or --pretrained PATH for a local folder",
            stacklevel=4,
        )
        return None

    def forward_normalized(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(pixel_values=x).logits
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
