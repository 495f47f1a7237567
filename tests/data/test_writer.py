import json

import numpy as np
import pytest
from PIL import Image

from synth2real.data.readers import open_dataset
from synth2real.data.writer import DatasetWriter, plan_labels, read_jsonl
from synth2real.errors import ConfigError, OutputExistsError
from tests.gen_data import write_generic, write_supervisely


def _copy_all(ds, out, layout="auto"):
    w = DatasetWriter(out, ds, layout)
    assert w.check_folder({"method": "x"}, resume=False, overwrite=False, shard=(0, 1)) == "new"
    w.start({"method": "x"})
    for s in ds.samples:
        img, lab = ds.pair(s)
        w.write(s, 255 - img, lab)
    return w


def _same_labels(a, b):
    assert [s.name for s in a] == [s.name for s in b]
    assert a.classes.names == b.classes.names
    for sa, sb in zip(a.samples, b.samples, strict=True):
        la, lb = a.label(sa), b.label(sb)
        assert (la is None) == (lb is None)
        if la is not None:
            np.testing.assert_array_equal(la, lb)


def test_generic_source_copies_label_files_and_class_spec_byte_for_byte(tmp_path):
    src = open_dataset(write_generic(tmp_path / "syn", [(20, 30), (25, 17), (9, 40)], nested=True))
    w = _copy_all(src, tmp_path / "out")
    assert w.plan.layout == "generic" and w.plan.copy
    out = open_dataset(tmp_path / "out")
    _same_labels(src, out)
    for s in src.samples:
        assert (
            tmp_path / "out" / "labels" / f"{s.name}.png"
        ).read_bytes() == s.label_path.read_bytes()
        o = np.asarray(Image.open(tmp_path / "out" / "images" / f"{s.name}.png"))
        np.testing.assert_array_equal(o, 255 - src.image(s))
    assert (tmp_path / "out" / "classes.yaml").read_bytes() == (
        tmp_path / "syn" / "classes.yaml"
    ).read_bytes()


def test_supervisely_source_keeps_its_layout_and_annotations(tmp_path):
    src = open_dataset(write_supervisely(tmp_path / "proj" / "ds", [(20, 30), (31, 22)]))
    w = _copy_all(src, tmp_path / "out")
    assert w.plan.layout == "supervisely"
    out = open_dataset(tmp_path / "out")
    assert out.format == "supervisely"
    _same_labels(src, out)
    for s in src.samples:
        copied = tmp_path / "out" / "ann" / f"{s.name}.png.json"
        assert copied.read_bytes() == s.label_path.read_bytes()
    assert (tmp_path / "out" / "meta.json").read_bytes() == (
        tmp_path / "proj" / "meta.json"
    ).read_bytes()
    # forcing the generic layout writes decoded index PNGs instead
    w2 = _copy_all(src, tmp_path / "out2", layout="generic")
    assert not w2.plan.copy
    _same_labels(src, open_dataset(tmp_path / "out2"))


def test_labels_that_do_not_decode_as_they_are_are_written_decoded(tmp_path):
    root = tmp_path / "mask"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).save(
            root / "images" / f"m{i}.png"
        )
        Image.fromarray((rng.random((12, 16)) > 0.7).astype(np.uint8) * 255).save(
            root / "labels" / f"m{i}.png"
        )
    src = open_dataset(root)  # binary 0/255 masks: 255 is class_1, not "ignore"
    assert plan_labels(src).copy is False
    _copy_all(src, tmp_path / "out")
    _same_labels(src, open_dataset(tmp_path / "out"))


def test_folder_checks(tmp_path):
    src = open_dataset(write_generic(tmp_path / "syn", [(10, 10)]))
    w = DatasetWriter(tmp_path / "out", src)
    run = {"method": "a", "seed": 0}
    with pytest.raises(ConfigError, match="overlaps"):
        DatasetWriter(tmp_path / "syn" / "out", src).check_folder(
            run, resume=False, overwrite=False, shard=(0, 1)
        )
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not a synth2real output"):
        DatasetWriter(tmp_path / "other", src).check_folder(
            run, resume=False, overwrite=True, shard=(0, 1)
        )
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    w.start(run)
    s = src.samples[0]
    w.write(s, src.image(s), src.label(s))
    w.append((0, 1), {"name": s.name})
    with pytest.raises(OutputExistsError, match="different run"):
        w.check_folder({"method": "b", "seed": 0}, resume=True, overwrite=False, shard=(0, 1))
    with pytest.raises(OutputExistsError, match="--resume"):
        w.check_folder(run, resume=False, overwrite=False, shard=(0, 1))
    assert w.check_folder(run, resume=True, overwrite=False, shard=(0, 1)) == "same"
    # another shard of the same run without progress may start without --resume
    assert w.check_folder(run, resume=False, overwrite=False, shard=(1, 2)) == "same"
    (tmp_path / "out" / "README.txt").write_text("user notes")
    assert w.check_folder({"method": "b"}, resume=False, overwrite=True, shard=(0, 1)) == "cleared"
    assert (
        not (tmp_path / "out" / "images").exists() and not (tmp_path / "out" / "run.json").exists()
    )
    assert (tmp_path / "out" / "README.txt").exists()  # only what a run writes is removed


