"""The attention maths of the diffusion methods against plain, loop-by-loop definitions.

The oracles below are written straight from docs/METHOD.md ("Cross-image attention",
"Selective attention filtering") in float64 with explicit loops; the vectorised, chunked
functions of ``synth2real.diffusion.attention`` and ``.filtering`` must agree with them, including on
constructed argmax ties and quantile ties, and must never synchronise with the host.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from synth2real.diffusion.attention import CHUNK_TARGET_BYTES, attention, choose_chunk_size
from synth2real.diffusion.filtering import filter_scores, filtered_attention, weak_positions
from synth2real.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _load_reference_impl():
    spec = importlib.util.spec_from_file_location(
        "_s2r_reference_impl", REPO / "benchmarks" / "reference_impl.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- oracles


def plain_attention(q, k, v, *, scale=None, logit_scale=1.0, sharpen=None):
    """softmax(q k^T * scale * logit_scale), optionally sharpened, float64, per batch/head."""
    b, h, _, d = q.shape
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    out = []
    for bi in range(b):
        kb = k[bi if k.shape[0] > 1 else 0].double()
        vb = v[bi if v.shape[0] > 1 else 0].double()
        heads = []
        for hi in range(h):
            a = torch.softmax(q[bi, hi].double() @ kb[hi].T * scale * logit_scale, dim=-1)
            if sharpen is not None:
                a = torch.clamp(sharpen * a + (1 - sharpen) / a.shape[-1], 0.0, 1.0)
            heads.append(a @ vb[hi])
        out.append(torch.stack(heads))
    return torch.stack(out)


def oracle_filtered(
    q_out, k_s, v_s, q_c, k_c, v_c, *, p, sharpen, scale=None, interpolation="linear"
):
    """METHOD.md's selective attention filtering, position by position, float64.

    Returns (out (B,H,N,d), weak (B,N) bool, m (B,N) long, sim (B,N) float64).
    """
    b_n, h_n, n, d = q_out.shape
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    outs, weaks, ms, sims = [], [], [], []
    for b in range(b_n):
        sb = b if k_s.shape[0] > 1 else 0
        a_out = torch.softmax(q_out[b].double() @ k_s[sb].double().transpose(-1, -2) * scale, -1)
        if sharpen is not None:
            a_out = torch.clamp(sharpen * a_out + (1 - sharpen) / n, 0.0, 1.0)
        a_con = torch.softmax(q_c[b].double() @ k_c[b].double().transpose(-1, -2) * scale, -1)
        vs, vc = v_s[sb].double(), v_c[b].double()
        sim = torch.zeros(n, dtype=torch.float64)
        m = torch.zeros(n, dtype=torch.long)
        for i in range(n):
            total = [sum(abs(float(a_out[h, i, j])) for h in range(h_n)) for j in range(n)]
            best = max(total)
            m[i] = next(j for j in range(n) if total[j] == best)  # first index on ties
            sim[i] = sum(
                abs(float(F.cosine_similarity(vc[h, i], vs[h, m[i]], dim=0, eps=1e-6)))
                for h in range(h_n)
            )
        threshold = torch.quantile(sim, p, interpolation=interpolation)
        weak = sim < threshold
        a_mod, v_mod = a_out.clone(), vs.clone()
        for j in range(n):
            if weak[j]:
                a_mod[:, :, j] = a_con[:, :, j]
                v_mod[:, j] = vc[:, j]
        outs.append(a_mod @ v_mod)
        weaks.append(weak)
        ms.append(m)
        sims.append(sim)
    return torch.stack(outs), torch.stack(weaks), torch.stack(ms), torch.stack(sims)


def _rand(*shape, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def _filter_inputs(b=2, h=3, n=24, d=8, style_batch=None, seed=0, q_gain=2.0):
    sb = b if style_batch is None else style_batch
    return (
        _rand(b, h, n, d, seed=seed) * q_gain,
        _rand(sb, h, n, d, seed=seed + 1),
        _rand(sb, h, n, d, seed=seed + 2),
        _rand(b, h, n, d, seed=seed + 3),
        _rand(b, h, n, d, seed=seed + 4),
        _rand(b, h, n, d, seed=seed + 5),
    )


# --------------------------------------------------------------------------- attention


@pytest.mark.parametrize("sharpen", [None, 1.67])
@pytest.mark.parametrize("logit_scale", [1.0, 1.5])
@pytest.mark.parametrize("style_batch", [1, 3])
def test_attention_equals_plain_softmax(sharpen, logit_scale, style_batch):
    q = _rand(3, 2, 20, 8, seed=1) * 2
    k = _rand(style_batch, 2, 28, 8, seed=2)
    v = _rand(style_batch, 2, 28, 5, seed=3)
    got = attention(q, k, v, logit_scale=logit_scale, sharpen=sharpen)
    want = plain_attention(q, k, v, logit_scale=logit_scale, sharpen=sharpen)
    assert got.shape == (3, 2, 20, 5) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_attention_custom_scale_and_sharpening_really_changes_result():
    q, k, v = _rand(1, 2, 16, 4, seed=4) * 3, _rand(1, 2, 16, 4, seed=5), _rand(1, 2, 16, 4, seed=6)
    plain = attention(q, k, v, scale=0.3)
    sharp = attention(q, k, v, scale=0.3, sharpen=1.67)
    torch.testing.assert_close(
        sharp.double(), plain_attention(q, k, v, scale=0.3, sharpen=1.67), rtol=1e-5, atol=1e-5
    )
    assert (sharp - plain).abs().max() > 1e-2  # sharpening is not a no-op
    # s = 1 is exactly plain attention through the explicit path
    torch.testing.assert_close(
        attention(q, k, v, scale=0.3, sharpen=1.0), plain, rtol=1e-5, atol=1e-6
    )


def test_sharpening_clamps_and_does_not_renormalise():
    # one dominant key: s*A + (1-s)/N goes negative for the others and is clamped to 0
    n = 8
    q = torch.zeros(1, 1, 1, 4)
    q[..., 0] = 1.0
    k = torch.zeros(1, 1, n, 4)
    k[0, 0, 0, 0], k[0, 0, 1, 0] = 3.0, 2.5  # probabilities ~ [0.52, 0.32, 0.03, ...]
    v = torch.eye(n, n)[None, None]  # A @ I = A: the output row is the probability row
    row = attention(q, k, v, scale=1.0, sharpen=3.0)[0, 0, 0]
    a = torch.softmax(q[0, 0, 0] @ k[0, 0].T, -1)
    want = torch.clamp(3.0 * a + (1 - 3.0) / n, 0, 1)
    torch.testing.assert_close(row, want)
    assert row.min() == 0.0 and row.max() == 1.0  # both clamps hit
    assert abs(float(row.sum()) - 1.0) > 1e-3  # not renormalised


@pytest.mark.parametrize("sharpen", [None, 1.67])
@pytest.mark.parametrize("chunk", [1, 5, 7, 29, 30, 64])
def test_attention_chunked_equals_unchunked(sharpen, chunk):
    q, k, v = _rand(2, 3, 30, 8, seed=7) * 2, _rand(1, 3, 30, 8, seed=8), _rand(1, 3, 30, 8, seed=9)
    full = attention(q, k, v, sharpen=sharpen, chunk_size=10_000)
    torch.testing.assert_close(attention(q, k, v, sharpen=sharpen, chunk_size=chunk), full)


def test_attention_budget_drives_chunking():
    q, k, v = _rand(1, 2, 50, 8, seed=10), _rand(1, 2, 50, 8, seed=11), _rand(1, 2, 50, 8, seed=12)
    tiny = 2 * 50 * 8 * 3  # three query rows of fp32 logits + fp32 probabilities
    torch.testing.assert_close(
        attention(q, k, v, sharpen=1.67, memory_budget=tiny),
        attention(q, k, v, sharpen=1.67, chunk_size=50),
    )


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 3e-3), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("sharpen", [None, 1.67])
def test_attention_half_inputs_close_to_float32(dtype, tol, sharpen):
    q, k, v = (
        _rand(2, 2, 40, 16, seed=13),
        _rand(2, 2, 40, 16, seed=14),
        _rand(2, 2, 40, 16, seed=15),
    )
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    got = attention(q, k, v, sharpen=sharpen, chunk_size=16 if sharpen else None)
    assert got.dtype == dtype
    want = attention(q.float(), k.float(), v.float(), sharpen=sharpen)
    torch.testing.assert_close(got.float(), want, rtol=tol, atol=tol)


def test_attention_rejects_bad_shapes():
    q = torch.zeros(2, 2, 4, 8)
    with pytest.raises(ConfigError):
        attention(q, torch.zeros(3, 2, 4, 8), torch.zeros(3, 2, 4, 8))  # batch 3 vs 2
    with pytest.raises(ConfigError):
        attention(q, torch.zeros(2, 2, 4, 7), torch.zeros(2, 2, 4, 8))  # head dim
    with pytest.raises(ConfigError):
        attention(q, torch.zeros(2, 2, 4, 8), torch.zeros(2, 2, 5, 8))  # Nk of k vs v
    with pytest.raises(ConfigError):
        attention(q[0], q[0], q[0])
    with pytest.raises(ConfigError):
        attention(q, q, q, sharpen=1.67, chunk_size=0)


# --------------------------------------------------------------------------- chunk choice


def test_choose_chunk_size_fits_budget_and_bounds():
    # 1024 x 2048 image: 32,768 tokens at the finest level, 8 heads, one pair
    n = 32 * 1024
    c = choose_chunk_size(n, n, batch=1, heads=8, memory_budget=1 << 30)
    assert c % 64 == 0 and 1 <= c <= n
    assert c * 8 * n * 8 <= 1 << 30 < (c + 64) * 8 * n * 8
    # the default budget is used when none is given
    assert choose_chunk_size(n, n, batch=1, heads=8) == choose_chunk_size(
        n, n, batch=1, heads=8, memory_budget=CHUNK_TARGET_BYTES
    )
    # never more than the queries, never less than one
    assert choose_chunk_size(10, 10, memory_budget=1 << 40) == 10
    assert choose_chunk_size(10, 10**6, heads=8, memory_budget=1) == 1
    # below one multiple: no rounding down to zero
    assert choose_chunk_size(100, 10, memory_budget=10 * 8 * 5) == 5
    with pytest.raises(ConfigError):
        choose_chunk_size(0, 10)
    with pytest.raises(ConfigError):
        choose_chunk_size(10, 10, memory_budget=0)


# --------------------------------------------------------------------------- quantile


def test_weak_positions_ties_and_edges():
    sim = torch.tensor([[1.0, 1.0, 1.0, 2.0, 2.0, 3.0]])
    # p = 0.5: rank 2.5 between 1 and 2 -> threshold 1.5: the three 1s are weak
    assert weak_positions(sim, 0.5).tolist() == [[True, True, True, False, False, False]]
    # p = 0.2: rank 1.0 lands on a tied value -> threshold 1.0, ties are not weak
    assert not weak_positions(sim, 0.2).any()
    # p = 0: threshold = min -> nothing is weak; p = 1: everything below the max is weak
    assert not weak_positions(sim, 0.0).any()
    assert weak_positions(sim, 1.0).tolist() == [[True, True, True, True, True, False]]
    sim_tied_max = torch.tensor([[0.0, 3.0, 1.0, 3.0]])
    assert weak_positions(sim_tied_max, 1.0).tolist() == [[True, False, True, False]]
    # per batch element
    two = torch.tensor([[0.0, 1.0, 2.0, 3.0], [3.0, 2.0, 1.0, 0.0]])
    assert weak_positions(two, 0.5).tolist() == [
        [True, True, False, False],
        [False, False, True, True],
    ]
    with pytest.raises(ConfigError):
        weak_positions(sim, 1.5)
    with pytest.raises(ConfigError):
        weak_positions(sim, 0.5, interpolation="cubic")


# --------------------------------------------------------------------------- filter


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5])
@pytest.mark.parametrize("style_batch", [1, 2])
def test_filtered_attention_equals_per_position_oracle(p, style_batch):
    inputs = _filter_inputs(b=2, h=3, n=24, d=8, style_batch=style_batch, seed=20)
    got, weak = filtered_attention(*inputs, p=p, sharpen=1.67, return_weak=True, chunk_size=7)
    want, want_weak, want_m, want_sim = oracle_filtered(*inputs, p=p, sharpen=1.67)
    assert torch.equal(weak, want_weak)
    assert weak.any() and not weak.all()
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    sim, m = filter_scores(inputs[0], inputs[1], inputs[2], inputs[5], sharpen=1.67, chunk_size=5)
    assert torch.equal(m, want_m)
    torch.testing.assert_close(sim.double(), want_sim, rtol=1e-5, atol=1e-6)


def test_filtered_attention_differs_from_plain_swap_on_weak_positions():
    inputs = _filter_inputs(b=1, h=2, n=20, d=8, seed=30)
    filtered, weak = filtered_attention(*inputs, p=0.25, return_weak=True)
    swapped = attention(inputs[0], inputs[1], inputs[2], sharpen=1.67)
    nothing = filtered_attention(*inputs, p=0.0)
    assert int(weak.sum()) == 5  # rank 4.75 of 20 distinct scores: the 5 lowest
    assert (filtered - swapped).abs().max() > 1e-3
    torch.testing.assert_close(nothing, swapped, rtol=1e-5, atol=1e-6)  # p = 0 filters nothing


def test_filtered_attention_p_one_marks_all_but_the_max():
    inputs = _filter_inputs(b=2, h=2, n=16, d=8, seed=40)
    got, weak = filtered_attention(*inputs, p=1.0, return_weak=True)
    want, want_weak, _, sim = oracle_filtered(*inputs, p=1.0, sharpen=1.67)
    assert torch.equal(weak, want_weak)
    assert weak.sum(dim=1).tolist() == [16 - int((s == s.max()).sum()) for s in sim]
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def _basis_values(h, n, d, seed):
    """Values that are exact basis vectors: every |cos| is exactly 0 or 1, so the summed
    similarities are small integers with many exact ties."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, d, (h, n), generator=g)
    return torch.eye(d)[idx]  # (h, n, d)


