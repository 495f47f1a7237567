"""Hostile or broken inputs of issue 10: each is a DataError naming the file, or handled
as documented (docs/DATA.md, "Bad input"). Every test checks its input is unchanged."""

from __future__ import annotations

import json
import logging
import os
import struct
import warnings
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from synth2real.data.checks import inspect_dataset
from synth2real.data.io import (
    atomic_copy,
    atomic_write_bytes,
    atomic_write_text,
    image_size,
    read_image,
    write_image_atomic,
)
from synth2real.data.readers import open_dataset
from synth2real.errors import DataError
from tests.data.helpers import bitmap_object, make_generic, make_supervisely, rgb, save_png


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width x height`` (8-bit grey) and holds no pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


# -- decompression bombs -------------------------------------------------------------------
def test_png_claiming_100000_squared_pixels_is_an_error_naming_the_file(tmp_path, unchanged):
    root = make_generic(tmp_path / "d", n=2)
    bomb = root / "images" / "s1.png"
    bomb.write_bytes(png_header_only(100_000, 100_000))
    check = unchanged(root)
    ds = open_dataset(root)  # listing reads no pixels
    for read in (ds.image, lambda i: ds.pair(i)):
        with pytest.raises(DataError, match="too large to decode safely") as e:
            read(1)
        assert e.value.path == bomb and str(bomb) in str(e.value)
    with pytest.raises(DataError, match="too large") as e:
        image_size(bomb)
    assert e.value.path == bomb
    rep = inspect_dataset(root, progress=False)  # collected, not raised
    assert rep.bad_samples == ["s1"] and rep.problems[0]["kind"] == "unreadable-image"
    assert rep.problems[0]["path"] == str(bomb) and "too large" in rep.problems[0]["message"]
    assert ds.image(0).shape == (6, 8, 3)  # the other samples still read
    check()


def test_large_image_is_a_logged_notice_naming_the_file_not_a_python_warning(
    tmp_path, unchanged, caplog
):
    big = tmp_path / "in" / "big.png"
    big.parent.mkdir()
    big.write_bytes(png_header_only(10_000, 10_000))  # 1e8 pixels: Pillow warns, not fails
    check = unchanged(big.parent)
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        assert image_size(big) == (10_000, 10_000)
        image_size(big)  # the notice is given once per file
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    notes = [r for r in caplog.records if r.name == "synth2real.data"]
    assert len(notes) == 1 and notes[0].levelno == logging.WARNING
    msg = notes[0].getMessage()
    assert msg.startswith(f"{big}: ") and "10000x10000" in msg and "100 megapixels" in msg
    check()


def test_the_pixel_limits_follow_pillow_and_real_images_still_decode(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # warn above 1000, refuse above 2000
    pixels = {n: rgb(h, h) for n, h in (("ok", 30), ("big", 40), ("bomb", 50))}
    ok, big, bomb = (save_png(tmp_path / f"{n}.png", a) for n, a in pixels.items())
    with caplog.at_level(logging.WARNING, logger="synth2real.data"):
        assert np.array_equal(read_image(ok), pixels["ok"]) and not caplog.records
        assert np.array_equal(read_image(big), pixels["big"])
    assert [str(big) in r.getMessage() for r in caplog.records] == [True]
    with pytest.raises(DataError, match="too large") as e:
        read_image(bomb)
    assert e.value.path == bomb


def test_header_sizes_read_without_pillow_agree_with_pillow(tmp_path):
    """open_image skips the guard (a lock) only where the header shows a small image."""
    import io

    from synth2real.data.io import _header_size
    from tests.data.helpers import save_jpeg

    files = [save_png(tmp_path / "g.png", np.zeros((5, 7), np.uint8)),
             save_png(tmp_path / "p.png", np.ones((3, 9), np.uint8), mode="P", palette=[(1, 2, 3)]),
             save_png(tmp_path / "w.png", np.zeros((4, 6), np.uint16)),
             save_jpeg(tmp_path / "exif.jpg", rgb(33, 17), orientation=6)]  # fmt: skip
    Image.fromarray(rgb(20, 30)).save(tmp_path / "prog.jpg", progressive=True, quality=80)
    files.append(tmp_path / "prog.jpg")
    for f in files:
        assert _header_size(f) == Image.open(f).size, f.name
        buf = io.BytesIO(b"xx" + f.read_bytes())
        buf.seek(2)
        assert _header_size(buf) == Image.open(f).size and buf.tell() == 2
    Image.fromarray(rgb(4, 4)).save(tmp_path / "t.tif")
    assert _header_size(tmp_path / "t.tif") is None  # other formats: Pillow decides
    assert _header_size(tmp_path / "missing.png") is None
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "prog.jpg").read_bytes()[:30])
    assert _header_size(tmp_path / "cut.jpg") is None


