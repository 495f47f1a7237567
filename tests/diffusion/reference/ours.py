"""synth2real's side of the parity runs: its walk and StyleID fed the official run's noise.

**Everything that touches synth2real internals beyond the pure maths lives here**, so
that the restructuring of ``synth2real.diffusion`` changes this file only. As of this
writing it uses:

- ``synth2real.diffusion.pipeline``: ``WalkConfig``, ``ReferenceBank``,
  ``cross_image_walk``; for the duration of a run it replaces the module names
  ``sample_levels`` (to feed the official inversion's levels instead of drawing new
  ones) and ``_adain_step`` (to record the out latent before and after every AdaIN);
- ``synth2real.diffusion.processors``: ``AttentionState``, ``processors_installed``;
- ``synth2real.diffusion.styleid``: ``styleid_transfer``, ``StyleIDConfig``,
  ``StyleCache``; it replaces ``ddim_sample`` there (to record every step);
- the pure functions: ``adain.class_masks``, ``adain.label_slots``,
  ``adain.channel_stats``, ``inversion.Schedule``, ``inversion.ddim_inversion``,
  ``layers.select_layers``, ``freeu.install_freeu``, ``loading.DiffusionModels``.

The gap emulations of :class:`WalkOptions` and :func:`styleid` (``port_adain``) replace,
for one run only, ``adain.erode_slots``, ``adain.class_stats``, ``pipeline.adain``,
``pipeline.class_stats``, ``styleid.adain``, ``styleid.channel_stats`` and the reference
bank's global statistics. They are measurements of what each gap is worth, not
synth2real behaviour; the tests run synth2real without them.

What phase 2 should give the walk so that this file needs no patching: the levels of
an inversion to walk from (``xs`` of style and content, instead of drawing them), and a
per-step callback with the out latents before and after AdaIN (and StyleID: its
trajectory). The reference-quirks mode then needs, to match the official code at every
step (``docs/benchmarks/parity_probe.md``): erosion with ``border_value=0``, the last
global AdaIN aimed at the style's posterior mean ``mu(x_{T-1})``, statistics
``sqrt(var + 1e-5)`` (unbiased variance for global AdaIN), and noise drawn as
``cactif.reference_draws`` does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .models import TinySD, ddim_scheduler

#: synth2real preset -> WalkConfig fields (the presets' values, see presets.py)
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
        quirks: ``reference_quirks`` (sigma offset 1 with class-wise AdaIN, untouched
            pixels, last noise map zeroed).
        swap_steps: ``[start, end)`` of the swap; (2, 20) is the reference's first image.
        freeu: ``off``, ``diffusers`` or ``reference`` (:mod:`synth2real.diffusion.freeu`).
        border_erodes: close gap "erosion border": erode the image border as
            ``scipy.ndimage.binary_erosion`` (``border_value=0``) does.
        last_target: close gap "last-step AdaIN target": the last global AdaIN targets
            the style's posterior mean at the last step (the reference's style row, whose
            last noise map is zero) instead of its clean latent.
        reference_stats: close gap "AdaIN statistics": the reference's
            ``sqrt(var + 1e-5)`` (unbiased variance for global AdaIN, population variance
            for class-wise) instead of the population std.
    """

    preset: str = "cross-image"
    quirks: bool = True
    swap_steps: tuple[int, int] | None = (2, 20)
    freeu: str = "off"
    border_erodes: bool = False
    last_target: bool = False
    reference_stats: bool = False


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
) -> WalkRecord:
    """synth2real's three-branch walk from the given levels, recording every step.

    Args:
        tiny: the models (synth2real's processors go on ``tiny.unet`` for the run).
        style_levels, content_levels: ``(T + 1, C, h, w)`` levels ``0 .. T`` of an
            inversion (the official ``xts``); levels ``skip .. T`` are used.
        options: :class:`WalkOptions`.
        label_content, label_style: ``(h, w)`` label maps at latent size (class-wise).
        num_classes: ``K`` of the label maps.

    Returns:
        :class:`WalkRecord`: the out latent of every step before and after its AdaIN.
    """
    from synth2real.diffusion import pipeline as pl
    from synth2real.diffusion.adain import class_masks
    from synth2real.diffusion.freeu import FreeUOptions, install_freeu
    from synth2real.diffusion.layers import select_layers
    from synth2real.diffusion.processors import AttentionState, processors_installed

    fields = PRESET_FIELDS[options.preset]
    classwise = fields["adain"] == "classwise"
    cfg = pl.WalkConfig(
        num_inference_steps=steps,
        skip=skip,
        sharpen=1.67,
        swap_steps=options.swap_steps,
        filter_p=0.25,
        classwise_steps=(5, 15),
        sigma_offset=1.0 if (classwise and options.quirks) else 0.0,
        quirks=options.quirks,
        **fields,
    )
    sch = schedule(steps)
    models = diffusion_models(tiny)
    x0_style, x0_content = style_levels[-1:], content_levels[-1:]
    fed = [(x0_style[0], style_levels[skip:]), (x0_content[0], content_levels[skip:])]
    k = num_classes if classwise else 0
    slot_style = [slots(label_style, k)] if classwise else [None]
    masks = None
    recorded: list[tuple[Tensor, Tensor]] = []
    state = AttentionState()
    freeu = FreeUOptions(mode=options.freeu)  # type: ignore[arg-type]
    with (
        torch.no_grad(),
        _fed_levels(pl, fed),
        _recording(pl, recorded),
        _erosion(options.border_erodes),
        _reference_stats(pl, options.reference_stats),
        install_freeu(models.unet, freeu),
        processors_installed(models.unet, select_layers(models.unet), state),
    ):
        bank = pl.ReferenceBank(
            x0_style, slot_style, sch, skip, [0], num_classes=k, erosion=1, quirks=options.quirks
        )
        if options.reference_stats:
            _bank_reference_stats(bank)
        if options.last_target:
            _last_level_target(models, sch, bank, steps - 1, options.reference_stats)
        if classwise:
            masks = class_masks(slots(label_content, k)[None], k, erosion=1)
        pl.cross_image_walk(models, sch, cfg, state, x0_content, [0], bank, [0], masks)
    return WalkRecord(
        before=torch.cat([b for b, _ in recorded]), after=torch.cat([a for _, a in recorded])
    )


