"""Parallel training runs on several GPUs, checked on the CPU with a fake device list:
which process trains on which device, a failed run does not stop the others, resume."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from synth2real.data.io import atomic_write_text
from synth2real.errors import RunsFailedError
from synth2real.pilot import devices as pconfig
from synth2real.pilot.config import PilotConfig
from synth2real.pilot.devices import auto_jobs, job_devices, parse_jobs
from synth2real.pilot.runs import Runs, RunSpec, load_finished, run_all, worker_runs

GPUS = ["cuda:0", "cuda:1"]


def fake_work(k: int, spec: RunSpec, runs: Runs) -> tuple[int, dict]:
    """A training run without training (runs in the worker process): records the device
    this process was given; fails where ``OUT/fail`` lists the run."""
    mine = worker_runs(runs)
    started = runs.out / "started"
    started.mkdir(exist_ok=True)
    (started / str(os.getpid())).write_text(mine.cfg.device)
    deadline = time.monotonic() + 30  # every process takes a run before any finishes
    while len(list(started.iterdir())) < runs.cfg.jobs and time.monotonic() < deadline:
        time.sleep(0.02)
    fail = runs.out / "fail"
    if fail.is_file() and spec.label in fail.read_text().splitlines():
        raise RuntimeError(f"boom in {spec.label}")
    rec = {"device": mine.cfg.device, "pid": os.getpid(), "budget_id": runs.budget_id}
    atomic_write_text(runs.out / spec.relpath / "result.json", json.dumps(rec))
    return k, rec


def pilot_runs(tmp_path: Path, jobs: int, device: str = "auto") -> Runs:
    cfg = PilotConfig(source="s", references="r", test="t", methods=[], device=device, jobs=jobs)
    return Runs(cfg, tmp_path, "b1", {}, {}, data={"test": None})


def run(runs: Runs, specs: list[RunSpec]) -> tuple[int, dict]:
    got: dict = {}
    todo = [
        (k, s) for k, s in enumerate(specs) if load_finished(s, runs.out, runs.budget_id) is None
    ]
    for p in (runs.out / "started").glob("*"):
        p.unlink()

    def finished(k, spec, rec, skipped):
        got[spec] = rec

    ran = run_all(todo, runs, runs.cfg.jobs, False, finished, len(specs), work=fake_work)
    return ran, got


SPECS = [RunSpec(s, None, seed) for seed in (0, 1) for s in ("real-only", "source+real")]


def test_each_process_is_pinned_to_one_gpu_and_every_gpu_is_used(tmp_path, monkeypatch):
    monkeypatch.setattr(pconfig, "visible_devices", lambda: list(GPUS))
    ran, got = run(pilot_runs(tmp_path, jobs=2), SPECS)
    assert ran == 4 and set(got) == set(SPECS)
    assert {r["device"] for r in got.values()} == set(GPUS)
    by_pid: dict = {}
    for r in got.values():
        by_pid.setdefault(r["pid"], set()).add(r["device"])
    assert len(by_pid) == 2 and all(len(d) == 1 for d in by_pid.values())
    assert {next(iter(d)) for d in by_pid.values()} == set(GPUS)  # one GPU per process


def test_on_one_device_every_process_trains_there(tmp_path, monkeypatch):
    monkeypatch.setattr(pconfig, "visible_devices", lambda: list(GPUS))
    ran, got = run(pilot_runs(tmp_path, jobs=2, device="cpu"), SPECS)
    assert ran == 4 and {r["device"] for r in got.values()} == {"cpu"}


def test_a_failed_run_does_not_stop_the_others_and_resume_retries_it(tmp_path, monkeypatch):
    monkeypatch.setattr(pconfig, "visible_devices", lambda: list(GPUS))
    runs = pilot_runs(tmp_path, jobs=2)
    bad = [SPECS[1], SPECS[2]]  # source+real seed 0, real-only seed 1
    (tmp_path / "fail").write_text("\n".join(s.label for s in bad))
    with pytest.raises(RunsFailedError) as err:
        run(runs, SPECS)
    msg = str(err.value)
    assert msg.startswith("2 of 4 training runs failed")
    assert all(s.label in msg for s in bad) and "RuntimeError: boom in" in msg
    assert "--resume" in msg
    for s in SPECS:  # the others finished and wrote their results
        assert (load_finished(s, tmp_path, "b1") is None) == (s in bad)
    (tmp_path / "fail").unlink()
    ran, got = run(runs, SPECS)  # only the failed runs are trained again
    assert ran == 2 and set(got) == set(bad)
    assert all(load_finished(s, tmp_path, "b1") is not None for s in SPECS)


def test_auto_jobs_and_job_devices_follow_the_visible_gpus(monkeypatch):
    monkeypatch.setattr(pconfig, "visible_devices", lambda: ["cuda:0", "cuda:1", "cuda:2"])
    assert auto_jobs("auto") == 3 and auto_jobs("cuda") == 3 and parse_jobs("auto", "auto") == 3
    assert job_devices("auto", 3) == ["cuda:0", "cuda:1", "cuda:2"]
    assert job_devices("cuda", 4) == ["cuda:0", "cuda:1", "cuda:2", "cuda:0"]
    assert job_devices("cpu", 2) is None and job_devices("cuda:1", 2) is None
    assert auto_jobs("cpu") == max(1, min(4, os.cpu_count() or 1))
    monkeypatch.setattr(pconfig, "visible_devices", lambda: ["cuda:0"])
    assert auto_jobs("auto") == 1 and job_devices("auto", 2) is None
    monkeypatch.setattr(pconfig, "visible_devices", lambda: [])
    assert job_devices("auto", 2) is None
