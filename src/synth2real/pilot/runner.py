"""The pilot: translate, train and score every setting of docs/BENCHMARK.md, resumably.

Given labelled synthetic images (``source``), a few labelled real images
(``references``) and a labelled real test set, the pilot trains one segmentation model
per *setting* x *method* x *seed*, all with one fixed training budget, and scores each on
the test set at the test images' own resolution:

======================  ==========================================================
setting                 training data
======================  ==========================================================
``source-only``         the synthetic images as they are
``real-only``           the real references alone
``source+real``         the untouched synthetic images mixed with the references
``translated``          the synthetic images after method M
``translated+real``     method M's output mixed with the references
======================  ==========================================================

Layout of the output folder ``DIR``::

    DIR/pilot.json                       the settings (budget, data, model): fixed for resume
    DIR/translated/<method>/             each method's translation (resumable)
    DIR/translated/<method>.json         its timing (seconds per image) and parameters
    DIR/runs/<setting>[/<method>]/seed<k>/result.json   one finished mix run (atomic)
    DIR/runs/<recipe>/<setting>[/<method>]/seed<k>/...  a finetune or selftrain run
    DIR/runs/.../train/                  the run's checkpoint (written by segment.train)
    DIR/results.json, results.csv        every run, the summary and the verdict
    DIR/report.html                      the self-contained report

Each setting can run under several recipes (how the data is used: ``mix``,
``finetune``, ``selftrain``; ``PilotConfig.recipes``, docs/PILOT.md). A run counts as
finished when its ``result.json`` exists; a rerun with ``resume=True``
skips it, and translation resumes image by image. The parts: :mod:`.config` (settings
and the checks made before any work), :mod:`.inputs` (datasets and translations),
:mod:`.runs` (training runs), :mod:`.results` and :mod:`.report`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.markup import escape

from synth2real.guard import check_output, output_lock
from synth2real.pilot.config import (
    PilotConfig,
    budget_id,
    check_methods,
    check_metric,
    check_out,
    check_recipes,
    effective_budget,
    save_pilot_json,
)
from synth2real.pilot.console import say
from synth2real.pilot.inputs import open_inputs, source_at_size, translate_all
from synth2real.pilot.results import write_results
from synth2real.pilot.runs import (
    Runs,
    RunSpec,
    load_finished,
    plan_runs,
    run_all,
    runs_per_recipe,
)


@dataclass
class PilotResult:
    """What :func:`run_pilot` wrote. ``results`` is the content of ``results.json``."""

    out: Path
    report: Path | None
    results_json: Path
    results_csv: Path
    results: dict
    ran: int  # runs trained in this call
    skipped: int  # runs found finished


def run_pilot(
    cfg: PilotConfig,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    report: bool = True,
    on_run: Callable[[RunSpec, dict, bool], None] | None = None,
    estimate: bool = True,
) -> PilotResult:
    """Run (or resume) a pilot into ``out``; returns where everything was written.

    Args:
        cfg: the pilot's settings.
        out: output folder (created). Holding another pilot is an error unless
            ``resume`` is set and the budget and data are the same.
        resume: continue a pilot in ``out``: finished runs and translated images are
            kept; methods and seeds may be added.
        progress: print a line per run and show the inner progress bars.
        report: write ``report.html`` at the end.
        on_run: called after each run with ``(spec, record, skipped)``.
        estimate: before the runs, time a few training steps to print how long they
            will take (:mod:`synth2real.pilot.estimate`).

    Raises:
        OutputExistsError: ``out`` holds another pilot, or one and ``resume`` is not set.
        ConfigError: bad settings (unknown method or parameter, budget key, metric class,
            class mismatch ...), all found before anything is written.
        DataError: unreadable input files.
    """
    out = Path(out)
    # -- every check before anything is written ------------------------------------------
    inputs = pilot_inputs(cfg)
    check_output(out, inputs)
    if cfg.cache_dir is not None:
        check_output(cfg.cache_dir, inputs, option="--cache-dir")
    with output_lock(out, "pilot"):  # for the pilot's whole life: one pilot per folder
        return _run_locked(cfg, out, resume, progress, report, on_run, estimate)


def pilot_inputs(cfg: PilotConfig) -> dict[str, Path | str | None]:
    """Everything a pilot reads: no output of it may be, lie in or contain one."""
    return {
        "--source": cfg.source,
        "--references": cfg.references,
        "--test": cfg.test,
        "--unlabeled": cfg.unlabeled,
        "--classes": cfg.classes,
        "--class-map": cfg.class_map,
        # a local weights folder is an input too (a hub id is not a path)
        "--diffusion-model": cfg.diffusion_model
        if cfg.diffusion_model and Path(cfg.diffusion_model).is_dir()
        else None,
    }


def _run_locked(
    cfg: PilotConfig,
    out: Path,
    resume: bool,
    progress: bool,
    report: bool,
    on_run: Callable[[RunSpec, dict, bool], None] | None,
    estimate: bool,
) -> PilotResult:
    """:func:`run_pilot` under the output folder's lock."""
    check_out(out, cfg, resume)
    check_methods(cfg)
    check_recipes(cfg)
    check_methods_ready(cfg)
    if "none" in cfg.methods:
        say(
            "[dim]method 'none' is the source-only / source+real baseline: not run twice[/]",
            progress,
        )
    budget = effective_budget(cfg)
    data = open_inputs(cfg)
    check_metric(cfg.metric, data["source"].classes.names)
    save_pilot_json(out, cfg, budget)

    # -- the source at the training size, translation once per method --------------------
    cache = cfg.cache_dir if cfg.cache_dir is not None else out
    shrink = budget.get("max_size") if cfg.translate_at_train_size else None
    small = source_at_size(data["source"], shrink, cache, progress)
    tbase = cache / ("translated" if small is data["source"] else f"translated-max{shrink}")
    data["source"] = small
    _say_plan(cfg, data, budget, out, progress)
    translations = translate_all(cfg, data, tbase, progress)

    # -- training runs -------------------------------------------------------------------
    plan = plan_runs(cfg.methods, cfg.seeds, cfg.recipes)
    bid = budget_id(budget, cfg.model)
    done: dict[int, dict] = {}

    def write_partial() -> dict:
        records = [done[i] for i in sorted(done)]
        partial = len(done) < len(plan)
        return write_results(out, cfg, budget, records, translations, data, partial=partial)

    def finished(k: int, spec: RunSpec, rec: dict, was_skipped: bool) -> None:
        done[k] = rec
        if not was_skipped:
            say(
                f"  -> {len(done)}/{len(plan)} {escape(spec.label)}: mIoU {rec['miou']:.3f}, "
                + escape(", ".join(f"{n} {v:.3f}" for n, v in rec["iou"].items() if v is not None))
                + f" ({rec['train_seconds']:.1f} s training, {rec['eval_seconds'] or 0:.1f} s scoring)",
                progress,
            )
        if on_run is not None:
            on_run(spec, rec, was_skipped)
        if not was_skipped:  # skipped runs are written once, below
            write_partial()

    todo: list[tuple[int, RunSpec]] = []
    for k, spec in enumerate(plan):
        rec = load_finished(spec, out, bid) if resume else None
        if rec is None:
            todo.append((k, spec))
            continue
        say(
            f"[dim]run {k + 1} of {len(plan)}: {escape(spec.label)}: finished earlier, skipped[/]",
            progress,
        )
        finished(k, spec, rec, True)
    skipped = len(plan) - len(todo)
    if skipped:
        write_partial()
    _say_runs(cfg, data, budget, plan, todo, out, progress, estimate)
    runs = Runs(cfg, out, bid, budget, translations, data)
    ran = run_all(todo, runs, cfg.jobs, progress, finished, len(plan))

    results = write_partial()
    report_path = None
    if report:
        from synth2real.pilot.report import write_report

        report_path = write_report(results, out, data=data)  # its path: PilotResult
    say(f"[bold]verdict[/]: {escape(results['verdict']['headline'])}", progress)
    for note in results["verdict"]["notes"]:  # e.g. one seed: no spread was measured
        say(f"[yellow]note[/]: {escape(note)}", progress)
    return PilotResult(
        out, report_path, out / "results.json", out / "results.csv", results, ran, skipped
    )


