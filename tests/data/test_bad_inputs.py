"""Every bad input of issue 2: a clear error naming the file, or a documented handling.

Each test also checks that the input folder is byte-identical afterwards.
"""

from __future__ import annotations

import unicodedata

import cv2
import numpy as np
import pytest
from PIL import Image

from synth2real.data.checks import inspect_dataset
from synth2real.data.classes import ClassSpec
from synth2real.data.readers import open_dataset
from synth2real.errors import DataError
from tests.data.helpers import make_generic, rgb, save_jpeg, save_png

SPEC = "names: [a, b, c]\n"


def _ds(root, images: dict, labels: dict, spec: str = SPEC):
    for name, arr in images.items():
        if name.endswith(".jpg"):
            save_jpeg(root / "images" / name, arr)
        else:
            save_png(root / "images" / name, arr)
    for name, arr in labels.items():
        save_png(root / "labels" / name, arr)
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.yaml").write_text(spec)
    return root


def _kinds(report):
    return sorted({p["kind"] for p in report.problems})


def test_size_mismatch_names_both_files(tmp_path, unchanged):
    root = _ds(tmp_path / "d", {"a.png": rgb(4, 6), "b.png": rgb(4, 6)},
               {"a.png": np.zeros((4, 5), np.uint8), "b.png": np.zeros((4, 6), np.uint8)})  # fmt: skip
    check = unchanged(root)
    ds = open_dataset(root)
    with pytest.raises(
        DataError, match=r"label map is 4x5 \(HxW\) but its image a.png is 4x6"
    ) as e:
        ds.label(0)
    assert e.value.path == root / "labels" / "a.png"
    with pytest.raises(DataError):
        ds.pair(0)
    assert ds.label(1).shape == (4, 6)
    rep = inspect_dataset(root, progress=False)
    assert rep.bad_samples == ["a"] and _kinds(rep) == ["size-mismatch"]
    assert rep.num_errors == 1 and rep.images_per_class[0] == 1  # b was still counted
    check()


def test_unknown_ids_fail_lazily_and_inspect_lists_them(tmp_path, unchanged):
    lab = np.array([[0, 1, 2, 5], [9, 9, 255, 0]], np.uint8)
    root = _ds(tmp_path / "d", {"x.png": rgb(2, 4)}, {"x.png": lab})
    check = unchanged(root)
    ds = open_dataset(root)  # opening does not decode
    with pytest.raises(
        DataError, match=r"label ids 5, 9 are not in the class spec .* \(3 pixels\)"
    ):
        ds.label(0)
    rep = inspect_dataset(root, progress=False)
    assert rep.bad_samples == ["x"] and "label ids 5, 9" in rep.problems[0]["message"]
    assert rep.problems[0]["path"] == str(root / "labels" / "x.png")
    check()


def test_unknown_colours(tmp_path, unchanged):
    spec = "names: [a, b]\ncolors: [[0, 0, 0], [255, 0, 0]]\n"
    lab = np.array([[[0, 0, 0], [255, 0, 0], [0, 9, 0]]], np.uint8)
    root = _ds(tmp_path / "d", {"x.png": rgb(1, 3)}, {"x.png": lab}, spec)
    check = unchanged(root)
    with pytest.raises(DataError, match=r"label colours \[0, 9, 0\] are not in"):
        open_dataset(root).label(0)
    check()


@pytest.mark.parametrize("damage", ["truncated-png", "truncated-jpg", "garbage", "empty"])
def test_truncated_or_unreadable_images(tmp_path, unchanged, damage):
    root = make_generic(tmp_path / "d", n=2)
    bad = root / "images" / "s0.png"
    data = bad.read_bytes()
    if damage == "truncated-png":
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "truncated-jpg":
        bad.unlink()
        bad = save_jpeg(root / "images" / "s0.jpg", rgb(64, 64))
        bad.write_bytes(bad.read_bytes()[:-400])
    elif damage == "garbage":
        bad.write_bytes(b"this is not an image at all")
    else:
        bad.write_bytes(b"")
    check = unchanged(root)
    ds = open_dataset(root)
    with pytest.raises(DataError) as e:
        ds.image(0)
    assert e.value.path == bad and ("truncated" in str(e.value) or "not a readable" in str(e.value))
    rep = inspect_dataset(root, progress=False)
    assert rep.bad_samples == ["s0"] and rep.problems[0]["kind"] == "unreadable-image"
    assert rep.num_samples == 2 and rep.image_sizes == {"6x8": 1}
    check()


