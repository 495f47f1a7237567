"""The array maths under the method classes, against plain numpy."""

import numpy as np
import pytest

from synth2real.methods import functional as F


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (120, 90)])
def test_class_histograms_count_every_label_value_and_level(shape):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    lab = rng.integers(0, 256, shape, dtype=np.uint8)
    ref = np.zeros((256, 3, 256))
    for k in range(3):
        np.add.at(ref[:, k], (lab.ravel(), img[..., k].ravel()), 1)
    np.testing.assert_array_equal(F.class_histograms(img, lab), ref)
    np.testing.assert_array_equal(F.class_histograms(img, None)[0], ref.sum(0))
    np.testing.assert_allclose(F.class_histograms(img, lab, 0.25), ref * 0.25)


def test_class_moments_match_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(10, 5, (40, 50, 3)).astype(np.float32)
    lab = rng.integers(0, 4, (40, 50), dtype=np.uint8)
    lab[0, 0] = 255
    mom = F.class_moments(x, lab, weight=0.5)
    mean, std = mom.mean_std()
    for v in (0, 1, 2, 3, 255):
        sel = x[lab == v].astype(np.float64)
        assert mom.weight[v] == pytest.approx(0.5 * len(sel))
        np.testing.assert_allclose(mean[v], sel.mean(0), rtol=1e-5)
        np.testing.assert_allclose(std[v], sel.std(0), rtol=1e-4, atol=1e-5)
    assert np.isnan(mean[7]).all()  # absent label value
    gmean, gstd = mom.total().mean_std()
    np.testing.assert_allclose(gmean[0], x.reshape(-1, 3).mean(0), rtol=1e-5)


def test_apply_affine_and_luts_per_label_value():
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, (9, 11, 3)).astype(np.float32)
    lab = rng.integers(0, 3, (9, 11), dtype=np.uint8)
    gain = rng.normal(1, 0.2, (256, 3)).astype(np.float32)
    off = rng.normal(0, 1, (256, 3)).astype(np.float32)
    np.testing.assert_allclose(
        F.apply_affine(x, lab, gain, off), x * gain[lab] + off[lab], rtol=1e-6
    )
    np.testing.assert_allclose(
        F.apply_affine(x, None, gain[:1], off[:1]), x * gain[0] + off[0], rtol=1e-6, atol=1e-6
    )
    img = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    luts = rng.integers(0, 256, (256, 3, 256), dtype=np.uint8)
    expected = np.stack([luts[lab, k, img[..., k]] for k in range(3)], axis=2)
    np.testing.assert_array_equal(F.apply_luts(img, lab, luts), expected)


def test_lab_round_trip_and_sparse_conversion():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    lab = F.rgb_to_lab(img)
    assert lab.dtype == np.float32 and 0 <= lab[..., 0].min() and lab[..., 0].max() <= 100
    assert np.abs(F.lab_to_rgb(lab).astype(int) - img).max() <= 1
    where = rng.random((30, 40)) < 0.1
    part = F.rgb_to_lab_where(img, where)
    np.testing.assert_array_equal(part[where], lab[where])
    assert (part[~where] == 0).all()


def test_context_mean_is_the_mean_of_other_pixels_in_the_window():
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, (15, 17, 3)).astype(np.float32)
    ctx = rng.random((15, 17)) < 0.6
    mean, count = F.context_mean(x, ctx, 2)
    for y, xx in [(0, 0), (7, 8), (14, 16), (3, 15)]:
        win = (slice(max(y - 2, 0), y + 3), slice(max(xx - 2, 0), xx + 3))
        sel = ctx[win]
        assert count[y, xx] == pytest.approx(sel.sum())
        if sel.any():
            np.testing.assert_allclose(mean[y, xx], x[win][sel].mean(0), rtol=1e-5, atol=1e-6)


def test_quantile_map_takes_a_distribution_onto_another():
    rng = np.random.default_rng(5)
    src = rng.normal(0, 1, 5000)
    ref = rng.normal(10, 3, 8000)
    v, cdf = F.weighted_distribution(ref, np.ones_like(ref))
    out = F.quantile_map(src, v, cdf)
    assert abs(out.mean() - 10) < 0.2 and abs(out.std() - 3) < 0.2
    assert (np.diff(out[np.argsort(src)]) >= 0).all()  # order preserved


def test_thin_fraction():
    lab = np.zeros((40, 40), np.uint8)
    lab[20:22, :] = 1  # a 2-px line: every pixel near the boundary
    lab[:15, :15] = 2  # a block: mostly interior
    near, n = F.thin_fraction(lab, 1, 3)
    assert near == n == 80
    near, n = F.thin_fraction(lab, 2, 3)
    assert n == 225 and near < 0.5 * n
