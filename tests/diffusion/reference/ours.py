"""synth2real's side of the parity runs: its walk and StyleID, fed the official run's
inversion (or drawing their own noise), recorded at every step.

Everything here goes through synth2real's public entry points, nothing is patched:

- the walk: ``walk.cross_image_walk`` with ``content_levels`` (the levels of the
  official inversion to walk from) and ``callback`` (the out latents before and after
  every step's AdaIN), on a ``bank.ReferenceBank`` built from given ``levels``;
  ``config.CrossImageConfig`` with ``reference_quirks``; ``freeu.install_freeu``;
- StyleID: ``styleid.styleid_transfer`` with ``callback`` (the latent sampling starts
  from and after every step), ``config.StyleIDConfig`` with ``reference_quirks``;
- the pure functions: ``adain.class_masks``, ``adain.label_slots``,
  ``inversion.Schedule``, ``inversion.ddim_inversion``, ``layers.select_layers``,
  ``loading.DiffusionModels``.

To measure what each of the reference's behaviours is worth (``benchmarks/parity_probe.py``),
:class:`WalkOptions` can turn single quirks off again (``without``): the walk then runs
with a :class:`~synth2real.diffusion.quirks.ReferenceQuirks` that has those fields at
synth2real's defaults. The tests run the quirks as the parameters give them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .models import TinySD, ddim_scheduler

#: synth2real preset -> CrossImageConfig fields (the presets' values, see presets.py)
PRESET_FIELDS: dict[str, dict] = {
    "cross-image": {"swap": True, "adain": "global", "filtering": False},
    "cacti": {"swap": True, "adain": "classwise", "filtering": False},
    "cactif": {"swap": True, "adain": "classwise", "filtering": True},
}


def diffusion_models(tiny: TinySD, unet: torch.nn.Module | None = None):
    """synth2real's ``DiffusionModels`` over the tiny models (float32, CPU)."""
    from synth2real.diffusion.loading import DiffusionModels

    return DiffusionModels(
        unet=tiny.unet if unet is None else unet,
        vae=tiny.vae,
        scheduler=ddim_scheduler(),
        prompt_embeds=tiny.prompt(),
        device=torch.device("cpu"),
        dtype=torch.float32,
        source="parity-harness",
    )


def schedule(steps: int = 50):
    from synth2real.diffusion.inversion import Schedule

    return Schedule.from_scheduler(ddim_scheduler(), steps)


def slots(label: np.ndarray, num_classes: int) -> Tensor:
    """Label map ``(h, w)`` (ids < K, 255 = none) -> synth2real's slots (K = none)."""
    from synth2real.diffusion.adain import label_slots

    return torch.from_numpy(label_slots(label, num_classes, 255))


@dataclass
class WalkOptions:
    """How synth2real's walk is run against the official one.

    Attributes:
        preset: ``cross-image``, ``cacti`` or ``cactif``.
        quirks: ``reference_quirks``.
        swap_steps: ``[start, end)`` of the swap (None = every step the quirks allow);
            ``(2, 20)`` is the reference's first image of a run.
        freeu: ``off``, ``diffusers`` or ``reference``. The official FreeU tests for 1280
            and 640 channels, which the narrow test UNets never have: ``off`` there.
        shared_noise: draw the levels as the reference does after ``torch.manual_seed(42)``
            (used with ``levels=False`` of :func:`walk`).
        without: fields of ``ReferenceQuirks`` to put back at synth2real's defaults
            (measurements of single quirks; e.g. ``("border_erodes",)``).
    """

    preset: str = "cross-image"
    quirks: bool = True
    swap_steps: tuple[int, int] | None = (2, 20)
    freeu: str = "off"
    shared_noise: bool = False
    without: tuple[str, ...] = ()

    def config(self, steps: int, skip: int):
        """The walk's ``CrossImageConfig`` (with ``without`` applied to its quirks)."""
        from synth2real.diffusion.config import CrossImageConfig

        fields = dict(
            num_inference_steps=steps,
            skip=skip,
            swap_steps=self.swap_steps,
            reference_quirks=self.quirks,
            shared_noise=self.shared_noise,
            freeu=self.freeu,
            **PRESET_FIELDS[self.preset],
        )
        return with_quirks_off(CrossImageConfig, self.without)(**fields)


