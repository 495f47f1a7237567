"""StyleID on a tiny random model (latent level): recording, injection, the reference cache."""

from __future__ import annotations

import pytest
import torch

from synth2real.diffusion.config import StyleIDConfig
from synth2real.diffusion.inversion import Schedule
from synth2real.diffusion.layers import select_layers
from synth2real.diffusion.styleid import StyleCache, styleid_transfer
from synth2real.errors import ConfigError
from tests.diffusion.test_cross_image import count_rows, latents


@pytest.fixture
def setup(tiny):
    return tiny, select_layers(tiny.unet)


def test_styleid_records_then_injects_and_frees_the_store(setup):
    models, layers = setup
    cfg = StyleIDConfig(num_inference_steps=6, skip=1)
    sch6 = Schedule.from_scheduler(models.scheduler, 6)
    content, styles = latents(2, 6), latents(1, 8)
    before = dict(models.unet.attn_processors)
    rows, handle = count_rows(models.unet)
    try:
        with torch.no_grad():
            out = styleid_transfer(models, layers, sch6, cfg, content, styles, [0, 0])
    finally:
        handle.remove()
    assert rows == [3] * 5 + [2] * 5  # inversion of [content x2, style], then [out x2]
    assert out.shape == content.shape and torch.isfinite(out).all()
    assert models.unet.attn_processors == before  # the UNet's own processors are back
    # gamma (query preservation) matters: 0.3 gives another result than 0.75
    with torch.no_grad():
        strong = StyleIDConfig(num_inference_steps=6, skip=1, gamma=0.3)
        a = styleid_transfer(models, layers, sch6, strong, content, styles, [0, 0])
    assert (a - out).abs().max() > 1e-4
    with pytest.raises(ConfigError):
        StyleIDConfig(adain="classwise")


def _styleid(setup, content, styles, style_of_out, cache, keys):
    models, layers = setup
    sch6 = Schedule.from_scheduler(models.scheduler, 6)
    with torch.no_grad():
        return styleid_transfer(
            models,
            layers,
            sch6,
            StyleIDConfig(num_inference_steps=6, skip=1),
            content,
            styles,
            style_of_out,
            style_keys=keys,
            cache=cache,
        )


def test_styleid_inverts_a_reference_once_across_batches(setup):
    """Two batches with the same reference: the second runs no style row at all (the
    style's inversion trajectory and keys/values come from the cache), and gives what an
    uncached run gives."""
    models = setup[0]
    style = latents(1, 8)
    batch1, batch2 = latents(2, 6), latents(2, 9)
    cache = StyleCache()
    rows, handle = count_rows(models.unet)
    try:
        out1 = _styleid(setup, batch1, style, [0, 0], cache, ["ref"])
        first = list(rows)
        rows.clear()
        out2 = _styleid(setup, batch2, style, [0, 0], cache, ["ref"])
        second = list(rows)
        rows.clear()
        fresh = _styleid(setup, batch2, style, [0, 0], None, None)  # the old structure
        uncached = list(rows)
    finally:
        handle.remove()
    n = 5
    assert first == [3] * n + [2] * n  # [content x2, style] inversion, then [out x2]
    assert second == [2] * n + [2] * n  # contents only: 2n rows per image
    assert uncached == [3] * n + [2] * n
    assert cache.inverted == 1 and cache.cached_keys() == ["ref"]
    assert cache.used == cache.kv_bytes > 0
    torch.testing.assert_close(out2, fresh, atol=1e-4, rtol=1e-4)
    assert (out1 - out2).abs().max() > 1e-3  # different contents, different results
    # the cached trajectory is the style's DDIM inversion: level S..T, x0 last
    traj = cache.trajectories["ref"]
    assert traj.shape == (n + 1, *style.shape[1:])
    torch.testing.assert_close(traj[-1], style[0])


def test_styleid_keys_values_beyond_the_budget_are_recomputed_from_the_trajectory(setup):
    models = setup[0]
    a, b = latents(1, 8), latents(1, 10)
    content = latents(2, 6)
    full = StyleCache()
    want_a = _styleid(setup, content, a, [0, 0], full, ["a"])
    want_b = _styleid(setup, content, b, [0, 0], full, ["b"])
    one_style = full.kv_bytes // 2
    n = 5

    # budget 0: nothing cached, the style rides along every sampling step
    none = StyleCache(budget=0)
    rows, handle = count_rows(models.unet)
    try:
        got = _styleid(setup, content, a, [0, 0], none, ["a"])
        assert rows == [3] * n + [3] * n
        rows.clear()
        got2 = _styleid(setup, content, a, [0, 0], none, ["a"])
        assert rows == [2] * n + [3] * n  # trajectory reused, keys/values recomputed
        rows.clear()
        torch.testing.assert_close(got, want_a, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(got2, want_a, atol=1e-4, rtol=1e-4)
        assert none.kv_bytes == none.used == 0 and none.inverted == 1

        # room for one style: least recently used evicted, re-recorded when used again
        lru = StyleCache(budget=one_style)
        _styleid(setup, content, a, [0, 0], lru, ["a"])
        got_b = _styleid(setup, content, b, [0, 0], lru, ["b"])
        assert lru.cached_keys() == ["b"]
        rows.clear()
        got_a = _styleid(setup, content, a, [0, 0], lru, ["a"])
        assert rows == [2] * n + [3] * n and lru.cached_keys() == ["a"]
        rows.clear()
        _styleid(setup, content, a, [0, 0], lru, ["a"])
        assert rows == [2] * n + [2] * n
        assert lru.used == lru.kv_bytes <= one_style and lru.inverted == 2
        torch.testing.assert_close(got_b, want_b, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(got_a, want_a, atol=1e-4, rtol=1e-4)

        # a style larger than the budget is never kept, and does not evict others in vain
        small = StyleCache(budget=one_style // 2)
        rows.clear()
        got = _styleid(setup, content, a, [0, 0], small, ["a"])
        got2 = _styleid(setup, content, a, [0, 0], small, ["a"])
        assert rows == [3] * n + [3] * n + [2] * n + [3] * n
        assert small.used == small.kv_bytes == 0
        torch.testing.assert_close(got2, want_a, atol=1e-4, rtol=1e-4)
    finally:
        handle.remove()


def test_styleid_batch_with_cached_and_recomputed_styles(setup):
    """One batch mixing a cached style and a style recomputed from its trajectory."""
    a, b = latents(1, 8), latents(1, 10)
    content = latents(3, 6)
    full = StyleCache()
    want = _styleid(setup, content, torch.cat([a, b]), [0, 1, 0], full, ["a", "b"])
    mixed = StyleCache(budget=full.kv_bytes // 2)
    _styleid(setup, content[:1], b, [0], mixed, ["b"])  # b inverted and cached
    mixed.evict("b")
    _styleid(setup, content[:1], a, [0], mixed, ["a"])  # a cached
    got = _styleid(setup, content, torch.cat([a, b]), [0, 1, 0], mixed, ["a", "b"])
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