@pytest.mark.parametrize("p", [0.2, 0.25, 0.5, 0.75])
@pytest.mark.parametrize("interpolation", ["linear", "nearest", "midpoint"])
def test_filtered_attention_with_quantile_ties(p, interpolation):
    b, h, n, d = 2, 4, 40, 3
    q_out, k_s, _, q_c, k_c, _ = _filter_inputs(b=b, h=h, n=n, d=d, seed=50)
    v_s = torch.stack([_basis_values(h, n, d, seed=51 + i) for i in range(b)])
    v_c = torch.stack([_basis_values(h, n, d, seed=61 + i) for i in range(b)])
    got, weak = filtered_attention(
        q_out,
        k_s,
        v_s,
        q_c,
        k_c,
        v_c,
        p=p,
        interpolation=interpolation,
        return_weak=True,
        chunk_size=9,
    )
    want, want_weak, _, sim = oracle_filtered(
        q_out, k_s, v_s, q_c, k_c, v_c, p=p, sharpen=1.67, interpolation=interpolation
    )
    # the construction really produces ties at the threshold
    assert torch.equal(sim, sim.round())
    thr = torch.quantile(sim, p, dim=-1, keepdim=True, interpolation=interpolation)
    assert ((sim == thr).sum(dim=-1) >= 2).any()
    assert torch.equal(weak, want_weak)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_filtered_attention_argmax_ties_take_the_first_index():
    # Exact dyadic numbers with scale 0.5: logits are exact, so duplicate keys tie exactly.
    h, n, d = 2, 12, 8
    g = torch.Generator().manual_seed(70)
    k_s = (torch.randint(-1, 2, (1, h, n, d), generator=g) * 0.5).float()
    j1, j2 = 3, 9
    k_s[:, :, j1] = 2.0 * torch.sign(torch.randn(1, h, d, generator=g))
    k_s[:, :, j2] = k_s[:, :, j1]
    q_out = (torch.randint(-1, 2, (1, h, n, d), generator=g) * 0.5).float()
    tied_queries = [0, 5, 11]
    for i in tied_queries:
        q_out[:, :, i] = k_s[:, :, j1]  # logit 16 at j1 and j2, at most 4 elsewhere
    eye = torch.eye(d)
    v_s = eye[torch.randint(0, d, (1, h, n), generator=g)]
    v_s[:, :, j1] = eye[0]
    v_s[:, :, j2] = eye[1]
    v_c = eye[torch.randint(2, d, (1, h, n), generator=g)]
    for i in tied_queries:
        v_c[:, :, i] = eye[0]  # similar to j1's values (sim = h), orthogonal to j2's (0)
    q_c = torch.randn(1, h, n, d, generator=g)
    k_c = torch.randn(1, h, n, d, generator=g)

    sim, m = filter_scores(q_out, k_s, v_s, v_c, scale=0.5, chunk_size=4)
    assert m[0, tied_queries].tolist() == [j1] * 3
    assert sim[0, tied_queries].tolist() == [float(h)] * 3
    got, weak = filtered_attention(
        q_out, k_s, v_s, q_c, k_c, v_c, scale=0.5, p=0.25, return_weak=True, chunk_size=5
    )
    want, want_weak, want_m, _ = oracle_filtered(
        q_out, k_s, v_s, q_c, k_c, v_c, p=0.25, sharpen=1.67, scale=0.5
    )
    assert torch.equal(m, want_m)
    assert torch.equal(weak, want_weak)
    assert not weak[0, tied_queries].any()
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("chunk", [1, 6, 16, 17, 100])
def test_filtered_attention_chunked_equals_unchunked(chunk):
    inputs = _filter_inputs(b=2, h=2, n=33, d=8, style_batch=1, seed=80)
    full, weak_full = filtered_attention(*inputs, chunk_size=33, return_weak=True)
    got, weak = filtered_attention(*inputs, chunk_size=chunk, return_weak=True)
    assert torch.equal(weak, weak_full)
    torch.testing.assert_close(got, full, rtol=1e-6, atol=1e-6)
    # memory budget path: a budget of three query rows forces 11 chunks
    tiny = 2 * 2 * 33 * 8 * 3
    torch.testing.assert_close(
        filtered_attention(*inputs, memory_budget=tiny), full, rtol=1e-6, atol=1e-6
    )


