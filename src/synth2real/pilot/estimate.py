"""How long the pilot's training runs will take: a timing probe on this machine, now.

Before the runs start, :func:`probe` trains the budget's model at its batch and crop for
a few steps, twice (:data:`PROBE_STEPS`, after an untimed one-step run), in the threads
each run will get; the
difference of the two wall times over the difference of their steps is the time per
step, the rest the start-up of a run (model, first batches). A self-training step costs
more (the teacher's forward pass and the ClassMix batch): it gets its own probe when
the plan holds self-training runs. A fine-tuning step costs what a mix step does (the
second phase draws the same batch from the references alone). :func:`estimate`
multiplies by the runs still to train and divides by the runs trained at once.
Translation and scoring are not included.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from synth2real.pilot.config import PilotConfig, make_train_config

#: steps of the two timed probes; their difference gives the time per step (an untimed
#: one-step run first takes the one-off costs: kernels, caches, lazy imports)
PROBE_STEPS = (2, 8)


#: test images the probe scores (the time is scaled to the whole test set)
PROBE_TEST_IMAGES = 4


@dataclass
class StepCost:
    """What one probe measured: seconds per step, start-up and scoring seconds of a run."""

    per_step: float
    startup: float
    cold: float = 0.0  # once per process
    scoring: float = 0.0

    def run_seconds(self, iterations: int) -> float:
        return self.startup + iterations * self.per_step + self.scoring


def probe(cfg: PilotConfig, data: dict, recipes: Sequence[str], work: Path) -> dict[str, StepCost]:
    """``{"mix": cost, "selftrain": cost}`` (the latter when ``recipes`` hold it), timed
    on ``source+real`` (and its self-training) in ``work`` (removed afterwards), with the
    torch threads of one of ``cfg.jobs`` runs."""
    import torch

    from synth2real.pilot.runs import RunSpec, run_datasets
    from synth2real.segment import evaluate as eval_mod
    from synth2real.segment import train as train_mod

    kinds = ["mix"] + (["selftrain"] if "selftrain" in recipes else [])
    threads = torch.get_num_threads()
    if cfg.jobs > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // cfg.jobs))
    costs: dict[str, StepCost] = {}
    try:
        for kind in kinds:
            datasets, real_fraction = run_datasets(
                RunSpec("source+real", None, 0), data, cfg.real_ratio
            )
            extra = {"unlabeled": data["unlabeled"]} if kind == "selftrain" else {}
            base = make_train_config(cfg, 0, real_fraction, kind)
            walls = []
            for n in (1, *PROBE_STEPS):
                tcfg = dataclasses.replace(base, iterations=n, warmup=0, save_every=10**6)
                t0 = time.perf_counter()
                res = train_mod.train(
                    datasets, tcfg, work / f"{kind}-{n}", resume=False, progress=False, **extra
                )
                walls.append(time.perf_counter() - t0)
            (n1, n2), (t0_, t1, t2) = PROBE_STEPS, walls
            per_step = max((t2 - t1) / (n2 - n1), 1e-6)
            startup = max(0.0, t1 - n1 * per_step)
            costs[kind] = StepCost(per_step, startup, max(0.0, t0_ - per_step - startup))
        test = data["test"]
        few = test.subset(test.samples[:PROBE_TEST_IMAGES])
        t0 = time.perf_counter()
        eval_mod.evaluate(res.checkpoint, few, device=cfg.device, progress=False)
        scoring = (time.perf_counter() - t0) * len(test) / max(1, len(few))
        for c in costs.values():
            c.scoring = scoring
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(work, ignore_errors=True)
    return costs


def estimate(
    costs: dict[str, StepCost], recipes_todo: dict[str, int], iterations: int, jobs: int
) -> float:
    """Wall seconds of training ``recipes_todo`` (``{recipe: runs}``) ``jobs`` at a time."""
    total = sum(
        n * costs["selftrain" if r == "selftrain" else "mix"].run_seconds(iterations)
        for r, n in recipes_todo.items()
    )
    cold = max(c.cold for c in costs.values())
    return total / max(1, min(jobs, sum(recipes_todo.values()))) + cold


def describe(costs: dict[str, StepCost], seconds: float, jobs: int) -> str:
    """One line: the estimate and what it rests on."""
    steps = ", ".join(f"{k} {c.per_step:.3g} s/step" for k, c in costs.items())
    start = max(c.startup for c in costs.values())
    score = max(c.scoring for c in costs.values())
    return (
        f"estimated time of the runs {_human(seconds)} at {jobs} run(s) at a time "
        f"(timing probe: {steps}, {start:.1f} s start-up and {score:.1f} s scoring per run, "
        f"{max(c.cold for c in costs.values()):.1f} s once; translation not included)"
    )


def _human(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"