@dataclass
class WalkRecord:
    """synth2real's out latents ``(n_steps, C, h, w)`` of every step, before and after
    its AdaIN."""

    before: Tensor
    after: Tensor


@contextlib.contextmanager
def _fed_levels(pl, table: Sequence[tuple[Tensor, Tensor]]) -> Iterator[None]:
    """``sample_levels`` returns the given levels for latents it knows (by value)."""
    original = pl.sample_levels

    def sample_levels(x0: Tensor, schedule, skip: int, generators) -> Tensor:
        out = []
        for row in x0:
            for known, levels in table:
                if torch.equal(row.float(), known.float()):
                    if levels.shape[0] != schedule.num_steps - skip + 1:
                        raise ValueError("fed levels do not match the walk's steps")
                    out.append(levels.float())
                    break
            else:
                raise LookupError("the walk asked for levels of a latent the harness did not feed")
        return torch.stack(out, dim=1)

    pl.sample_levels = sample_levels
    try:
        yield
    finally:
        pl.sample_levels = original


@contextlib.contextmanager
def _recording(pl, recorded: list[tuple[Tensor, Tensor]]) -> Iterator[None]:
    original = pl._adain_step

    def _adain_step(out, cfg, bank, ref_ids, masks, *, level, step):
        res = original(out, cfg, bank, ref_ids, masks, level=level, step=step)
        recorded.append((out.detach().clone(), res.detach().clone()))
        return res

    pl._adain_step = _adain_step
    try:
        yield
    finally:
        pl._adain_step = original


