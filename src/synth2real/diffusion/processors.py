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
- ``"record"`` (StyleID inversion): ``[content_1 .. content_B, style_1 .. style_V]``.
  Attention is unchanged; the content queries of the step are kept on the device in
  ``state.store``, and each style row's keys/values go to its sink in
  ``state.kv_sinks`` (when it has one).
- ``"inject"`` (StyleID sampling): ``[out_1 .. out_B, style_1 .. style_V]``. The out rows
  use queries ``gamma * Q_content + (1 - gamma) * Q_out``, their style's keys/values
  (``state.kv_sources``: a cached record, or one of this batch's style rows), logits
  multiplied by ``tau``; the style rows (styles whose keys/values are recomputed) attend
  normally and feed their sinks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from synth2real.diffusion.attention import attention, filtered_attention
from synth2real.diffusion.layers import AttentionLayer

Mode = Literal["off", "swap", "record", "inject"]
#: where a recorded feature belongs: ``(layer key, step)``
Where = tuple[str, int]


class KVSink(Protocol):
    """Receives a style row's keys/values (StyleID's ``KVRecord``)."""

    def put(self, where: Where, k: Tensor, v: Tensor) -> None: ...


class KVSource(Protocol):
    """Holds a style's recorded keys/values (StyleID's ``KVRecord``)."""

    def get(self, where: Where) -> tuple[Tensor, Tensor] | None: ...


@dataclass
class AttentionState:
    """What the edited attention layers do at the current UNet call.

    Attributes:
        mode: ``"off"`` (default attention), ``"swap"``, ``"record"`` or ``"inject"``.
        n_out: number of out (``swap``/``inject``) or content (``record``) rows, ``B``.
        n_style: number of style rows after them, ``U`` (``swap``) or ``V``
            (``record``/``inject``).
        style_of_out: ``(B,)`` int64 on the device: the style (0..U-1; in ``inject`` an
            index into ``kv_sources``) of each out row.
        sharpen: contrast factor ``s`` of the swapped attention (``None`` or 1 = off).
        filtering: apply CACTIF's filter (``swap`` only).
        filter_p: the filter's quantile ``p``.
        step: current step index (``record``/``inject``: the key into ``store``).
        gamma, tau: StyleID's query preservation and temperature.
        chunk_size: queries per attention chunk (``None`` = from ``memory_budget``).
        memory_budget: bytes of attention probabilities one call may hold, all chunks
            together (``None`` = ``attention.DEFAULT_MEMORY_BUDGET``, capped by free GPU
            memory); chunks are 256 MiB on the CPU, 1 GiB on a GPU.
        store: ``{(layer key, step): q_content}`` recorded by StyleID's inversion.
        kv_sinks: StyleID: one sink (or None) per style row, receiving its keys/values.
        kv_sources: StyleID sampling: per style, a source of recorded keys/values or the
            index of the style row (0..V-1) of this batch that computes them.
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
    store: dict[Where, Tensor] = field(default_factory=dict)
    kv_sinks: list[KVSink | None] = field(default_factory=list)
    kv_sources: list[KVSource | int] = field(default_factory=list)

    def reset(self) -> None:
        """Back to default attention; drop recorded features."""
        self.mode = "off"
        self.style_of_out = None
        self.store.clear()
        self.kv_sinks = []
        self.kv_sources = []


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
            if b:  # a copy: a slice would keep the whole batch's projections alive
                st.store[(self.key, st.step)] = query[:b].clone()
            self._feed_sinks(key, value, b)
            out = F.scaled_dot_product_attention(query, key, value)
        elif st.mode == "inject":
            b = st.n_out
            out = self._inject(attn, query[:b], key[b:], value[b:])
            if query.shape[0] > b:  # style rows recomputing their keys/values
                self._feed_sinks(key, value, b)
                rest = F.scaled_dot_product_attention(query[b:], key[b:], value[b:])
                out = torch.cat([out.to(rest.dtype), rest], dim=0)
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
        k_style = _style_rows(k[b : b + u], st.style_of_out, b)
        v_style = _style_rows(v[b : b + u], st.style_of_out, b)
        sharpen = None if st.sharpen is None or st.sharpen == 1.0 else float(st.sharpen)
        if st.filtering:
            # the filter attends the content rows on themselves anyway: it returns their
            # own attention from the same fused pass, so only the style rows run here
            style = F.scaled_dot_product_attention(q[b : b + u], k[b : b + u], v[b : b + u])
            out, content = filtered_attention(
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
                return_content=True,
            )
            return torch.cat([out.to(style.dtype), style, content.to(style.dtype)], dim=0)
        # style and content rows: their own, unchanged attention
        rest = F.scaled_dot_product_attention(q[b:], k[b:], v[b:])
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

    def _feed_sinks(self, k: Tensor, v: Tensor, b: int) -> None:
        st = self.state
        for j, sink in enumerate(st.kv_sinks):
            if sink is not None:
                sink.put((self.key, st.step), k[b + j : b + j + 1], v[b + j : b + j + 1])

    def _inject(self, attn: nn.Module, q: Tensor, k_rows: Tensor, v_rows: Tensor) -> Tensor:
        st = self.state
        where = (self.key, st.step)
        q_content = st.store.get(where)
        if q_content is None:
            raise RuntimeError(f"StyleID: nothing recorded for layer {self.key} at step {st.step}")
        if q_content.shape != q.shape:
            raise RuntimeError(
                f"StyleID: recorded queries {tuple(q_content.shape)} do not match {tuple(q.shape)}"
            )
        ks, vs = [], []
        for src in st.kv_sources:
            if isinstance(src, int):
                ks.append(k_rows[src : src + 1])
                vs.append(v_rows[src : src + 1])
                continue
            rec = src.get(where)
            if rec is None:
                raise RuntimeError(
                    f"StyleID: no style keys/values for layer {self.key} at step {st.step}"
                )
            ks.append(rec[0].to(q.dtype))
            vs.append(rec[1].to(q.dtype))
        if not ks:
            raise RuntimeError("StyleID: no style keys/values (state.kv_sources is empty)")
        k_style = ks[0] if len(ks) == 1 else torch.cat(ks)
        v_style = vs[0] if len(vs) == 1 else torch.cat(vs)
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
