"""Attention processors: one class per behaviour (swap, filtered swap, StyleID's record and
inject), the default projections, and installing/restoring them on a UNet."""

from __future__ import annotations

import pytest
import torch

from synth2real.diffusion.attention import attention
from synth2real.diffusion.filtering import filtered_attention
from synth2real.diffusion.layers import select_layers
from synth2real.diffusion.processors import (
    AttentionEdits,
    FilteredSwapProcessor,
    InjectProcessor,
    RecordProcessor,
    StyleIDState,
    SwapLayout,
    SwapProcessor,
)
from tests.diffusion.tiny import tiny_unet


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


def run(attn, processor, h):
    attn.set_processor(processor)
    with torch.no_grad():
        return attn(h)


def swap(b, u, style_of_out, sharpen=1.67):
    return SwapLayout(n_out=b, n_style=u, style_of_out=style_of_out, sharpen=sharpen)


@torch.no_grad()
def test_the_projections_are_the_default_processors():
    """A processor that attends plainly (StyleID's recording with nothing to record) is
    diffusers' ``AttnProcessor2_0``: same projections, norms, residual and rescaling."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    attn = make_attn()
    h = torch.randn(3, 12, 8)
    want = attn(h)  # default processor
    assert isinstance(attn.processor, AttnProcessor2_0)
    assert torch.equal(run(attn, RecordProcessor("layer", StyleIDState()), h), want)


@torch.no_grad()
@pytest.mark.parametrize("sharpen", [1.67, 1.0])
def test_swap_gives_out_rows_the_style_keys_values_sharpened(sharpen):
    attn = make_attn()
    b, u, n = 2, 1, 10
    h = torch.randn(2 * b + u, n, 8)
    proc = SwapProcessor("layer", swap(b, u, torch.zeros(b, dtype=torch.long), sharpen))
    got = run(attn, proc, h)
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
        got2 = run(attn, proc, h2)
        torch.testing.assert_close(got2[0], got2[b], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_each_out_row_uses_its_own_style_row():
    attn = make_attn()
    b, u, n = 2, 2, 6
    h = torch.randn(2 * b + u, n, 8)
    got = run(attn, SwapProcessor("layer", swap(b, u, torch.tensor([1, 0]))), h)
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
    layout = swap(b, u, torch.zeros(b, dtype=torch.long))
    got = run(attn, FilteredSwapProcessor("layer", layout, p=0.3), h)
    q, k, v = qkv(attn, h)
    c = slice(b + u, None)
    out = filtered_attention(
        q[:b], k[b : b + u], v[b : b + u], q[c], k[c], v[c], p=0.3, sharpen=1.67, scale=attn.scale
    )
    torch.testing.assert_close(got[:b], project_out(attn, out), atol=1e-5, rtol=1e-5)
    unfiltered = run(attn, SwapProcessor("layer", layout), h)
    assert not torch.allclose(unfiltered[:b], got[:b])  # the filter changed something
    torch.testing.assert_close(unfiltered[b:], got[b:], atol=1e-6, rtol=1e-6)
    with pytest.raises(RuntimeError, match="swap layout expects 5 rows"):
        run(attn, FilteredSwapProcessor("layer", layout, p=0.3), h[:4])


@torch.no_grad()
def test_filtering_takes_the_content_attention_from_the_filter_pass(monkeypatch):
    """The filter already attends each content row on itself: its fused pass returns that
    attention too, so the processor runs plain attention for the style rows only. Every
    row equals the separate computation (filtered out rows, default attention for the
    style and content rows), and SDPA sees B + U query rows instead of 2B + U."""
    attn = make_attn()
    b, u, n = 3, 2, 16
    h = torch.randn(2 * b + u, n, 8)
    layout = swap(b, u, torch.tensor([1, 0, 1]))
    q, k, v = qkv(attn, h)
    c = slice(b + u, None)
    out = filtered_attention(
        q[:b],
        k[b : b + u].index_select(0, layout.style_of_out),
        v[b : b + u].index_select(0, layout.style_of_out),
        q[c],
        k[c],
        v[c],
        p=0.25,
        sharpen=1.67,
        scale=attn.scale,
    )
    want = torch.cat([project_out(attn, out), make_attn()(h[b:])])
    sdpa = torch.nn.functional.scaled_dot_product_attention
    rows = []

    def counting(query, *args, **kwargs):
        rows.append(query.shape[0])
        return sdpa(query, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)
    got = run(attn, FilteredSwapProcessor("layer", layout, p=0.25), h)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert sum(rows) == b + u  # style rows + one fused content pass (not 2B + U)


class DictKV:
    """A minimal key/value sink and source (what StyleID's KVRecord is to the processor)."""

    def __init__(self):
        self.items = {}

    def put(self, where, k, v):
        self.items[where] = (k.clone(), v.clone())

    def get(self, where):
        return self.items.get(where)


@torch.no_grad()
def test_styleid_record_then_inject():
    attn = make_attn()
    n = 9
    content, style, cur = torch.randn(1, n, 8), torch.randn(1, n, 8), torch.randn(1, n, 8)
    sink = DictKV()
    st = StyleIDState(step=4, n_out=1, kv_sinks=[sink])
    rec = run(attn, RecordProcessor("L", st), torch.cat([content, style]))
    torch.testing.assert_close(rec, make_attn()(torch.cat([content, style])), atol=1e-6, rtol=1e-6)
    q_c = st.queries[("L", 4)]
    k_s, v_s = sink.get(("L", 4))
    # a copy of the content rows only, not a view keeping the whole batch alive
    assert q_c.shape == (1, 2, n, 4) and q_c.untyped_storage().nbytes() == q_c.nbytes
    _, k_all, v_all = qkv(attn, torch.cat([content, style]))
    torch.testing.assert_close(k_s, k_all[1:])
    torch.testing.assert_close(v_s, v_all[1:])
    st.gamma, st.tau, st.style_of_out = 0.75, 1.5, torch.tensor([0])
    st.kv_sinks, st.kv_sources = [], [sink]
    inject = InjectProcessor("L", st)
    got = run(attn, inject, cur)
    q_cur = heads(attn, attn.to_q(cur))
    want = attention(0.75 * q_c + 0.25 * q_cur, k_s, v_s, scale=attn.scale * 1.5)
    torch.testing.assert_close(got, project_out(attn, want), atol=1e-5, rtol=1e-5)
    # the same keys/values recomputed by a style row riding along: same out row, the
    # style row attends normally and feeds its sink
    again = DictKV()
    st.kv_sinks, st.kv_sources = [again], [0]
    got2 = run(attn, inject, torch.cat([cur, style]))
    torch.testing.assert_close(got2[:1], got, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got2[1:], make_attn()(style), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(again.get(("L", 4))[0], k_s)
    st.step = 5
    with pytest.raises(RuntimeError, match="nothing recorded"):
        run(attn, inject, cur)


@torch.no_grad()
def test_attention_edits_install_switch_and_restore_on_a_unet():
    unet = tiny_unet().eval()
    x, t, e = torch.randn(1, 4, 8, 8), 500, torch.randn(1, 3, 8)
    before = dict(unet.attn_processors)
    want = unet(x, t, encoder_hidden_states=e).sample
    layers = select_layers(unet)
    chosen = {layer.key for layer in layers}
    plain = {key: RecordProcessor(key, StyleIDState()) for key in chosen}
    with AttentionEdits(unet, layers) as edits:
        assert unet.attn_processors == before  # nothing installed before `use`
        edits.use(plain)
        procs = unet.attn_processors
        assert all(procs[k] is plain[k] for k in chosen)
        assert all(p is before[k] for k, p in procs.items() if k not in chosen)
        torch.testing.assert_close(unet(x, t, encoder_hidden_states=e).sample, want)
        edits.use(None)  # back to the UNet's own processors inside the block
        assert unet.attn_processors == before
        edits.use(plain)
        with pytest.raises(KeyError, match="not one of the selected layers"):
            edits.use({"down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor": 0})
    assert unet.attn_processors == before
    # an error inside the block restores them too
    with pytest.raises(ValueError, match="boom"), AttentionEdits(unet, layers) as edits:
        edits.use(plain)
        raise ValueError("boom")
    assert unet.attn_processors == before
    with pytest.raises(RuntimeError, match="outside"):
        AttentionEdits(unet, layers).use(plain)
