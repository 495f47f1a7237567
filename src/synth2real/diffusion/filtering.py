"""CACTIF's selective attention filtering (docs/METHOD.md), as pure functions of tensors.

For each query position ``i`` of the ``out`` element: ``m(i)``, the style position it
attends to most; ``sim(i)``, how well the content's value at ``i`` matches the style's at
``m(i)``; positions whose ``sim`` lies below its ``p``-quantile are *weak*, and there the
content's own attention columns and values replace the style's.

The reference computes ``sim`` in a Python loop over positions and materialises whole
attention matrices; here it is vectorised and chunked over queries with the helpers of
:mod:`.attention` (same shapes, dtypes and memory budget). The quantile needs every
score first, so the filter runs in two passes over the query chunks, keeping pass 1's
probabilities for pass 2 when they fit the budget and recomputing them otherwise;
neither pass synchronises with the host.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from synth2real.diffusion.attention import (
    _apply,
    _budget,
    _bytes_per_element,
    _check_qkv,
    _chunks,
    _probabilities,
    _resolve_chunk,
    _sdpa,
    _Workspace,
    sharpen_probabilities,
)
from synth2real.diffusion.config import CrossImageConfig
from synth2real.errors import ConfigError

__all__ = ["filter_scores", "filtered_attention", "weak_positions"]

Interpolation = Literal["linear", "lower", "higher", "midpoint", "nearest"]
_INTERPOLATIONS = ("linear", "lower", "higher", "midpoint", "nearest")
# Cosine similarity as torch.nn.CosineSimilarity(dim=-1, eps=1e-6), the reference's choice.
_COS_EPS = 1e-6


def _check_inputs(q_out, k_style, v_style, q_content, k_content, v_content) -> None:
    _check_qkv(q_out, k_style, v_style, "filtered_attention (out query, style keys/values)")
    _check_qkv(q_content, k_content, v_content, "filtered_attention (content)")
    if q_out.shape != q_content.shape or k_content.shape[0] != q_out.shape[0]:
        raise ConfigError(
            "filtered_attention: out and content must have the same (B, H, N, d); got "
            f"q_out {tuple(q_out.shape)}, q_content {tuple(q_content.shape)}, "
            f"k_content {tuple(k_content.shape)}"
        )
    n = q_out.shape[2]
    if k_style.shape[2] != n or k_content.shape[2] != n:
        raise ConfigError(
            "filtered_attention: style, content and out must share one token grid "
            f"(N = {n}); got style keys {k_style.shape[2]}, content keys {k_content.shape[2]}"
        )
    if v_style.shape[-1] != v_content.shape[-1]:
        raise ConfigError(
            f"filtered_attention: value widths differ (style {v_style.shape[-1]}, "
            f"content {v_content.shape[-1]})"
        )


def _pass1(
    q_out: Tensor,
    k_style: Tensor,
    v_style: Tensor,
    v_content: Tensor,
    sharpen: float | None,
    scale: float,
    step: int,
    keep: bool,
) -> tuple[Tensor, Tensor, list[Tensor] | None]:
    b, h, n, _ = q_out.shape
    vs = v_style.expand(b, -1, -1, -1)
    sim = torch.empty((b, n), dtype=torch.float32, device=q_out.device)
    arg = torch.empty((b, n), dtype=torch.long, device=q_out.device)
    kept: list[Tensor] | None = [] if keep else None
    ws = None if keep else _Workspace()
    for s, e in _chunks(n, step):
        probs = _probabilities(q_out[:, :, s:e], k_style, scale, ws)
        if sharpen is not None:
            sharpen_probabilities(probs, float(sharpen))
        m = probs.sum(dim=1).argmax(dim=-1)  # (B, C): first index on ties
        if kept is not None:
            kept.append(probs)
        idx = m[:, None, :, None].expand(b, h, e - s, vs.shape[-1])
        v_at = torch.gather(vs, 2, idx).float()
        cos = F.cosine_similarity(v_content[:, :, s:e].float(), v_at, dim=-1, eps=_COS_EPS)
        sim[:, s:e] = cos.abs().sum(dim=1)
        arg[:, s:e] = m
    return sim, arg, kept


def filter_scores(
    q_out: Tensor,
    k_style: Tensor,
    v_style: Tensor,
    v_content: Tensor,
    *,
    sharpen: float | None = CrossImageConfig.sharpen,
    scale: float | None = None,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Pass 1 of the filter: for every query position ``i`` of ``out``,
    ``m(i) = argmax_j sum_h A'_out[h, i, j]`` and
    ``sim(i) = sum_h |cos(V_content[h, i, :], V_style[h, m(i), :])|``.

    ``A'_out`` is the sharpened attention of the out queries on the style keys (the same
    probabilities the swap uses). Argmax ties resolve to the first index (as
    ``torch.argmax``). ``|A'|`` of METHOD.md is ``A'`` itself (clamped to ``[0, 1]``).

    Args:
        q_out: ``(B, H, N, d)`` out queries.
        k_style: ``(B or 1, H, N, d)`` style keys.
        v_style: ``(B or 1, H, N, dv)`` style values.
        v_content: ``(B, H, N, dv)`` content values.
        sharpen: contrast factor ``s`` (``None`` = no sharpening); default the methods'
            (``CrossImageConfig.sharpen``, 1.67).
        scale: logit scale, default ``1 / sqrt(d)``.
        chunk_size, memory_budget: as in :func:`attention`.

    Returns:
        ``sim`` ``(B, N)`` float32 in ``[0, H]`` and ``m`` ``(B, N)`` int64 style positions.
    """
    _check_qkv(q_out, k_style, v_style, "filter_scores")
    b, h, n, d = q_out.shape
    if v_content.shape != (b, h, n, v_style.shape[-1]) or k_style.shape[2] != n:
        raise ConfigError(
            f"filter_scores: v_content {tuple(v_content.shape)} and the style grid must "
            f"match q_out {tuple(q_out.shape)}"
        )
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    step = _resolve_chunk(chunk_size, n, n, b, h, q_out, _budget(memory_budget, q_out.device))
    sim, arg, _ = _pass1(q_out, k_style, v_style, v_content, sharpen, scale, step, keep=False)
    return sim, arg


