"""Attention processors: default behaviour when off, swap/filter/StyleID modes, install/remove."""

from __future__ import annotations

import pytest
import torch

from synth2real.diffusion.attention import attention, filtered_attention
from synth2real.diffusion.layers import select_layers
from synth2real.diffusion.processors import (
    AttentionState,
    CrossImageAttnProcessor,
    install_processors,
    processors_installed,
    restore_processors,
)
from synth2real.diffusion.tiny import tiny_unet


def make_attn():
    from diffusers.models.attention_processor import Attention

    torch.manual_seed(0)
    return Attention(query_dim=8, heads=2, dim_head=4).eval()


def heads(attn, x):
    b, n, _ = x.shape
    return x.view(b, n, attn.heads, -1).transpose(1, 2)


def qkv(attn, h):
    return heads(attn, attn.to_q(h)), heads(attn, attn.to_k(h)), heads(attn, attn.to_v(h))


def project_out(attn, o):
    b, hh, n, d = o.shape
    return attn.to_out[0](o.transpose(1, 2).reshape(b, n, hh * d))


def run(attn, state, h, key="layer"):
    attn.set_processor(CrossImageAttnProcessor(state, key))
    with torch.no_grad():
        return attn(h)


@torch.no_grad()
def test_off_mode_equals_the_default_processor():
    from diffusers.models.attention_processor import AttnProcessor2_0

    attn = make_attn()
    h = torch.randn(3, 12, 8)
    want = attn(h)  # default processor
    assert isinstance(attn.processor, AttnProcessor2_0)
    torch.testing.assert_close(run(attn, AttentionState(), h), want)


@torch.no_grad()
@pytest.mark.parametrize("sharpen", [1.67, 1.0])
def test_swap_gives_out_rows_the_style_keys_values_sharpened(sharpen):
    attn = make_attn()
    b, u, n = 2, 1, 10
    h = torch.randn(2 * b + u, n, 8)
    st = AttentionState(
        mode="swap",
        n_out=b,
        n_style=u,
        style_of_out=torch.zeros(b, dtype=torch.long),
        sharpen=sharpen,
    )
    got = run(attn, st, h)
    q, k, v = qkv(attn, h)
    out = attention(
        q[:b],
        k[b : b + 1],
        v[b : b + 1],
        scale=attn.scale,
        sharpen=None if sharpen == 1.0 else sharpen,
    )
    torch.testing.assert_close(got[:b], project_out(attn, out), atol=1e-5, rtol=1e-5)
    # style and content rows: plain self-attention, as if nothing was installed
    attn_default = make_attn()
    torch.testing.assert_close(got[b:], attn_default(h[b:]), atol=1e-5, rtol=1e-5)
    if sharpen == 1.0:  # an out row identical to its style attends exactly like the style
        h2 = h.clone()
        h2[0] = h2[b]
        got2 = run(attn, st, h2)
        torch.testing.assert_close(got2[0], got2[b], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_each_out_row_uses_its_own_style_row():
    attn = make_attn()
    b, u, n = 2, 2, 6
    h = torch.randn(2 * b + u, n, 8)
    st = AttentionState(
        mode="swap", n_out=b, n_style=u, style_of_out=torch.tensor([1, 0]), sharpen=1.67
    )
    got = run(attn, st, h)
    q, k, v = qkv(attn, h)
    for i, s in ((0, 1), (1, 0)):
        out = attention(
            q[i : i + 1], k[b + s : b + s + 1], v[b + s : b + s + 1], scale=attn.scale, sharpen=1.67
        )
        torch.testing.assert_close(got[i : i + 1], project_out(attn, out), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_filtering_uses_the_content_rows():
    attn = make_attn()
    b, u, n = 2, 1, 16
    h = torch.randn(2 * b + u, n, 8)
    st = AttentionState(
        mode="swap",
        n_out=b,
        n_style=u,
        style_of_out=torch.zeros(b, dtype=torch.long),
        filtering=True,
        filter_p=0.3,
    )
    got = run(attn, st, h)
    q, k, v = qkv(attn, h)
    c = slice(b + u, None)
    out = filtered_attention(
        q[:b], k[b : b + u], v[b : b + u], q[c], k[c], v[c], p=0.3, sharpen=1.67, scale=attn.scale
    )
    torch.testing.assert_close(got[:b], project_out(attn, out), atol=1e-5, rtol=1e-5)
    st.filtering = False
    assert not torch.allclose(run(attn, st, h)[:b], got[:b])  # the filter changed something


@torch.no_grad()
def test_styleid_record_then_inject():
    attn = make_attn()
    n = 9
    content, style, cur = torch.randn(1, n, 8), torch.randn(1, n, 8), torch.randn(1, n, 8)
    st = AttentionState(mode="record", n_out=1, n_style=1, step=4)
    rec = run(attn, st, torch.cat([content, style]), key="L")
    torch.testing.assert_close(rec, make_attn()(torch.cat([content, style])), atol=1e-6, rtol=1e-6)
    q_c, k_s, v_s = st.store[("L", 4)]
    # a copy of the content rows only, not a view keeping the whole batch alive
    assert q_c.shape == (1, 2, n, 4) and q_c.untyped_storage().nbytes() == q_c.nbytes
    st.mode, st.gamma, st.tau, st.style_of_out = "inject", 0.75, 1.5, torch.tensor([0])
    got = run(attn, st, cur, key="L")
    q_cur = heads(attn, attn.to_q(cur))
    want = attention(0.75 * q_c + 0.25 * q_cur, k_s, v_s, scale=attn.scale * 1.5)
    torch.testing.assert_close(got, project_out(attn, want), atol=1e-5, rtol=1e-5)
    st.step = 5
    with pytest.raises(RuntimeError, match="nothing recorded"):
        run(attn, st, cur, key="L")


@torch.no_grad()
def test_install_and_restore_on_a_unet():
    unet = tiny_unet().eval()
    x, t, e = torch.randn(1, 4, 8, 8), 500, torch.randn(1, 3, 8)
    before = {k: type(p) for k, p in unet.attn_processors.items()}
    want = unet(x, t, encoder_hidden_states=e).sample
    layers = select_layers(unet)
    state = AttentionState()
    with processors_installed(unet, layers, state):
        procs = unet.attn_processors
        chosen = {layer.key for layer in layers}
        assert all(isinstance(procs[k], CrossImageAttnProcessor) for k in chosen)
        assert all(type(p) is before[k] for k, p in procs.items() if k not in chosen)
        torch.testing.assert_close(unet(x, t, encoder_hidden_states=e).sample, want)
    assert {k: type(p) for k, p in unet.attn_processors.items()} == before
    prev = install_processors(unet, layers, state)
    restore_processors(unet, prev)
    assert {k: type(p) for k, p in unet.attn_processors.items()} == before
