"""The shared cracks dataset (../shared/datasets/cracks), read in place; skipped if absent."""

from __future__ import annotations

import json

import numpy as np

from synth2real.data.checks import inspect_dataset
from synth2real.data.readers import detect_format, open_dataset


def test_cracks_splits_open_with_their_counts(cracks_root):
    src = open_dataset(cracks_root / "source_synthetic", require_labels=True)
    val = open_dataset(cracks_root / "validation", require_labels=True)
    unl = open_dataset(cracks_root / "target_unlabeled")
    assert detect_format(cracks_root / "validation") == "supervisely"
    assert (len(src), src.num_labelled) == (1158, 1158)
    assert (len(val), val.num_labelled) == (70, 70)
    assert (len(unl), unl.num_labelled) == (150, 0)  # every annotation there is empty
    for ds in (src, val, unl):
        assert ds.classes.names == ("background", "cracks")
    assert src.problems == [] and val.problems == []
    assert [p.kind for p in unl.problems] == ["empty-annotations"]


def test_cracks_benchmark_split_selects_by_file_name(cracks_root):
    splits = json.loads((cracks_root / "splits.json").read_text())
    val = open_dataset(cracks_root / "validation")
    refs, test = val.select(splits["references"]), val.select(splits["test"])
    assert (len(refs), len(test)) == (10, 60)
    assert not {s.name for s in refs} & {s.name for s in test}
    unl = open_dataset(cracks_root / "target_unlabeled").select(splits["unlabeled"])
    assert len(unl) == 150 and any(" " in s.name for s in unl)  # a name with a space


def test_cracks_labels_decode(cracks_root):
    src = open_dataset(cracks_root / "source_synthetic")
    for i in (0, 1, len(src) - 1):
        img, lab = src.pair(i)
        assert img.shape[:2] == lab.shape and set(np.unique(lab)) <= {0, 1}
    assert src.pair(1)[1].any()  # the second file holds a crack


def test_inspect_reports_crack_share(cracks_root):
    rep = inspect_dataset(cracks_root / "validation", progress=False)
    assert (rep.num_samples, rep.num_labelled) == (70, 70)
    assert rep.bad_samples == [] and rep.problems == []
    assert 0.005 < rep.share("cracks") < 0.1 and rep.images_per_class[1] == 70
