"""The references of the three-branch walk (:mod:`.walk`) at one working size:
:class:`ReferenceBank` holds their levels ``S .. T`` (drawn once, :func:`draw_levels`)
and their latent AdaIN targets for every level and class, precomputed, so AdaIN needs no
style row and every content image reuses them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from synth2real.diffusion.adain import (
    STD_FLOOR,
    ClassMasks,
    TargetStats,
    channel_stats,
    class_masks,
    class_stats,
    pooled_stats,
)
from synth2real.diffusion.inversion import Schedule, make_generators, sample_levels
from synth2real.diffusion.quirks import NO_QUIRKS, ReferenceQuirks, reference_levels
from synth2real.errors import ConfigError


def draw_levels(
    x0: Tensor,
    schedule: Schedule,
    skip: int,
    seeds: Sequence[int],
    quirks: ReferenceQuirks = NO_QUIRKS,
) -> Tensor:
    """The levels ``S .. T`` of ``x0 (B, C, h, w)``: each image's own draws from its seed
    (:func:`~.inversion.sample_levels`), or with ``quirks.shared_noise`` the reference's
    draws after ``torch.manual_seed(42)`` (:func:`~.quirks.reference_levels`), the same
    for every image. ``(T - S + 1, B, C, h, w)`` float32."""
    if quirks.shared_noise:
        return reference_levels(x0, schedule, skip)
    return sample_levels(x0, schedule, skip, make_generators(seeds))


@dataclass
class _LevelTargets:
    """AdaIN targets of some references at some levels: ``global_mean, global_std (R, L, C)``;
    class-wise ``mean, std (R, L, K + 1, C)`` and ``source (R, K + 1)`` (None without
    labels)."""

    global_mean: Tensor
    global_std: Tensor
    mean: Tensor | None = None
    std: Tensor | None = None
    source: Tensor | None = None


def _level_targets(
    xs: Tensor, masks: ClassMasks | None, quirks: ReferenceQuirks, *, pool: bool
) -> _LevelTargets:
    """The AdaIN targets of references ``xs (R, L, C, h, w)`` with class masks ``masks``
    (``R`` images; None: global only). A class a reference lacks gets the statistics
    pooled over the other references that have it when ``pool`` (and
    ``quirks.pools_missing_classes``), else the reference's global ones."""
    mean_g, std_g = channel_stats(xs, quirks)
    out = _LevelTargets(mean_g[..., 0, 0], std_g[..., 0, 0])
    if masks is None:
        return out
    r, lv = xs.shape[:2]
    k = masks.num_classes
    stats = [class_stats(xs[:, j], masks) for j in range(lv)]
    mean = torch.stack([s[0] for s in stats], 1)  # (R, L, K+1, C)
    var = torch.stack([s[1] for s in stats], 1)
    count = stats[0][2]  # (R, K+1): pixels the statistics use (same at every level)
    has = quirks.class_present(masks).clone()
    has[:, k] = False  # "no class" is never matched class-wise
    source = torch.where(has, 0, 2).to(torch.int8)
    own = has[:, None, :, None]
    std = quirks.std(var, STD_FLOOR)
    t_mean = torch.where(own, mean, out.global_mean[:, :, None, :])
    t_std = torch.where(own, std, out.global_std[:, :, None, :])
    if pool and quirks.pools_missing_classes and r > 1:
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
            t_std[ri] = torch.where(sel, quirks.std(pv, STD_FLOOR), t_std[ri])
            source[ri][missing] = 1
    out.mean, out.std, out.source = t_mean, t_std, source
    return out


def _take(masks: ClassMasks, idx: Tensor) -> ClassMasks:
    return ClassMasks(
        slots=masks.slots[idx],
        weights=masks.weights[idx],
        present=masks.present[idx],
        eroded_present=masks.eroded_present[idx],
        from_eroded=masks.from_eroded[idx],
        kept=masks.kept[idx],
        num_classes=masks.num_classes,
    )


class ReferenceBank:
    """The references' inverted latents and latent statistics at one working size.

    Built once per working size (the latents of a reference at every level ``S .. T``
    are draws from ``q(x_i | x_0)``, independent of the content and of the UNet) and
    reused for every content image.

    Args:
        latents: ``(R, C, h, w)`` clean latents of the references.
        slots: one ``(h, w)`` slot map per reference (None without labels).
        schedule, skip: the walk's schedule and ``S``.
        seeds: one seed per reference (its levels are drawn from it).
        num_classes: ``K`` (0: no class-wise targets).
        erosion: erosion iterations of the class masks.
        quirks: the reference code's behaviours (statistics, erosion, pooling, draws).
        levels: ``(T - S + 1, R, C, h, w)`` levels to use instead of drawing them (for
            example another implementation's inversion); ``levels[-1]`` is ``x_0``.

    Attributes:
        xs: ``(R, L, C, h, w)`` float32 levels ``S .. T`` of each reference (``L = T-S+1``).
        global_mean, global_std: ``(R, L, C)``.
        target_mean, target_std: ``(R, L, K + 1, C)`` class-wise AdaIN targets (``None``
            without labels); classes the reference lacks hold the pooled statistics of
            the other references, or the global ones.
        source: ``(R, K + 1)`` int8, where each target comes from (0 own, 1 pooled, 2 global).
        masks: the references' class masks at latent size (None without labels).
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
        quirks: ReferenceQuirks = NO_QUIRKS,
        levels: Tensor | None = None,
    ):
        r = latents.shape[0]
        if len(slots) != r or len(seeds) != r:
            raise ConfigError("reference bank: latents, label maps and seeds differ in length")
        if levels is None:
            levels = draw_levels(latents, schedule, skip, seeds, quirks)  # (L, R, ...)
        elif levels.shape[0] != schedule.num_steps - skip + 1 or levels.shape[1] != r:
            raise ConfigError(
                f"reference bank: levels of shape {tuple(levels.shape)} for {r} references "
                f"and {schedule.num_steps - skip + 1} levels"
            )
        self.xs = levels.float().transpose(0, 1).contiguous()
        self.quirks = quirks
        self.num_classes = num_classes
        self.masks: ClassMasks | None = None
        if num_classes > 0 and all(s is not None for s in slots):
            stacked = torch.stack(list(slots)).to(self.xs.device)  # type: ignore[arg-type]
            self.masks = class_masks(stacked, num_classes, erosion, quirks)
        t = _level_targets(self.xs, self.masks, quirks, pool=True)
        self.global_mean, self.global_std = t.global_mean, t.global_std
        self.target_mean, self.target_std, self.source = t.mean, t.std, t.source

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

    def targets_of(
        self, latents: Tensor, refs: Tensor
    ) -> tuple[Tensor, Tensor, TargetStats | None]:
        """AdaIN targets of other latents of the references ``refs (U,)``:
        ``latents (U, C, h, w)`` (the reference quirk: the style rows' posterior means
        after the last step). Nothing is pooled. Returns the global mean and std
        ``(U, C)`` and the class-wise targets (None without labels)."""
        masks = None if self.masks is None else _take(self.masks, refs)
        t = _level_targets(latents[:, None].float(), masks, self.quirks, pool=False)
        gm, gs = t.global_mean[:, 0], t.global_std[:, 0]
        if t.mean is None:
            return gm, gs, None
        return gm, gs, TargetStats(t.mean[:, 0], t.std[:, 0], t.source, gm, gs)  # type: ignore[index]