def _separated_inputs(b, h, n, seed):
    """Inputs whose filter decisions have wide margins: out query i attends clearly to
    style key perm(i), and sim(i) takes well separated levels."""
    g = torch.Generator().manual_seed(seed)
    d = n
    perm = torch.randperm(n, generator=g)
    k_s = 3.0 * torch.eye(n)[None, None].repeat(1, h, 1, 1)
    q_out = 3.0 * torch.eye(n)[perm][None, None].repeat(b, h, 1, 1)
    q_out += 0.1 * torch.randn(q_out.shape, generator=g)
    v_s = torch.eye(n)[None, None].repeat(1, h, 1, 1)
    levels = torch.linspace(0.05, 0.95, n)[torch.randperm(n, generator=g)]
    other = torch.eye(n)[(perm + 1) % n]
    v_c = levels[:, None] * torch.eye(n)[perm] + (1 - levels[:, None] ** 2).sqrt() * other
    v_c = v_c[None, None].repeat(b, h, 1, 1)
    q_c = torch.randn(b, h, n, d, generator=g)
    k_c = torch.randn(b, h, n, d, generator=g)
    return q_out, k_s, v_s, q_c, k_c, v_c, perm


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 5e-3), (torch.bfloat16, 3e-2)])
def test_filtered_attention_half_inputs_close_to_float32(dtype, tol):
    *inputs, perm = _separated_inputs(b=2, h=2, n=32, seed=90)
    half = [t.to(dtype) for t in inputs]
    got, weak = filtered_attention(*half, return_weak=True, chunk_size=8)
    assert got.dtype == dtype
    ref, ref_weak = filtered_attention(*[t.float() for t in half], return_weak=True)
    _, m = filter_scores(half[0], half[1], half[2], half[5])
    assert torch.equal(m, perm.expand(2, -1))  # the construction's margins hold in half
    assert torch.equal(weak, ref_weak) and int(weak[0].sum()) == 8
    torch.testing.assert_close(got.float(), ref, rtol=tol, atol=tol)