def test_manifest_parts_tolerate_a_torn_line_and_merge_when_complete(tmp_path):
    src = open_dataset(write_generic(tmp_path / "syn", [(10, 10)] * 3))
    w = DatasetWriter(tmp_path / "out", src)
    w.start({})
    names = [s.name for s in src.samples]
    w.append((0, 2), {"name": names[0]})
    w.append((0, 2), {"name": names[2]})
    with open(w.part_path((0, 2)), "a") as f:
        f.write('{"name": "img0')  # killed mid-write
    assert [e["name"] for e in read_jsonl(w.part_path((0, 2)))] == [names[0], names[2]]
    w.repair_part((0, 2))
    assert w.part_path((0, 2)).read_text().count("\n") == 2
    assert w.merge(names) is None  # shard 1 missing
    w.append((1, 2), {"name": names[1]})
    manifest = w.merge(names)
    assert [json.loads(x)["name"] for x in manifest.read_text().splitlines()] == names


def test_stale_temp_files_are_removed(tmp_path):
    src = open_dataset(write_generic(tmp_path / "syn", [(10, 10)]))
    w = DatasetWriter(tmp_path / "out", src)
    (tmp_path / "out" / "images" / "sub").mkdir(parents=True)
    stale = tmp_path / "out" / "images" / "sub" / ".img00.png.abc123.tmp"
    stale.write_bytes(b"partial")
    w.start({})
    assert not stale.exists()


def test_changed_label_maps_are_written_decoded_and_manifests_read_back(tmp_path):
    from synth2real.data.writer import read_manifest

    src = open_dataset(write_generic(tmp_path / "syn", [(20, 30), (25, 17)]))
    w = DatasetWriter(tmp_path / "out", src, "generic", copy_labels=False)
    assert (w.plan.layout, w.plan.copy) == ("generic", False)
    w.start({"method": "x"})
    for s in src.samples:
        img, lab = src.pair(s)
        w.write(s, img[::2, ::2].copy(), lab[::2, ::2].copy())  # a resized copy
        w.append((0, 1), {"name": s.name, "reference": "r0"})
    out = open_dataset(tmp_path / "out")
    for a, b in zip(src.samples, out.samples, strict=True):
        np.testing.assert_array_equal(out.label(b), src.label(a)[::2, ::2])
    assert read_manifest(tmp_path / "out") == []  # not merged yet
    w.merge([s.name for s in src.samples])
    assert [e["name"] for e in read_manifest(tmp_path / "out")] == [s.name for s in src.samples]
    with pytest.raises(ConfigError, match="generic layout"):
        DatasetWriter(tmp_path / "o2", src, "supervisely", copy_labels=False)


def test_stale_temp_files_go_and_a_peers_newer_ones_stay(tmp_path):
    """A shard that checked it was alone removes temp files older than its check, not the
    in-flight files of a shard that started just after (they would vanish mid-rename)."""
    import os
    import time

    src = open_dataset(write_generic(tmp_path / "syn", [(10, 10)]))
    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    stale, peer = out / "images" / ".a.png.0001.tmp", out / ".run.json.0002.tmp"
    stale.write_bytes(b"x")
    peer.write_bytes(b"y")
    now = time.time()
    os.utime(stale, (now - 60, now - 60))  # left by a killed run a minute ago
    os.utime(peer, (now + 1, now + 1))  # written after the check
    w = DatasetWriter(out, src)
    w.start({"method": "x"}, temp_before=now)
    assert not stale.exists() and peer.exists()
    assert w.remove_temp_files() == 1 and not peer.exists()  # no cutoff: every temp file


def test_a_folder_holding_only_a_peers_write_in_flight_is_new(tmp_path):
    src = open_dataset(write_generic(tmp_path / "syn", [(10, 10)]))
    out = tmp_path / "out"
    out.mkdir()
    (out / ".run.json.00ab.tmp").write_text("{")  # another shard's run.json, not renamed yet
    w = DatasetWriter(out, src)
    assert w.check_folder({"method": "x"}, resume=True, overwrite=False, shard=(1, 2)) == "new"
    (out / "stray.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not a synth2real"):
        w.check_folder({"method": "x"}, resume=True, overwrite=False, shard=(1, 2))
