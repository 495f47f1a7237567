"""Attention processors (diffusers style) for cross-image attention and StyleID.

One processor instance sits on each selected layer (see :mod:`.layers`); all of them
read what to do at the current step from one shared :class:`AttentionState` that the
denoising loop updates between UNet calls. No globals: two pipelines with two states can
coexist. Layers not selected keep their default processor, and so does every selected
layer while ``state.mode == "off"``.

Batch layouts (rows of the UNet batch):

- ``"swap"`` (cross-image / CACTI / CACTIF walk):
  ``[out_1 .. out_B, style_1 .. style_U, content_1 .. content_B]``. The out rows attend
  with their own queries to the keys/values of their style row (``state.style_of_out``),
  with sharpening, optionally filtered against their content row; style and content rows
  attend normally.
- ``"record"`` (StyleID inversion): ``[content_1 .. content_B, style_1 .. style_U]``.
  Attention is unchanged; the content queries and the style keys/values of the step are
  kept on the device in ``state.store``.
- ``"inject"`` (StyleID sampling): ``[out_1 .. out_B]``. Queries
  ``gamma * Q_content + (1 - gamma) * Q_out``, the recorded style keys/values, logits
  multiplied by ``tau``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from synth2real.diffusion.attention import attention, filtered_attention
from synth2real.diffusion.layers import AttentionLayer

Mode = Literal["off", "swap", "record", "inject"]


@dataclass
class AttentionState:
    """What the edited attention layers do at the current UNet call.

    Attributes:
        mode: ``"off"`` (default attention), ``"swap"``, ``"record"`` or ``"inject"``.
        n_out: number of out (``swap``/``inject``) or content (``record``) rows, ``B``.
        n_style: number of style rows ``U`` (``swap``/``record``).
        style_of_out: ``(B,)`` int64 on the device: the style row (0..U-1) of each out row.
        sharpen: contrast factor ``s`` of the swapped attention (``None`` or 1 = off).
        filtering: apply CACTIF's filter (``swap`` only).
        filter_p: the filter's quantile ``p``.
        step: current step index (``record``/``inject``: the key into ``store``).
        gamma, tau: StyleID's query preservation and temperature.
        chunk_size: queries per attention chunk (``None`` = from ``memory_budget``).
        memory_budget: bytes for one chunk's attention probabilities (``None`` = default).
        store: ``{(layer key, step): (q_content, k_style, v_style)}`` recorded by StyleID.
    """

    mode: Mode = "off"
    n_out: int = 0
    n_style: int = 0
    style_of_out: Tensor | None = None
    sharpen: float | None = 1.67
    filtering: bool = False
    filter_p: float = 0.25
    step: int = 0
    gamma: float = 0.75
    tau: float = 1.5
    chunk_size: int | None = None
    memory_budget: int | None = None
    store: dict[tuple[str, int], tuple[Tensor, Tensor, Tensor]] = field(default_factory=dict)

    def reset(self) -> None:
        """Back to default attention; drop recorded features."""
        self.mode = "off"
        self.style_of_out = None
        self.store.clear()


def _style_rows(k: Tensor, style_of_out: Tensor | None, n_out: int) -> Tensor:
    """Style keys/values ``(U, H, N, d)`` for each out row: batch 1 broadcasts as is."""
    if k.shape[0] == 1:
        return k
    if style_of_out is None or style_of_out.shape[0] != n_out:
        raise RuntimeError("attention state: style_of_out does not match the out rows")
    return k.index_select(0, style_of_out)


class CrossImageAttnProcessor:
    """Processor for one selected self-attention layer, driven by an :class:`AttentionState`.

    Follows diffusers' ``AttnProcessor2_0`` for the projections, norms, residual and
    output rescaling, so with ``state.mode == "off"`` it is the default processor.
    """

    def __init__(self, state: AttentionState, key: str):
        self.state = state
        self.key = key

    def __call__(
        self,
        attn: nn.Module,
        hidden_states: Tensor,
        encoder_hidden_states: Tensor | None = None,
        attention_mask: Tensor | None = None,
        temb: Tensor | None = None,
        *args,
        **kwargs,
    ) -> Tensor:
        st = self.state
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        batch, seq_len, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        )
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, seq_len, batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)

        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        if st.mode == "off" or attention_mask is not None:
            out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask)
        elif st.mode == "swap":
            out = self._swap(attn, query, key, value)
        elif st.mode == "record":
            b = st.n_out
            # copies: a slice would keep the whole batch's projections alive
            st.store[(self.key, st.step)] = (query[:b].clone(), key[b:].clone(), value[b:].clone())
            out = F.scaled_dot_product_attention(query, key, value)
        elif st.mode == "inject":
            out = self._inject(attn, query)
        else:  # pragma: no cover - guarded by the Mode literal
            raise RuntimeError(f"unknown attention mode {st.mode!r}")

        hidden_states = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor

    # -- modes -----------------------------------------------------------------------------
    def _swap(self, attn: nn.Module, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        st = self.state
        b, u = st.n_out, st.n_style
        if q.shape[0] != 2 * b + u:
            raise RuntimeError(
                f"swap layout expects {2 * b + u} rows (B={b} out, U={u} style, B content), "
                f"got {q.shape[0]}"
            )
        # style and content rows: their own, unchanged attention
        rest = F.scaled_dot_product_attention(q[b:], k[b:], v[b:])
        k_style = _style_rows(k[b : b + u], st.style_of_out, b)
        v_style = _style_rows(v[b : b + u], st.style_of_out, b)
        sharpen = None if st.sharpen is None or st.sharpen == 1.0 else float(st.sharpen)
        if st.filtering:
            out = filtered_attention(
                q[:b],
                k_style,
                v_style,
                q[b + u :],
                k[b + u :],
                v[b + u :],
                p=st.filter_p,
                sharpen=sharpen,
                scale=attn.scale,
                chunk_size=st.chunk_size,
                memory_budget=st.memory_budget,
            )
        else:
            out = attention(
                q[:b],
                k_style,
                v_style,
                scale=attn.scale,
                sharpen=sharpen,
                chunk_size=st.chunk_size,
                memory_budget=st.memory_budget,
            )
        return torch.cat([out.to(rest.dtype), rest], dim=0)

    def _inject(self, attn: nn.Module, q: Tensor) -> Tensor:
        st = self.state
        rec = st.store.get((self.key, st.step))
        if rec is None:
            raise RuntimeError(f"StyleID: nothing recorded for layer {self.key} at step {st.step}")
        q_content, k_style, v_style = rec
        if q_content.shape != q.shape:
            raise RuntimeError(
                f"StyleID: recorded queries {tuple(q_content.shape)} do not match {tuple(q.shape)}"
            )
        q_mix = st.gamma * q_content + (1.0 - st.gamma) * q
        return attention(
            q_mix,
            _style_rows(k_style, st.style_of_out, q.shape[0]),
            _style_rows(v_style, st.style_of_out, q.shape[0]),
            scale=attn.scale,
            logit_scale=st.tau,
            chunk_size=st.chunk_size,
            memory_budget=st.memory_budget,
        )


def install_processors(
    unet: nn.Module, layers: Sequence[AttentionLayer], state: AttentionState
) -> dict[str, object]:
    """Put a :class:`CrossImageAttnProcessor` on each of ``layers``; other layers keep
    theirs. Returns the previous processors (give them to :func:`restore_processors`)."""
    previous = dict(unet.attn_processors)
    procs = dict(previous)
    for layer in layers:
        if layer.key not in procs:
            raise KeyError(f"{layer.key} is not an attention processor of this UNet")
        procs[layer.key] = CrossImageAttnProcessor(state, layer.key)
    unet.set_attn_processor(procs)
    return previous


def restore_processors(unet: nn.Module, previous: dict[str, object]) -> None:
    """Undo :func:`install_processors`."""
    unet.set_attn_processor(dict(previous))


@contextmanager
def processors_installed(
    unet: nn.Module, layers: Sequence[AttentionLayer], state: AttentionState
) -> Iterator[AttentionState]:
    """Context manager: processors on ``layers`` inside, the previous ones restored after."""
    previous = install_processors(unet, layers, state)
    try:
        yield state
    finally:
        state.reset()
        restore_processors(unet, previous)
