"""Readers: every layout, detection rules and label decoding on tiny fixtures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from synth2real.data.classes import CAMVID, CITYSCAPES, CITYSCAPES_LABELS, ClassSpec
from synth2real.data.readers import FORMATS, detect_format, open_dataset
from synth2real.errors import ConfigError, DataError
from tests.data.helpers import make_generic, make_supervisely, rgb, save_jpeg, save_png

CS_ID = {n: lid for lid, n, _, _ in CITYSCAPES_LABELS}


# -- generic -------------------------------------------------------------------------------
def test_generic_index_labels(tmp_path, unchanged):
    root = make_generic(tmp_path / "ds", n=3, classes=3)
    check = unchanged(root)
    assert detect_format(root) == "generic"
    ds = open_dataset(root)
    assert ds.format == "generic" and len(ds) == 3 and ds.has_labels
    assert ds.classes.names == ("c0", "c1", "c2") and ds.problems == []
    img, lab = ds.pair(1)
    assert img.shape == (6, 8, 3) and img.dtype == np.uint8
    assert (
        lab.dtype == np.uint8 and lab.tolist() == ((np.arange(48).reshape(6, 8) + 1) % 3).tolist()
    )
    assert np.array_equal(ds.label(1), lab)
    check()


def test_generic_colour_labels_through_the_class_spec_palette(tmp_path):
    root = make_generic(tmp_path / "ds", n=2, classes=4, colors=True)
    ds = open_dataset(root)
    assert ds.label(0).tolist() == (np.arange(48).reshape(6, 8) % 4).tolist()


def test_generic_palette_png_labels_use_indices(tmp_path):
    root = tmp_path / "voc"
    save_png(root / "images" / "a.png", rgb(4, 5))
    lab = np.array([[0, 1, 2, 255, 1]] * 4, np.uint8)
    save_png(
        root / "labels" / "a.png", lab, mode="P", palette=[(0, 0, 0), (128, 0, 0), (0, 128, 0)]
    )
    ds = open_dataset(root, classes=ClassSpec(("bg", "a", "b")))
    assert ds.label(0).tolist() == lab.tolist()


def test_generic_16bit_labels(tmp_path):
    root = tmp_path / "d16"
    save_png(root / "images" / "a.png", rgb(3, 4))
    save_png(root / "labels" / "a.png", np.array([[0, 1, 2, 1]] * 3, np.uint16))
    ds = open_dataset(root, classes=ClassSpec(("a", "b", "c")))
    assert ds.label(0).tolist() == [[0, 1, 2, 1]] * 3
    save_png(root / "labels" / "a.png", np.array([[0, 1, 300, 1]] * 3, np.uint16))
    with pytest.raises(DataError, match="label ids 300 are not in"):
        ds.label(0)


def test_generic_without_class_spec_infers_classes(tmp_path):
    root = make_generic(tmp_path / "ds", n=2, classes=4, spec=False)
    ds = open_dataset(root)
    assert ds.classes.names == ("class_0", "class_1", "class_2", "class_3")
    assert [p.kind for p in ds.problems] == ["inferred-classes"]
    assert ds.label(0).max() == 3


def test_generic_binary_0_255_masks_are_two_classes(tmp_path):
    root = tmp_path / "bin"
    save_png(root / "images" / "a.jpg".replace(".jpg", ".png"), rgb(4, 4))
    save_png(root / "labels" / "a.png", np.array([[0, 255, 0, 255]] * 4, np.uint8))
    ds = open_dataset(root)
    assert ds.classes.num_classes == 2 and "binary mask" in ds.problems[0]
    assert ds.label(0).tolist() == [[0, 1, 0, 1]] * 4


def test_generic_colour_labels_without_spec_is_an_error_listing_colours(tmp_path):
    root = make_generic(tmp_path / "ds", n=1, classes=2, colors=True, spec=False)
    with pytest.raises(DataError, match=r"colour label maps \(2 colours") as e:
        open_dataset(root)
    assert e.value.path == root
    assert "--classes FILE" in str(e.value) and "--reference-classes FILE" in str(e.value)


def test_generic_nested_folders_and_spec_in_parent(tmp_path):
    root = tmp_path / "proj" / "train"
    save_png(root / "images" / "town a" / "x.png", rgb(3, 3))
    save_png(root / "labels" / "town a" / "x.png", np.ones((3, 3), np.uint8))
    (tmp_path / "proj" / "classes.yaml").write_text("names: [bg, fg]\n")
    ds = open_dataset(root)
    assert ds[0].name == "town a/x" and ds.classes.names == ("bg", "fg")
    assert ds.label(0).tolist() == [[1] * 3] * 3


def test_generic_with_class_map(tmp_path):
    root = make_generic(tmp_path / "ds", n=1, classes=3)
    m = tmp_path / "m.yaml"
    m.write_text("classes: [x, y]\nmap: {x: [c0], y: [2]}\n")
    ds = open_dataset(root, class_map=m)
    assert ds.classes.names == ("x", "y")
    raw = np.arange(48).reshape(6, 8) % 3
    expected = np.select([raw == 0, raw == 2], [0, 1], 255)
    assert ds.label(0).tolist() == expected.tolist()


def test_generic_unlabelled_when_no_labels_folder(tmp_path):
    save_png(tmp_path / "d" / "images" / "a.png", rgb(3, 3))
    ds = open_dataset(tmp_path / "d")
    assert not ds.has_labels and ds.label(0) is None and ds.problems[0].kind == "no-labels"
    with pytest.raises(DataError, match="labels required"):
        open_dataset(tmp_path / "d", require_labels=True)


# -- supervisely ---------------------------------------------------------------------------
def test_supervisely_bitmap_polygon_hole_and_overlap(tmp_path, unchanged):
    ds_dir = make_supervisely(tmp_path)
    check = unchanged(tmp_path)
    assert detect_format(ds_dir) == "supervisely"
    ds = open_dataset(ds_dir)
    assert ds.classes.names == ("background", "cracks", "plate")
    assert ds.classes.colors[1] == (7, 255, 0)
    assert [s.name for s in ds] == ["a b é", "empty"]
    with pytest.warns(RuntimeWarning, match="geometry 'point' has no area"):
        lab = ds.label(0)
    expected = np.zeros((10, 12), np.uint8)
    expected[1:9, 1:9] = 2
    expected[4:6, 4:6] = 0  # inside the hole (its outline belongs to the polygon, as in the SDK)
    expected[5, 2:6] = 1  # bitmap row 1 at origin (x=2, y=4): drawn later, so it wins
    assert lab.tolist() == expected.tolist()
    assert ds.label(1).tolist() == np.zeros((10, 12)).tolist()  # empty annotation: background
    check()


def test_supervisely_meta_in_parent_and_project_root(tmp_path):
    make_supervisely(tmp_path, meta_in_parent=True)
    ds = open_dataset(tmp_path / "ds0")
    assert ds.classes.names == ("background", "cracks", "plate")
    proj = open_dataset(tmp_path)
    assert proj.format == "supervisely" and [s.name for s in proj] == ["ds0/a b é", "ds0/empty"]


def test_supervisely_all_empty_annotations_mean_unlabelled(tmp_path):
    d = tmp_path / "unl"
    (d / "ann").mkdir(parents=True)
    for i in range(3):
        save_jpeg(d / "img" / f"{i}.jpg", rgb(5, 5, i))
        (d / "ann" / f"{i}.jpg.json").write_text(
            '{"size": {"height": 5, "width": 5}, "objects": []}'
        )
    (tmp_path / "meta.json").write_text('{"classes": [{"title": "cracks", "color": "#07FF00"}]}')
    ds = open_dataset(d)
    assert len(ds) == 3 and ds.num_labelled == 0 and ds.problems[0].kind == "empty-annotations"


def test_supervisely_without_meta_takes_classes_from_annotations(tmp_path):
    d = make_supervisely(tmp_path, with_meta=False)
    ds = open_dataset(d)
    assert ds.classes.names == ("background", "plate", "cracks")
    assert any(p.kind == "no-meta" for p in ds.problems)


def test_supervisely_unknown_class_and_bad_json_name_the_file(tmp_path):
    d = make_supervisely(tmp_path)
    ann = d / "ann" / "empty.jpg.json"
    ann.write_text(json.dumps({"size": {"height": 10, "width": 12}, "objects": [
        {"classTitle": "dent", "geometryType": "polygon", "points": {"exterior": [[0, 0], [3, 0], [3, 3]]}}
    ]}))  # fmt: skip
    ds = open_dataset(d)
    with pytest.raises(DataError, match="class 'dent', which is not in meta.json") as e:
        ds.label(1)
    assert e.value.path == ann
    ann.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        open_dataset(d).label(1)


def test_supervisely_size_mismatch(tmp_path):
    d = make_supervisely(tmp_path)
    ann = d / "ann" / "empty.jpg.json"
    ann.write_text('{"size": {"height": 11, "width": 12}, "objects": []}')
    with pytest.raises(
        DataError, match=r"label map is 11x12 \(HxW\) but its image empty.jpg is 10x12"
    ):
        open_dataset(d).label(1)


def test_supervisely_with_class_spec_and_class_map(tmp_path):
    d = make_supervisely(tmp_path)
    ds = open_dataset(d, classes=ClassSpec(("background", "plate", "cracks")))
    with pytest.warns(RuntimeWarning):
        lab = ds.label(0)
    assert lab[5, 3] == 2 and lab[2, 2] == 1
    m = tmp_path / "m.yaml"
    m.write_text("classes: [bg, defect]\nmap: {bg: background, defect: [cracks]}\n")
    ds = open_dataset(d, class_map=m)
    with pytest.warns(RuntimeWarning):
        lab = ds.label(0)
    assert lab[5, 3] == 1 and lab[2, 2] == 255 and lab[0, 0] == 0  # plate unmapped -> ignore


# -- cityscapes / gta5 ---------------------------------------------------------------------
RAW_IDS = np.array([[7, 8, 11, 26, 0, 33, 31, 4], [24, 25, 23, 21, 14, 19, 20, 2]], np.uint8)
TRAIN = [[0, 1, 2, 13, 255, 18, 16, 255], [11, 12, 10, 8, 255, 6, 7, 255]]


def make_cityscapes(root, train_ids=False):
    for split, city, n in (("train", "aachen", 2), ("val", "lindau", 1)):
        for i in range(n):
            stem = f"{city}_{i:06d}_000019"
            save_png(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", rgb(2, 8, i))
            gt = root / "gtFine" / split / city
            if train_ids:
                lab = np.array(TRAIN, np.uint8)
                save_png(gt / f"{stem}_gtFine_labelTrainIds.png", lab)
            else:
                save_png(gt / f"{stem}_gtFine_labelIds.png", RAW_IDS)
            save_png(gt / f"{stem}_gtFine_color.png", rgb(2, 8))  # present in real downloads
    return root


@pytest.mark.parametrize("train_ids", [False, True])
def test_cityscapes_train_ids(tmp_path, train_ids, unchanged):
    root = make_cityscapes(tmp_path / "cs", train_ids)
    check = unchanged(root)
    assert detect_format(root) == "cityscapes"
    ds = open_dataset(root)
    assert ds.classes == CITYSCAPES and len(ds) == 3 and ds.has_labels
    assert ds[0].name == "train/aachen/aachen_000000_000019"
    assert ds.label(0).tolist() == TRAIN
    val = open_dataset(root / "leftImg8bit" / "val")
    assert [s.name for s in val] == ["lindau/lindau_000000_000019"] and val.label(
        0
    ).tolist() == TRAIN
    check()


def test_cityscapes_to_camvid_by_name(tmp_path):
    root = make_cityscapes(tmp_path / "cs")
    ds = open_dataset(root, class_map="cityscapes_to_camvid")
    assert ds.classes == CAMVID
    lab = ds.label(0)
    cv = {n: i for i, n in enumerate(CAMVID.names)}
    assert lab[0, 0] == cv["road"] and lab[0, 1] == cv["pavement"] and lab[0, 3] == cv["car"]
    assert lab[1, 0] == cv["pedestrian"] and lab[1, 1] == cv["bicyclist"] and lab[0, 4] == 255


def test_cityscapes_rejects_other_classes(tmp_path):
    root = make_cityscapes(tmp_path / "cs")
    with pytest.raises(ConfigError, match="class map"):
        open_dataset(root, classes=ClassSpec(("a", "b")))


def make_gta5(root, palette=True):
    pal = [c for _, _, _, c in CITYSCAPES_LABELS] if palette else None
    for i in range(2):
        save_png(root / "images" / f"{i + 1:05d}.png", rgb(2, 8, i))
        save_png(
            root / "labels" / f"{i + 1:05d}.png",
            RAW_IDS,
            mode="P" if palette else None,
            palette=pal,
        )
    return root


def test_gta5_detected_by_cityscapes_palette_and_train_ids(tmp_path):
    root = make_gta5(tmp_path / "GTA5")
    assert detect_format(root) == "gta5"
    ds = open_dataset(root)
    assert ds.format == "gta5" and ds.classes == CITYSCAPES
    assert ds.label(1).tolist() == TRAIN


def test_gta5_without_palette_needs_explicit_format(tmp_path):
    root = make_gta5(tmp_path / "g", palette=False)
    assert detect_format(root) == "generic"  # indistinguishable from an index-PNG dataset
    ds = open_dataset(root, format="gta5")
    assert ds.label(0).tolist() == TRAIN
    (root / "classes.yaml").write_text("names: [" + ", ".join(f"k{i}" for i in range(34)) + "]\n")
    make_gta5(root)  # palette PNGs, but a classes.yaml says it is a generic dataset
    assert detect_format(root) == "generic"


# -- camvid --------------------------------------------------------------------------------
def test_camvid_segnet_layout(tmp_path):
    root = tmp_path / "CamVid"
    for split in ("train", "val"):
        save_png(root / split / "0001TP_006690.png", rgb(2, 6))
        save_png(
            root / f"{split}annot" / "0001TP_006690.png",
            np.array([[0, 3, 4, 10, 11, 8]] * 2, np.uint8),
        )
    assert detect_format(root) == "camvid"
    ds = open_dataset(root)
    assert ds.classes == CAMVID and [s.name for s in ds] == [
        "train/0001TP_006690",
        "val/0001TP_006690",
    ]
    assert ds.label(0).tolist() == [[0, 3, 4, 10, 255, 8]] * 2
    one = open_dataset(root / "train")
    assert one.format == "camvid" and [s.name for s in one] == ["0001TP_006690"]


def test_camvid_kaggle_colour_layout_with_class_dict(tmp_path):
    root = tmp_path / "camvid"
    (root).mkdir()
    (root / "class_dict.csv").write_text(
        "name,r,g,b\nRoad,128,64,128\nSky,128,128,128\nVoid,0,0,0\n"
    )
    save_png(root / "train" / "f1.png", rgb(1, 3))
    save_png(
        root / "train_labels" / "f1_L.png",
        np.array([[[128, 64, 128], [0, 0, 0], [128, 128, 128]]], np.uint8),
    )
    ds = open_dataset(root)
    assert ds.format == "camvid" and ds.classes.names == ("Road", "Sky")
    assert ds.label(0).tolist() == [[0, 255, 1]]


# -- images --------------------------------------------------------------------------------
def test_image_folder_is_unlabelled(tmp_path):
    save_jpeg(tmp_path / "refs" / "a.jpg", rgb(4, 4))
    save_png(tmp_path / "refs" / "sub" / "b.png", rgb(4, 4))
    (tmp_path / "refs" / "notes.txt").write_text("x")
    assert detect_format(tmp_path / "refs") == "images"
    ds = open_dataset(tmp_path / "refs")
    assert [s.name for s in ds] == ["a", "sub/b"] and not ds.has_labels
    assert ds.classes.names == ("unknown",) and ds.problems[0].kind == "ignored-file"
    assert open_dataset(tmp_path / "refs", classes=ClassSpec(("a", "b"))).classes.names == (
        "a",
        "b",
    )


def test_images_format_on_a_generic_folder_reads_images_only(tmp_path):
    root = make_generic(tmp_path / "ds", n=2)
    ds = open_dataset(root, format="images")
    assert len(ds) == 2 and ds.num_labelled == 0 and ds.classes.names == ("c0", "c1", "c2")


# -- detection and arguments ---------------------------------------------------------------
def test_detect_errors(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        detect_format(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty folder"):
        open_dataset(tmp_path / "empty")
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "a.txt").write_text("x")
    with pytest.raises(DataError, match="no dataset found"):
        detect_format(tmp_path / "txt")
    f = tmp_path / "file.png"
    f.write_bytes(b"x")
    with pytest.raises(DataError, match="not a folder"):
        open_dataset(f)
    with pytest.raises(ConfigError, match="unknown dataset format"):
        open_dataset(tmp_path / "txt", format="coco")


def test_a_folder_of_datasets_asks_for_one(tmp_path):
    make_generic(tmp_path / "root" / "synthetic")
    make_generic(tmp_path / "root" / "real")
    with pytest.raises(DataError, match="holds 2 datasets \\(real, synthetic\\)"):
        open_dataset(tmp_path / "root")


def test_every_format_can_be_named():
    assert set(FORMATS) == {"generic", "supervisely", "cityscapes", "gta5", "camvid", "images"}


def test_generic_masks_folder_and_label_suffixes(tmp_path):
    root = tmp_path / "kaggle"
    for n in ("a", "b", "c"):
        save_png(root / "images" / f"{n}.png", rgb(2, 2))
    save_png(root / "masks" / "a_mask.png", np.ones((2, 2), np.uint8))
    save_png(root / "masks" / "b.png", np.zeros((2, 2), np.uint8))
    save_png(root / "masks" / "c_gt.png", np.ones((2, 2), np.uint8))
    ds = open_dataset(root, classes=ClassSpec(("bg", "fg")))
    assert ds.has_labels and [s.label_path.name for s in ds] == ["a_mask.png", "b.png", "c_gt.png"]
    assert ds.label(0).tolist() == [[1, 1], [1, 1]]


def test_datasets_pickle_for_worker_processes(tmp_path):
    import pickle

    ds = open_dataset(make_generic(tmp_path / "g", n=2, spec=False))
    back = pickle.loads(pickle.dumps(ds))
    assert np.array_equal(back.label(1), ds.label(1))
    assert back.problems == ds.problems and back.problems[0].kind == "inferred-classes"
    sv = open_dataset(make_supervisely(tmp_path / "sv"))
    back = pickle.loads(pickle.dumps(sv))
    assert np.array_equal(back.label(1), sv.label(1)) and back.classes == sv.classes