def test_filtered_attention_equals_reference_impl():
    ref = _load_reference_impl()
    h, n, d = 4, 32, 8
    g = torch.Generator().manual_seed(100)
    query = torch.randn(3, h, n, d, generator=g) * 2
    key = torch.randn(3, h, n, d, generator=g)
    value = torch.randn(3, h, n, d, generator=g)
    want = ref.reference_filtered_step(query, key, value, filter_perc=0.25, contrast_strength=1.67)
    out = filtered_attention(
        query[0:1],
        key[1:2],
        value[1:2],
        query[2:3],
        key[2:3],
        value[2:3],
        p=0.25,
        sharpen=1.67,
        chunk_size=10,
    )
    torch.testing.assert_close(out[0], want[0], rtol=1e-5, atol=1e-5)
    # the style and content elements are plain attention in both
    torch.testing.assert_close(
        attention(query[1:], key[1:], value[1:]), want[1:], rtol=1e-5, atol=1e-5
    )
    # without filtering, the reference is the sharpened swap
    want_swap = ref.reference_filtered_step(query, key, value, filtering=False)
    torch.testing.assert_close(
        attention(query[0:1], key[1:2], value[1:2], sharpen=1.67)[0],
        want_swap[0],
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize("memory_budget", [None, 2 * 2 * 24 * 8 * 5])  # kept / recomputed
def test_filtered_attention_returns_content_attention_and_weak_mask(memory_budget):
    inputs = _filter_inputs(b=2, h=2, n=24, d=8, style_batch=1, seed=110)
    out, weak, content = filtered_attention(
        *inputs, return_weak=True, return_content=True, memory_budget=memory_budget
    )
    want, want_weak, _, _ = oracle_filtered(*inputs, p=0.25, sharpen=1.67)
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-5)
    assert torch.equal(weak, want_weak) and weak.dtype == torch.bool and weak.shape == (2, 24)
    # the content element's own attention, as the content branch needs it
    torch.testing.assert_close(
        content.double(), plain_attention(inputs[3], inputs[4], inputs[5]), rtol=1e-5, atol=1e-5
    )
    only_content = filtered_attention(*inputs, return_content=True, memory_budget=memory_budget)
    assert len(only_content) == 2 and torch.equal(only_content[1], content)


