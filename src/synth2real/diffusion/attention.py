"""Attention maths of the diffusion methods: sharpened cross-image attention and CACTIF's
selective attention filtering, as pure functions of tensors.

Nothing here knows about UNets, diffusers or schedulers: the attention processors of the
pipeline (``synth2real.diffusion``) project hidden states to ``q, k, v`` and call these
functions. See ``docs/METHOD.md`` ("Cross-image attention", "Selective attention
filtering", "StyleID") for the definitions.

Shapes: ``q`` is ``(B, H, Nq, d)``; ``k`` and ``v`` are ``(B or 1, H, Nk, d)`` (a batch of
one broadcasts: one style image for several content images). Any float dtype; logits are
computed in the input dtype from a pre-scaled query, softmax, sharpening and the
filter's statistics in float32, and results come back in the query's dtype.

Memory: an explicit attention matrix ``(B, H, Nq, Nk)`` is never materialised whole. Work
is split into chunks of queries whose float32 probabilities fit a byte budget
(:data:`DEFAULT_MEMORY_BUDGET`, or ``memory_budget=``), so a 1024 x 2048 image (32,768
tokens at SD 1.5's finest level, where one full fp32 matrix for 3 x 8 heads is 103 GB)
runs in a few GB. The filter needs the quantile of a score over all positions before it
can combine anything, so it runs in two passes over the query chunks; neither pass
synchronises with the host (no ``.item()``, no boolean indexing, no data-dependent shapes).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from synth2real.errors import ConfigError

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "attention",
    "choose_chunk_size",
    "filter_scores",
    "filtered_attention",
    "sharpen_probabilities",
    "weak_positions",
]

#: Default byte budget for the per-chunk attention probabilities (1 GiB). Large enough
#: that the GPU kernels see big matrices (512 x 1024: 2,048 queries per chunk for one
#: image), small enough for any card and for CPU caches to matter little.
DEFAULT_MEMORY_BUDGET: int = 1 << 30

Interpolation = Literal["linear", "lower", "higher", "midpoint", "nearest"]
_INTERPOLATIONS = ("linear", "lower", "higher", "midpoint", "nearest")
# Cosine similarity as torch.nn.CosineSimilarity(dim=-1, eps=1e-6), the reference's choice.
_COS_EPS = 1e-6


def choose_chunk_size(
    n_queries: int,
    n_keys: int,
    *,
    batch: int = 1,
    heads: int = 1,
    memory_budget: int | None = None,
    bytes_per_element: int = 8,
    multiple: int = 64,
) -> int:
    """Number of queries per chunk so that the chunk's attention matrices fit a budget.

    Args:
        n_queries: query positions ``Nq`` (the result never exceeds it).
        n_keys: key positions ``Nk``.
        batch: batch elements processed together (``B``).
        heads: attention heads (``H``).
        memory_budget: bytes allowed for the live ``(B, H, chunk, Nk)`` matrices;
            ``None`` uses :data:`DEFAULT_MEMORY_BUDGET`.
        bytes_per_element: bytes held per matrix element at the peak: 8 for float32
            logits plus their float32 probabilities (the default), 6 for half logits.
        multiple: round chunks down to a multiple of this (kernel-friendly sizes) when
            the budget allows at least one such multiple.

    Returns:
        An int in ``[1, n_queries]``.
    """
    if n_queries < 1 or n_keys < 1 or batch < 1 or heads < 1:
        raise ConfigError(
            f"choose_chunk_size: sizes must be positive (n_queries={n_queries}, "
            f"n_keys={n_keys}, batch={batch}, heads={heads})"
        )
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else int(memory_budget)
    if budget <= 0:
        raise ConfigError(f"memory_budget must be positive, got {memory_budget}")
    per_query = batch * heads * n_keys * bytes_per_element
    chunk = max(1, budget // per_query)
    if multiple > 1 and chunk >= multiple:
        chunk -= chunk % multiple
    return int(min(chunk, n_queries))


def sharpen_probabilities(probs: Tensor, sharpen: float) -> Tensor:
    """Attention sharpening of METHOD.md, in place: ``clamp(s * A + (1 - s) / Nk, 0, 1)``.

    Equals the reference's "subtract the row mean, scale by s, add it back" because every
    softmax row has mean ``1 / Nk``. Rows are not renormalised.

    Args:
        probs: ``(..., Nk)`` float attention probabilities (rows summing to 1). Modified in
            place and returned.
        sharpen: the contrast factor ``s`` (1.67 in the reference; 1 is a no-op).
    """
    n_keys = probs.shape[-1]
    return probs.mul_(sharpen).add_((1.0 - sharpen) / n_keys).clamp_(0.0, 1.0)


def _check_qkv(q: Tensor, k: Tensor, v: Tensor, what: str) -> None:
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ConfigError(
            f"{what}: expected 4-D (B, H, N, d) tensors, got q {tuple(q.shape)}, "
            f"k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    b, h, _, d = q.shape
    if k.shape != v.shape[:3] + (d,) or k.shape[1] != h or k.shape[2] != v.shape[2]:
        raise ConfigError(
            f"{what}: incompatible shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
            " (need k (B or 1, H, Nk, d) and v (B or 1, H, Nk, dv) with the same B and Nk)"
        )
    if k.shape[0] not in (1, b) or v.shape[0] != k.shape[0]:
        raise ConfigError(f"{what}: key/value batch {k.shape[0]} must be 1 or the query batch {b}")


def _probabilities(q_chunk: Tensor, k: Tensor, scale: float) -> Tensor:
    """float32 ``softmax(q_chunk k^T * scale)``, ``(B, H, C, Nk)``; k may have batch 1."""
    logits = torch.matmul(q_chunk * scale, k.transpose(-1, -2))
    return torch.softmax(logits, dim=-1, dtype=torch.float32)


def _apply(probs: Tensor, v: Tensor) -> Tensor:
    """``probs @ v``: float32 probabilities are cast to a half ``v``'s dtype (the usual
    fused-kernel behaviour, keeps GPU matmuls on tensor cores), kept float32 otherwise."""
    if v.dtype == torch.float32:
        return torch.matmul(probs, v)
    return torch.matmul(probs.to(v.dtype), v)


def _chunks(n: int, chunk_size: int):
    for start in range(0, n, chunk_size):
        yield start, min(n, start + chunk_size)


def _resolve_chunk(
    chunk_size: int | None,
    n_queries: int,
    n_keys: int,
    batch: int,
    heads: int,
    dtype: torch.dtype,
    memory_budget: int | None,
    matrices: int = 1,
) -> int:
    if chunk_size is not None:
        if int(chunk_size) < 1:
            raise ConfigError(f"chunk_size must be >= 1 or None, got {chunk_size}")
        return min(int(chunk_size), n_queries)
    # logits in the input dtype + float32 probabilities, for each matrix alive at once
    per_elem = (torch.finfo(dtype).bits // 8 + 4) * matrices
    return choose_chunk_size(
        n_queries,
        n_keys,
        batch=batch,
        heads=heads,
        memory_budget=memory_budget,
        bytes_per_element=per_elem,
    )


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    scale: float | None = None,
    logit_scale: float = 1.0,
    sharpen: float | None = None,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
) -> Tensor:
    """Scaled dot-product attention, optionally with temperature and sharpening.

    ``A = softmax(q k^T * scale * logit_scale)``; with ``sharpen = s``,
    ``A' = clamp(s * A + (1 - s) / Nk, 0, 1)`` (rows not renormalised, METHOD.md
    "Cross-image attention"). Returns ``A' v``.

    Without sharpening this is ``F.scaled_dot_product_attention`` (fused kernels that never
    build the matrix; ``logit_scale`` folds into its ``scale``), split over query chunks
    only when ``chunk_size`` is given. With sharpening the probabilities must be explicit:
    they are built chunk by chunk of queries, in float32, within ``memory_budget``.

    Args:
        q: ``(B, H, Nq, d)`` queries, any float dtype.
        k: ``(B or 1, H, Nk, d)`` keys (batch 1 broadcasts over the B queries).
        v: ``(B or 1, H, Nk, dv)`` values, same batch as ``k``.
        scale: logit scale; default ``1 / sqrt(d)``.
        logit_scale: extra factor on the logits (StyleID's temperature tau = 1.5);
            default 1.
        sharpen: contrast factor ``s`` of the probabilities (1.67 in cross-image
            attention); default ``None`` = no sharpening.
        chunk_size: queries per chunk; ``None`` picks the largest chunk whose float32
            probabilities fit ``memory_budget`` (no chunking on the fused path).
        memory_budget: bytes for the live probabilities of one chunk; default
            :data:`DEFAULT_MEMORY_BUDGET`.

    Returns:
        ``(B, H, Nq, dv)`` in ``q``'s dtype.
    """
    _check_qkv(q, k, v, "attention")
    b, h, nq, d = q.shape
    nk = k.shape[2]
    base_scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    total_scale = base_scale * float(logit_scale)

    if sharpen is None:
        if k.shape[0] != b:
            # fused kernels need equal batch sizes; an expanded view costs nothing
            k = k.expand(b, -1, -1, -1)
            v = v.expand(b, -1, -1, -1)
        kk, vv = k.to(q.dtype), v.to(q.dtype)
        if chunk_size is None:
            return F.scaled_dot_product_attention(q, kk, vv, scale=total_scale)
        step = _resolve_chunk(chunk_size, nq, nk, b, h, q.dtype, memory_budget)
        return torch.cat(
            [
                F.scaled_dot_product_attention(q[:, :, s:e], kk, vv, scale=total_scale)
                for s, e in _chunks(nq, step)
            ],
            dim=2,
        )

    step = _resolve_chunk(chunk_size, nq, nk, b, h, q.dtype, memory_budget)
    out = torch.empty((b, h, nq, v.shape[-1]), dtype=q.dtype, device=q.device)
    kq = k.to(q.dtype)
    for s, e in _chunks(nq, step):
        probs = _probabilities(q[:, :, s:e], kq, total_scale)
        sharpen_probabilities(probs, float(sharpen))
        out[:, :, s:e] = _apply(probs, v)
        del probs
    return out


def _check_filter_inputs(
    q_out: Tensor,
    k_style: Tensor,
    v_style: Tensor,
    q_content: Tensor,
    k_content: Tensor,
    v_content: Tensor,
) -> None:
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


def filter_scores(
    q_out: Tensor,
    k_style: Tensor,
    v_style: Tensor,
    v_content: Tensor,
    *,
    sharpen: float | None = 1.67,
    scale: float | None = None,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    _keep_probs: bool = False,
) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor | None]:
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
        sharpen: contrast factor ``s`` (``None`` = no sharpening); default 1.67.
        scale: logit scale, default ``1 / sqrt(d)``.
        chunk_size, memory_budget: as in :func:`attention`.

    Returns:
        ``sim`` ``(B, N)`` float32 in ``[0, H]`` and ``m`` ``(B, N)`` int64 style positions.
    """
    b, h, n, d = q_out.shape
    base_scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    step = _resolve_chunk(chunk_size, n, n, b, h, q_out.dtype, memory_budget)
    k = k_style.to(q_out.dtype)
    vs = v_style.expand(b, -1, -1, -1)
    sim = torch.empty((b, n), dtype=torch.float32, device=q_out.device)
    arg = torch.empty((b, n), dtype=torch.long, device=q_out.device)
    kept: Tensor | None = None
    for s, e in _chunks(n, step):
        probs = _probabilities(q_out[:, :, s:e], k, base_scale)
        if sharpen is not None:
            sharpen_probabilities(probs, float(sharpen))
        m = probs.sum(dim=1).argmax(dim=-1)  # (B, C): first index on ties
        if _keep_probs and step >= n:
            kept = probs
        del probs
        idx = m[:, None, :, None].expand(b, h, e - s, vs.shape[-1])
        v_at = torch.gather(vs, 2, idx).float()
        cos = F.cosine_similarity(v_content[:, :, s:e].float(), v_at, dim=-1, eps=_COS_EPS)
        sim[:, s:e] = cos.abs().sum(dim=1)
        arg[:, s:e] = m
    if _keep_probs:
        return sim, arg, kept
    return sim, arg


def weak_positions(sim: Tensor, p: float = 0.25, interpolation: Interpolation = "linear") -> Tensor:
    """Positions whose score lies strictly below its p-quantile, per batch element.

    ``q = torch.quantile(sim[b], p, interpolation=...)``; weak = ``sim < q``. Ties at the threshold are kept (not
    weak). ``p = 0`` marks nothing; ``p = 1`` marks every position but the maximum (and
    its ties).

    Args:
        sim: ``(B, N)`` float scores (see :func:`filter_scores`).
        p: quantile in ``[0, 1]``; default 0.25.
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
    p: float = 0.25,
    sharpen: float | None = 1.67,
    scale: float | None = None,
    chunk_size: int | None = None,
    interpolation: Interpolation = "linear",
    return_weak: bool = False,
    memory_budget: int | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """CACTIF's selective attention filtering for the ``out`` element (METHOD.md).

    1. ``m(i) = argmax_j sum_h A'_out[h, i, j]`` with ``A'_out`` the sharpened attention
       of out's queries on the style's keys;
    2. ``sim(i) = sum_h |cos(V_content[h, i], V_style[h, m(i)])|``;
    3. ``weak = {i : sim(i) < quantile_p(sim)}`` per batch element;
    4. the attention columns ``j`` in weak are replaced by the content's own (unsharpened)
       attention ``A_content = softmax(q_content k_content^T * scale)`` and the value rows
       ``j`` in weak by the content's values:
       ``out = (A'_out * keep_cols) @ V_style + (A_content * weak_cols) @ V_content``.

    Vectorised and chunked over queries in two passes (the quantile needs every score
    first); no host synchronisation inside. The column masks are applied to the value
    rows instead of the ``(C, N)`` matrices (same sums, far less memory traffic). When the
    whole matrix fits the budget, pass 2 reuses pass 1's probabilities.

    Args:
        q_out: ``(B, H, N, d)`` queries of the out element.
        k_style: ``(B or 1, H, N, d)`` style keys (batch 1: one style for all pairs).
        v_style: ``(B or 1, H, N, dv)`` style values.
        q_content: ``(B, H, N, d)`` content queries.
        k_content: ``(B, H, N, d)`` content keys.
        v_content: ``(B, H, N, dv)`` content values.
        p: quantile of the similarity under which positions are weak, in ``[0, 1]``;
            default 0.25 (0.1 to 0.3 is the useful range).
        sharpen: contrast factor ``s`` of out's attention; default 1.67 (``None`` = off).
        scale: logit scale; default ``1 / sqrt(d)``.
        chunk_size: queries per chunk; ``None`` picks it from ``memory_budget``.
        interpolation: quantile interpolation as in ``torch.quantile``; default "linear".
        return_weak: also return the weak mask.
        memory_budget: bytes for one chunk's live probabilities; default
            :data:`DEFAULT_MEMORY_BUDGET`.

    Returns:
        ``(B, H, N, dv)`` in ``q_out``'s dtype, and with ``return_weak`` the ``(B, N)`` bool
        weak mask.
    """
    _check_filter_inputs(q_out, k_style, v_style, q_content, k_content, v_content)
    b, h, n, d = q_out.shape
    base_scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    step = _resolve_chunk(chunk_size, n, n, b, h, q_out.dtype, memory_budget)

    sim, _, kept = filter_scores(
        q_out,
        k_style,
        v_style,
        v_content,
        sharpen=sharpen,
        scale=base_scale,
        chunk_size=step,
        _keep_probs=True,
    )
    weak = weak_positions(sim, p, interpolation)  # (B, N) bool, stays on the device

    # Column masks folded into the value rows: sum_j A[i, j] keep[j] V[j].
    weak_rows = weak[:, None, :, None]
    vs = v_style.expand(b, -1, -1, -1)
    v_style_kept = torch.where(weak_rows, torch.zeros((), dtype=vs.dtype, device=vs.device), vs)
    v_content_weak = torch.where(
        weak_rows, v_content, torch.zeros((), dtype=v_content.dtype, device=v_content.device)
    )

    k_s = k_style.to(q_out.dtype)
    k_c = k_content.to(q_content.dtype)
    out = torch.empty((b, h, n, v_style.shape[-1]), dtype=q_out.dtype, device=q_out.device)
    for s, e in _chunks(n, step):
        if kept is not None:
            probs = kept
            kept = None
        else:
            probs = _probabilities(q_out[:, :, s:e], k_s, base_scale)
            if sharpen is not None:
                sharpen_probabilities(probs, float(sharpen))
        acc = _apply(probs, v_style_kept).float()
        del probs
        probs_c = _probabilities(q_content[:, :, s:e], k_c, base_scale)
        acc += _apply(probs_c, v_content_weak)
        del probs_c
        out[:, :, s:e] = acc
    if return_weak:
        return out, weak
    return out
