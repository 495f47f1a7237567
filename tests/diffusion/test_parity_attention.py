"""One attention layer: the official CACTIF attention processor against synth2real's
processors (``SwapProcessor``, ``FilteredSwapProcessor``) and its attention maths
(``synth2real.diffusion.attention``) on the same module and the same hidden states.

The official processor is the one ``CACTIFModel.register_attention_control`` puts on
every attention layer, run on a diffusers ``Attention`` module with a batch of three rows
``[out, style, content]``. synth2real's side runs twice: through its processor classes
installed on the same module (what the walk runs), and written here from the pure
functions (``attention`` with sharpening for the out row, ``filtered_attention`` for
CACTIF, plain attention for the style and content rows), whole and chunked.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from synth2real.diffusion.attention import attention
from synth2real.diffusion.filtering import filter_scores, filtered_attention
from tests.diffusion.reference.layer import (
    CHANNELS,
    HEADS,
    TIED,
    TOKENS,
    ZERO_QUERIES,
    row_differences,
    zero_queries,
)
from tests.diffusion.reference.layer import attention_module as _attention_module
from tests.diffusion.reference.layer import hidden_states as _hidden
from tests.diffusion.reference.layer import official as _official
from tests.diffusion.reference.layer import processor as _processor
from tests.diffusion.reference.layer import tied_keys as _tied_keys


def _heads(x: torch.Tensor) -> torch.Tensor:
    b, n, c = x.shape
    return x.view(b, n, HEADS, c // HEADS).transpose(1, 2)


def _ours(attn, hidden, *, swap: bool, filtering: bool, chunk_size=None) -> torch.Tensor:
    """synth2real's maths for the batch ``[out, style, content]`` of one layer."""
    with torch.no_grad():
        q, k, v = (_heads(f(hidden)) for f in (attn.to_q, attn.to_k, attn.to_v))
        if not swap:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            rest = attention(q[1:], k[1:], v[1:], scale=attn.scale)
            if filtering:
                first = filtered_attention(
                    q[:1], k[1:2], v[1:2], q[2:], k[2:], v[2:],
                    p=0.25, sharpen=1.67, scale=attn.scale, chunk_size=chunk_size,
                )  # fmt: skip
            else:
                first = attention(
                    q[:1], k[1:2], v[1:2], scale=attn.scale, sharpen=1.67, chunk_size=chunk_size
                )
            out = torch.cat([first, rest])
        out = out.transpose(1, 2).reshape(3, TOKENS, CHANNELS)
        return attn.to_out[1](attn.to_out[0](out))


@pytest.mark.parametrize("filtering", [False, True], ids=["cross-image", "cactif"])
@pytest.mark.parametrize("ties", [False, True], ids=["random", "argmax-ties"])
@pytest.mark.parametrize("chunk_size", [None, 48], ids=["whole", "chunked"])
def test_synth2reals_processors_equal_the_official_one_on_every_row(filtering, ties, chunk_size):
    attn = _attention_module()
    hidden = _tied_keys(attn, _hidden()) if ties else _hidden()
    official, swapped = _official(attn, hidden, filtering=filtering)
    assert swapped
    ours = _processor(attn, hidden, filtering=filtering, chunk_size=chunk_size)
    diffs = row_differences(ours, official)
    assert max(diffs) <= 1e-5, diffs  # out, style, content


@pytest.mark.parametrize("filtering", [False, True], ids=["cross-image", "cactif"])
@pytest.mark.parametrize("ties", [False, True], ids=["random", "argmax-ties"])
@pytest.mark.parametrize("chunk_size", [None, 48], ids=["whole", "chunked"])
def test_swapped_layer_equals_the_official_processor_on_every_row(filtering, ties, chunk_size):
    attn = _attention_module()
    hidden = _tied_keys(attn, _hidden()) if ties else _hidden()
    official, swapped = _official(attn, hidden, filtering=filtering)
    assert swapped  # the official processor did edit this layer
    ours = _ours(attn, hidden, swap=True, filtering=filtering, chunk_size=chunk_size)
    plain = _ours(attn, hidden, swap=False, filtering=False)
    for row in range(3):  # out, style, content
        diff = float((ours[row] - official[row]).abs().max())
        assert diff <= 1e-5, (row, diff)
    assert float((official[0] - plain[0]).abs().max()) > 1e-2  # the edit changes out
    torch.testing.assert_close(official[1:], plain[1:], rtol=0, atol=1e-5)  # and only out