# -- Supervisely annotations ---------------------------------------------------------------
def _object(**kw) -> dict:
    return {"classTitle": "plate", "geometryType": "polygon", **kw}


BAD_ANNOTATIONS = {
    "negative-height": ({"size": {"height": -5}, "objects": []}, "'size' must hold a positive"),
    "height-not-a-number": (
        {"size": {"height": "ten", "width": 12}, "objects": []},
        "'size' must hold a positive",
    ),
    "size-too-large": (
        {"size": {"height": 10**6, "width": 10**6}, "objects": []},
        "size 1000000x1000000 .* above the",
    ),
    "polygon-points-are-strings": (
        {"objects": [_object(points={"exterior": "1,1 8,1 8,8"})]},
        r"object 0 \(plate\) exterior: points must be \[x, y\] number pairs",
    ),
    "polygon-point-strings-in-pairs": (
        {"objects": [_object(points={"exterior": [["a", "b"], [8, 1], [8, 8]]})]},
        "points must be",
    ),
    "polygon-point-nan": (
        {"objects": [_object(points={"exterior": [[float("nan"), 1], [8, 1], [8, 8]]})]},
        "points must be",
    ),
    "bitmap-origin-one-number": (
        {
            "objects": [
                {
                    "classTitle": "cracks",
                    "geometryType": "bitmap",
                    "bitmap": {**bitmap_object(np.ones((2, 2)), [0, 0]), "origin": 5},
                }
            ]
        },
        r"object 0 \(cracks\): bitmap 'origin' must be \[x, y\], found 5",
    ),  # fmt: skip
    "bitmap-data-not-base64": (
        {
            "objects": [
                {
                    "classTitle": "cracks",
                    "geometryType": "bitmap",
                    "bitmap": {"data": "%%%", "origin": [0, 0]},
                }
            ]
        },
        "unreadable bitmap",
    ),  # fmt: skip
    "object-is-a-string": ({"objects": ["not an object"]}, "object 0 is not a JSON object"),
    "objects-not-a-list": ({"objects": {"a": 1}}, "'objects' must be a list"),
    "annotation-is-a-list": ([{"objects": []}], "annotation is not a JSON object"),
    "class-title-not-a-string": (
        {"objects": [{"classTitle": ["plate"], "geometryType": "polygon"}]},
        r"object 0 has class \['plate'\], which is not in meta.json",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_ANNOTATIONS))
def test_malformed_supervisely_annotation_names_the_file(tmp_path, unchanged, case):
    d = make_supervisely(tmp_path)
    ann_data, message = BAD_ANNOTATIONS[case]
    ann = d / "ann" / "empty.jpg.json"
    if isinstance(ann_data, dict) and "size" not in ann_data:
        ann_data = {"size": {"height": 10, "width": 12}, **ann_data}
    ann.write_text(json.dumps(ann_data))
    check = unchanged(tmp_path)
    with pytest.raises(DataError, match=message) as e:
        open_dataset(d).label(1)
    assert e.value.path == ann and str(e.value).startswith(f"{ann}: ")
    check()


def test_bad_annotation_is_an_error_line_with_exit_code_2_from_the_cli(
    tmp_path, capsys, monkeypatch
):
    from synth2real import cli

    d = make_supervisely(tmp_path)
    ann = d / "ann" / "a b é.jpg.json"  # the first annotation: read when the folder is opened
    ann.write_text("[1, 2]")
    monkeypatch.setattr("sys.argv", ["synth2real", "inspect", str(d)])
    with pytest.raises(SystemExit) as e:
        cli.main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    # whitespace ignored: how the console wraps the line is the CLI's test (test_checks.py)
    flat = "".join(err.split())
    assert "".join(f"{ann}: annotation is not a JSON object".split()) in flat


# -- Supervisely geometry ------------------------------------------------------------------
def _one_object_dataset(tmp_path, obj: dict, h: int = 10, w: int = 12):
    d = make_supervisely(tmp_path)
    ann = d / "ann" / "empty.jpg.json"
    ann.write_text(json.dumps({"size": {"height": h, "width": w}, "objects": [obj]}))
    return open_dataset(d), ann


def _polygon(points) -> dict:
    return _object(points={"exterior": points, "interior": []})


def _filled(points, h: int = 10, w: int = 12) -> list:
    """The mask OpenCV draws for integer ``points`` (class 2 = plate)."""
    m = np.zeros((h, w), np.uint8)
    cv2.fillPoly(m, [np.array(points, np.int32).reshape(-1, 1, 2)], 2)
    return m.tolist()


