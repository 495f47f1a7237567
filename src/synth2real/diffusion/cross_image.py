"""The three-branch walk of cross-image attention, CACTI and CACTIF (METHOD.md).

A batch of latents walks the ``T - S`` denoising steps together:
``[out_1 .. out_B, style_1 .. style_U, content_1 .. content_B]``. ``out_b`` starts at its
content's inverted ``x_S`` and uses the content's noise maps; ``content_b`` and the styles
reproduce their own images; in the selected decoder self-attention layers ``out_b`` takes
its style's keys and values (sharpened, optionally filtered against ``content_b``); after
every step ``out`` is AdaIN-normalised towards its style latent of the same level.

How the work is kept to what the result needs:

- The edit-friendly inversion draws every level ``x_i ~ q(x_i | x_0)`` independently, so
  the style and content rows at step ``i`` are known in advance: they are *fed* their
  inverted ``x_i`` (exactly what sampling with their own noise maps would reproduce), and
  the content's noise map of step ``i`` comes from the very UNet pass the walk makes on
  ``x_i`` anyway. Content inversion and content branch are one and the same pass; nothing
  runs for the skipped steps; the reference code's second "no-swap" UNet pass (unused at
  swap guidance 1) does not exist here.
- References are drawn once per working size (:class:`ReferenceBank`) and their latent
  statistics for every level and class are precomputed, so AdaIN needs no style row:
  ``adain-diffusion`` walks ``[out, content]`` only, and the swap presets add one style
  row per distinct reference in the batch, shared by all the contents that use it.
- No host synchronisation inside the loop (step coefficients are Python floats, indices
  live on the device).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from synth2real.diffusion.adain import (
    REFERENCE_NUM_CLASSES,
    STD_FLOOR,
    ClassMasks,
    TargetStats,
    adain,
    class_masks,
    class_stats,
    classwise_adain,
    pooled_stats,
)
from synth2real.diffusion.inversion import Schedule, make_generators, sample_levels
from synth2real.diffusion.loading import DiffusionModels
from synth2real.diffusion.processors import AttentionState
from synth2real.errors import ConfigError


@dataclass
class WalkConfig:
    """Parameters of the three-branch walk (see ``DiffusionMethod`` for their meaning).

    ``swap_steps`` and ``classwise_steps`` are half-open ranges of denoising step numbers
    counted from 0 at the first step actually run (step ``S`` of the schedule).
    """

    num_inference_steps: int = 50
    skip: int = 30
    swap: bool = True
    sharpen: float | None = 1.67
    swap_steps: tuple[int, int] | None = None
    filtering: bool = False
    filter_p: float = 0.25
    adain: str = "global"
    classwise_steps: tuple[int, int] = (5, 15)
    sigma_offset: float = 0.0
    quirks: bool = False
    chunk_size: int | None = None
    memory_budget: int | None = None

    def __post_init__(self) -> None:
        if self.adain not in ("none", "global", "classwise"):
            raise ConfigError(f"adain must be none, global or classwise, got {self.adain!r}")
        if self.filtering and not self.swap:
            raise ConfigError("filtering acts on the swapped attention: it needs swap=True")
        if not 0.0 <= self.filter_p <= 1.0:
            raise ConfigError(f"filter_p must be in [0, 1], got {self.filter_p}")

    def swap_at(self, step: int) -> bool:
        if not self.swap:
            return False
        return self.swap_steps is None or self.swap_steps[0] <= step < self.swap_steps[1]

    def classwise_at(self, step: int) -> bool:
        return (
            self.adain == "classwise" and self.classwise_steps[0] <= step < self.classwise_steps[1]
        )


# ---------------------------------------------------------------------------------------
# references
# ---------------------------------------------------------------------------------------
class ReferenceBank:
    """The references' inverted latents and latent statistics at one working size.

    Built once per working size (the latents of a reference at every level ``S .. T``
    are draws from ``q(x_i | x_0)``, independent of the content and of the UNet) and
    reused for every content image.

    Attributes:
        xs: ``(R, L, C, h, w)`` float32 levels ``S .. T`` of each reference (``L = T-S+1``).
        global_mean, global_std: ``(R, L, C)``.
        target_mean, target_std: ``(R, L, K + 1, C)`` class-wise AdaIN targets (``None``
            without labels); classes the reference lacks hold the pooled statistics of
            the other references, or the global ones.
        source: ``(R, K + 1)`` int8, where each target comes from (0 own, 1 pooled, 2 global).
        num_classes: ``K`` (0 without labels).
    """

    def __init__(
        self,
        latents: Tensor,
        slots: Sequence[Tensor | None],
        schedule: Schedule,
        skip: int,
        seeds: Sequence[int],
        *,
        num_classes: int = 0,
        erosion: int = 1,
        quirks: bool = False,
    ):
        r = latents.shape[0]
        if len(slots) != r or len(seeds) != r:
            raise ConfigError("reference bank: latents, label maps and seeds differ in length")
        levels = sample_levels(latents, schedule, skip, make_generators(seeds))  # (L, R, ...)
        self.xs = levels.transpose(0, 1).contiguous()
        var, mean = torch.var_mean(self.xs, dim=(3, 4), correction=0)
        self.global_mean, self.global_std = mean, var.sqrt().clamp_min(STD_FLOOR)
        self.num_classes = num_classes
        self.target_mean = self.target_std = self.source = None
        if num_classes > 0 and all(s is not None for s in slots):
            self._class_targets(torch.stack(list(slots)), num_classes, erosion, quirks)

    def _class_targets(self, slots: Tensor, k: int, erosion: int, quirks: bool) -> None:
        r, lv = self.xs.shape[:2]
        masks = class_masks(slots.to(self.xs.device), k, erosion)
        stats = [class_stats(self.xs[:, j], masks) for j in range(lv)]
        mean = torch.stack([s[0] for s in stats], 1)  # (R, L, K+1, C)
        var = torch.stack([s[1] for s in stats], 1)
        count = stats[0][2]  # (R, K+1): pixels the statistics use (same at every level)
        # the reference counts a class only where its eroded mask is non-empty
        has = (masks.eroded_present if quirks else masks.present).clone()
        has[:, k] = False  # "no class" is never matched class-wise
        source = torch.where(has, 0, 2).to(torch.int8)
        own = has[:, None, :, None]
        t_mean = torch.where(own, mean, self.global_mean[:, :, None, :])
        t_var = torch.where(own, var, (self.global_std**2)[:, :, None, :])
        if not quirks and r > 1:
            cnt = count * has.float()
            for ri in range(r):
                others = [o for o in range(r) if o != ri]
                missing = ~has[ri] & (cnt[others].sum(0) > 0)
                if not bool(missing.any()):
                    continue
                pm, pv, _ = pooled_stats(
                    mean[others], var[others], cnt[others][:, None, :].expand(-1, lv, -1), dim=0
                )  # (L, K+1, C)
                sel = missing[None, :, None]
                t_mean[ri] = torch.where(sel, pm, t_mean[ri])
                t_var[ri] = torch.where(sel, pv, t_var[ri])
                source[ri][missing] = 1
        self.target_mean = t_mean
        self.target_std = t_var.sqrt().clamp_min(STD_FLOOR)
        self.source = source

    def __len__(self) -> int:
        return self.xs.shape[0]

    @property
    def labelled(self) -> bool:
        return self.target_mean is not None

    def targets(self, refs: Tensor, level: int) -> TargetStats:
        """Class-wise targets at ``level`` (0 = level ``S``) for references ``refs (B,)``."""
        if self.target_mean is None:
            raise ConfigError("class-wise AdaIN needs label maps for every reference")
        return TargetStats(
            mean=self.target_mean[refs, level],
            std=self.target_std[refs, level],
            source=self.source[refs],
            global_mean=self.global_mean[refs, level],
            global_std=self.global_std[refs, level],
        )


# ---------------------------------------------------------------------------------------
# the walk
# ---------------------------------------------------------------------------------------
def cross_image_walk(
    models: DiffusionModels,
    schedule: Schedule,
    cfg: WalkConfig,
    state: AttentionState,
    content: Tensor,
    content_seeds: Sequence[int],
    bank: ReferenceBank,
    refs: Sequence[int],
    masks: ClassMasks | None = None,
) -> Tensor:
    """Translate a batch of content latents.

    Args:
        models: loaded models; the selected layers of ``models.unet`` carry processors
            bound to ``state``.
        schedule: the ``num_inference_steps`` schedule.
        cfg: walk parameters.
        state: the processors' shared state (left in mode ``"off"`` afterwards).
        content: ``(B, C, h, w)`` float32 clean latents of the content images.
        content_seeds: one seed per content image (its levels are drawn from it).
        bank: the references at this working size.
        refs: the reference index of each content image.
        masks: class masks of the contents at latent size (class-wise AdaIN only).

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
    dev = content.device
    unique = list(dict.fromkeys(int(r) for r in refs))
    style_of_out = torch.tensor([unique.index(int(r)) for r in refs], device=dev)
    ref_ids = torch.tensor([int(r) for r in refs], device=dev)
    style_xs = bank.xs[torch.tensor(unique, device=dev)]  # (U, L, C, h, w)
    timesteps = torch.tensor(schedule.timesteps, device=dev)

    xs_c = sample_levels(content, schedule, skip, make_generators(content_seeds))
    out = xs_c[0].clone()
    try:
        for j in range(n_steps):
            i = skip + j
            swap = cfg.swap_at(j)
            if swap:
                state.mode = "swap"
                state.n_out, state.n_style = b, len(unique)
                state.style_of_out = style_of_out
                state.sharpen, state.filtering, state.filter_p = (
                    cfg.sharpen,
                    cfg.filtering,
                    cfg.filter_p,
                )
                state.chunk_size, state.memory_budget = cfg.chunk_size, cfg.memory_budget
                batch = torch.cat([out, style_xs[:, j], xs_c[j]])
            else:
                state.mode = "off"
                batch = torch.cat([out, xs_c[j]])
            eps = schedule.to_epsilon(models.predict(batch, timesteps[i]), batch, i)
            c_x, c_eps, _ = schedule.ddpm_coefficients(i)
            mu_out = c_x * out + c_eps * eps[:b]
            if cfg.quirks and j == n_steps - 1:
                out = mu_out  # the reference zeroes the last noise map
            else:
                # = mu_out + sigma_i z_i with the content's noise map of this step,
                # z_i = (x_{i+1} - mu(x_i)) / sigma_i computed from this very pass
                mu_content = c_x * xs_c[j] + c_eps * eps[-b:]
                out = mu_out + (xs_c[j + 1] - mu_content)
            out = _adain_step(out, cfg, bank, ref_ids, masks, level=j + 1, step=j)
    finally:
        state.mode = "off"
        state.style_of_out = None
    return out


def _adain_step(
    out: Tensor,
    cfg: WalkConfig,
    bank: ReferenceBank,
    ref_ids: Tensor,
    masks: ClassMasks | None,
    *,
    level: int,
    step: int,
) -> Tensor:
    if cfg.adain == "none":
        return out
    if cfg.classwise_at(step):
        return classwise_adain(
            out,
            masks,  # type: ignore[arg-type]
            bank.targets(ref_ids, level),
            sigma_offset=cfg.sigma_offset,
            quirks=cfg.quirks,
        )
    return adain(out, bank.global_mean[ref_ids, level], bank.global_std[ref_ids, level])


def content_masks(slots: Tensor, num_classes: int, erosion: int) -> ClassMasks:
    """Class masks of a batch of content label maps at latent size ``(B, h, w)``."""
    return class_masks(slots, num_classes, erosion)


__all__ = [
    "REFERENCE_NUM_CLASSES",
    "ReferenceBank",
    "WalkConfig",
    "content_masks",
    "cross_image_walk",
]