def test_truncated_label_png(tmp_path, unchanged):
    root = make_generic(tmp_path / "d", n=1, h=40, w=40)
    lab = root / "labels" / "s0.png"
    save_png(lab, np.random.default_rng(0).integers(0, 3, (40, 40), dtype=np.uint8))
    lab.write_bytes(lab.read_bytes()[:-60])
    check = unchanged(root)
    with pytest.raises(DataError) as e:
        open_dataset(root).label(0)
    assert e.value.path == lab
    check()


def test_image_modes_are_converted_to_rgb(tmp_path, unchanged):
    root = tmp_path / "modes"
    g = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    save_png(root / "images" / "gray.png", g)
    save_png(root / "images" / "gray16.png", g.astype(np.uint16) * 256 + 7)
    rgba = np.dstack([rgb(3, 4), np.full((3, 4), 255, np.uint8)])
    rgba[0, 0, 3] = 0  # one transparent pixel -> black
    save_png(root / "images" / "rgba.png", rgba, mode="RGBA")
    save_png(
        root / "images" / "pal.png",
        np.full((3, 4), 1, np.uint8),
        mode="P",
        palette=[(0, 0, 0), (10, 20, 30)],
    )
    (root / "images").mkdir(exist_ok=True)
    cv2.imwrite(str(root / "images" / "rgb16.png"), np.full((3, 4, 3), 0x8000, np.uint16))
    check = unchanged(root)
    ds = open_dataset(root)
    imgs = {s.name: ds.image(s) for s in ds}
    for im in imgs.values():
        assert im.shape == (3, 4, 3) and im.dtype == np.uint8
    assert np.array_equal(imgs["gray"][..., 1], g) and np.array_equal(imgs["gray16"][..., 0], g)
    assert imgs["rgba"][0, 0].tolist() == [0, 0, 0] and np.array_equal(
        imgs["rgba"][1:], rgba[1:, :, :3]
    )
    assert imgs["pal"][0, 0].tolist() == [10, 20, 30] and imgs["rgb16"][0, 0].tolist() == [128] * 3
    rep = inspect_dataset(root, progress=False)
    assert rep.image_modes["L"] == 1 and rep.image_modes["RGBA"] == 1 and rep.image_modes["P"] == 1
    assert rep.image_modes["I;16"] == 1 and "converted" in _kinds(rep) and rep.num_errors == 0
    check()


def test_exif_rotated_jpeg(tmp_path, unchanged):
    """The image is read rotated (as displayed); its label must match the rotated image."""
    root = tmp_path / "exif"
    stored = np.zeros((4, 6, 3), np.uint8)
    stored[0, 0] = 255  # a white corner to follow
    save_jpeg(root / "images" / "ok.jpg", stored, orientation=6)  # 90 deg clockwise
    save_jpeg(root / "images" / "stale.jpg", stored, orientation=6)
    save_png(root / "labels" / "ok.png", np.zeros((6, 4), np.uint8))  # displayed size
    save_png(root / "labels" / "stale.png", np.zeros((4, 6), np.uint8))  # stored size
    (root / "classes.yaml").write_text("names: [a, b]\n")
    check = unchanged(root)
    ds = open_dataset(root)
    img, lab = ds.pair(0)
    assert img.shape == (6, 4, 3) and lab.shape == (6, 4)
    assert img[0, -1].mean() > 150 and img[0, 0].mean() < 100  # corner moved to top-right
    with pytest.raises(DataError, match="EXIF rotation; the label matches the stored") as e:
        ds.label(1)
    assert e.value.path == root / "labels" / "stale.png"
    rep = inspect_dataset(root, progress=False)
    assert rep.bad_samples == ["stale"] and "exif" in _kinds(rep)
    check()


