import numpy as np
import pytest

from synth2real.methods import References, create_method
from synth2real.methods import functional as F
from tests.methods.scenes import CLASSES, references, scene


def _cdf(values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    h = np.bincount(values, weights=weights, minlength=256)
    return np.cumsum(h) / h.sum()


def _pooled_cdf(refs: References, channel: int, cls: int | None) -> np.ndarray:
    vals, ws = [], []
    for im, lb in zip(refs.images, refs.labels, strict=True):
        m = np.ones(lb.shape, bool) if cls is None else lb == cls
        vals.append(im[..., channel][m])
        ws.append(np.full(m.sum(), 1.0 / lb.size))
    return _cdf(np.concatenate(vals), np.concatenate(ws))


@pytest.fixture(scope="module")
def refs():
    return references(sizes=((120, 160), (100, 90), (140, 140)), tint=(30, -25, 30))


def test_global_matching_makes_per_channel_cdfs_match(refs):
    img, label = scene(150, 200, 1)
    m = create_method("histmatch")
    m.prepare(refs)
    out = m.apply(img, label, 0)
    for k in range(3):
        ks = np.abs(_cdf(out[..., k].ravel()) - _pooled_cdf(refs, k, None)).max()
        before = np.abs(_cdf(img[..., k].ravel()) - _pooled_cdf(refs, k, None)).max()
        assert ks < 0.03, (k, ks)
        assert before > 0.2  # the test would catch a no-op


def test_classwise_matching_makes_each_class_cdfs_match(refs):
    img, label = scene(150, 200, 2)
    m = create_method("histmatch-cw")
    m.prepare(refs)
    out = m.apply(img, label, 0)
    for c in range(3):
        sel = label == c
        for k in range(3):
            ks = np.abs(_cdf(out[..., k][sel]) - _pooled_cdf(refs, k, c)).max()
            # a class's own levels are few (the crack class spans ~20 levels): the CDFs
            # can only match up to the largest single level's share
            step = np.bincount(img[..., k][sel]).max() / sel.sum()
            assert ks <= max(0.03, step + 1e-9), (c, k, ks)


def test_classwise_falls_back_to_the_global_mapping_for_missing_classes():
    refs = references(crack=False)
    img, label = scene(80, 100, 3)
    cw, gl = create_method("histmatch-cw"), create_method("histmatch")
    cw.prepare(refs)
    gl.prepare(refs)
    np.testing.assert_array_equal(
        cw.apply(img, label, 0)[label == 2], gl.apply(img, label, 0)[label == 2]
    )


def test_match_lut_is_monotone_and_identity_on_itself():
    rng = np.random.default_rng(0)
    h = rng.integers(0, 50, 256).astype(float)
    h[::7] = 0
    np.testing.assert_array_equal(F.match_lut(h, h)[h > 0], np.flatnonzero(h > 0))
    lut = F.match_lut(rng.random(256), h)
    assert (np.diff(lut.astype(int)) >= 0).all()
    np.testing.assert_array_equal(F.match_lut(np.zeros(256), h), np.arange(256))


def test_agrees_with_albumentations_match_histograms():
    """Same rule as albumentations (and scikit-image); they truncate, we round: <= 1 level."""
    fn = pytest.importorskip("albumentations.augmentations.mixing.domain_adaptation_functional")
    img, label = scene(96, 128, 4)
    ref, ref_label = scene(96, 128, 5, tint=(30, -15, 20))
    m = create_method("histmatch")
    m.prepare(References([ref], [ref_label], ["r"], CLASSES))
    ours = m.apply(img, label, 0).astype(int)
    theirs = fn.match_histograms(img, ref).astype(int)
    diff = ours - theirs
    assert diff.min() >= 0 and diff.max() <= 1
    assert 0.2 < diff.mean() < 0.8  # truncation vs rounding: about half a level