def erode_border_zero(slots: Tensor, iterations: int = 1) -> Tensor:
    """``erode_slots`` with ``scipy.ndimage.binary_erosion``'s default border: outside the
    image counts as "not in the class", so the border erodes (``border_value=0``)."""
    keep = torch.ones_like(slots, dtype=torch.bool)
    if iterations <= 0:
        return keep
    pad = torch.nn.functional.pad(slots[:, None].float(), (1, 1, 1, 1), value=-1.0)[:, 0]
    center = slots.float()
    for _ in range(iterations):
        k = torch.nn.functional.pad(keep[:, None].float(), (1, 1, 1, 1), value=0.0)[:, 0]
        nxt = keep.clone()
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            sl = (
                slice(None),
                slice(1 + dy, pad.shape[1] - 1 + dy),
                slice(1 + dx, pad.shape[2] - 1 + dx),
            )
            nxt &= (pad[sl] == center) & (k[sl] > 0.5)
        keep = nxt
    return keep


@contextlib.contextmanager
def _erosion(border_erodes: bool) -> Iterator[None]:
    if not border_erodes:
        yield
        return
    from synth2real.diffusion import adain as ad

    original = ad.erode_slots
    ad.erode_slots = erode_border_zero
    try:
        yield
    finally:
        ad.erode_slots = original


def reference_channel_stats(x: Tensor, unbiased: bool = True) -> tuple[Tensor, Tensor]:
    """The reference's ``calc_mean_std``: mean and ``sqrt(var + 1e-5)`` per channel of
    ``(B, C, h, w)`` (unbiased variance, as ``torch.var``'s default)."""
    xf = x.float()
    var, mean = torch.var_mean(xf, dim=(2, 3), keepdim=True, correction=1 if unbiased else 0)
    return mean, (var + 1e-5).sqrt()


@contextlib.contextmanager
def _reference_stats(pl, on: bool) -> Iterator[None]:
    """AdaIN with the reference's statistics: global ``sqrt(var_unbiased + 1e-5)`` for the
    out row (the bank's global targets are set by :func:`_bank_reference_stats`) and
    class-wise ``sqrt(var + 1e-5)`` (population variance) on both sides."""
    if not on:
        yield
        return
    from synth2real.diffusion import adain as ad

    original_adain, original_stats = pl.adain, ad.class_stats
    original_pl_stats = pl.class_stats

    def adain(x, target_mean, target_std, *, sigma_offset=0.0):
        mean, std = reference_channel_stats(x)
        tm = target_mean.float().reshape(target_mean.shape[0], -1, 1, 1)
        ts = target_std.float().reshape(target_std.shape[0], -1, 1, 1)
        return (x.float() - mean) / (std + sigma_offset) * (ts + sigma_offset) + tm

    def class_stats(x, masks):
        mean, var, count = original_stats(x, masks)
        return mean, var + 1e-5, count

    pl.adain, ad.class_stats, pl.class_stats = adain, class_stats, class_stats
    try:
        yield
    finally:
        pl.adain, ad.class_stats, pl.class_stats = original_adain, original_stats, original_pl_stats


def _bank_reference_stats(bank) -> None:
    r, lv = bank.xs.shape[:2]
    flat = bank.xs.reshape(r * lv, *bank.xs.shape[2:])
    _, std = reference_channel_stats(flat)
    bank.global_std = std.reshape(r, lv, -1)


def _last_level_target(models, sch, bank, last_step: int, reference_stats: bool) -> None:
    """Global AdaIN target of the last level: the style's posterior mean ``mu(x_{T-1})``
    (its last noise map zeroed), computed with one UNet pass on the style's level."""
    level = bank.xs.shape[1] - 2  # the last level the walk feeds, x_{T-1}
    x = bank.xs[:, level]
    t = sch.timesteps[last_step]
    eps = sch.to_epsilon(models.predict(x, t), x, last_step)
    c_x, c_eps, _ = sch.ddpm_coefficients(last_step)
    mu = c_x * x + c_eps * eps
    if reference_stats:
        mean, std = reference_channel_stats(mu)
    else:
        from synth2real.diffusion.adain import channel_stats

        mean, std = channel_stats(mu)
    bank.global_mean[:, -1] = mean[:, :, 0, 0]
    bank.global_std[:, -1] = std[:, :, 0, 0]


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