def check_methods_ready(cfg: PilotConfig) -> None:
    """Diffusion methods find their weights and device before any work (no network
    unless a model id was given)."""
    from synth2real.methods import create_method
    from synth2real.translate import check_method_ready

    for m in cfg.translation_methods:
        params = cfg.method_params.get(m, {})
        check_method_ready(
            create_method(m, **params),
            model_given="model" in params,
            device_hint=f"--param {m}.device=cpu",
        )


def _say_runs(
    cfg: PilotConfig,
    data: dict,
    budget: dict,
    plan: list[RunSpec],
    todo: list[tuple[int, RunSpec]],
    out: Path,
    progress: bool,
    estimate: bool,
) -> None:
    """The number of runs per recipe and, timed by a probe, how long the rest will take."""
    from synth2real.pilot import estimate as est

    per = runs_per_recipe(plan)
    left = runs_per_recipe([spec for _, spec in todo])
    line = f"runs: {', '.join(f'{n} {r}' for r, n in per.items())} ({len(plan)} in all"
    line += f", {len(todo)} to train)" if len(todo) != len(plan) else ")"
    if estimate and todo:
        costs = est.probe(cfg, data, list(left), out / "probe")
        seconds = est.estimate(costs, left, int(budget["iterations"]), cfg.jobs)
        line += "; " + est.describe(costs, seconds, min(cfg.jobs, len(todo)))
    say(escape(line), progress)


def _say_plan(cfg: PilotConfig, data: dict, budget: dict, out: Path, progress: bool) -> None:
    source, refs, test = data["source"], data["references"], data["test"]
    say(
        f"[bold]pilot[/]: {len(source)} synthetic, {len(refs)} references, {len(test)} test images; "
        + escape(
            f"classes {list(source.classes.names)}; methods {cfg.translation_methods or '-'}; "
            f"recipes {cfg.recipes}; seeds {cfg.seeds}"
            + (f"; {len(data['unlabeled'])} unlabelled images" if data.get("unlabeled") else "")
        ),
        progress,
    )
    shown = {k: budget[k] for k in (*cfg.budget, "max_size") if k in budget}
    say(
        escape(
            f"budget (same for every run): model {cfg.model}, "
            + ", ".join(f"{k}={v}" for k, v in shown.items())
            + f" (all fields: {out / 'pilot.json'})"
        ),
        progress,
    )
