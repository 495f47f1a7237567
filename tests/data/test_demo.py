"""The toy demo data: layout, classes, determinism, and the gap it is meant to show."""

from __future__ import annotations

import numpy as np

from synth2real.data.demo import DEMO_CLASSES, SPLITS, make_demo_data, make_demo_split
from synth2real.data.readers import open_dataset
from tests.data.helpers import tree_digest


def test_demo_layout_and_classes(tmp_path):
    paths = make_demo_data(tmp_path / "demo")
    assert set(paths) == {"synthetic", "real", "real_test"}
    for split, path in paths.items():
        ds = open_dataset(path, require_labels=True)
        assert ds.format == "generic" and len(ds) == SPLITS[split]
        assert ds.classes == DEMO_CLASSES and ds.problems == []
        img, lab = ds.pair(0)
        assert img.shape == (96, 128, 3) and lab.shape == (96, 128)
    counts = np.zeros(3)
    ds = open_dataset(paths["synthetic"])
    for i in range(len(ds)):
        counts += np.bincount(ds.label(i).ravel(), minlength=3)
    share = counts / counts.sum()
    assert 0.002 < share[2] < 0.05 and 0.1 < share[1] < 0.6  # scratch is thin, plate is not


def test_demo_is_deterministic_and_seeded(tmp_path):
    a = make_demo_split(tmp_path / "a", "real", count=3)
    b = make_demo_split(tmp_path / "b", "real", count=3)
    c = make_demo_split(tmp_path / "c", "real", count=3, seed=1)
    assert tree_digest(a) == tree_digest(b)
    assert tree_digest(a) != tree_digest(c)
    before = {p: p.stat().st_mtime_ns for p in a.rglob("*.png")}
    make_demo_split(tmp_path / "a", "real", count=3)  # identical files are left alone
    assert before == {p: p.stat().st_mtime_ns for p in a.rglob("*.png")}


def test_demo_real_looks_different_from_synthetic(tmp_path):
    """The built-in gap: real backgrounds are as dark as synthetic scratches, and real
    images are textured where synthetic ones are flat."""
    syn = open_dataset(make_demo_split(tmp_path, "synthetic", count=6))
    real = open_dataset(make_demo_split(tmp_path, "real", count=6))

    def stats(ds, cls):
        px = np.concatenate([ds.image(i)[ds.label(i) == cls] for i in range(len(ds))])
        return px.mean(), px.std(axis=0).mean()

    syn_bg, syn_bg_sd = stats(syn, 0)
    real_bg, real_bg_sd = stats(real, 0)
    syn_scratch, _ = stats(syn, 2)
    real_plate, _ = stats(real, 1)
    assert real_bg < syn_bg - 30 and abs(real_bg - syn_scratch) < 40
    assert abs(real_plate - syn_bg) < 25
    assert real_bg_sd > 3 * syn_bg_sd  # texture and noise vs flat colour
    # scratches stay darker than their surroundings in both
    assert stats(real, 2)[0] < real_bg and syn_scratch < syn_bg
