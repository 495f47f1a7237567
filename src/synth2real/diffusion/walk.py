"""The three-branch walk of cross-image attention, CACTI, CACTIF and AdaIN-only diffusion
(docs/METHOD.md): :func:`cross_image_walk`, which
:class:`~synth2real.diffusion.cross_image.CrossImageMethod` runs.

A batch of latents walks the ``T - S`` denoising steps together:
``[out_1 .. out_B, style_1 .. style_U, content_1 .. content_B]``. ``out_b`` starts at its
content's inverted ``x_S`` and uses the content's noise maps; ``content_b`` and the styles
reproduce their own images; in the selected decoder self-attention layers ``out_b`` takes
its style's keys and values (sharpened, optionally filtered against ``content_b``: the
processors of :mod:`.processors`, installed for the walk); after every step ``out`` is
AdaIN-normalised towards its style latent of the same level.

How the work is kept to what the result needs:

- The edit-friendly inversion draws every level ``x_i ~ q(x_i | x_0)`` independently, so
  the style and content rows at step ``i`` are known in advance: they are *fed* their
  inverted ``x_i`` (exactly what sampling with their own noise maps would reproduce), and
  the content's noise map of step ``i`` comes from the very UNet pass the walk makes on
  ``x_i`` anyway. Content inversion and content branch are one and the same pass; nothing
  runs for the skipped steps; the reference code's second "no-swap" UNet pass (unused at
  swap guidance 1) does not exist here.
- References are drawn once per working size (:class:`~.bank.ReferenceBank`) and their latent
  statistics for every level and class are precomputed, so AdaIN needs no style row:
  ``adain-diffusion`` walks ``[out, content]`` only, and the swap presets add one style
  row per distinct reference in the batch, shared by all the contents that use it.
- No host synchronisation inside the loop (step coefficients are Python floats, indices
  live on the device).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from synth2real.diffusion.adain import ClassMasks, TargetStats, adain, classwise_adain
from synth2real.diffusion.bank import ReferenceBank, draw_levels
from synth2real.diffusion.config import CrossImageConfig
from synth2real.diffusion.inversion import Schedule
from synth2real.diffusion.layers import AttentionLayer
from synth2real.diffusion.loading import DiffusionModels
from synth2real.diffusion.processors import (
    AttentionEdits,
    FilteredSwapProcessor,
    SwapLayout,
    SwapProcessor,
)
from synth2real.diffusion.quirks import ReferenceQuirks
from synth2real.errors import ConfigError


@dataclass
class WalkStep:
    """What the walk hands its callback after each denoising step.

    Attributes:
        step: the denoising step (0 = step ``S``).
        before: ``(B, C, h, w)`` the out latents after the step, before AdaIN.
        after: the out latents after AdaIN (what the next step starts from).
        swapped: whether the step swapped keys and values.
    """

    step: int
    before: Tensor
    after: Tensor
    swapped: bool


#: called after every denoising step of :func:`cross_image_walk`
WalkCallback = Callable[[WalkStep], None]


def cross_image_walk(
    models: DiffusionModels,
    layers: Sequence[AttentionLayer],
    schedule: Schedule,
    cfg: CrossImageConfig,
    content: Tensor,
    content_seeds: Sequence[int],
    bank: ReferenceBank,
    refs: Sequence[int],
    masks: ClassMasks | None = None,
    *,
    content_levels: Tensor | None = None,
    callback: WalkCallback | None = None,
) -> Tensor:
    """Translate a batch of content latents.

    Args:
        models: loaded models.
        layers: the edited layers of ``models.unet`` (they get the swap processors while
            the walk swaps, and their own processors back afterwards).
        schedule: the ``num_inference_steps`` schedule.
        cfg: the walk's parameters (``skip``, ``swap``, ``sharpen``, ``swap_steps``,
            ``filtering``, ``filter_p``, ``adain``, ``classwise_steps``, the quirks,
            ``attention_chunk``).
        content: ``(B, C, h, w)`` float32 clean latents of the content images.
        content_seeds: one seed per content image (its levels are drawn from it).
        bank: the references at this working size.
        refs: the reference index of each content image.
        masks: class masks of the contents at latent size (class-wise AdaIN only).
        content_levels: ``(T - S + 1, B, C, h, w)`` levels of the contents to walk from
            instead of drawing them (``[-1]`` = ``x_0``; for example another
            implementation's inversion).
        callback: called after every step with a :class:`WalkStep`.

    Returns:
        ``(B, C, h, w)`` float32 clean latents of the translations.
    """
    b = content.shape[0]
    if len(refs) != b or len(content_seeds) != b:
        raise ConfigError("cross_image_walk: content, refs and seeds differ in length")
    if cfg.adain == "classwise" and (masks is None or not bank.labelled):
        raise ConfigError("class-wise AdaIN needs label maps for the contents and every reference")
    skip = cfg.skip
    n_steps = schedule.num_steps - skip
    quirks = cfg.quirks
    dev = content.device
    unique = list(dict.fromkeys(int(r) for r in refs))
    u = len(unique)
    unique_ids = torch.tensor(unique, device=dev)
    style_of_out = torch.tensor([unique.index(int(r)) for r in refs], device=dev)
    ref_ids = torch.tensor([int(r) for r in refs], device=dev)
    style_xs = bank.xs[unique_ids]  # (U, L, C, h, w)
    timesteps = torch.tensor(schedule.timesteps, device=dev)
    swapping = _swap_processors(cfg, layers, b, u, style_of_out)

    if content_levels is None:
        xs_c = draw_levels(content, schedule, skip, content_seeds, quirks)
    elif tuple(content_levels.shape) != (n_steps + 1, *content.shape):
        raise ConfigError(
            f"content_levels of shape {tuple(content_levels.shape)}, expected "
            f"{(n_steps + 1, *content.shape)}"
        )
    else:
        xs_c = content_levels.float()
    out = xs_c[0].clone()
    with AttentionEdits(models.unet, layers) as edits:
        for j in range(n_steps):
            i = skip + j
            swap = cfg.swap_at(j)
            # the reference zeroes the last noise map of every row: its out row ends on
            # the posterior mean, and so does the style row its last AdaIN aims at
            last_mean = quirks.zero_last_noise and j == n_steps - 1
            edits.use(swapping if swap else None)
            if swap or last_mean:
                batch = torch.cat([out, style_xs[:, j], xs_c[j]])
            else:
                batch = torch.cat([out, xs_c[j]])
            eps = schedule.to_epsilon(models.predict(batch, timesteps[i]), batch, i)
            c_x, c_eps, _ = schedule.ddpm_coefficients(i)
            mu_out = c_x * out + c_eps * eps[:b]
            if last_mean:
                before = mu_out
                mu_style = c_x * style_xs[:, j] + c_eps * eps[b : b + u]
                gm, gs, cls = bank.targets_of(mu_style, unique_ids)
                targets = _StepTargets(
                    gm[style_of_out],
                    gs[style_of_out],
                    None if cls is None else _rows(cls, style_of_out),
                )
            else:
                # = mu_out + sigma_i z_i with the content's noise map of this step,
                # z_i = (x_{i+1} - mu(x_i)) / sigma_i computed from this very pass
                mu_content = c_x * xs_c[j] + c_eps * eps[-b:]
                before = mu_out + (xs_c[j + 1] - mu_content)
                targets = _StepTargets.from_bank(bank, ref_ids, j + 1)
            out = _adain_step(before, cfg, quirks, targets, masks, step=j)
            if callback is not None:
                callback(WalkStep(step=j, before=before, after=out, swapped=swap))
    return out


@dataclass
class _StepTargets:
    """One step's AdaIN targets for each out row: global ``mean, std (B, C)`` and the
    class-wise targets (None without labels)."""

    global_mean: Tensor
    global_std: Tensor
    classwise: TargetStats | None

    @classmethod
    def from_bank(cls, bank: ReferenceBank, refs: Tensor, level: int) -> _StepTargets:
        return cls(
            bank.global_mean[refs, level],
            bank.global_std[refs, level],
            bank.targets(refs, level) if bank.labelled else None,
        )


def _rows(t: TargetStats, idx: Tensor) -> TargetStats:
    return TargetStats(
        t.mean[idx], t.std[idx], t.source[idx], t.global_mean[idx], t.global_std[idx]
    )


def _swap_processors(
    cfg: CrossImageConfig,
    layers: Sequence[AttentionLayer],
    n_out: int,
    n_style: int,
    style_of_out: Tensor,
) -> dict[str, SwapProcessor] | None:
    """The processors of the swapped steps, per layer key (None without swap)."""
    if not cfg.swap:
        return None
    layout = SwapLayout(n_out, n_style, style_of_out, cfg.sharpen, cfg.attention_chunk)
    if cfg.filtering:
        return {
            layer.key: FilteredSwapProcessor(layer.key, layout, cfg.filter_p) for layer in layers
        }
    return {layer.key: SwapProcessor(layer.key, layout) for layer in layers}


def _adain_step(
    out: Tensor,
    cfg: CrossImageConfig,
    quirks: ReferenceQuirks,
    targets: _StepTargets,
    masks: ClassMasks | None,
    *,
    step: int,
) -> Tensor:
    if cfg.adain == "none":
        return out
    if cfg.classwise_at(step):
        return classwise_adain(out, masks, targets.classwise, quirks=quirks)  # type: ignore[arg-type]
    return adain(out, targets.global_mean, targets.global_std, quirks=quirks)