def weak_positions(
    sim: Tensor, p: float = CrossImageConfig.filter_p, interpolation: Interpolation = "linear"
) -> Tensor:
    """Positions whose score lies strictly below its p-quantile, per batch element.

    ``q = torch.quantile(sim[b], p, interpolation=...)``; weak = ``sim < q``. Ties at the
    threshold are kept (not weak). ``p = 0`` marks nothing; ``p = 1`` marks every
    position but the maximum (and its ties).

    Args:
        sim: ``(B, N)`` float scores (see :func:`filter_scores`).
        p: quantile in ``[0, 1]``; default the methods' (``CrossImageConfig.filter_p``,
            0.25).
        interpolation: as ``torch.quantile``; default ``"linear"``.

    Returns:
        ``(B, N)`` bool.
    """
    if not 0.0 <= float(p) <= 1.0:
        raise ConfigError(f"filter quantile p must be in [0, 1], got {p}")
    if interpolation not in _INTERPOLATIONS:
        raise ConfigError(f"interpolation must be one of {_INTERPOLATIONS}, got {interpolation!r}")
    # A Python-float q is validated on the host and placed on sim's device: no sync.
    q = torch.quantile(sim, float(p), dim=-1, keepdim=True, interpolation=interpolation)
    return sim < q


def filtered_attention(
    q_out: Tensor,
    k_style: Tensor,
    v_style: Tensor,
    q_content: Tensor,
    k_content: Tensor,
    v_content: Tensor,
    *,
    p: float = CrossImageConfig.filter_p,
    sharpen: float | None = CrossImageConfig.sharpen,
    scale: float | None = None,
    chunk_size: int | None = None,
    interpolation: Interpolation = "linear",
    return_weak: bool = False,
    return_content: bool = False,
    memory_budget: int | None = None,
) -> Tensor | tuple[Tensor, ...]:
    """CACTIF's selective attention filtering for the ``out`` element (METHOD.md).

    1. ``m(i) = argmax_j sum_h A'_out[h, i, j]`` with ``A'_out`` the sharpened attention
       of out's queries on the style's keys;
    2. ``sim(i) = sum_h |cos(V_content[h, i], V_style[h, m(i)])|``;
    3. ``weak = {i : sim(i) < quantile_p(sim)}`` per batch element;
    4. the attention columns ``j`` in weak are replaced by the content's own (unsharpened)
       attention ``A_content = softmax(q_content k_content^T * scale)`` and the value rows
       ``j`` in weak by the content's values:
       ``out = (A'_out * keep_cols) @ V_style + (A_content * weak_cols) @ V_content``.

    Computed in two passes over query chunks (the quantile needs every score first) with
    no host synchronisation. The column masks are folded into the value rows
    (``sum_j A[i, j] keep[j] V[j]``: same sums, no masked copies of the matrices). Pass 1's
    probabilities are kept for pass 2 when the whole ``(B, H, N, N)`` float32 matrix fits
    ``memory_budget``, recomputed chunk by chunk otherwise. The content term is plain
    attention with masked values, so it runs through the fused
    ``F.scaled_dot_product_attention`` (together with the content's own attention output
    when ``return_content`` asks for it, sharing one pass).

    Args:
        q_out: ``(B, H, N, d)`` queries of the out element.
        k_style: ``(B or 1, H, N, d)`` style keys (batch 1: one style for all pairs).
        v_style: ``(B or 1, H, N, dv)`` style values.
        q_content: ``(B, H, N, d)`` content queries.
        k_content: ``(B, H, N, d)`` content keys.
        v_content: ``(B, H, N, dv)`` content values.
        p: quantile of the similarity under which positions are weak, in ``[0, 1]``;
            default the methods' (``CrossImageConfig.filter_p``, 0.25; 0.1 to 0.3 is the
            useful range).
        sharpen: contrast factor ``s`` of out's attention (``None`` = off); default the
            methods' (``CrossImageConfig.sharpen``, 1.67).
        scale: logit scale; default ``1 / sqrt(d)``.
        chunk_size: queries per chunk; ``None`` picks it from the budget.
        interpolation: quantile interpolation as in ``torch.quantile``; default "linear".
        return_weak: also return the ``(B, N)`` bool weak mask.
        return_content: also return the content element's own attention output
            ``softmax(q_content k_content^T * scale) @ v_content`` (what the content
            branch needs anyway), computed in the same fused pass as the content term.
        memory_budget: bytes of probabilities the call may hold; default
            :data:`DEFAULT_MEMORY_BUDGET` (capped by free GPU memory on CUDA).

    Returns:
        ``out`` ``(B, H, N, dv)`` in ``q_out``'s dtype; with ``return_weak`` and/or
        ``return_content`` a tuple ``(out, weak)``, ``(out, content)`` or
        ``(out, weak, content)``.
    """
    _check_inputs(q_out, k_style, v_style, q_content, k_content, v_content)
    b, h, n, d = q_out.shape
    dv = v_style.shape[-1]
    base_scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    budget = _budget(memory_budget, q_out.device)
    step = _resolve_chunk(chunk_size, n, n, b, h, q_out, budget)
    keep = (
        b * h * n * n * 4 + step * b * h * n * _bytes_per_element(q_out.device, q_out.dtype)
        <= budget
    )

    sim, _, kept = _pass1(q_out, k_style, v_style, v_content, sharpen, base_scale, step, keep)
    weak = weak_positions(sim, p, interpolation)  # (B, N) bool, stays on the device
    weak_rows = weak[:, None, :, None]

    # style term: sum over kept columns of A'_out[i, j] V_style[j]
    vs = v_style.expand(b, -1, -1, -1)
    v_style_kept = torch.where(weak_rows, torch.zeros((), dtype=vs.dtype, device=vs.device), vs)
    acc = torch.empty((b, h, n, dv), dtype=torch.float32, device=q_out.device)
    ws = None if kept is not None else _Workspace()
    for i, (s, e) in enumerate(_chunks(n, step)):
        if kept is not None:
            probs, kept[i] = kept[i], None  # free each kept chunk once used
        else:
            probs = _probabilities(q_out[:, :, s:e], k_style, base_scale, ws)
            if sharpen is not None:
                sharpen_probabilities(probs, float(sharpen))
        acc[:, :, s:e] = _apply(probs, v_style_kept)
        del probs

    # content term: plain attention of the content on itself, weak value rows only
    zero = torch.zeros((), dtype=v_content.dtype, device=v_content.device)
    v_content_weak = torch.where(weak_rows, v_content, zero)
    content = None
    if return_content:
        both = _sdpa(
            q_content, k_content, torch.cat([v_content_weak, v_content], dim=-1), base_scale
        )
        acc += both[..., :dv]
        content = both[..., dv:]
    else:
        acc += _sdpa(q_content, k_content, v_content_weak, base_scale)
    out = acc.to(q_out.dtype)

    result: tuple[Tensor, ...] = (out,)
    if return_weak:
        result += (weak,)
    if return_content:
        result += (content,)
    return result[0] if len(result) == 1 else result