def with_quirks_off(config: type, without: Sequence[str]) -> type:
    """``config`` (a synth2real config class), or a subclass whose ``quirks`` have the
    fields ``without`` at synth2real's defaults (``NO_QUIRKS``): one quirk measured."""
    from synth2real.diffusion.quirks import NO_QUIRKS

    if not without:
        return config
    off = {name: getattr(NO_QUIRKS, name) for name in without}

    @dataclass
    class Partial(config):  # type: ignore[valid-type, misc]
        @property
        def quirks(self):
            return dataclasses.replace(super().quirks, **off)

    return Partial


@dataclass
class WalkRecord:
    """synth2real's out latents ``(n_steps, C, h, w)`` of every step, before and after
    its AdaIN, and which steps swapped."""

    before: Tensor
    after: Tensor
    swapped: list[bool]


def walk(
    tiny: TinySD,
    style_levels: Tensor,
    content_levels: Tensor,
    options: WalkOptions,
    *,
    label_content: np.ndarray | None = None,
    label_style: np.ndarray | None = None,
    num_classes: int = 0,
    steps: int = 50,
    skip: int = 30,
    levels: bool = True,
) -> WalkRecord:
    """synth2real's three-branch walk, recording every step.

    Args:
        tiny: the models (synth2real's processors go on ``tiny.unet`` for the run).
        style_levels, content_levels: ``(T + 1, C, h, w)`` levels ``0 .. T`` of an
            inversion (the official ``xts``); levels ``skip .. T`` are walked from, or
            only ``[T]`` (the clean latent) with ``levels=False``.
        options: :class:`WalkOptions`.
        label_content, label_style: ``(h, w)`` label maps at latent size (class-wise).
        num_classes: ``K`` of the label maps.
        levels: feed the given levels; False: synth2real draws them itself (with
            ``options.shared_noise``, the reference's draws).
    """
    from synth2real.diffusion.adain import class_masks
    from synth2real.diffusion.bank import ReferenceBank
    from synth2real.diffusion.freeu import install_freeu
    from synth2real.diffusion.layers import select_layers
    from synth2real.diffusion.walk import cross_image_walk

    cfg = options.config(steps, skip)
    sch = schedule(steps)
    models = diffusion_models(tiny)
    classwise = cfg.adain == "classwise"
    k = num_classes if classwise else 0
    x0_style, x0_content = style_levels[-1:], content_levels[-1:]
    masks = None
    if classwise:
        masks = class_masks(slots(label_content, k)[None], k, cfg.erosion, cfg.quirks)
    before: list[Tensor] = []
    after: list[Tensor] = []
    swapped: list[bool] = []

    def record(step) -> None:
        before.append(step.before.detach().clone())
        after.append(step.after.detach().clone())
        swapped.append(step.swapped)

    with torch.no_grad(), install_freeu(models.unet, cfg.freeu):
        bank = ReferenceBank(
            x0_style,
            [slots(label_style, k)] if classwise else [None],
            sch,
            skip,
            [0],
            num_classes=k,
            erosion=cfg.erosion,
            quirks=cfg.quirks,
            levels=style_levels[skip:, None] if levels else None,
        )
        cross_image_walk(
            models,
            select_layers(models.unet, resolutions=cfg.swap_resolutions),
            sch,
            cfg,
            x0_content,
            [1],
            bank,
            [0],
            masks,
            content_levels=content_levels[skip:, None] if levels else None,
            callback=record,
        )
    return WalkRecord(before=torch.cat(before), after=torch.cat(after), swapped=swapped)


# ---------------------------------------------------------------------------------------
# StyleID
# ---------------------------------------------------------------------------------------
def eps_function(models, sch) -> Callable[[Tensor, int], Tensor]:
    """Plain noise predictor of the UNet (empty prompt) for the pure inversion functions."""
    timesteps = torch.tensor(sch.timesteps)

    def eps_fn(x: Tensor, i: int) -> Tensor:
        return sch.to_epsilon(models.predict(x, timesteps[i]), x, i)

    return eps_fn


