"""The pilot's training runs: the plan, one run, and many runs in worker processes.

A run is one setting x method x seed (:class:`RunSpec`): it trains a model on the
setting's data with the pilot's budget (``segment.train.train``), scores it on the test
images (``segment.evaluate.evaluate``) and writes ``OUT/<relpath>/result.json``
atomically. A run counts as finished when that file exists with the same budget.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.markup import escape

from synth2real.data.io import atomic_write_text
from synth2real.errors import OutputExistsError, RunsFailedError
from synth2real.pilot.config import PilotConfig, make_train_config
from synth2real.pilot.console import say
from synth2real.pilot.verdict import BASELINES, PER_METHOD, RECIPE_SETTINGS, group_key
from synth2real.workers import interruptible, process_pool, stop

#: called in the pilot's process as each run ends: ``(plan index, spec, record, skipped)``
Finished = Callable[[int, "RunSpec", dict, bool], None]


@dataclass(frozen=True)
class RunSpec:
    """One training run: a setting, its method (``None`` for the baselines), a seed and
    the recipe (how the data is used; ``mix``: the pilot's original runs)."""

    setting: str
    method: str | None
    seed: int
    recipe: str = "mix"

    @property
    def relpath(self) -> str:
        """``runs/[<recipe>/]<setting>[/<method>]/seed<k>``: mix runs where they always
        were (older pilot folders resume), the other recipes under their own folder."""
        rec = "" if self.recipe == "mix" else f"{self.recipe}/"
        mid = f"{self.method}/" if self.method else ""
        return f"runs/{rec}{self.setting}/{mid}seed{self.seed}"

    @property
    def label(self) -> str:
        return f"{group_key(self.setting, self.method, self.recipe)} seed {self.seed}"


def plan_runs(
    methods: Sequence[str], seeds: Sequence[int], recipes: Sequence[str] = ("mix",)
) -> list[RunSpec]:
    """Every run of a pilot, seed-major: one seed of every setting and recipe comes
    first, so an interrupted pilot already holds a full (one-seed) picture. Each recipe
    runs the settings of :data:`~synth2real.pilot.verdict.RECIPE_SETTINGS`."""
    runs = []
    translated = [m for m in methods if m != "none"]
    for seed in seeds:
        for recipe in recipes:
            settings = RECIPE_SETTINGS[recipe]
            runs += [RunSpec(s, None, seed, recipe) for s in BASELINES if s in settings]
            for m in translated:
                runs += [RunSpec(s, m, seed, recipe) for s in PER_METHOD if s in settings]
    return runs


def runs_per_recipe(plan: Sequence[RunSpec]) -> dict[str, int]:
    """``{recipe: number of runs}`` in plan order."""
    counts: dict[str, int] = {}
    for spec in plan:
        counts[spec.recipe] = counts.get(spec.recipe, 0) + 1
    return counts


def run_datasets(spec: RunSpec, data: dict, real_ratio: float) -> tuple[list, float | None]:
    """The labelled datasets of one run and the share of the references (last) in each
    batch (``None``: a single dataset)."""
    source, refs = data["source"], data["references"]
    if spec.setting == "source-only":
        return [source], None
    if spec.setting == "real-only":
        return [refs], None
    if spec.setting == "source+real":
        return [source, refs], real_ratio
    if spec.setting == "translated":
        return [data["translated"][spec.method]], None
    if spec.setting == "translated+real":
        return [data["translated"][spec.method], refs], real_ratio
    raise ValueError(spec.setting)  # pragma: no cover - plan_runs only makes these


@dataclass
class Runs:
    """What every training run of one pilot shares. Worker processes get it with every
    task without ``data`` (the datasets travel once, to the worker's initializer, and are
    put back from :data:`_WORKER`)."""

    cfg: PilotConfig
    out: Path
    budget_id: str
    budget: dict
    translations: dict
    data: dict | None = None


def run_one(spec: RunSpec, runs: Runs, progress: bool) -> dict:
    """Train and score one run; write and return its record (``result.json``)."""
    from synth2real.segment import evaluate as eval_mod
    from synth2real.segment import train as train_mod  # looked up per call: tests patch it

    cfg, out, data = runs.cfg, runs.out, runs.data
    assert data is not None
    test = data["test"]
    # mixes put the references last: train() draws them with probability real_fraction
    datasets, real_fraction = run_datasets(spec, data, cfg.real_ratio)
    extra = {"unlabeled": data["unlabeled"]} if spec.recipe == "selftrain" else {}
    run_dir = out / spec.relpath
    tcfg = make_train_config(cfg, spec.seed, real_fraction, spec.recipe)
    t0 = time.perf_counter()
    try:  # continue a run stopped mid-training
        tres = train_mod.train(
            datasets, tcfg, run_dir / "train", resume=True, progress=progress, **extra
        )
    except OutputExistsError as e:
        # the pilot owns this folder and pilot.json pins budget and data, so a mismatch
        # means stale files (a moved pilot folder, a rebuilt cache): train afresh
        say(f"[yellow]{escape(spec.label)}: {escape(str(e))}; training afresh[/]", progress)
        tres = train_mod.train(
            datasets, tcfg, run_dir / "train", resume=False, progress=progress, **extra
        )
    wall = time.perf_counter() - t0
    ev = eval_mod.evaluate(tres.checkpoint, test, device=cfg.device, progress=progress)
    names = list(ev.class_names)
    iou = {n: _num(v) for n, v in zip(names, list(ev.iou), strict=True)}
    losses = list(getattr(tres, "losses", []) or [])
    tinfo = runs.translations.get(spec.method) if spec.method else None
    record = {
        "recipe": spec.recipe,
        "setting": spec.setting,
        "method": spec.method,
        "seed": spec.seed,
        "miou": _num(ev.miou),
        "pixel_accuracy": _num(ev.pixel_accuracy),
        "iou": iou,
        "train_seconds": _num(getattr(tres, "seconds", None)) or round(wall, 3),
        "eval_seconds": _num(getattr(ev, "seconds", None)),
        "iterations": getattr(tres, "iterations", None),
        "precision": getattr(tres, "precision", None),
        "final_loss": _num(losses[-1]) if losses else None,
        "translate_seconds_per_image": tinfo.get("seconds_per_image") if tinfo else None,
        "real_fraction": real_fraction,
        "train_images": sum(len(d) for d in datasets),
        "unlabeled_images": len(extra["unlabeled"]) if extra else None,
        "test_images": len(test),
        "checkpoint": _rel(tres.checkpoint, out),
        "budget_id": runs.budget_id,
        "budget": runs.budget,
        "model": cfg.model,
        "device": cfg.device,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_text(run_dir / "result.json", json.dumps(record, indent=2))
    return record


def _num(v) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else round(f, 6)


def _rel(p, out: Path) -> str | None:
    if p is None:
        return None
    p = Path(p)
    try:
        return str(p.resolve().relative_to(out.resolve()))
    except ValueError:
        return str(p)


def load_finished(spec: RunSpec, out: Path, budget_id: str) -> dict | None:
    """The result of a finished run with this budget, or ``None``."""
    path = out / spec.relpath / "result.json"
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # half-written by hand or corrupt: redo the run
    return rec if rec.get("budget_id") == budget_id else None


def run_all(
    todo: list[tuple[int, RunSpec]],
    runs: Runs,
    jobs: int,
    progress: bool,
    finished: Finished,
    total: int,
    *,
    work: Callable[[int, RunSpec, Runs], tuple[int, dict]] | None = None,
) -> int:
    """Train ``todo`` (``(plan index, spec)`` pairs), one after the other or in ``jobs``
    processes; ``finished`` is called as each ends. Returns the runs trained.

    ``work`` replaces the worker's task (``_worker_run``; a module-level function, for
    tests of the scheduling)."""
    jobs = min(jobs, len(todo))
    if jobs > 1:
        return _run_parallel(todo, jobs, runs, progress, finished, total, work or _worker_run)
    for k, spec in todo:
        say(f"[bold green]run {k + 1} of {total}[/]: {escape(spec.label)}", progress)
        finished(k, spec, run_one(spec, runs, progress), False)
    return len(todo)


# -- parallel runs: one process per job ------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _worker_init(threads: int, data: dict, devices: Any = None) -> None:
    """Set up one worker process: its torch threads, the datasets, and (with several GPUs)
    the device it is pinned to, taken from the ``devices`` queue (one per process)."""
    import torch

    torch.set_num_threads(threads)
    _WORKER["data"] = data  # the test set's cache was left behind: decoded once per worker
    _WORKER["device"] = devices.get(timeout=60) if devices is not None else None
    dev = _WORKER["device"]
    if dev and dev.startswith("cuda:") and torch.cuda.is_available():
        torch.cuda.set_device(torch.device(dev))  # libraries that say "cuda" use it too


def worker_runs(runs: Runs) -> Runs:
    """``runs`` as this worker process trains them: its datasets, and its own device
    when the pilot spreads runs over several GPUs."""
    runs = dataclasses.replace(runs, data=_WORKER["data"])
    dev = _WORKER.get("device")
    if dev:
        runs = dataclasses.replace(runs, cfg=dataclasses.replace(runs.cfg, device=dev))
    return runs


def _worker_run(k: int, spec: RunSpec, runs: Runs) -> tuple[int, dict]:
    with interruptible():  # Ctrl-C stops a run (its state is saved), not an idle worker
        return k, run_one(spec, worker_runs(runs), False)


def _run_parallel(
    todo: list[tuple[int, RunSpec]],
    jobs: int,
    runs: Runs,
    progress: bool,
    finished: Finished,
    total: int,
    work: Callable[[int, RunSpec, Runs], tuple[int, dict]] = _worker_run,
) -> int:
    """Train ``todo`` in ``jobs`` spawned processes; ``finished`` is called in the parent as
    each run ends. Every run writes its own ``result.json`` (atomically), so a stopped
    pilot resumes exactly as a sequential one does.

    With ``device`` ``auto``/``cuda`` and several visible GPUs
    (:func:`~synth2real.pilot.devices.job_devices`), each process is pinned to one GPU and
    trains every run it takes there. A run that fails does not stop the others: once all
    have ended, :class:`~synth2real.errors.RunsFailedError` names the failed ones (they
    have no ``result.json``; running the pilot again with resume retries just them)."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, wait

    from synth2real.pilot.devices import job_devices
    from synth2real.progress import progress_bar

    threads = max(1, (os.cpu_count() or 1) // jobs)
    assert runs.data is not None
    devices = job_devices(runs.cfg.device, jobs)
    queue = None
    if devices:
        queue = mp.get_context("spawn").Queue()
        for d in devices:
            queue.put(d)
    where = f" on {', '.join(sorted(set(devices)))}" if devices else ""
    say(
        f"training {len(todo)} runs, {jobs} at a time{where} ({threads} torch thread(s) each)",
        progress,
    )
    specs = dict(todo)
    ran, failed = 0, []
    with process_pool(jobs, _worker_init, (threads, runs.data, queue)) as pool:  # no orphans
        pending = {
            pool.submit(work, k, spec, dataclasses.replace(runs, data=None)): k for k, spec in todo
        }
        bar = progress_bar(len(todo), "training runs", enabled=progress)
        try:
            with bar as advance:
                while pending:
                    complete, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for f in complete:
                        k = pending.pop(f)
                        try:
                            k, rec = f.result()
                        except Exception as e:  # this run failed: the others go on
                            why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                            failed.append(f"{specs[k].label} ({why})")
                            say(f"[red]{escape(specs[k].label)} failed[/]: {escape(why)}", progress)
                        else:
                            ran += 1
                            finished(k, specs[k], rec, False)
                        advance()
        except BaseException:  # running runs got the Ctrl-C too: they save their state
            stop(pool, list(pending), grace=60)
            raise
    say(f"{ran} of {total} runs trained in this call", progress)
    if failed:
        raise RunsFailedError(
            f"{len(failed)} of {len(todo)} training runs failed: {'; '.join(failed[:5])}"
            + (f"; and {len(failed) - 5} more" if len(failed) > 5 else "")
            + f". The {ran} others finished and are kept; run the pilot again with resume "
            "(--resume) to retry the failed ones"
        )
    return ran
