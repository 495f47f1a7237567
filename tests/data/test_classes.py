"""Class specs and class maps: YAML round trips, validation, decoding through maps."""

from __future__ import annotations

import numpy as np
import pytest

from synth2real.data.classes import (
    CAMVID,
    CITYSCAPES,
    ClassSpec,
    load_class_spec,
    parse_color,
    save_class_spec,
)
from synth2real.data.classmap import (
    Vocabulary,
    builtin_class_maps,
    load_class_map,
    spec_decoder,
)
from synth2real.errors import ConfigError, DataError


def test_class_spec_yaml_round_trip(tmp_path):
    spec = ClassSpec(
        ("background", "plate", "scratch"), colors=((0, 0, 0), (0, 160, 255), (255, 60, 0))
    )
    save_class_spec(spec, tmp_path / "classes.yaml")
    back = load_class_spec(tmp_path / "classes.yaml")
    assert back == spec and back.colors == spec.colors and back.ignore_index == 255


def test_class_spec_accepts_hex_colours_and_class_entries(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("names: [a, b]\ncolors: ['#ff0000', [0, 255, 0]]\nignore_index: 200\n")
    spec = load_class_spec(f)
    assert spec.colors == ((255, 0, 0), (0, 255, 0)) and spec.ignore_index == 200
    f.write_text(
        "classes:\n  - {name: road, color: '#804080'}\n  - {name: car, color: [0, 0, 142]}\n"
    )
    assert load_class_spec(f).names == ("road", "car")
    f.write_text("- x\n- y\n")
    assert load_class_spec(f).names == ("x", "y")


@pytest.mark.parametrize(
    "text, words",
    [
        ("names: [a, a]\n", "duplicate"),
        ("colors: [[1, 2, 3]]\n", "missing 'names'"),
        ("names: [a, b]\ncolors: [[1, 2, 3]]\n", "one colour per class"),
        ("names: [a, b]\ncolors: [[1, 2, 3], [1, 2, 3]]\n", "share the colour"),
        ("names: [a, b]\ncolors: [[1, 2, 300], [1, 2, 3]]\n", "not a colour"),
        ("names: [a, b]\nignore_index: 1\n", "collides"),
        ("names: [a\n", "not valid YAML"),
    ],
)
def test_bad_class_spec_names_the_file(tmp_path, text, words):
    f = tmp_path / "bad classes.yaml"
    f.write_text(text)
    with pytest.raises((DataError, ValueError)) as e:
        load_class_spec(f)
    assert words in str(e.value)
    if isinstance(e.value, DataError):
        assert e.value.path == f


def test_parse_color():
    assert parse_color("#07FF00") == (7, 255, 0)
    assert parse_color([1, 2, 3]) == (1, 2, 3)
    for bad in ("07FF00", [1, 2], [1.5, 2, 3], "#GG0000"):
        with pytest.raises(ValueError):
            parse_color(bad)


def test_presets():
    assert CITYSCAPES.num_classes == 19 and CITYSCAPES.names[0] == "road"
    assert CITYSCAPES.names[18] == "bicycle" and CITYSCAPES.colors[13] == (0, 0, 142)
    assert CAMVID.num_classes == 11 and CAMVID.names[4] == "pavement"


def test_spec_decoder_ids_colours_and_errors():
    spec = ClassSpec(("a", "b", "c"), colors=((0, 0, 0), (255, 0, 0), (0, 255, 0)))
    dec = spec_decoder(spec)
    ids = np.array([[0, 1, 2, 255]], np.uint8)
    assert dec(ids, "x.png").tolist() == [[0, 1, 2, 255]]
    cols = np.array([[[0, 0, 0], [255, 0, 0], [0, 255, 0]]], np.uint8)
    assert dec(cols, "x.png").tolist() == [[0, 1, 2]]
    with pytest.raises(DataError, match=r"label ids 3, 7 are not in the class spec") as e:
        dec(np.array([[3, 7, 0]], np.uint8), "lab.png")
    assert str(e.value.path) == "lab.png"
    with pytest.raises(DataError, match=r"colours \[1, 2, 3\] are not in"):
        dec(np.array([[[1, 2, 3]]], np.uint8), "lab.png")
    grey = np.repeat(np.array([[0, 2]], np.uint8)[..., None], 3, axis=2)
    nocol = spec_decoder(ClassSpec(("a", "b", "c")))
    assert nocol(grey, "g.png").tolist() == [[0, 2]]  # index map saved as grey RGB
    with pytest.raises(DataError, match="has no colours"):
        nocol(cols, "c.png")


def test_palette_labels_decode_through_colours_only_when_all_colours_are_class_colours():
    spec = ClassSpec(("a", "b"), colors=((10, 10, 10), (200, 0, 0)))
    dec = spec_decoder(spec)
    pal = np.zeros((256, 3), np.uint8)
    pal[0], pal[1] = (200, 0, 0), (10, 10, 10)  # an editor's palette: index order swapped
    raw = np.array([[0, 1]], np.uint8)
    assert dec(raw, "p.png", pal).tolist() == [[1, 0]]  # colours win
    pal2 = np.zeros((256, 3), np.uint8)
    pal2[1] = (5, 6, 7)  # colours unknown: indices are the classes (VOC convention)
    assert dec(raw, "p.png", pal2).tolist() == [[0, 1]]


def test_class_map_ids_names_colours_and_unmapped(tmp_path):
    f = tmp_path / "map.yaml"
    f.write_text(
        "classes: {names: [bg, thing]}\n"
        "map:\n  bg: [0, sky]\n  thing: [7, '#ff0000']\n"
        "unmapped: ignore\n"
    )
    cmap = load_class_map(f)
    vocab = Vocabulary(names={0: "unlabeled", 3: "Sky", 7: "car"}, colors={(255, 0, 0): 9})
    dec, notes = cmap.decoder(vocab)
    assert notes == []
    raw = np.array([[0, 3, 7, 9, 42]], np.uint8)
    assert dec(raw, "r.png").tolist() == [[0, 0, 1, 1, 255]]
    cols = np.array([[[255, 0, 0], [1, 1, 1]]], np.uint8)
    assert dec(cols, "r.png").tolist() == [[1, 255]]  # unmapped colours are ignored too


def test_class_map_unmapped_class_and_id_channel(tmp_path):
    f = tmp_path / "map.yaml"
    f.write_text("classes: [other, road]\nmap: {road: 1}\nunmapped: other\nid_channel: red\n")
    dec, _ = load_class_map(f).decoder(Vocabulary())
    raw = np.array([[[1, 50, 60], [5, 1, 1]]], np.uint8)  # CARLA raw: id in the red channel
    assert dec(raw, "r.png").tolist() == [[1, 0]]


@pytest.mark.parametrize(
    "text, words",
    [
        ("map: {a: 1}\n", "missing 'classes'"),
        ("classes: [a]\nmap: {b: 1}\n", "not a target class"),
        ("classes: [a, b]\nmap: {a: 1, b: 1}\n", "mapped to both"),
        ("classes: [a]\nmap: {a: 1}\nunmapped: zz\n", "neither 'ignore'"),
        ("classes: [a]\nmap: {a: 1}\nid_channel: alpha\n", "id_channel"),
        ("classes: nosuchpreset\nmap: {a: 1}\n", "neither a preset"),
        ("classes: [a]\nmap: {a: 1}\nextra: 2\n", "unknown keys"),
    ],
)
def test_bad_class_map_names_the_file(tmp_path, text, words):
    f = tmp_path / "map.yaml"
    f.write_text(text)
    with pytest.raises(DataError) as e:
        load_class_map(f).decoder(Vocabulary())
    assert words in str(e.value) and e.value.path == f


def test_class_map_with_no_matching_names_is_an_error(tmp_path):
    f = tmp_path / "map.yaml"
    f.write_text("classes: [a]\nmap: {a: [road, car]}\n")
    with pytest.raises(DataError, match="none of its source class names"):
        load_class_map(f).decoder(Vocabulary(names={0: "crack"}))
    dec, notes = load_class_map(f).decoder(Vocabulary(names={0: "road"}))
    assert "car" in notes[0]


def test_builtin_class_maps_load_and_resolve():
    maps = builtin_class_maps()
    assert {"carla_to_cityscapes", "cityscapes_to_camvid"} <= set(maps)
    carla = load_class_map("carla_to_cityscapes")
    assert carla.classes.names == CITYSCAPES.names
    dec, _ = carla.decoder(Vocabulary())
    raw = np.array([[1, 2, 14, 24, 0, 11]], np.uint8)  # roads, sidewalks, car, roadline, none, sky
    assert dec(raw, "c.png").tolist() == [[0, 1, 13, 0, 255, 10]]
    cs2cv = load_class_map("cityscapes_to_camvid")
    assert cs2cv.classes.names == CAMVID.names
    with pytest.raises(ConfigError, match="built-in"):
        load_class_map("no_such_map")
