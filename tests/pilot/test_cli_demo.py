"""``synth2real pilot`` and ``synth2real demo`` from the command line, on tiny budgets."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from synth2real.cli import app
from synth2real.errors import ConfigError, OutputExistsError
from synth2real.pilot import parse_budget, parse_seeds
from synth2real.pilot.demo import run_demo
from tests.pilot.fixtures import make_tiny_pilot_data


def test_parse_budget_aliases_yaml_values_and_nested_lists():
    b = parse_budget("iterations=30,batch=2,lr=3e-4,model_kwargs={channels: [4, 8]}", {"crop": 64})
    assert b == {
        "crop": 64,
        "iterations": 30,
        "batch_size": 2,
        "lr": 3e-4,
        "model_kwargs": {"channels": [4, 8]},
    }
    with pytest.raises(ConfigError, match="key=value"):
        parse_budget("iterations")


def test_parse_seeds():
    assert parse_seeds(3) == [0, 1, 2] and parse_seeds("2") == [0, 1]
    assert parse_seeds("4,7") == [4, 7]
    assert parse_seeds("7,") == [7]  # one named seed
    for bad, says in (("0", "is a count"), ("a", "a count or a comma list"), ("1,1", "distinct")):
        with pytest.raises(ConfigError, match=says):
            parse_seeds(bad)


def test_pilot_command_end_to_end(tmp_path):
    paths = make_tiny_pilot_data(tmp_path / "data")
    (tmp_path / "refs.txt").write_text("# the references\nr00\nr01.png\n")
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"test": ["t00", "t01", "t02"]}))
    args = [
        "pilot", "--source", str(paths["source"]), "--references", str(paths["references"]),
        "--reference-names", str(tmp_path / "refs.txt"), "--test", str(paths["test"]),
        "--test-names", f"{splits}:test", "--methods", "reinhard", "--seeds", "1",
        "--budget", "iterations=2,batch=2,crop=32,warmup=0,model_kwargs={channels: [4, 8]}",
        "--device", "cpu", "--metric", "iou:line", "--param", "reinhard.strength=0.5",
        "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    results = json.loads((tmp_path / "out/results.json").read_text())
    assert len(results["runs"]) == 5
    assert results["budget"]["iterations"] == 2 and results["budget"]["batch_size"] == 2
    assert results["config"]["method_params"] == {"reinhard": {"strength": 0.5}}
    assert results["translations"]["reinhard"]["params"]["strength"] == 0.5
    assert results["data"]["reference_names"] == ["r00", "r01"]
    assert res.output.count("report.html") == 1  # printed once, after the verdict
    assert "note: Only one seed per setting" in " ".join(res.output.split())
    counted = sorted(ln.split()[1] for ln in res.output.splitlines() if ln.startswith("  -> "))
    assert counted == ["1/5", "2/5", "3/5", "4/5", "5/5"]  # each run's line says how far
    assert len(list((tmp_path / "cache/translated/reinhard/images").glob("*.png"))) == 6
    assert not (tmp_path / "out/translated").exists()
    # the same command again without --resume refuses to touch the pilot
    again = CliRunner().invoke(app, args)
    assert again.exit_code != 0 and "--resume" in str(again.exception)


def test_demo_runs_on_generated_toy_data(tmp_path):
    budget = {
        "iterations": 2,
        "batch_size": 2,
        "crop": 32,
        "warmup": 0,
        "model_kwargs": {"channels": [4, 8]},
    }
    r = run_demo(tmp_path / "demo", seeds=1, methods=["reinhard"], budget=budget, progress=False)
    assert r.report.is_file()
    assert {x["setting"] for x in r.results["runs"]} == {
        "source-only", "real-only", "source+real", "translated", "translated+real"
    }  # fmt: skip
    assert r.results["config"]["budget_name"] == "demo"
    assert r.results["classes"] == ["background", "plate", "scratch"]
    # a second call resumes: nothing is trained again
    r2 = run_demo(tmp_path / "demo", seeds=1, methods=["reinhard"], budget=budget, progress=False)
    assert r2.ran == 0 and r2.skipped == 5


def test_demo_command_takes_the_pilots_budget_option(tmp_path):
    """The note of a within-noise verdict tells a demo user to rerun with
    ``--budget iterations=N``: the demo parses it as the pilot does, over its own budget."""
    out = tmp_path / "demo"
    bad = CliRunner().invoke(app, ["demo", "--out", str(out), "--budget", "iterations=0"])
    assert isinstance(bad.exception, ConfigError)  # exit 2 and one line from the CLI's main
    assert str(bad.exception).startswith("--budget: TrainConfig.iterations")
    assert not out.exists()  # refused before the toy data is written
    args = ["demo", "--out", str(out), "--seeds", "1", "--jobs", "1", "--budget",
            "iterations=2,batch=2,warmup=0,model_kwargs={channels: [4, 8]}"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    budget = json.loads((out / "pilot/results.json").read_text())["budget"]
    # the overrides, over the demo's own crop (64), not the pilot's default (128)
    assert (budget["iterations"], budget["batch_size"], budget["crop"]) == (2, 2, 64)
    # another budget into the same folder is refused, naming what changed, before any run
    args[args.index("--budget") + 1] = (
        "iterations=3,batch=2,warmup=0,model_kwargs={channels: [4, 8]}"
    )
    other = CliRunner().invoke(app, args)
    assert isinstance(other.exception, OutputExistsError)
    assert "(budget: not the same)" in str(other.exception)
    assert json.loads((out / "pilot/results.json").read_text())["budget"]["iterations"] == 2
