"""``synth2real demo``: the whole pilot on generated toy data, in a few minutes on a CPU.

The toy data (:func:`synth2real.data.demo.make_demo_data`) has a synthetic domain whose
colours differ from the "real" one class by class, a handful of labelled real references
and a real test set. The demo translates the synthetic images with a few classical
methods, trains a small model per setting and seed, and writes the report.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from synth2real.errors import ConfigError
from synth2real.guard import check_output, is_empty, is_lock_file
from synth2real.pilot.config import PilotConfig, check_recipes
from synth2real.pilot.runner import PilotResult, run_pilot

#: Methods the demo compares (those not registered are skipped).
DEMO_METHODS = ("reinhard", "reinhard-cw", "histmatch-cw")
#: The demo's training budget: ~3 minutes for the 18 runs on 2 quiet CPU cores (2 jobs).
#: At 120 steps the thin scratches were not learnt at all (IoU 0.00-0.09); at 300 they
#: reach 0.23-0.33 on the toy test set.
DEMO_BUDGET = {"iterations": 300, "batch_size": 8, "crop": 64}


def run_demo(
    out: str | Path = "runs/demo",
    *,
    seeds: int = 2,
    methods: tuple[str, ...] | list[str] | None = None,
    budget: dict | None = None,
    device: str = "cpu",
    jobs: int = 1,
    progress: bool = True,
) -> PilotResult:
    """Generate the toy data into ``out/data`` (once) and run the pilot into ``out/pilot``.

    A second call resumes: finished runs are not trained again.

    Args:
        out: output folder.
        seeds: training seeds per setting (default 2).
        methods: translation methods (default :data:`DEMO_METHODS`, those registered).
        budget: training budget (default :data:`DEMO_BUDGET`).
        device: ``cpu`` (default), ``cuda`` or ``auto``.
        jobs: training runs at once, one process each (default 1; the CLI picks one per
            CPU core, at most 4).
        progress: print progress.

    Returns:
        the pilot's :class:`PilotResult` (``.report`` is the HTML report).
    """
    from synth2real.methods import list_methods

    console = Console(stderr=True)
    out = Path(out)
    check_demo_folder(out)  # the pilot (into out/pilot) holds its own lock
    data = out / "data"
    available = set(list_methods())
    chosen = [m for m in (methods or DEMO_METHODS) if m in available]
    cfg = PilotConfig(
        source=data / "synthetic",
        references=data / "real",
        test=data / "real_test",
        methods=chosen,
        seeds=seeds,
        budget=dict(budget or DEMO_BUDGET),
        budget_name="demo",
        device=device,
        jobs=jobs,
    )
    check_recipes(cfg)  # a bad budget is refused before the toy data is written
    if not (data / "real_test").is_dir():
        from synth2real.data.demo import make_demo_data

        if progress:
            console.print(f"[bold]demo[/]: writing toy data to {data}")
        make_demo_data(data, seed=0)
    return run_pilot(cfg, out / "pilot", resume=True, progress=progress)


#: what a demo folder holds
_DEMO_ENTRIES = {"data", "pilot"}


def check_demo_folder(out: Path) -> None:
    """``out`` is new, empty or a demo's folder (``data/``, ``pilot/``): the demo writes
    its toy data there and reads it back, so it never goes into a folder of the user's.

    Raises:
        ConfigError: ``out`` is a file, not writable, or holds anything else.
    """
    check_output(out)
    if is_empty(out):
        return
    other = sorted(
        p.name for p in out.iterdir() if p.name not in _DEMO_ENTRIES and not is_lock_file(p)
    )
    if other:
        raise ConfigError(
            f"--out {out} is not empty and not a demo folder (it holds {', '.join(other[:3])}); "
            "the demo writes data/ and pilot/ there: choose a new or empty folder"
        )
