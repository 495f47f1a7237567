"""inspect: the report's numbers and the CLI rendering (tables and --json)."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from synth2real.cli import app
from synth2real.data.checks import inspect_dataset
from synth2real.data.readers import open_dataset
from tests.data.helpers import make_generic, rgb, save_png

runner = CliRunner()


def _known(root):
    """Two 2x4 images with known class pixels: class 0: 7, class 1: 5, class 2: 2, ignore: 2."""
    save_png(root / "images" / "a.png", rgb(2, 4))
    save_png(root / "images" / "b.png", rgb(2, 4, 1))
    save_png(root / "images" / "c.png", rgb(3, 3))  # unlabelled
    save_png(root / "labels" / "a.png", np.array([[0, 0, 1, 1], [0, 0, 255, 255]], np.uint8))
    save_png(root / "labels" / "b.png", np.array([[0, 0, 0, 1], [1, 1, 2, 2]], np.uint8))
    (root / "classes.yaml").write_text(
        "names: [bg, thing, thin]\ncolors: [[0,0,0],[9,9,9],[200,0,0]]\n"
    )
    return root


def test_report_counts_shares_and_sizes(tmp_path, unchanged):
    root = _known(tmp_path / "k")
    check = unchanged(root)
    for workers in (1, 3):
        rep = inspect_dataset(root, workers=workers, progress=False)
        assert rep.format == "generic" and rep.classes == ["bg", "thing", "thin"]
        assert (rep.num_samples, rep.num_labelled, rep.num_unlabelled) == (3, 2, 1)
        assert rep.class_pixels == [7, 5, 2] and rep.ignored_pixels == 2
        assert np.allclose(rep.class_pixel_share, [7 / 16, 5 / 16, 2 / 16])
        assert abs(sum(rep.class_pixel_share) + rep.ignored_share - 1) < 1e-12
        assert rep.images_per_class == [2, 2, 1] and rep.share("thin") == 2 / 16
        assert rep.image_sizes == {"2x4": 2, "3x3": 1}
        assert rep.size_stats["height"] == {"min": 2.0, "median": 2.0, "max": 3.0}
        assert rep.bad_samples == [] and rep.num_errors == 0
        assert [p["kind"] for p in rep.problems] == ["missing-label"]
        json.dumps(rep.to_dict())  # plain types only
    check()


def test_inspect_accepts_an_open_dataset(tmp_path):
    ds = open_dataset(make_generic(tmp_path / "d", n=2, classes=2))
    rep = inspect_dataset(ds.select(["s1"]), progress=False)
    assert rep.num_samples == 1 and rep.class_pixels == [24, 24]


def test_cli_json(tmp_path):
    root = _known(tmp_path / "k")
    res = runner.invoke(app, ["inspect", str(root), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["num_labelled"] == 2 and data["class_pixels"] == [7, 5, 2]
    assert data["problems"][0]["kind"] == "missing-label"


def test_cli_tables_and_strict(tmp_path):
    root = _known(tmp_path / "k")
    res = runner.invoke(app, ["inspect", str(root)])
    assert res.exit_code == 0, res.output
    for words in (
        "generic",
        "3 images: 2 labelled, 1 unlabelled",
        "thin",
        "12.500 %",
        "missing-label",
    ):
        assert words in res.output
    assert runner.invoke(app, ["inspect", str(root), "--strict"]).exit_code == 0
    save_png(root / "labels" / "a.png", np.full((2, 4), 7, np.uint8))  # unknown id
    res = runner.invoke(app, ["inspect", str(root), "--strict"])
    assert res.exit_code == 1 and "label ids 7" in res.output


def test_cli_names_a_problem_file_inside_the_dataset_whole_at_any_width(tmp_path):
    root = _known(tmp_path / ("x" * 60) / "k")
    res = CliRunner(env={"COLUMNS": "40"}).invoke(app, ["inspect", str(root)])
    assert res.exit_code == 0, res.output
    row = next(line for line in res.output.splitlines() if "missing-label" in line)
    assert " images/c.png " in row and str(root) not in row  # the root is printed above


def test_cli_options_reach_the_reader(tmp_path):
    root = make_generic(tmp_path / "d", n=1, classes=3)
    m = tmp_path / "map.yaml"
    m.write_text("classes: [x]\nmap: {x: [0]}\n")
    res = runner.invoke(app, ["inspect", str(root), "--class-map", str(m), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["classes"] == ["x"]
    res = runner.invoke(app, ["inspect", str(root), "--format", "images", "--json"])
    assert json.loads(res.stdout)["num_labelled"] == 0


def test_cli_error_is_reported_without_traceback(tmp_path):
    import subprocess
    import sys

    (tmp_path / "empty").mkdir()
    res = subprocess.run(
        [sys.executable, "-m", "synth2real", "inspect", str(tmp_path / "empty")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 2 and "empty folder" in res.stderr and "Traceback" not in res.stderr
