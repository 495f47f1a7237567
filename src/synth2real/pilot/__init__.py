"""The pilot: does a translation make a segmentation model better on real images?

``run_pilot(PilotConfig(...), out)`` translates the synthetic data with each method,
trains a model per recipe x setting x method x seed with one fixed budget, scores it on real test
images and writes ``results.json``, ``results.csv`` and a self-contained ``report.html``.

Modules: ``config`` (settings, budgets, checks before any work), ``inputs`` (datasets,
the source at the training size, translations), ``runs`` (one run, many in processes),
``results`` (JSON, CSV), ``verdict``, ``report`` and ``figures`` (the HTML report),
``runner`` (:func:`run_pilot`, which ties them together), ``demo``.
"""

from synth2real.pilot.config import (
    DEFAULT_BUDGET,
    QUICK_BUDGET,
    PilotConfig,
    parse_budget,
    parse_recipes,
    parse_seeds,
)
from synth2real.pilot.devices import parse_jobs
from synth2real.pilot.runner import PilotResult, run_pilot
from synth2real.pilot.runs import RunSpec, plan_runs
from synth2real.pilot.verdict import SETTINGS, Verdict, decide

__all__ = [
    "DEFAULT_BUDGET",
    "QUICK_BUDGET",
    "SETTINGS",
    "PilotConfig",
    "PilotResult",
    "RunSpec",
    "Verdict",
    "decide",
    "parse_budget",
    "parse_jobs",
    "parse_recipes",
    "parse_seeds",
    "plan_runs",
    "run_pilot",
]
