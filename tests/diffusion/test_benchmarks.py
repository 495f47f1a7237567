"""The benchmark scripts run end to end in their short modes (tiny shapes, CPU)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load(name: str):
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location(
        f"_s2r_bench_{name}", REPO / "benchmarks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_gpu_benchmark_smoke_mode_runs_every_preset_and_the_reference(tmp_path):
    bench = _load("gpu_diffusion")
    assert (
        bench.main(["--smoke", "--images", "2", "--batch-size", "2", "--out-dir", str(tmp_path)])
        == 0
    )
    record = json.loads((tmp_path / "gpu_diffusion_smoke.json").read_text())
    rows = {r["preset"]: r for r in record["rows"]}
    assert set(rows) == set(bench.PRESETS)
    for preset, row in rows.items():
        ours = row["ours"]
        assert not ours.get("oom") and ours["seconds_per_image"] > 0 and ours["images"] == 2, preset
    for preset in ("cross-image", "cactif"):
        ref = rows[preset]["reference"]
        assert not ref.get("oom") and ref["seconds_per_image"] > 0
        assert ref["extrapolated"]  # 3 of 6 inversion steps, 2 of 3 walk steps timed
    (step,) = record["filter_steps"]
    assert step["max_abs_diff"] < 1e-4  # ours equals the reference re-creation
    md = (tmp_path / "gpu_diffusion_smoke.md").read_text()
    assert "| 64x128 | cactif |" in md and "Do not edit by hand" in md


def test_cpu_filter_benchmark_worker_variants_agree():
    bench = _load("filter_cpu")
    q, k, v = bench.make_inputs(heads=2, tokens=64, head_dim=8)
    ref = bench.run_reference(q, k, v, 0.25, 1.67)
    ours = bench.run_ours(q, k, v, 0.25, 1.67)
    assert ours.shape == ref.shape == (3, 2, 64, 8)
    assert float((ours - ref).abs().max()) < 1e-5