def ddim_invert(tiny: TinySD, x0: Tensor, steps: int) -> Tensor:
    """synth2real's DDIM inversion of ``x0`` to level 0 (plain UNet)."""
    from synth2real.diffusion.inversion import ddim_inversion

    models, sch = diffusion_models(tiny), schedule(steps)
    with torch.no_grad():
        return ddim_inversion(eps_function(models, sch), x0, sch)


def ddim_trajectory(tiny: TinySD, z: Tensor, steps: int, *, x0_last: bool = False) -> Tensor:
    """synth2real's DDIM sampling from ``z`` (plain UNet): the latent after every step,
    ``(T, 1, C, h, w)``."""
    from synth2real.diffusion.inversion import ddim_sample

    models, sch = diffusion_models(tiny), schedule(steps)
    out: list[Tensor] = []
    with torch.no_grad():
        ddim_sample(
            eps_function(models, sch),
            z,
            sch,
            x0_last=x0_last,
            callback=lambda level, x: out.append(x.clone()) if level > 0 else None,
        )
    return torch.stack(out)


@dataclass
class StyleIDRun:
    """synth2real's StyleID on one (content, style) pair.

    Attributes:
        initial: the latent sampling starts from (after the initial AdaIN).
        steps: ``(T, C, h, w)`` the latent after every sampling step (the last one is
            the result).
    """

    initial: Tensor
    steps: Tensor

    @property
    def inputs(self) -> Tensor:
        """``(T, C, h, w)``: the latent the UNet is given at every sampling step."""
        return torch.cat([self.initial, self.steps[:-1]])


def styleid(
    tiny: TinySD,
    content: Tensor,
    style: Tensor,
    *,
    steps: int,
    adain: str = "global",
    quirks: bool = False,
    without: Sequence[str] = (),
    layer_keys: Sequence[str] | None = None,
    gamma: float = 0.75,
    tau: float = 1.5,
) -> StyleIDRun:
    """synth2real's ``styleid_transfer`` on ``content``/``style`` clean latents ``(1, C, h, w)``.

    Args:
        quirks: StyleID's ``reference_quirks`` (the port's initial AdaIN, its five layers,
            the last x0 prediction as the result).
        without: quirk fields put back to synth2real's defaults (:func:`with_quirks_off`).
        layer_keys: processor keys of the edited layers; default synth2real's choice
            (every decoder self-attention layer of the two finest resolutions).
    """
    from synth2real.diffusion.config import StyleIDConfig
    from synth2real.diffusion.layers import select_layers
    from synth2real.diffusion.styleid import StyleCache, styleid_transfer

    models, sch = diffusion_models(tiny), schedule(steps)
    layers = select_layers(models.unet)
    if layer_keys is not None:
        layers = [layer for layer in layers if layer.key in set(layer_keys)]
        if len(layers) != len(set(layer_keys)):
            raise ValueError("some layer keys are not decoder self-attention layers")
    cfg = with_quirks_off(StyleIDConfig, without)(
        num_inference_steps=steps,
        skip=0,
        gamma=gamma,
        tau=tau,
        adain=adain,
        reference_quirks=quirks,
    )
    seen: list[Tensor] = []
    with torch.no_grad():
        styleid_transfer(
            models,
            layers,
            sch,
            cfg,
            content,
            style,
            [0],
            cache=StyleCache(),
            callback=lambda level, x: seen.append(x.detach().clone()),
        )
    return StyleIDRun(initial=seen[0], steps=torch.cat(seen[1:]))


def max_abs(a: Tensor, b: Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def per_step(a: Tensor, b: Tensor) -> list[float]:
    """Max abs difference of two ``(n, ...)`` stacks, per step."""
    return [max_abs(x, y) for x, y in zip(a, b, strict=True)]


__all__ = [
    "PRESET_FIELDS",
    "StyleIDRun",
    "WalkOptions",
    "WalkRecord",
    "ddim_invert",
    "ddim_trajectory",
    "diffusion_models",
    "max_abs",
    "per_step",
    "schedule",
    "slots",
    "styleid",
    "walk",
    "with_quirks_off",
]
