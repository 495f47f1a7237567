"""Chunked attention of the diffusion methods: sharpened cross-image attention and
StyleID's tempered attention, as pure functions of tensors, and the chunking, budgets and
probability helpers CACTIF's filter (:mod:`.filtering`) builds on.

Nothing here knows about UNets, diffusers or schedulers: the attention processors
(:mod:`.processors`) project hidden states to ``q, k, v`` and call these functions. See
``docs/METHOD.md`` ("Cross-image attention", "StyleID") for the definitions.

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
build the matrix). Nothing synchronises with the host (no ``.item()``, no boolean
indexing, no data-dependent shapes).
"""

from __future__ import annotations

import math

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
    "sharpen_probabilities",
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
