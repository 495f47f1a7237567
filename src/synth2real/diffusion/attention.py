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

Memory: explicit attention probabilities are built in chunks of queries (at most
:data:`CHUNK_TARGET_BYTES` each, 1 GiB on a GPU, reused from one chunk to the next), and a call never holds
more than ``memory_budget`` bytes of them (:data:`DEFAULT_MEMORY_BUDGET`, or less on a
GPU with less free memory). A 1024 x 2048 image (32,768 tokens at SD 1.5's finest level,
where one fp32 matrix for 3 elements x 8 heads is 103 GB) thus runs in a few GB.
Unsharpened attention goes to ``F.scaled_dot_product_attention`` (fused kernels that never
build the matrix). The filter needs the quantile of a score over all positions before it
can combine anything, so it runs in two passes over the query chunks, keeping pass 1's
probabilities for pass 2 when they fit the budget and recomputing them otherwise;
neither pass synchronises with the host (no ``.item()``, no boolean indexing, no
data-dependent shapes).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from synth2real.errors import ConfigError

__all__ = [
    "CHUNK_TARGET_BYTES",
    "CHUNK_TARGET_BYTES_GPU",
    "DEFAULT_MEMORY_BUDGET",
    "attention",
    "choose_chunk_size",
    "filter_scores",
    "filtered_attention",
    "sharpen_probabilities",
    "weak_positions",
]