def test_names_with_spaces_and_non_ascii_in_either_unicode_form(tmp_path, unchanged):
    root = tmp_path / "names é"
    nfc = "café crème 1"
    nfd = unicodedata.normalize("NFD", nfc)
    save_png(root / "images" / f"{nfc}.png", rgb(2, 2))
    save_png(root / "labels" / f"{nfd}.png", np.ones((2, 2), np.uint8))  # as macOS writes it
    save_png(root / "images" / "日本 語.png", rgb(2, 2))
    save_png(root / "labels" / "日本 語.png", np.zeros((2, 2), np.uint8))
    (root / "classes.yaml").write_text(SPEC)
    check = unchanged(root)
    ds = open_dataset(root)
    assert ds.has_labels and sorted(s.name for s in ds) == sorted([nfc, "日本 語"])
    assert ds.label(ds.select([nfc])[0]).tolist() == [[1, 1], [1, 1]]
    check()


def test_empty_folders(tmp_path, unchanged):
    (tmp_path / "e").mkdir()
    with pytest.raises(DataError, match="empty folder") as e:
        open_dataset(tmp_path / "e")
    assert e.value.path == tmp_path / "e"
    (tmp_path / "g" / "images").mkdir(parents=True)
    (tmp_path / "g" / "labels").mkdir()
    check = unchanged(tmp_path / "g")
    with pytest.raises(DataError, match="no images found") as e:
        open_dataset(tmp_path / "g")
    assert e.value.path == tmp_path / "g" / "images"
    check()


def test_images_without_labels_and_labels_without_images(tmp_path, unchanged):
    root = _ds(tmp_path / "d", {"a.png": rgb(2, 2), "b.png": rgb(2, 2)},
               {"a.png": np.zeros((2, 2), np.uint8), "orphan.png": np.zeros((2, 2), np.uint8)})  # fmt: skip
    check = unchanged(root)
    ds = open_dataset(root)
    assert [s.name for s in ds] == ["a", "b"] and ds.num_labelled == 1 and not ds.has_labels
    kinds = {p.kind: p for p in ds.problems}
    assert kinds["missing-label"].path == str(root / "images" / "b.png")
    assert kinds["orphan-label"].path == str(root / "labels" / "orphan.png")
    assert [s.name for s in ds.labelled()] == ["a"]
    with pytest.raises(
        DataError, match=r"labels required, but 1 of 2 images have none \('b.png'\)"
    ):
        open_dataset(root, require_labels=True)
    rep = inspect_dataset(root, progress=False)
    assert rep.num_labelled == 1 and rep.num_unlabelled == 1
    assert {"missing-label", "orphan-label"} <= set(_kinds(rep))
    check()


def test_duplicate_stems_are_refused_naming_both_files(tmp_path, unchanged):
    root = make_generic(tmp_path / "d", n=2)
    save_jpeg(root / "images" / "s1.jpg", rgb(6, 8))
    check = unchanged(root)
    with pytest.raises(DataError, match=r"name\(s\) used twice: 's1.jpg' and 's1.png'") as e:
        open_dataset(root)
    assert e.value.path == root / "images"
    check()


def test_lossy_label_files_are_not_used(tmp_path, unchanged):
    root = make_generic(tmp_path / "d", n=2)
    (root / "labels" / "s1.png").unlink()
    save_jpeg(root / "labels" / "s1.jpg", np.zeros((6, 8, 3), np.uint8))
    check = unchanged(root)
    ds = open_dataset(root)
    assert ds[1].label_path is None
    assert "lossy-label" in {p.kind for p in ds.problems}
    check()


def test_label_as_unsupported_mode(tmp_path):
    root = make_generic(tmp_path / "d", n=1)
    Image.new("CMYK", (8, 6)).save(root / "labels" / "s0.tif")
    (root / "labels" / "s0.png").unlink()
    with pytest.raises(DataError, match="unsupported label image mode 'CMYK'"):
        open_dataset(root, classes=ClassSpec(("a", "b", "c"))).label(0)


def test_hidden_files_are_ignored(tmp_path):
    root = make_generic(tmp_path / "d", n=1)
    (root / "images" / ".DS_Store").write_bytes(b"\0")
    (root / "images" / "._s0.png").write_bytes(b"\0")  # macOS resource fork
    (root / "images" / ".ipynb_checkpoints").mkdir()
    save_png(root / "images" / ".ipynb_checkpoints" / "s9.png", rgb(6, 8))
    ds = open_dataset(root)
    assert [s.name for s in ds] == ["s0"] and ds.problems == []
