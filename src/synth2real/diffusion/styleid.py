"""StyleID (Chung, Hyun, Heo, CVPR 2024): training-free style injection (METHOD.md).

1. DDIM inversion (eta = 0, empty prompt) of the contents and their styles together, in
   one batch ``[content_1 .. content_B, style_1 .. style_U]``; at every step the edited
   layers record the content queries and the style keys/values, on the device.
2. Sampling (DDIM, eta = 0) of ``[out_1 .. out_B]`` from ``AdaIN(z^content, z^style)``
   (per channel; or plain ``z^content`` with ``adain="none"``), where the edited layers
   use ``Q = gamma * Q_content + (1 - gamma) * Q_out``, the style's K and V, and logits
   multiplied by ``tau``.

Only what sampling reads is kept (content queries, style keys and values of the edited
layers, per step) and it is dropped when the batch is done; styles are inverted with
each batch rather than cached, which bounds memory at any resolution. With ``skip = S``
the inversion stops at level ``S`` and sampling starts there (StyleID itself: S = 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from synth2real.diffusion.adain import adain, channel_stats
from synth2real.diffusion.inversion import Schedule, ddim_inversion, ddim_sample
from synth2real.diffusion.loading import DiffusionModels
from synth2real.diffusion.processors import AttentionState
from synth2real.errors import ConfigError


@dataclass
class StyleIDConfig:
    """StyleID parameters (see ``DiffusionMethod``)."""

    num_inference_steps: int = 50
    skip: int = 0
    gamma: float = 0.75
    tau: float = 1.5
    adain: str = "global"
    chunk_size: int | None = None
    memory_budget: int | None = None

    def __post_init__(self) -> None:
        if self.adain not in ("none", "global"):
            raise ConfigError(
                f"StyleID normalises the initial latent only: adain must be none or global, got {self.adain!r}"
            )
        if not 0.0 <= self.gamma <= 1.0:
            raise ConfigError(f"gamma must be in [0, 1], got {self.gamma}")
        if self.tau <= 0:
            raise ConfigError(f"tau must be positive, got {self.tau}")


def styleid_transfer(
    models: DiffusionModels,
    schedule: Schedule,
    cfg: StyleIDConfig,
    state: AttentionState,
    content: Tensor,
    styles: Tensor,
    style_of_out: Sequence[int],
) -> Tensor:
    """Translate ``content (B, C, h, w)`` latents with the ``styles (U, C, h, w)`` latents.

    Args:
        models: loaded models; the selected layers carry processors bound to ``state``.
        schedule: the schedule.
        cfg: StyleID parameters.
        state: the processors' shared state (reset afterwards).
        content: clean content latents.
        styles: clean style latents (one per distinct reference of the batch).
        style_of_out: for each content, the index of its style in ``styles``.

    Returns:
        ``(B, C, h, w)`` float32 clean latents.
    """
    b, u = content.shape[0], styles.shape[0]
    if len(style_of_out) != b:
        raise ConfigError("styleid_transfer: one style index per content is needed")
    dev = content.device
    idx = torch.tensor([int(s) for s in style_of_out], device=dev)
    timesteps = torch.tensor(schedule.timesteps, device=dev)

    def eps_fn(x: Tensor, i: int) -> Tensor:
        state.step = i
        return schedule.to_epsilon(models.predict(x, timesteps[i]), x, i)

    state.store.clear()
    state.chunk_size, state.memory_budget = cfg.chunk_size, cfg.memory_budget
    try:
        state.mode, state.n_out, state.n_style = "record", b, u
        z = ddim_inversion(eps_fn, torch.cat([content, styles]).float(), schedule, stop=cfg.skip)
        z_c, z_s = z[:b], z[b:]
        if cfg.adain == "global":
            sm, ss = channel_stats(z_s)
            z_c = adain(z_c, sm[idx], ss[idx])
        state.mode, state.n_out, state.style_of_out = "inject", b, idx
        state.gamma, state.tau = cfg.gamma, cfg.tau
        return ddim_sample(eps_fn, z_c, schedule, start=cfg.skip)
    finally:
        state.reset()