#: Default byte budget for the attention probabilities one call may hold (4 GiB): enough
#: to keep a whole 512 x 1024 image's sharpened probabilities (8 heads x 8192^2 fp32 =
#: 2 GiB) between the filter's two passes. On CUDA the default is capped at half the
#: memory still available.
DEFAULT_MEMORY_BUDGET: int = 4 << 30
#: Target size of one chunk's probabilities on a CPU (256 MiB) ...
CHUNK_TARGET_BYTES: int = 256 << 20
#: ... and on a GPU (1 GiB: fewer, larger kernels; 128 chunks per pass at 1024 x 2048).
CHUNK_TARGET_BYTES_GPU: int = 1 << 30

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
    """Number of queries per chunk so that a chunk's attention matrices fit a byte budget.

    Args:
        n_queries: query positions ``Nq`` (the result never exceeds it).
        n_keys: key positions ``Nk``.
        batch: batch elements processed together (``B``).
        heads: attention heads (``H``).
        memory_budget: bytes allowed for the live ``(B, H, chunk, Nk)`` matrices;
            default :data:`CHUNK_TARGET_BYTES`.
        bytes_per_element: bytes held per matrix element at the peak: 8 for float32
            logits plus float32 probabilities (the default), 6 for half logits plus
            float32 probabilities, 4 when the softmax runs in place.
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
    budget = CHUNK_TARGET_BYTES if memory_budget is None else int(memory_budget)
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


# --------------------------------------------------------------------------- internals


def _check_qkv(q: Tensor, k: Tensor, v: Tensor, what: str) -> None:
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ConfigError(
            f"{what}: expected 4-D (B, H, N, d) tensors, got q {tuple(q.shape)}, "
            f"k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    b, h, _, d = q.shape
    if k.shape[1] != h or k.shape[3] != d or v.shape[:3] != k.shape[:3]:
        raise ConfigError(
            f"{what}: incompatible shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
            " (need k (B or 1, H, Nk, d) and v (B or 1, H, Nk, dv) with the same B and Nk)"
        )
    if k.shape[0] not in (1, b):
        raise ConfigError(f"{what}: key/value batch {k.shape[0]} must be 1 or the query batch {b}")


def _in_place_softmax(device: torch.device, dtype: torch.dtype) -> bool:
    # On CPU, writing the softmax over its float32 input saves a fresh (page-faulted)
    # matrix per chunk; on GPUs the caching allocator makes a second buffer cheap.
    return device.type == "cpu" and dtype == torch.float32


def _bytes_per_element(device: torch.device, dtype: torch.dtype) -> int:
    if _in_place_softmax(device, dtype):
        return 4
    return torch.finfo(dtype).bits // 8 + 4


def _default_budget(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(max(CHUNK_TARGET_BYTES, min(DEFAULT_MEMORY_BUDGET, (free + cached) // 2)))
    return DEFAULT_MEMORY_BUDGET


def _chunk_target(device: torch.device) -> int:
    return CHUNK_TARGET_BYTES_GPU if device.type == "cuda" else CHUNK_TARGET_BYTES


def _budget(memory_budget: int | None, device: torch.device) -> int:
    if memory_budget is None:
        return _default_budget(device)
    if int(memory_budget) <= 0:
        raise ConfigError(f"memory_budget must be positive, got {memory_budget}")
    return int(memory_budget)


def _resolve_chunk(
    chunk_size: int | None,
    n_queries: int,
    n_keys: int,
    batch: int,
    heads: int,
    q: Tensor,
    budget: int,
) -> int:
    if chunk_size is not None:
        if int(chunk_size) < 1:
            raise ConfigError(f"chunk_size must be >= 1 or None, got {chunk_size}")
        return min(int(chunk_size), n_queries)
    return choose_chunk_size(
        n_queries,
        n_keys,
        batch=batch,
        heads=heads,
        memory_budget=min(budget, _chunk_target(q.device)),
        bytes_per_element=_bytes_per_element(q.device, q.dtype),
    )


def _chunks(n: int, chunk_size: int):
    for start in range(0, n, chunk_size):
        yield start, min(n, start + chunk_size)


class _Workspace:
    """One flat buffer reused by every chunk of a call (no fresh pages per chunk)."""

    def __init__(self) -> None:
        self.flat: Tensor | None = None

    def get(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        numel = math.prod(shape)
        if self.flat is None or self.flat.numel() < numel:
            self.flat = torch.empty(numel, dtype=torch.float32, device=like.device)
        return self.flat[:numel].view(shape)


def _probabilities(q_chunk: Tensor, k: Tensor, scale: float, ws: _Workspace | None) -> Tensor:
    """float32 ``softmax(q_chunk k^T * scale)``, ``(B, H, C, Nk)``; ``k`` may have batch 1.

    The logits are computed in the inputs' dtype from the pre-scaled queries (as fused
    kernels do), the softmax in float32. With a workspace the result lives in it (valid
    until the next call with the same workspace).
    """
    b = max(q_chunk.shape[0], k.shape[0])
    shape = (b, q_chunk.shape[1], q_chunk.shape[2], k.shape[2])
    kt = k.to(q_chunk.dtype).transpose(-1, -2)
    qs = q_chunk * scale
    if _in_place_softmax(q_chunk.device, q_chunk.dtype):
        logits = torch.matmul(qs, kt, out=ws.get(shape, q_chunk)) if ws else torch.matmul(qs, kt)
        try:
            return torch.softmax(logits, dim=-1, out=logits)
        except RuntimeError:  # a torch that refuses aliased out=: fall back to a copy
            return torch.softmax(logits, dim=-1)
    logits = torch.matmul(qs, kt)
    if ws is None:
        return torch.softmax(logits, dim=-1, dtype=torch.float32)
    return torch.softmax(logits, dim=-1, dtype=torch.float32, out=ws.get(shape, q_chunk))


def _apply(probs: Tensor, v: Tensor) -> Tensor:
    """``probs @ v``: float32 probabilities are cast to a half ``v``'s dtype (the usual
    fused-kernel behaviour, keeps GPU matmuls on tensor cores), kept float32 otherwise."""
    if v.dtype == torch.float32:
        return torch.matmul(probs, v)
    return torch.matmul(probs.to(v.dtype), v)


def _sdpa(q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
    """``F.scaled_dot_product_attention`` in a form its fused kernels accept.

    Fused kernels need equal batch sizes and (on CPU, and for flash attention) equal
    head dims; otherwise torch silently falls back to the math path, which builds the
    whole matrix. Batch-1 keys/values are expanded (a view); a narrower side is padded
    with zeros (zero query/key columns add nothing to the dot products, zero value
    columns are sliced off again).
    """
    b = q.shape[0]
    if k.shape[0] != b:
        k = k.expand(b, -1, -1, -1)
        v = v.expand(b, -1, -1, -1)
    k, v = k.to(q.dtype), v.to(q.dtype)
    d, dv = q.shape[-1], v.shape[-1]
    if dv > d:
        q = F.pad(q, (0, dv - d))
        k = F.pad(k, (0, dv - d))
    elif dv < d:
        v = F.pad(v, (0, d - dv))
    out = F.scaled_dot_product_attention(q, k, v, scale=scale)
    return out[..., :dv] if dv < d else out


# --------------------------------------------------------------------------- attention


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
    they are built chunk by chunk of queries, in float32.

    Args:
        q: ``(B, H, Nq, d)`` queries, any float dtype.
        k: ``(B or 1, H, Nk, d)`` keys (batch 1 broadcasts over the B queries).
        v: ``(B or 1, H, Nk, dv)`` values, same batch as ``k``.
        scale: logit scale; default ``1 / sqrt(d)``.
        logit_scale: extra factor on the logits (StyleID's temperature tau = 1.5);
            default 1.
        sharpen: contrast factor ``s`` of the probabilities (1.67 in cross-image
            attention); default ``None`` = no sharpening.
        chunk_size: queries per chunk; ``None`` picks it from the budget (chunks of at
            most :data:`CHUNK_TARGET_BYTES`, ``CHUNK_TARGET_BYTES_GPU`` on CUDA; no chunking on
            the fused path).
        memory_budget: bytes of probabilities one call may hold; default
            :data:`DEFAULT_MEMORY_BUDGET` (capped by free GPU memory on CUDA).

    Returns:
        ``(B, H, Nq, dv)`` in ``q``'s dtype.
    """
    _check_qkv(q, k, v, "attention")
    b, h, nq, d = q.shape
    nk = k.shape[2]
    total_scale = (1.0 / math.sqrt(d) if scale is None else float(scale)) * float(logit_scale)

    if sharpen is None:
        if chunk_size is None:
            return _sdpa(q, k, v, total_scale)
        step = _resolve_chunk(chunk_size, nq, nk, b, h, q, CHUNK_TARGET_BYTES)
        return torch.cat(
            [_sdpa(q[:, :, s:e], k, v, total_scale) for s, e in _chunks(nq, step)], dim=2
        )

    budget = _budget(memory_budget, q.device)
    step = _resolve_chunk(chunk_size, nq, nk, b, h, q, budget)
    out = torch.empty((b, h, nq, v.shape[-1]), dtype=q.dtype, device=q.device)
    ws = _Workspace()
    for s, e in _chunks(nq, step):
        probs = _probabilities(q[:, :, s:e], k, total_scale, ws)
        sharpen_probabilities(probs, float(sharpen))
        out[:, :, s:e] = _apply(probs, v)
    return out


# --------------------------------------------------------------------------- filter


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
    sharpen: float | None = 1.67,
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
        sharpen: contrast factor ``s`` (``None`` = no sharpening); default 1.67.
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


def weak_positions(sim: Tensor, p: float = 0.25, interpolation: Interpolation = "linear") -> Tensor:
    """Positions whose score lies strictly below its p-quantile, per batch element.

    ``q = torch.quantile(sim[b], p, interpolation=...)``; weak = ``sim < q``. Ties at the
    threshold are kept (not weak). ``p = 0`` marks nothing; ``p = 1`` marks every
    position but the maximum (and its ties).

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
            default 0.25 (0.1 to 0.3 is the useful range).
        sharpen: contrast factor ``s`` of out's attention; default 1.67 (``None`` = off).
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
    _check_filter_inputs(q_out, k_style, v_style, q_content, k_content, v_content)
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