def test_filtered_attention_rejects_bad_inputs():
    q_out, k_s, v_s, q_c, k_c, v_c = _filter_inputs(b=2, h=2, n=8, d=4)
    with pytest.raises(ConfigError):
        filtered_attention(q_out, k_s, v_s, q_c[:1], k_c, v_c)
    with pytest.raises(ConfigError):
        filtered_attention(q_out, k_s[:, :, :6], v_s[:, :, :6], q_c, k_c, v_c)  # grids differ
    with pytest.raises(ConfigError):
        filtered_attention(q_out, k_s, v_s, q_c, k_c, v_c, p=-0.1)


class _ForbidHostSync(TorchDispatchMode):
    """Fails on any op that copies data to the host or has a data-dependent shape."""

    FORBIDDEN = {
        "aten::_local_scalar_dense",  # .item(), bool(tensor), tensor.tolist()
        "aten::nonzero",
        "aten::masked_select",
        "aten::unique",
        "aten::_unique2",
    }

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        self.seen.add(name)
        if name in self.FORBIDDEN:
            raise AssertionError(f"host synchronisation: {name}")
        if name.startswith("aten::index"):
            for a in args:
                items = a if isinstance(a, list | tuple) else [a]
                for t in items:
                    if isinstance(t, torch.Tensor) and t.dtype == torch.bool:
                        raise AssertionError(f"boolean indexing: {name}")
        return func(*args, **(kwargs or {}))


def test_no_host_synchronisation_inside():
    inputs = _filter_inputs(b=2, h=2, n=20, d=8, style_batch=1)
    mode = _ForbidHostSync()
    with mode:
        filtered_attention(*inputs, chunk_size=6, return_weak=True)
        filtered_attention(*inputs, return_weak=True, return_content=True)  # kept probabilities
        attention(inputs[0], inputs[1], inputs[2], sharpen=1.67, chunk_size=6)
    assert "aten::sort" in mode.seen and "aten::argmax" in mode.seen  # the mode saw the work
    # and the guard itself works
    with pytest.raises(AssertionError), _ForbidHostSync():
        inputs[0].sum().item()