@pytest.mark.parametrize(
    ("far", "near"),
    [
        # a half-plane edge y = x leaving the image: the same line as a nearby vertex
        ([[0, 0], [1e12, 1e12], [0, 1e12]], [[0, 0], [100, 100], [0, 100]]),
        # slope 1/2 through a vertex a trillion pixels away
        ([[0, 0], [1e12, 5e11], [0, 5e11]], [[0, 0], [100, 50], [0, 50]]),
        # a band whose right end lies far outside
        ([[2, 3], [1e12, 3], [1e12, 6], [2, 6]], [[2, 3], [11, 3], [11, 6], [2, 6]]),
        # far to the negative side, and above
        ([[-1e12, 2], [5, 2], [5, -1e12]], [[-100, 2], [5, 2], [5, -100]]),
    ],
)
def test_far_polygon_coordinates_draw_the_right_shape(tmp_path, far, near):
    ds, ann = _one_object_dataset(tmp_path, _polygon(far))
    with pytest.warns(RuntimeWarning, match=r"object 0 \(plate\) reaches outside the image"):
        lab = ds.label(1)
    assert lab.tolist() == _filled(near)


def test_polygon_or_bitmap_outside_the_image_is_a_warning(tmp_path):
    outside = [[20, 20], [30, 20], [30, 30]]
    ds, ann = _one_object_dataset(tmp_path, _polygon(outside))
    with pytest.warns(RuntimeWarning, match=r"object 0 \(plate\) lies outside the image \(10x12\)"):
        assert not ds.label(1).any()
    bm = {"classTitle": "cracks", "geometryType": "bitmap",
          "bitmap": bitmap_object(np.ones((2, 2)), [40, 0])}  # fmt: skip
    ds, ann = _one_object_dataset(tmp_path / "b", bm)
    with pytest.warns(RuntimeWarning, match=r"object 0 \(cracks\) lies outside the image"):
        assert not ds.label(1).any()
    rect = {"classTitle": "plate", "geometryType": "rectangle",
            "points": {"exterior": [[10, 8], [14, 12]]}}  # fmt: skip
    ds, ann = _one_object_dataset(tmp_path / "r", rect)
    with pytest.warns(RuntimeWarning, match="reaches outside the image; clipped"):
        lab = ds.label(1)
    assert np.argwhere(lab == 2).tolist() == [[8, 10], [8, 11], [9, 10], [9, 11]]
    rep = inspect_dataset(ds, progress=False)
    notes = [p for p in rep.problems if p["path"] == str(ann)]
    assert [(p["kind"], p["severity"]) for p in notes] == [("label-note", "warning")]
    assert "object 0 (plate) reaches outside the image; clipped" in notes[0]["message"]


def test_polygon_inside_the_image_gives_no_warning(tmp_path):
    ds, ann = _one_object_dataset(tmp_path, _polygon([[0, 0], [11, 0], [11, 9]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ds.label(1).tolist() == _filled([[0, 0], [11, 0], [11, 9]])


# -- class limit ---------------------------------------------------------------------------
def test_more_than_255_supervisely_classes_need_a_class_map(tmp_path):
    d = make_supervisely(tmp_path)
    meta = {"classes": [{"title": f"k{i}", "color": "#010203"} for i in range(300)]}
    (d / "meta.json").write_text(json.dumps(meta))
    ann = d / "ann" / "empty.jpg.json"
    ann.write_text(json.dumps({"size": {"height": 10, "width": 12}, "objects": [
        {"classTitle": "k280", "geometryType": "rectangle",
         "points": {"exterior": [[1, 1], [2, 2]]}}]}))  # fmt: skip
    (d / "ann" / "a b é.jpg.json").unlink()
    with pytest.raises(DataError, match="301 classes .* at most 255 classes") as e:
        open_dataset(d)
    assert e.value.path == d / "meta.json"
    m = tmp_path / "map.yaml"
    m.write_text("classes: [bg, rare]\nmap: {bg: background, rare: [k280]}\n")
    lab = open_dataset(d, class_map=m).label(1)
    assert lab.dtype == np.uint8 and (lab == 1).sum() == 4 and (lab == 0).sum() == 116


# -- atomic writes -------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_get_the_mode_a_plain_open_gives(tmp_path, umask):
    src = save_png(tmp_path / "src.png", rgb(2, 2))
    old = os.umask(umask)
    try:
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
        atomic_write_bytes(tmp_path / "out" / "a.bin", b"abc")
        atomic_write_text(tmp_path / "out" / "b.txt", "abc")
        atomic_copy(src, tmp_path / "out" / "c.png")
        write_image_atomic(tmp_path / "out" / "d.png", rgb(2, 2))
    finally:
        os.umask(old)
    plain = os.stat(tmp_path / "plain.txt").st_mode & 0o777
    assert plain == 0o666 & ~umask
    for name in ("a.bin", "b.txt", "c.png", "d.png"):
        assert os.stat(tmp_path / "out" / name).st_mode & 0o777 == plain, name
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a.bin",
        "b.txt",
        "c.png",
        "d.png",
    ]  # fmt: skip  (no temporary file left)
    assert (tmp_path / "out" / "c.png").read_bytes() == src.read_bytes()
