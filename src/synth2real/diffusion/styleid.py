"""StyleID (Chung, Hyun, Heo, CVPR 2024): training-free style injection (METHOD.md).

1. DDIM inversion (eta = 0, empty prompt) of the contents; at every step the edited
   layers record the content queries, on the device.
2. Sampling (DDIM, eta = 0) of ``[out_1 .. out_B]`` from ``AdaIN(z^content, z^style)``
   (per channel; or plain ``z^content`` with ``adain="none"``), where the edited layers
   use ``Q = gamma * Q_content + (1 - gamma) * Q_out``, the style's K and V of the same
   step, and logits multiplied by ``tau``.

The edited layers get :class:`~.processors.RecordProcessor` for the inversion and
:class:`~.processors.InjectProcessor` for the sampling, sharing one
:class:`~.processors.StyleIDState`; :class:`StyleIDMethod` is the method that runs it.

Style inversions are computed once and reused across content batches (:class:`StyleCache`):

- a style's DDIM inversion *trajectory* (the latent at every level it passes, a few MB
  per style at 512 x 1024) is always kept: a style is inverted only the first time it is
  used, in the same UNet calls as that batch's contents;
- the style's *keys and values* (per step, per edited layer; about 1.2 GB per style for
  SD 1.5 at 512 x 512 in float16, 50 steps) are kept on the device while they fit the
  cache's byte budget, least recently used styles evicted first. A style whose keys and
  values are not cached is recomputed from its cached trajectory: one style row rides
  along each sampling step (fed the latent the inversion fed the UNet at that step, so
  its keys and values are the recorded ones) and nothing of it is held beyond the step.
  Never written to disk.

UNet rows per batch of ``B`` contents and ``U`` distinct styles, ``n = T - S`` steps:
``B n`` (content inversion) ``+ B n`` (sampling) when the styles' keys and values are
cached, plus ``n`` per style inverted for the first time and ``n`` per style recomputed.
The previous structure (styles inverted with every batch) cost ``(B + U) n + B n``.
With ``skip = S`` the inversion stops at level ``S`` and sampling starts there (StyleID
itself: S = 0).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

import torch
from torch import Tensor

from synth2real.diffusion.adain import adain, channel_stats
from synth2real.diffusion.config import StyleIDConfig
from synth2real.diffusion.inversion import Schedule, ddim_inversion, ddim_sample
from synth2real.diffusion.layers import AttentionLayer
from synth2real.diffusion.loading import DiffusionModels
from synth2real.diffusion.method import DiffusionMethod, _Batch
from synth2real.diffusion.processors import (
    AttentionEdits,
    InjectProcessor,
    RecordProcessor,
    StyleIDState,
)
from synth2real.diffusion.quirks import PORT_LAYER_COUNT, port_adain
from synth2real.errors import ConfigError


# ---------------------------------------------------------------------------------------
# the cache
# ---------------------------------------------------------------------------------------
class KVRecord:
    """Keys and values of one style image, ``{(layer key, step): (k, v)}``, each
    ``(1, H, N, d)`` on the device, filled by the attention processors (``put``) and read
    back by them (``get``). Every byte is reserved from the owning :class:`StyleCache`
    first; when the cache cannot make room the record drops what it holds and ignores
    further puts."""

    def __init__(self, cache: StyleCache, key: Hashable, protect: frozenset):
        self.cache = cache
        self.key = key
        self.protect = protect
        self.items: dict[tuple[str, int], tuple[Tensor, Tensor]] = {}
        self.nbytes = 0
        self.dropped = False

    def put(self, where: tuple[str, int], k: Tensor, v: Tensor) -> None:
        if self.dropped:
            return
        n = k.numel() * k.element_size() + v.numel() * v.element_size()
        if not self.cache._reserve(n, self.protect):
            self.drop()
            if len(self.protect) <= 1:  # alone in its batch: larger than the budget
                self.cache._too_big.add(self.key)
            return
        self.items[where] = (k.clone(), v.clone())  # copies: slices keep the batch alive
        self.nbytes += n

    def get(self, where: tuple[str, int]) -> tuple[Tensor, Tensor] | None:
        return self.items.get(where)

    def drop(self) -> None:
        """Free everything recorded (and its reservation)."""
        self.cache._release(self.nbytes)
        self.items.clear()
        self.nbytes = 0
        self.dropped = True


class StyleCache:
    """Style inversions for StyleID, computed once and reused across content batches.

    Args:
        budget: bytes of cached keys/values (all styles together); ``None`` = no limit,
            0 = never cache keys/values (recompute them every batch from the cached
            trajectories). Trajectories are always kept (``(n + 1) x C x h x w`` float32
            per style and working size).

    Keys are any hashable naming a style image at one working size (the method uses
    ``(working size, reference index)``).
    """

    def __init__(self, budget: int | None = None):
        if budget is not None and budget < 0:
            raise ConfigError(f"style cache budget must be >= 0 bytes, got {budget}")
        self.budget = budget
        #: key -> ``(n + 1, C, h, w)`` float32 latents at levels ``S .. T`` (``[0] = z_S``)
        self.trajectories: dict[Hashable, Tensor] = {}
        self._kv: OrderedDict[Hashable, KVRecord] = OrderedDict()
        self._too_big: set[Hashable] = set()
        self.used = 0  # bytes reserved (cached records and records being filled)
        self.inverted = 0  # styles inverted so far (tests, logs)

    # -- reservations ----------------------------------------------------------------------
    def _reserve(self, n: int, protect: frozenset) -> bool:
        if self.budget is None:
            self.used += n
            return True
        while self.used + n > self.budget:
            victim = next((k for k in self._kv if k not in protect), None)
            if victim is None:
                return False
            self.evict(victim)
        self.used += n
        return True

    def _release(self, n: int) -> None:
        self.used -= n

    # -- records ---------------------------------------------------------------------------
    def kv(self, key: Hashable) -> KVRecord | None:
        """The complete cached keys/values of ``key`` (marked as recently used), or None."""
        rec = self._kv.get(key)
        if rec is not None:
            self._kv.move_to_end(key)
        return rec

    def new_record(self, key: Hashable, protect: Sequence[Hashable]) -> KVRecord | None:
        """An empty record to fill for ``key``; None when it cannot be cached (budget 0,
        or the style alone is larger than the budget). ``protect``: keys not to evict
        for it (the other styles of the batch)."""
        if self.budget == 0 or key in self._too_big:
            return None
        return KVRecord(self, key, frozenset(protect))

    def commit(self, record: KVRecord | None) -> None:
        """Keep a completely filled record (a dropped one is ignored)."""
        if record is None or record.dropped:
            return
        old = self._kv.pop(record.key, None)
        if old is not None:
            old.drop()
        self._kv[record.key] = record

    def evict(self, key: Hashable) -> None:
        rec = self._kv.pop(key, None)
        if rec is not None:
            rec.drop()

    def cached_keys(self) -> list[Hashable]:
        """Keys with cached keys/values, least recently used first."""
        return list(self._kv)

    @property
    def kv_bytes(self) -> int:
        return sum(r.nbytes for r in self._kv.values())

    def clear(self) -> None:
        """Drop every trajectory and every cached key/value."""
        for key in list(self._kv):
            self.evict(key)
        self.trajectories.clear()
        self._too_big.clear()
        self.used = 0


# ---------------------------------------------------------------------------------------
# transfer
# ---------------------------------------------------------------------------------------
def styleid_transfer(
    models: DiffusionModels,
    layers: Sequence[AttentionLayer],
    schedule: Schedule,
    cfg: StyleIDConfig,
    content: Tensor,
    styles: Tensor,
    style_of_out: Sequence[int],
    *,
    style_keys: Sequence[Hashable] | None = None,
    cache: StyleCache | None = None,
    callback: Callable[[int, Tensor], None] | None = None,
) -> Tensor:
    """Translate ``content (B, C, h, w)`` latents with the ``styles (U, C, h, w)`` latents.

    Args:
        models: loaded models.
        layers: the edited layers of ``models.unet`` (they record, then inject, during
            the call, and get their own processors back afterwards).
        schedule: the schedule.
        cfg: StyleID parameters (``skip``, ``adain``, ``gamma``, ``tau``,
            ``attention_chunk``).
        content: clean content latents.
        styles: clean style latents (one per distinct style of the batch); only read for
            styles the cache has not inverted yet.
        style_of_out: for each content, the index of its style in ``styles``.
        style_keys: a cache key per style (default ``0 .. U-1``).
        cache: inversions of earlier calls; None = a cache for this call only.
        callback: called as ``callback(level, x)`` with the out latents ``(B, C, h, w)``
            sampling starts from (level ``skip``, after the initial AdaIN) and after every
            sampling step (level ``i + 1``).

    With ``cfg.reference_quirks`` (the authors' diffusers port, ``cfg.quirks``): the
    port's initial AdaIN, only the last :data:`~.quirks.PORT_LAYER_COUNT` of ``layers``
    edited, and the last step's predicted clean latent returned.

    Returns:
        ``(B, C, h, w)`` float32 clean latents.
    """
    b, u = content.shape[0], styles.shape[0]
    if len(style_of_out) != b:
        raise ConfigError("styleid_transfer: one style index per content is needed")
    keys = list(range(u)) if style_keys is None else list(style_keys)
    if len(keys) != u or len(set(keys)) != u:
        raise ConfigError("styleid_transfer: one distinct cache key per style is needed")
    cache = StyleCache() if cache is None else cache
    quirks = cfg.quirks
    if quirks.port_layers:
        layers = list(layers)[-PORT_LAYER_COUNT:]
    dev = content.device
    idx = torch.tensor([int(s) for s in style_of_out], device=dev)
    timesteps = torch.tensor(schedule.timesteps, device=dev)
    stop = cfg.skip
    schedule.check_skip(stop)
    n = schedule.num_steps - stop
    state = StyleIDState(n_out=b, gamma=cfg.gamma, tau=cfg.tau, chunk_size=cfg.attention_chunk)

    def eps_fn(x: Tensor, i: int) -> Tensor:
        state.step = i
        return schedule.to_epsilon(models.predict(x, timesteps[i]), x, i)

    new = [j for j in range(u) if keys[j] not in cache.trajectories]
    records: list[KVRecord | None] = []
    try:
        with AttentionEdits(models.unet, layers) as edits:
            # 1. DDIM inversion of the contents (queries recorded) and of first-seen styles
            #    (trajectory kept; keys/values recorded when the cache admits them)
            records = [cache.new_record(keys[j], keys) for j in new]
            traj = torch.empty((n + 1, len(new), *content.shape[1:]), device=dev)

            def eps_inv(x: Tensor, i: int) -> Tensor:
                if new:
                    traj[i - stop + 1] = x[b:]  # the latent fed to the UNet at step i
                return eps_fn(x, i)

            state.kv_sinks = list(records)
            edits.use({layer.key: RecordProcessor(layer.key, state) for layer in layers})
            x = content.float() if not new else torch.cat([content.float(), styles[new].float()])
            z = ddim_inversion(eps_inv, x, schedule, stop=stop)
            if new:
                traj[0] = z[b:]
            for jj, j in enumerate(new):
                cache.trajectories[keys[j]] = traj[:, jj].clone()
                cache.commit(records[jj])
            cache.inverted += len(new)
            records = []

            # 2. sampling: cached keys/values, or one style row per step fed its trajectory
            sources: list[KVRecord | int] = []
            rows: list[int] = []
            for j in range(u):
                rec = cache.kv(keys[j])
                if rec is not None:
                    sources.append(rec)
                else:
                    sources.append(len(rows))
                    rows.append(j)
            records = [cache.new_record(keys[j], keys) for j in rows]
            style_levels = (
                torch.stack([cache.trajectories[keys[j]] for j in rows], dim=1) if rows else None
            )
            z_c = z[:b]
            if cfg.adain == "global":
                z_s = torch.stack([cache.trajectories[k][0] for k in keys])
                if quirks.port_initial_adain:
                    z_c = port_adain(z_c, z_s[idx])
                else:
                    sm, ss = channel_stats(z_s)
                    z_c = adain(z_c, sm[idx], ss[idx])

            def eps_sample(x: Tensor, i: int) -> Tensor:
                if style_levels is None:
                    return eps_fn(x, i)
                return eps_fn(torch.cat([x, style_levels[i - stop + 1]]), i)[:b]

            state.style_of_out, state.kv_sources, state.kv_sinks = idx, sources, list(records)
            edits.use({layer.key: InjectProcessor(layer.key, state) for layer in layers})
            out = ddim_sample(
                eps_sample,
                z_c,
                schedule,
                start=stop,
                x0_last=quirks.x0_output,
                callback=callback,
            )
            for rec in records:
                cache.commit(rec)
            records = []
            return out
    finally:
        for rec in records:  # interrupted (out of memory, ...): free partial records
            if rec is not None:
                rec.drop()
        state.queries.clear()


# ---------------------------------------------------------------------------------------
# the method
# ---------------------------------------------------------------------------------------
class StyleIDMethod(DiffusionMethod):
    """Stable-Diffusion style transfer by StyleID (docs/METHOD.md, docs/DIFFUSION.md).

    Parameters: :class:`~synth2real.diffusion.config.StyleIDConfig` (the ``styleid``
    preset keeps its defaults). Each reference is DDIM-inverted once per working size and
    its keys and values are reused by every batch while they fit ``style_cache_gb``
    (:class:`StyleCache`).
    """

    config_class = StyleIDConfig
    pipeline = "styleid"
    config: StyleIDConfig

    def __init__(self, **params):
        self._style_cache: StyleCache | None = None  # the references' inversions
        super().__init__(**params)

    def _drop_reference_caches(self) -> None:
        super()._drop_reference_caches()
        if self._style_cache is not None:
            self._style_cache.clear()
        self._style_cache = None

    def _dtype_changed(self) -> None:
        if self._style_cache is not None:  # the keys/values came from the other dtype
            self._style_cache.clear()

    def style_cache(self) -> StyleCache:
        """The cache of reference inversions (budget ``style_cache_gb``)."""
        if self._style_cache is None:
            self._style_cache = StyleCache(self._style_cache_budget())
        return self._style_cache

    def _style_cache_budget(self) -> int:
        if self.config.style_cache_gb is not None:
            return int(self.config.style_cache_gb * (1 << 30))
        dev = self.models.device
        if dev.type == "cuda":
            return torch.cuda.get_device_properties(dev).total_memory // 4
        if dev.type == "cpu":
            try:
                return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
            except (AttributeError, ValueError, OSError):
                pass
        return 4 << 30

    def _translate_latents(self, batch: _Batch, content: Tensor) -> Tensor:
        ref_lats = self._reference_latents(batch.size)
        unique = list(dict.fromkeys(batch.refs))
        styles = ref_lats[torch.tensor(unique, device=ref_lats.device)]
        return styleid_transfer(
            self.models,
            self._layers,
            self._schedule,  # type: ignore[arg-type]
            self.config,
            content,
            styles,
            [unique.index(r) for r in batch.refs],
            style_keys=[(batch.size, r) for r in unique],
            cache=self.style_cache(),
        )
