"""The pilot on a sliver of the real cracks set, and the benchmark's RESULTS.md writer."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from synth2real.pilot import PilotConfig, run_pilot
from tests.pilot.fakes import fake_results, plan_means

REPO = Path(__file__).resolve().parents[2]


def _bench_module():
    spec = importlib.util.spec_from_file_location(
        "pilot_cracks", REPO / "benchmarks/pilot_cracks.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_pilot_on_a_sliver_of_cracks(cracks_root, tmp_path):
    """Supervisely folders, splits.json names with extensions, JPEGs of odd sizes."""
    splits = json.loads((cracks_root / "splits.json").read_text())
    cfg = PilotConfig(
        source=cracks_root / "source_synthetic",
        references=cracks_root / "validation",
        test=cracks_root / "validation",
        reference_names=splits["references"][:2],
        test_names=splits["test"][:2],
        source_limit=4,
        methods=["reinhard-cw"],
        seeds=1,
        budget={"iterations": 2, "batch_size": 2, "crop": 64, "max_size": 128, "warmup": 0,
                "model_kwargs": {"channels": [4, 8]}},
        device="cpu",
        metric="iou:cracks",
    )  # fmt: skip
    r = run_pilot(cfg, tmp_path / "out", progress=False)
    assert r.report.is_file()
    assert r.results["classes"] == ["background", "cracks"]
    assert r.results["data"] == {
        "source": 4, "references": 2, "test": 2,
        "reference_names": [Path(n).stem for n in splits["references"][:2]],
    }  # fmt: skip
    assert len(r.results["runs"]) == 5
    # the synthetic images were shrunk once to the training resolution and translated there
    assert len(list((tmp_path / "out/source_max128/images").glob("*.png"))) == 4
    assert (tmp_path / "out/translated-max128/reinhard-cw").is_dir()


def test_results_md_is_rendered_from_the_json(tmp_path):
    bench = _bench_module()
    methods = ["reinhard", "fda"]
    means = plan_means(
        methods,
        {("source-only", None): 0.30, ("real-only", None): 0.35, ("source+real", None): 0.40},
        {"reinhard": {"translated": 0.33, "translated+real": 0.46},
         "fda": {"translated": 0.20, "translated+real": 0.30}},
    )  # fmt: skip
    res = fake_results(means, methods, budget_name="quick")
    res["benchmark"] = {"mode": "quick", "command": "pilot_cracks.py --quick", "wall_seconds": 812.0,
                        "runs_trained_now": 21, "runs_resumed": 0, "commit": "abc1234"}  # fmt: skip
    (tmp_path / "cracks_quick.json").write_text(json.dumps(res))
    md = bench.render_results_md(tmp_path)
    assert "## quick mode" in md and "## full mode" not in md
    assert "| translated+real | reinhard | 0.460 ± 0.010 [0.450..0.470] |" in md
    assert "`reinhard`: **wins**" in md and "`fda`: **hurts**" in md
    assert "Test CPU (2 cores" in md and "iterations=10" in md and "13.5 min" in md
    assert "Seeds**: 0, 1, 2" in md
    assert "No results yet" in bench.render_results_md(tmp_path / "empty")
