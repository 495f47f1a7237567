"""The pilot: does a translation make a segmentation model better on real images?

``run_pilot(PilotConfig(...), out)`` translates the synthetic data with each method,
trains a model per setting x method x seed with one fixed budget, scores it on real test
images and writes ``results.json``, ``results.csv`` and a self-contained ``report.html``.
"""

from synth2real.pilot.runner import (
    DEFAULT_BUDGET,
    QUICK_BUDGET,
    PilotConfig,
    PilotResult,
    RunSpec,
    parse_budget,
    parse_seeds,
    plan_runs,
    run_pilot,
)
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
    "parse_seeds",
    "plan_runs",
    "run_pilot",
]