def _qkv(attn, hidden):
    with torch.no_grad():
        return tuple(_heads(f(hidden)) for f in (attn.to_q, attn.to_k, attn.to_v))


def test_forced_ties_are_exact_and_their_tie_break_matters():
    attn = _attention_module()
    q, k, v = _qkv(attn, _tied_keys(attn, _hidden()))
    j1, j2 = TIED
    assert torch.equal(k[1, :, j1], k[1, :, j2]) and not torch.equal(v[1, :, j1], v[1, :, j2])
    with torch.no_grad():
        sim, arg = filter_scores(q[:1], k[1:2], v[1:2], v[2:], sharpen=1.67, scale=attn.scale)
        tied = arg[0] == j1
        assert int(tied.sum()) >= 10 and not bool((arg[0] == j2).any())  # first index wins
        other = v[1:2, :, j2 : j2 + 1].expand(-1, -1, int(tied.sum()), -1)
        sim_other = F.cosine_similarity(v[2:, :, tied[:]], other, dim=-1).abs().sum(1)
    # the other tie-break would change these similarities, hence the weak set and the output
    assert float((sim_other - sim[:, tied]).abs().max()) > 1e-2


def test_zero_queries_tie_every_key_and_the_official_code_breaks_them_by_rounding():
    """A documented difference, not parity: an out token whose query is 0 attends
    uniformly, so every style key ties. The official sharpening centres column ``j`` on
    the mean of *row* ``j`` (``tensor.mean(dim=-1)`` broadcast over the last axis); those
    means differ from 1/N by float rounding (~1e-9), so its argmax goes to the column
    whose row mean rounds lowest, not to the first. synth2real centres on 1/N exactly and
    takes the first index. ``benchmarks/reference_impl.py`` (which keeps the broadcast)
    reproduces the official output; synth2real's filter does not."""
    ref_impl = _load_reference_impl()
    attn = _attention_module()
    hidden = zero_queries(_hidden())  # to_q has no bias: zero queries
    official, swapped = _official(attn, hidden, filtering=True)
    assert swapped
    q, k, v = _qkv(attn, hidden)
    with torch.no_grad():
        recreated = ref_impl.reference_filtered_step(q, k, v)
        recreated = attn.to_out[0](recreated.transpose(1, 2).reshape(3, TOKENS, CHANNELS))
        _, arg = filter_scores(q[:1], k[1:2], v[1:2], v[2:], sharpen=1.67, scale=attn.scale)
    assert (arg[0, :ZERO_QUERIES] == 0).all()
    torch.testing.assert_close(recreated, official, rtol=0, atol=1e-5)
    ours = _ours(attn, hidden, swap=True, filtering=True)
    torch.testing.assert_close(ours[1:], official[1:], rtol=0, atol=1e-5)
    gap = float((ours[0] - official[0]).abs().max())
    print(f"zero queries, out row: {gap:.2e} ({ZERO_QUERIES} of {TOKENS} queries zero)")
    # the out row differs everywhere: the tie-break moves sim of the zero queries, hence
    # the quantile, the weak set and every row's filtered attention
    assert gap > 1e-2


def _load_reference_impl():
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "reference_impl.py"
    spec = importlib.util.spec_from_file_location("_s2r_parity_reference_impl", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_unswapped_steps_keep_plain_attention():
    attn = _attention_module()
    hidden = _hidden()
    plain = _ours(attn, hidden, swap=False, filtering=False)
    # step 0 is before the reference's swap range (its step counter lags one step)
    official, swapped = _official(attn, hidden, filtering=True, step=0)
    assert not swapped
    torch.testing.assert_close(official, plain, rtol=0, atol=1e-5)
