"""Attention processors (diffusers style): one small class per behaviour.

Each processor is a callable with diffusers' signature that projects the hidden states as
``AttnProcessor2_0`` does and changes only how the selected layers (:mod:`.layers`)
attend. The pipelines install them with ``unet.set_attn_processor`` for as long as a
behaviour is needed and put the UNet's own processors back afterwards
(:class:`AttentionEdits`); a UNet outside a pipeline call runs its default attention.

Batch layouts (rows of the UNet batch):

- :class:`SwapProcessor` and :class:`FilteredSwapProcessor` (cross-image / CACTI /
  CACTIF walk): ``[out_1 .. out_B, style_1 .. style_U, content_1 .. content_B]``. The out
  rows attend with their own queries to the keys/values of their style row
  (:attr:`SwapLayout.style_of_out`), sharpened, and filtered against their content row by
  the filtering variant; style and content rows attend normally.
- :class:`RecordProcessor` (StyleID inversion): ``[content_1 .. content_B, style_1 ..
  style_V]``. Attention is unchanged; the content queries of the step are kept on the
  device in :attr:`StyleIDState.queries`, and each style row's keys/values go to its sink.
- :class:`InjectProcessor` (StyleID sampling): ``[out_1 .. out_B, style_1 .. style_V]``.
  The out rows use queries ``gamma * Q_content + (1 - gamma) * Q_out``, their style's
  keys/values (a cached record, or one of this batch's style rows), logits multiplied by
  ``tau``; the style rows (styles whose keys/values are recomputed) attend normally and
  feed their sinks.

The StyleID processors share one small :class:`StyleIDState` that the sampling loop
updates between UNet calls (the step, what was recorded); the swap processors need
nothing that changes during a walk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from synth2real.diffusion.attention import attention
from synth2real.diffusion.filtering import filtered_attention
from synth2real.diffusion.layers import AttentionLayer

#: where a recorded feature belongs: ``(layer key, step)``
Where = tuple[str, int]


class EditedAttnProcessor:
    """Base of the processors: diffusers' ``AttnProcessor2_0`` for the projections, norms,
    residual and output rescaling, with :meth:`attend` in place of the attention itself
    (and plain attention whenever a mask is given)."""

    def __init__(self, key: str):
        self.key = key

    def attend(self, attn: nn.Module, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """``(n, H, N, d)`` queries, keys and values of the whole batch -> ``(n, H, N, dv)``."""
        raise NotImplementedError

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

        if attention_mask is not None:
            out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask)
        else:
            out = self.attend(attn, query, key, value)

        hidden_states = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def _style_rows(k: Tensor, style_of_out: Tensor | None, n_out: int) -> Tensor:
    """Style keys/values ``(U, H, N, d)`` for each out row: batch 1 broadcasts as is."""
    if k.shape[0] == 1:
        return k
    if style_of_out is None or style_of_out.shape[0] != n_out:
        raise RuntimeError("attention processor: style_of_out does not match the out rows")
    return k.index_select(0, style_of_out)


# ---------------------------------------------------------------------------------------
# cross-image attention (the three-branch walk)
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SwapLayout:
    """The rows of a three-branch batch and what the swapped attention does with them.

    Attributes:
        n_out: out rows ``B`` (the content rows after the styles are as many).
        n_style: style rows ``U``.
        style_of_out: ``(B,)`` int64 on the device: the style row (0..U-1) of each out row.
        sharpen: contrast factor ``s`` of the swapped attention (``None`` or 1 = off).
        chunk_size: queries per attention chunk (``None`` = chunks from the default memory
            budget, see :mod:`.attention`).
    """

    n_out: int
    n_style: int
    style_of_out: Tensor
    sharpen: float | None
    chunk_size: int | None = None

    @property
    def sharpening(self) -> float | None:
        """The factor to apply, ``None`` when sharpening is off."""
        return None if self.sharpen is None or self.sharpen == 1.0 else float(self.sharpen)


class SwapProcessor(EditedAttnProcessor):
    """Cross-image attention: each out row keeps its queries and attends to its style
    row's keys and values, with sharpening; style and content rows attend normally."""

    def __init__(self, key: str, layout: SwapLayout):
        super().__init__(key)
        self.layout = layout

    def _check_rows(self, q: Tensor) -> None:
        b, u = self.layout.n_out, self.layout.n_style
        if q.shape[0] != 2 * b + u:
            raise RuntimeError(
                f"swap layout expects {2 * b + u} rows (B={b} out, U={u} style, B content), "
                f"got {q.shape[0]}"
            )

    def _styles_for_out(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        lay = self.layout
        b, u = lay.n_out, lay.n_style
        return (
            _style_rows(k[b : b + u], lay.style_of_out, b),
            _style_rows(v[b : b + u], lay.style_of_out, b),
        )

    def attend(self, attn: nn.Module, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        self._check_rows(q)
        lay = self.layout
        b = lay.n_out
        k_style, v_style = self._styles_for_out(k, v)
        # style and content rows: their own, unchanged attention
        rest = F.scaled_dot_product_attention(q[b:], k[b:], v[b:])
        out = attention(
            q[:b],
            k_style,
            v_style,
            scale=attn.scale,
            sharpen=lay.sharpening,
            chunk_size=lay.chunk_size,
        )
        return torch.cat([out.to(rest.dtype), rest], dim=0)


class FilteredSwapProcessor(SwapProcessor):
    """CACTIF: the swap of :class:`SwapProcessor` with selective attention filtering of
    the out rows against their content rows (quantile ``p``)."""

    def __init__(self, key: str, layout: SwapLayout, p: float):
        super().__init__(key, layout)
        self.p = float(p)

    def attend(self, attn: nn.Module, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        self._check_rows(q)
        lay = self.layout
        b, u = lay.n_out, lay.n_style
        k_style, v_style = self._styles_for_out(k, v)
        # the filter attends the content rows on themselves anyway: it returns their own
        # attention from the same fused pass, so only the style rows run here
        style = F.scaled_dot_product_attention(q[b : b + u], k[b : b + u], v[b : b + u])
        out, content = filtered_attention(
            q[:b],
            k_style,
            v_style,
            q[b + u :],
            k[b + u :],
            v[b + u :],
            p=self.p,
            sharpen=lay.sharpening,
            scale=attn.scale,
            chunk_size=lay.chunk_size,
            return_content=True,
        )
        return torch.cat([out.to(style.dtype), style, content.to(style.dtype)], dim=0)


# ---------------------------------------------------------------------------------------
# StyleID
# ---------------------------------------------------------------------------------------
class KVSink(Protocol):
    """Receives a style row's keys/values (StyleID's ``KVRecord``)."""

    def put(self, where: Where, k: Tensor, v: Tensor) -> None: ...


class KVSource(Protocol):
    """Holds a style's recorded keys/values (StyleID's ``KVRecord``)."""

    def get(self, where: Where) -> tuple[Tensor, Tensor] | None: ...


@dataclass
class StyleIDState:
    """What StyleID's processors share with its loop.

    Attributes:
        step: current step index (the key, with the layer, of what is recorded).
        n_out: content rows (recording) or out rows (injecting), ``B``; style rows follow.
        queries: ``{(layer key, step): q_content}`` recorded by the inversion.
        kv_sinks: one sink (or None) per style row, receiving its keys/values.
        kv_sources: sampling: per style, a source of recorded keys/values or the index of
            the style row (0..V-1) of this batch that computes them.
        style_of_out: ``(B,)`` int64 on the device: each out row's index in ``kv_sources``.
        gamma, tau: query preservation and logit temperature.
        chunk_size: as in :class:`SwapLayout`.
    """

    step: int = 0
    n_out: int = 0
    queries: dict[Where, Tensor] = field(default_factory=dict)
    kv_sinks: list[KVSink | None] = field(default_factory=list)
    kv_sources: list[KVSource | int] = field(default_factory=list)
    style_of_out: Tensor | None = None
    gamma: float = 1.0
    tau: float = 1.0
    chunk_size: int | None = None

    def feed_sinks(self, key: str, k: Tensor, v: Tensor) -> None:
        """Give style row ``j`` (after the ``n_out`` rows) to sink ``j``."""
        b = self.n_out
        for j, sink in enumerate(self.kv_sinks):
            if sink is not None:
                sink.put((key, self.step), k[b + j : b + j + 1], v[b + j : b + j + 1])


class _StyleIDProcessor(EditedAttnProcessor):
    """A StyleID processor: bound to the loop's shared :class:`StyleIDState`."""

    def __init__(self, key: str, state: StyleIDState):
        super().__init__(key)
        self.state = state


class RecordProcessor(_StyleIDProcessor):
    """StyleID's inversion: plain attention; keeps the content queries of the step and
    feeds the style rows' keys/values to their sinks."""

    def attend(self, attn: nn.Module, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        st = self.state
        b = st.n_out
        if b:  # a copy: a slice would keep the whole batch's projections alive
            st.queries[(self.key, st.step)] = q[:b].clone()
        st.feed_sinks(self.key, k, v)
        return F.scaled_dot_product_attention(q, k, v)


class InjectProcessor(_StyleIDProcessor):
    """StyleID's sampling: out rows mix their queries with the recorded content queries
    and attend to their style's keys/values with a temperature; style rows riding along
    attend normally and feed their sinks."""

    def attend(self, attn: nn.Module, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        st = self.state
        b = st.n_out
        out = self._inject(attn, q[:b], k[b:], v[b:])
        if q.shape[0] > b:  # style rows recomputing their keys/values
            st.feed_sinks(self.key, k, v)
            rest = F.scaled_dot_product_attention(q[b:], k[b:], v[b:])
            out = torch.cat([out.to(rest.dtype), rest], dim=0)
        return out

    def _style_kv(self, where: Where, k_rows: Tensor, v_rows: Tensor, dtype) -> tuple:
        ks, vs = [], []
        for src in self.state.kv_sources:
            if isinstance(src, int):
                ks.append(k_rows[src : src + 1])
                vs.append(v_rows[src : src + 1])
                continue
            rec = src.get(where)
            if rec is None:
                raise RuntimeError(
                    f"StyleID: no style keys/values for layer {self.key} at step {where[1]}"
                )
            ks.append(rec[0].to(dtype))
            vs.append(rec[1].to(dtype))
        if not ks:
            raise RuntimeError("StyleID: no style keys/values (kv_sources is empty)")
        return (ks[0] if len(ks) == 1 else torch.cat(ks)), (
            vs[0] if len(vs) == 1 else torch.cat(vs)
        )

    def _inject(self, attn: nn.Module, q: Tensor, k_rows: Tensor, v_rows: Tensor) -> Tensor:
        st = self.state
        where = (self.key, st.step)
        q_content = st.queries.get(where)
        if q_content is None:
            raise RuntimeError(f"StyleID: nothing recorded for layer {self.key} at step {st.step}")
        if q_content.shape != q.shape:
            raise RuntimeError(
                f"StyleID: recorded queries {tuple(q_content.shape)} do not match {tuple(q.shape)}"
            )
        k_style, v_style = self._style_kv(where, k_rows, v_rows, q.dtype)
        q_mix = st.gamma * q_content + (1.0 - st.gamma) * q
        return attention(
            q_mix,
            _style_rows(k_style, st.style_of_out, q.shape[0]),
            _style_rows(v_style, st.style_of_out, q.shape[0]),
            scale=attn.scale,
            logit_scale=st.tau,
            chunk_size=st.chunk_size,
        )


# ---------------------------------------------------------------------------------------
# installing
# ---------------------------------------------------------------------------------------
class AttentionEdits:
    """Context manager: puts processors on the selected layers of a UNet while a pipeline
    runs, and the UNet's own processors back when it ends (also on errors).

    Inside, :meth:`use` switches what the layers do (``None`` = the UNet's own
    processors); layers not selected always keep theirs::

        with AttentionEdits(unet, layers) as edits:
            edits.use({layer.key: SwapProcessor(layer.key, layout) for layer in layers})
            ...  # UNet calls with the swap
            edits.use(None)  # default attention again
    """

    def __init__(self, unet: nn.Module, layers: Sequence[AttentionLayer]):
        # a torch.compile'd UNet keeps the module (and its processors) in _orig_mod
        self.unet = getattr(unet, "_orig_mod", unet)
        self.keys = [layer.key for layer in layers]
        self.original: dict[str, object] | None = None
        self.current: Mapping[str, object] | None = None

    def __enter__(self) -> AttentionEdits:
        self.original = dict(self.unet.attn_processors)
        missing = [k for k in self.keys if k not in self.original]
        if missing:
            raise KeyError(f"{missing[0]} is not an attention processor of this UNet")
        return self

    def use(self, processors: Mapping[str, object] | None) -> None:
        """Install ``processors`` (layer key -> processor; ``None`` = the original ones).
        Installing what is already installed does nothing."""
        if self.original is None:
            raise RuntimeError("AttentionEdits.use outside its `with` block")
        if processors is self.current:
            return
        procs = dict(self.original)
        if processors is not None:
            unknown = set(processors) - set(self.keys)
            if unknown:
                raise KeyError(f"{sorted(unknown)[0]} is not one of the selected layers")
            procs.update(processors)
        self.unet.set_attn_processor(procs)
        self.current = processors

    def __exit__(self, *exc) -> None:
        if self.original is not None and self.current is not None:
            self.unet.set_attn_processor(dict(self.original))
        self.current = None
        self.original = None