def ddim_trajectory(tiny: TinySD, z: Tensor, steps: int) -> Tensor:
    """synth2real's DDIM sampling from ``z`` (plain UNet), the latent after every step."""
    models, sch = diffusion_models(tiny), schedule(steps)
    eps_fn = eps_function(models, sch)
    return _ddim_steps(eps_fn, z, sch, 0)


def _ddim_steps(eps_fn, x: Tensor, sch, start: int) -> Tensor:
    # inversion.ddim_sample's loop, keeping every step
    out = []
    x = x.float()
    with torch.no_grad():
        for i in range(start, sch.num_steps):
            c_x, c_eps = sch.ddim_coefficients(i)
            x = c_x * x + c_eps * eps_fn(x, i).float()
            out.append(x)
    return torch.stack(out)


@dataclass
class StyleIDRun:
    """synth2real's StyleID on one (content, style) pair.

    Attributes:
        initial: the latent sampling starts from (after the initial AdaIN).
        steps: ``(T, C, h, w)`` the latent after every sampling step.
    """

    initial: Tensor
    steps: Tensor


def styleid(
    tiny: TinySD,
    content: Tensor,
    style: Tensor,
    *,
    steps: int,
    adain: str = "global",
    layer_keys: Sequence[str] | None = None,
    port_adain: bool = False,
    gamma: float = 0.75,
    tau: float = 1.5,
) -> StyleIDRun:
    """synth2real's ``styleid_transfer`` on ``content``/``style`` clean latents ``(1, C, h, w)``.

    Args:
        layer_keys: processor keys of the edited layers; default synth2real's choice
            (every decoder self-attention of the two finest resolutions).
        port_adain: use the port's initial AdaIN (unbiased std + 1e-4 in the content's
            denominator) instead of synth2real's (population std).
    """
    from synth2real.diffusion import styleid as sid
    from synth2real.diffusion.layers import select_layers
    from synth2real.diffusion.processors import AttentionState, processors_installed

    models, sch = diffusion_models(tiny), schedule(steps)
    layers = select_layers(models.unet)
    if layer_keys is not None:
        layers = [layer for layer in layers if layer.key in set(layer_keys)]
        if len(layers) != len(set(layer_keys)):
            raise ValueError("some layer keys are not decoder self-attention layers")
    cfg = sid.StyleIDConfig(num_inference_steps=steps, skip=0, gamma=gamma, tau=tau, adain=adain)
    state = AttentionState()
    seen: dict[str, Tensor] = {}
    original_sample = sid.ddim_sample
    original_stats, original_adain = sid.channel_stats, sid.adain

    def ddim_sample(eps_fn, x_start, schedule, start=0):
        seen["initial"] = x_start.detach().clone()
        traj = _ddim_steps(eps_fn, x_start, schedule, start)
        seen["steps"] = traj
        return traj[-1]

    sid.ddim_sample = ddim_sample
    if port_adain:
        sid.channel_stats = lambda x: _unbiased_stats(x)
        sid.adain = _port_adain
    try:
        with torch.no_grad(), processors_installed(models.unet, layers, state):
            sid.styleid_transfer(
                models, sch, cfg, state, content, style, [0], cache=sid.StyleCache()
            )
    finally:
        sid.ddim_sample = original_sample
        sid.channel_stats, sid.adain = original_stats, original_adain
    return StyleIDRun(initial=seen["initial"], steps=seen["steps"])


def _unbiased_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    var, mean = torch.var_mean(x.float(), dim=(2, 3), keepdim=True, correction=1)
    return mean, var.sqrt()


def _port_adain(x: Tensor, target_mean: Tensor, target_std: Tensor, *, sigma_offset=0.0) -> Tensor:
    # run_styleid_diffusers.py: (c - mean_c) / (std_c + 1e-4) * std_s + mean_s, unbiased std
    mean, std = _unbiased_stats(x)
    tm = target_mean.float().reshape(target_mean.shape[0], -1, 1, 1)
    ts = target_std.float().reshape(target_std.shape[0], -1, 1, 1)
    return (x.float() - mean) / (std + 1e-4) * ts + tm


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
    "erode_border_zero",
    "max_abs",
    "per_step",
    "schedule",
    "slots",
    "styleid",
    "walk",
]
