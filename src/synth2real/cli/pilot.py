"""``synth2real pilot`` and ``synth2real demo``: options in, the pilot run, the report out."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from synth2real.cli.common import (
    ClassesOpt,
    ClassMapOpt,
    FormatOpt,
    SourceLimitOpt,
    SourceNamesOpt,
    UnlabeledNamesOpt,
    UnlabeledOpt,
    omp_passive,
    option,
)
from synth2real.segment.config import DEFAULT_MODEL

# The training budget of the commands that run a pilot (pilot, demo).
BudgetOpt = option(
    list[str] | None,
    "--budget",
    "Training budget overrides KEY=VALUE with the keys and forms of train --set, "
    "repeatable or comma-separated, e.g. --budget iterations=600 --budget crop=256x512; "
    "the budget as trained is printed before the runs start.",
)


def pilot_cmd(
    source: option(Path, "--source", help="Labelled synthetic images (dataset folder)."),
    references: option(Path, "--references", help="Labelled real references (dataset folder)."),
    test: option(
        Path,
        "--test",
        help="Labelled real test images (dataset folder; may be the references' folder with --test-names).",
    ),
    out: option(Path, "--out", help="Output folder (translations, runs, results, report.html)."),
    methods: option(
        str, "--methods", help="Comma-separated translation methods (see `synth2real methods`)."
    ) = "reinhard,reinhard-cw",
    seeds: option(
        str, "--seeds", help="Number of training seeds (3 -> 0,1,2) or a comma list."
    ) = "3",
    reference_names: option(
        str | None,
        "--reference-names",
        help="Subset of --references: FILE (one name a line), FILE.json:KEY, or a,b,c.",
    ) = None,
    test_names: option(str | None, "--test-names", help="Subset of --test (same syntax).") = None,
    source_names: SourceNamesOpt = None,
    recipes: option(
        str,
        "--recipes",
        help="How the data is used, comma-separated: mix (the references in every batch), "
        "finetune (the mix, then the references alone), selftrain (with --unlabeled).",
    ) = "mix",
    unlabeled: UnlabeledOpt = None,
    unlabeled_names: UnlabeledNamesOpt = None,
    source_limit: SourceLimitOpt = None,
    quick: option(
        bool,
        "--quick",
        help="Short training budget for a first look (cannot separate close methods).",
    ) = False,
    budget: BudgetOpt = None,
    real_ratio: option(
        float,
        "--real-ratio",
        help="Share of each batch drawn from the references in the +real settings.",
    ) = 0.5,
    seg_model: option(
        str | None,
        "--seg-model",
        help=f"Segmentation model trained per run: {DEFAULT_MODEL} (default), small-unet "
        "or segformer.",
    ) = None,
    old_model: option(str | None, "--model", hidden=True, help="Deprecated: --seg-model.") = None,
    diffusion_model: option(
        str | None,
        "--diffusion-model",
        help="Stable Diffusion weights for the diffusion methods: a hub id or a local "
        "folder in diffusers layout (same as --param METHOD.model=...).",
    ) = None,
    device: option(
        str,
        "--device",
        help="auto, cpu, cuda, cuda:1, mps: where the models train and the diffusion "
        "methods translate.",
    ) = "auto",
    workers: option(int, "--workers", help="Translation worker processes.") = 1,
    jobs: option(
        str,
        "--jobs",
        help="Training runs at once, each in its own process: N or auto (one per "
        "visible GPU, each process pinned to its GPU; one per CPU core up to 4 on a "
        "CPU). A failed run does not stop the others; --resume retries it.",
    ) = "auto",
    metric: option(
        str, "--metric", help="What the verdict is judged on: miou or iou:<class>."
    ) = "miou",
    param: option(
        list[str] | None, "--param", help="Method parameter, METHOD.KEY=VALUE (repeatable)."
    ) = None,
    cache_dir: option(
        Path | None,
        "--cache-dir",
        help="Keep translations (and the source shrunk to the training size) here, to share them between pilots; default: inside --out.",
    ) = None,
    resume: option(
        bool,
        "--resume",
        help="Continue the pilot in --out: finished runs and translations are kept.",
    ) = False,
    format: FormatOpt = None,
    classes: ClassesOpt = None,
    class_map: ClassMapOpt = None,
) -> None:
    """Run the pilot: translate, train and score every setting, write the HTML report.

    Settings: source-only, real-only, source+real, and per method translated and translated+real; each trained once per seed with one fixed budget and scored on the real test images at their own resolution. --recipes finetune / selftrain add the settings with real images under those recipes (docs/PILOT.md).
    """
    omp_passive()
    from synth2real.cli.deprecated import renamed
    from synth2real.data.select import parse_names
    from synth2real.guard import check_output, names_file
    from synth2real.methods.registry import parse_method_params
    from synth2real.pilot import DEFAULT_BUDGET, QUICK_BUDGET, PilotConfig, parse_budget, run_pilot
    from synth2real.pilot.devices import parse_jobs
    from synth2real.pilot.runner import pilot_inputs

    cfg = PilotConfig(
        source=source,
        references=references,
        test=test,
        methods=[m for m in methods.split(",") if m.strip()],
        seeds=seeds,
        budget=parse_budget(budget, QUICK_BUDGET if quick else DEFAULT_BUDGET),
        budget_name=("quick" if quick else "default") + ("+custom" if budget else ""),
        source_names=parse_names(source_names) if source_names else None,
        reference_names=parse_names(reference_names) if reference_names else None,
        test_names=parse_names(test_names) if test_names else None,
        source_limit=source_limit,
        recipes=recipes,
        unlabeled=unlabeled,
        unlabeled_names=parse_names(unlabeled_names) if unlabeled_names else None,
        real_ratio=real_ratio,
        model=renamed("--seg-model", seg_model, "--model", old_model, "the segmentation model")
        or DEFAULT_MODEL,
        device=device,
        diffusion_model=diffusion_model,
        workers=workers,
        jobs=parse_jobs(jobs, device),
        metric=metric,
        format=format,
        classes=str(classes) if classes else None,
        class_map=str(class_map) if class_map else None,
        method_params=parse_method_params(param),
        cache_dir=cache_dir,
    )
    # the pilot's own inputs, plus the files the name options read (only known here)
    inputs = {
        **pilot_inputs(cfg),
        "--source-names": names_file(source_names),
        "--reference-names": names_file(reference_names),
        "--test-names": names_file(test_names),
        "--unlabeled-names": names_file(unlabeled_names),
    }
    check_output(out, inputs)
    if cache_dir is not None:
        check_output(cache_dir, inputs, option="--cache-dir")
    result = run_pilot(cfg, out, resume=resume)
    Console(soft_wrap=True).print(  # paths whole, whatever the terminal's width
        escape(f"report: {result.report}\nresults: {result.results_json}, {result.results_csv}")
    )


def demo_cmd(
    out: option(Path, "--out", help="Output folder.") = Path("runs/demo"),
    seeds: option(int, "--seeds", help="Training seeds.") = 2,
    device: option(str, "--device", help="auto, cpu, cuda.") = "cpu",
    jobs: option(
        str, "--jobs", help="Training runs at once: N or auto (see pilot --help)."
    ) = "auto",
    budget: BudgetOpt = None,
) -> None:
    """Run the pilot on the embedded toy data (no download, a few minutes on CPU)."""
    omp_passive()
    from synth2real.pilot import parse_budget
    from synth2real.pilot.demo import DEMO_BUDGET, check_demo_folder, run_demo
    from synth2real.pilot.devices import parse_jobs

    settings = parse_budget(budget, DEMO_BUDGET)
    check_demo_folder(out)  # before --jobs auto looks for a GPU (torch)
    result = run_demo(
        out, seeds=seeds, budget=settings, device=device, jobs=parse_jobs(jobs, device)
    )
    Console(soft_wrap=True).print(f"\n[bold]demo report[/]: {escape(str(result.report.resolve()))}")
