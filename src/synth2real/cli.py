"""The ``synth2real`` command line: one subcommand per job.

Each command only parses options and calls the library function that does the work
(imported lazily so that ``--help`` is instant). Errors the user can act on
(:class:`~synth2real.errors.Synth2RealError`) are printed without a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from synth2real.errors import Synth2RealError

app = typer.Typer(
    name="synth2real",
    help=(
        "Make labelled synthetic images look like a few real photos, class by class, "
        "and check on real images that it helps a segmentation model."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)

# Options shared by every command that opens a dataset.
FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        help="Dataset format (generic, supervisely, cityscapes, gta5, camvid, images); detected when omitted.",
    ),
]
ClassesOpt = Annotated[
    Path | None,
    typer.Option("--classes", help="Class spec YAML (names, optional colours, ignore_index)."),
]
ClassMapOpt = Annotated[
    Path | None,
    typer.Option(
        "--class-map",
        help="Class-map YAML mapping this dataset's raw ids/colours onto your classes.",
    ),
]


def main() -> None:
    """Entry point of the console script."""
    try:
        app()
    except Synth2RealError as e:
        console.print(f"[bold red]error:[/] {e}")
        sys.exit(2)
    except KeyboardInterrupt:
        console.print(
            "[yellow]interrupted[/]: finished outputs are kept; rerun with --resume to continue"
        )
        sys.exit(130)


# ---------------------------------------------------------------------------------------
# methods
# ---------------------------------------------------------------------------------------
@app.command("methods")
def methods_cmd(
    name: Annotated[str | None, typer.Argument(help="Show one method's parameters.")] = None,
) -> None:
    """List the translation methods, or one method's parameters and defaults."""
    from rich.table import Table

    from synth2real.methods import describe, list_methods

    out = Console()
    if name is None:
        table = Table(title="translation methods", show_lines=False)
        table.add_column("name", style="bold")
        table.add_column("family")
        table.add_column("what it does")
        for n in list_methods():
            from synth2real.methods.registry import get_entry

            e = get_entry(n)
            table.add_row(n, e.family, e.summary)
        out.print(table)
        out.print("[dim]synth2real methods NAME shows a method's parameters[/]")
        return
    entry, params = describe(name)
    out.print(f"[bold]{name}[/] ({entry.family}): {entry.summary}")
    table = Table(show_lines=False)
    table.add_column("parameter", style="bold")
    table.add_column("default")
    table.add_column("type")
    table.add_column("meaning")
    for p in params:
        table.add_row(p.name, repr(p.default), p.annotation, p.doc)
    out.print(table)


# ---------------------------------------------------------------------------------------
# inspect  (data layer)
# ---------------------------------------------------------------------------------------
@app.command("inspect")
def inspect_cmd(
    path: Annotated[Path, typer.Argument(help="Dataset folder.")],
    format: FormatOpt = None,
    classes: ClassesOpt = None,
    class_map: ClassMapOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="Scanning threads (default: CPUs, at most 8)."),
    ] = None,
    max_problems: Annotated[
        int, typer.Option("--max-problems", help="Problems listed in the table (all in --json).")
    ] = 20,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit with status 1 when any sample cannot be used.")
    ] = False,
) -> None:
    """What a dataset holds: format, samples, sizes, class shares, problems.

    Decodes every image and label map (on a thread pool) and never writes anything.
    """
    import json

    from synth2real.data.checks import inspect_dataset

    report = inspect_dataset(
        path, format=format, classes=classes, class_map=class_map, workers=workers,
        progress=not json_out,
    )  # fmt: skip
    if json_out:
        typer.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        _render_inspect(report, max_problems)
    if strict and report.num_errors:
        raise typer.Exit(1)


def _render_inspect(report, max_problems: int) -> None:
    from rich.table import Table
    from rich.text import Text

    out = Console()
    summary = Table(title=f"dataset {report.root}", show_header=False, title_justify="left")
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("format", report.format)
    summary.add_row(
        "samples",
        f"{report.num_samples} images: {report.num_labelled} labelled, "
        f"{report.num_unlabelled} unlabelled",
    )
    summary.add_row("classes", f"{len(report.classes)} (ignore index {report.ignore_index})")
    if report.size_stats:
        h, w = report.size_stats["height"], report.size_stats["width"]
        summary.add_row(
            "image size",
            f"height {h['min']:.0f}..{h['max']:.0f} (median {h['median']:.0f}), "
            f"width {w['min']:.0f}..{w['max']:.0f} (median {w['median']:.0f})",
        )
    modes = ", ".join(f"{m}: {n}" for m, n in report.image_modes.items())
    summary.add_row("image modes", modes or "-")
    summary.add_row(
        "scan", f"{report.seconds:.1f} s with {report.workers} thread(s); "
        f"{len(report.bad_samples)} unusable sample(s)",
    )  # fmt: skip
    out.print(summary)

    sizes = Table(title="image sizes (HxW)", title_justify="left")
    sizes.add_column("size")
    sizes.add_column("images", justify="right")
    items = list(report.image_sizes.items())
    for size, n in items[:8]:
        sizes.add_row(size, str(n))
    if len(items) > 8:
        sizes.add_row(f"{len(items) - 8} other sizes", str(sum(n for _, n in items[8:])))
    out.print(sizes)

    if report.num_labelled:
        cls = Table(title="classes", title_justify="left")
        cls.add_column("id", justify="right")
        cls.add_column("class")
        cls.add_column("pixel share", justify="right")
        cls.add_column("images", justify="right")
        for i, name in enumerate(report.classes):
            swatch = (
                Text("  ", style=f"on rgb({','.join(map(str, report.colors[i]))})")
                if report.colors
                else Text("")
            )
            cls.add_row(
                str(i),
                Text.assemble(swatch, " " if report.colors else "", name),
                f"{100 * report.class_pixel_share[i]:.3f} %",
                f"{report.images_per_class[i]} / {report.num_labelled}",
            )
        cls.add_row(
            str(report.ignore_index), "(ignored)", f"{100 * report.ignored_share:.3f} %", ""
        )
        out.print(cls)

    if report.problems:
        colour = {"error": "red", "warning": "yellow", "info": "cyan"}
        probs = Table(title=f"problems ({len(report.problems)})", title_justify="left")
        probs.add_column("severity")
        probs.add_column("kind")
        probs.add_column("file")
        probs.add_column("message", overflow="fold")
        order = {"error": 0, "warning": 1, "info": 2}
        shown = sorted(report.problems, key=lambda p: order.get(p["severity"], 3))
        for p in shown[:max_problems]:
            probs.add_row(
                Text(p["severity"], style=colour.get(p["severity"], "")),
                p["kind"],
                Text(p["path"] or "", overflow="fold"),
                p["message"],
            )
        out.print(probs)
        if len(shown) > max_problems:
            out.print(
                f"[dim]{len(shown) - max_problems} more: --max-problems N or --json lists them all[/]"
            )
    else:
        out.print("[green]no problems found[/]")


# ---------------------------------------------------------------------------------------
# translate  (methods + translate runner)
# ---------------------------------------------------------------------------------------
def _show_library_log() -> None:
    """Print the library's log lines (``synth2real.*``, INFO and up) on the console:
    e.g. which device, dtype and model a diffusion method loaded, once, and a warning
    when it runs on the CPU."""
    import logging

    from rich.markup import escape

    class _ConsoleHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            msg = escape(record.getMessage())
            if record.levelno >= logging.WARNING:
                console.print(f"[bold yellow]warning:[/] {msg}")
            else:
                console.print(f"[dim]{msg}[/]")

    logger = logging.getLogger("synth2real")
    if not any(type(h).__name__ == "_ConsoleHandler" for h in logger.handlers):
        logger.addHandler(_ConsoleHandler())
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)


@app.command("translate")
def translate_cmd(
    source: Annotated[Path, typer.Option("--source", help="The (synthetic) dataset to translate.")],
    references: Annotated[
        Path,
        typer.Option(
            "--references", help="Folder of real reference images (any format, labelled or not)."
        ),
    ],
    method: Annotated[
        str, typer.Option("--method", help="Method name (see `synth2real methods`).")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Output folder (a translated copy of the dataset).")
    ],
    reference_names: Annotated[
        str | None,
        typer.Option(
            "--reference-names",
            help="Which references: a,b,c | FILE (one name a line) | FILE.json:KEY (e.g. splits.json:references).",
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="Method parameter KEY=VALUE (repeatable); see `synth2real methods NAME`.",
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Run seed (per image: seed + sample name).")
    ] = 0,
    workers: Annotated[int, typer.Option("--workers", help="Processes for CPU methods.")] = 1,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue a stopped run of the same configuration.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a different run in --out.")
    ] = False,
    reference_choice: Annotated[
        str,
        typer.Option(
            "--reference-choice",
            help="Reference per image: round-robin, random (seeded) or matched (closest class shares).",
        ),
    ] = "round-robin",
    format: FormatOpt = None,
    classes: ClassesOpt = None,
    class_map: ClassMapOpt = None,
    reference_format: Annotated[
        str | None,
        typer.Option(
            "--reference-format", help="Format of the references folder; detected when omitted."
        ),
    ] = None,
    reference_classes: Annotated[
        Path | None,
        typer.Option("--reference-classes", help="Class spec YAML of the references' label maps."),
    ] = None,
    reference_class_map: Annotated[
        Path | None,
        typer.Option(
            "--reference-class-map", help="Class map of the references onto the source's classes."
        ),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            help="I/N: translate only shard I of N (0-based); automatic under accelerate launch.",
        ),
    ] = None,
    layout: Annotated[
        str,
        typer.Option(
            "--layout",
            help="Output layout: auto (the source's where simple), generic or supervisely.",
        ),
    ] = "auto",
    reference_labels_from: Annotated[
        Path | None,
        typer.Option(
            "--reference-labels-from",
            help="A model.safetensors (from `synth2real train`) that predicts label maps for "
            "references without labels, so class-wise methods can use unlabelled photos.",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Diffusion methods: Stable Diffusion weights, a hub id or a local folder in "
            "diffusers layout (same as --param model=...).",
        ),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(
            "--device",
            help="auto, cpu, cuda, cuda:1, mps: for diffusion methods and "
            "--reference-labels-from (default auto).",
        ),
    ] = None,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="Do not draw a progress bar.")
    ] = False,
) -> None:
    """Translate a synthetic dataset towards real reference images.

    Writes a translated copy of --source into --out (same names, sizes and labels) with a
    manifest.jsonl recording the method, parameters, reference and seed of every image.
    References without label maps work with global methods; class-wise methods need
    --reference-labels-from CHECKPOINT to predict them.
    """
    from synth2real.data.readers import open_dataset
    from synth2real.errors import ConfigError
    from synth2real.methods import create_method
    from synth2real.methods.registry import describe, parse_param
    from synth2real.translate import load_references, translate_dataset

    _show_library_log()
    overrides = {}
    for item in param or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = parse_param(method, key.strip(), raw)
    params = {p.name for p in describe(method)[1]}
    for flag, key, value in (("--model", "model", model), ("--device", "device", device)):
        if value is None or key in overrides:
            continue
        if key in params:
            overrides[key] = value
        elif flag == "--model":
            raise ConfigError(f"--model applies to diffusion methods; {method!r} takes no model")
    m = create_method(method, **overrides)
    shard_t = None
    if shard is not None:
        i, sep, n = shard.partition("/")
        if not sep or not i.strip().isdigit() or not n.strip().isdigit():
            raise ConfigError(f"--shard expects I/N (e.g. 0/4), got {shard!r}")
        shard_t = (int(i), int(n))
    ds = open_dataset(source, format=format, classes=classes, class_map=class_map)
    predictor = None
    if reference_labels_from is not None:
        predictor = _reference_predictor(reference_labels_from, ds.classes, device or "auto")
    refs = load_references(
        references,
        names=reference_names,
        classes=reference_classes
        if reference_classes is not None
        else (ds.classes if predictor is not None else None),
        format=reference_format,
        class_map=reference_class_map,
        predictor=predictor,
    )
    if any(refs.predicted):
        console.print(
            f"predicted label maps for {sum(refs.predicted)} unlabelled reference(s) "
            f"with {reference_labels_from}"
        )
    if not any(lab is not None for lab in refs.labels):
        refs.classes = ds.classes  # unlabelled photos: nothing to disagree with
    summary = translate_dataset(
        ds,
        refs,
        m,
        out,
        seed=seed,
        reference_choice=reference_choice,
        workers=workers,
        resume=resume,
        overwrite=overwrite,
        progress=not no_progress,
        shard=shard_t,
        layout=layout,
    )
    msg = (
        f"[bold]{summary.method}[/]: {summary.written} written, {summary.skipped} already done "
        f"-> {summary.out}"
    )
    if summary.written:
        msg += f" ({summary.seconds_per_image:.3f} s/image)"
    console.print(msg)
    if summary.manifest is None:
        console.print(
            "[dim]other shards are unfinished: manifest.jsonl is written by the last one[/]"
        )


def _reference_predictor(checkpoint: Path, classes, device: str):
    """``images -> label maps`` from a trained checkpoint whose classes match ``classes``."""
    from synth2real.errors import ConfigError
    from synth2real.segment.checkpoint import checkpoint_classes, load_checkpoint
    from synth2real.segment.predict import predict_labels

    _, meta = load_checkpoint(checkpoint, "cpu")  # fails early with a clear message
    names = checkpoint_classes(meta).names
    if list(names) != list(classes.names):
        raise ConfigError(
            f"{checkpoint}: the model predicts classes {list(names)}, the source has "
            f"{list(classes.names)}; train it on data with the source's classes"
        )

    def predictor(images):
        return predict_labels(checkpoint, images, device=device, progress=True)

    return predictor


# ---------------------------------------------------------------------------------------
# train / evaluate  (segment)
# ---------------------------------------------------------------------------------------
@app.command("train")
def train_cmd(
    data: Annotated[
        list[Path],
        typer.Option(
            "--data",
            help="Labelled dataset folder; repeat to mix several (e.g. translated, then real).",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Output folder (model.safetensors, model.json).")
    ],
    names: Annotated[
        list[str] | None,
        typer.Option(
            "--names",
            help="Use only these samples of the --data at the same position: FILE (one name a line), "
            "FILE.json:key (e.g. splits.json:references) or a,b,c; 'all' for every sample.",
        ),
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(
            "--weights",
            help="Sampling probability of each --data, e.g. 0.5,0.5 (default: by size).",
        ),
    ] = None,
    real_fraction: Annotated[
        float | None,
        typer.Option(
            "--real-fraction",
            help="Probability of drawing from the last --data (the real references).",
        ),
    ] = None,
    format: FormatOpt = None,
    classes: ClassesOpt = None,
    class_map: ClassMapOpt = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="YAML file of train options (the TrainConfig fields)."),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="small-unet (CPU, default) or segformer (GPU).")
    ] = None,
    pretrained: Annotated[
        str | None,
        typer.Option(
            "--pretrained",
            help="Pretrained weights: hub id or local folder; 'none' for random init.",
        ),
    ] = None,
    iterations: Annotated[
        int | None, typer.Option("--iterations", help="Optimizer steps (default 2000).")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Crops per step (default 8).")
    ] = None,
    crop: Annotated[
        str | None, typer.Option("--crop", help="Crop size: 256 or HxW like 256x512.")
    ] = None,
    lr: Annotated[
        float | None, typer.Option("--lr", help="Peak learning rate (default: the model's).")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed (default 0).")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda or mps.")] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="CPU threads for torch.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Any other train option as key=value (e.g. loss=ce, max_size=512); repeatable.",
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume/--no-resume",
            help="Continue a stopped run in --out (default) or start afresh.",
        ),
    ] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train a segmentation model on a dataset (optionally mixed with real references).

    Example: translated synthetic data and 10 real references, half and half:
    synth2real train --data out/reinhard --data cracks/validation
    --names all --names cracks/splits.json:references --weights 0.5,0.5 --out runs/m
    """
    import json
    import time

    from synth2real.errors import ConfigError
    from synth2real.segment.train import TrainConfig, train

    options: dict = {}
    if config is not None:
        options.update(_seg_read_yaml(config))
    for item in set_ or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        options[key.strip()] = _seg_value(raw)
    given = {
        "model": model, "iterations": iterations, "batch_size": batch_size, "lr": lr,
        "seed": seed, "device": device, "num_threads": threads, "real_fraction": real_fraction,
    }  # fmt: skip
    options.update({k: v for k, v in given.items() if v is not None})
    if crop is not None:
        options["crop"] = _seg_crop(crop)
    elif isinstance(options.get("crop"), str):
        options["crop"] = _seg_crop(options["crop"])
    if pretrained is not None:
        options["pretrained"] = (
            False if pretrained.lower() in ("none", "false", "random") else pretrained
        )
    cfg = TrainConfig.from_dict(options)
    datasets = _seg_open_all(data, names, format, classes, class_map, require_labels=True)
    w = None
    if weights is not None:
        try:
            w = [float(v) for v in weights.split(",")]
        except ValueError:
            raise ConfigError(
                f"--weights expects numbers separated by commas, got {weights!r}"
            ) from None
    t0 = time.perf_counter()
    result = train(datasets, cfg, out, weights=w, resume=resume, progress=not json_out)
    summary = {
        "checkpoint": str(result.checkpoint),
        "iterations": result.iterations,
        "resumed_from": result.resumed_from,
        "seconds": round(result.seconds, 2),
        "final_loss": round(sum(result.losses[-20:]) / max(1, len(result.losses[-20:])), 5),
        "wall_seconds_this_call": round(time.perf_counter() - t0, 2),
    }
    if json_out:
        typer.echo(json.dumps(summary, indent=2))
        return
    if result.resumed_from == result.iterations:
        console.print(
            f"[green]already trained[/]: {result.checkpoint} (use --no-resume to retrain)"
        )
    else:
        console.print(
            f"[green]trained[/] {cfg.model} for {result.iterations} iterations in "
            f"{result.seconds:.0f} s (loss {summary['final_loss']:.4f}): {result.checkpoint}"
        )


@app.command("evaluate")
def evaluate_cmd(
    checkpoint: Annotated[
        Path, typer.Option("--checkpoint", help="A model.safetensors written by train.")
    ],
    data: Annotated[
        Path, typer.Option("--data", help="Labelled dataset folder (real test images).")
    ],
    names: Annotated[
        str | None,
        typer.Option(
            "--names",
            help="Score only these samples: FILE, FILE.json:key (splits.json:test) or a,b,c.",
        ),
    ] = None,
    format: FormatOpt = None,
    classes: ClassesOpt = None,
    class_map: ClassMapOpt = None,
    save_predictions: Annotated[
        Path | None,
        typer.Option(
            "--save-predictions",
            help="Write masks/<name>.png, overlays/<name>.jpg and scores.json here.",
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or mps.")] = "auto",
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the scores as JSON on stdout.")
    ] = False,
) -> None:
    """Score a checkpoint on a labelled real set: per-class IoU, mIoU, confusion matrix.

    Every image is predicted at its own resolution; pixels labelled ignore_index are not
    scored; a class absent from both the labels and the predictions is left out of mIoU.
    """
    import json

    from synth2real.segment.evaluate import evaluate

    (dataset,) = _seg_open_all([data], [names] if names else None, format, classes, class_map, True)
    result = evaluate(
        checkpoint, dataset, device=device, save_dir=save_predictions, progress=not json_out
    )
    if json_out:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    from rich.table import Table

    out = Console()
    support = result.confusion.sum(axis=1)
    table = Table(
        title=f"{checkpoint} on {data} ({result.num_images} images)", title_justify="left"
    )
    table.add_column("class", style="bold")
    table.add_column("IoU", justify="right")
    table.add_column("pixels (truth)", justify="right")
    table.add_column("predicted", justify="right")
    predicted = result.confusion.sum(axis=0)
    total = max(1, int(support.sum()))
    for i, name in enumerate(result.class_names):
        iou = result.iou[i]
        table.add_row(
            name,
            "-" if iou != iou else f"{iou:.4f}",
            f"{support[i] / total:.2%}",
            f"{predicted[i] / total:.2%}",
        )
    table.add_section()
    table.add_row("mIoU", f"{result.miou:.4f}", "", "")
    table.add_row("pixel accuracy", f"{result.pixel_accuracy:.4f}", "", "")
    out.print(table)
    out.print(
        f"[dim]{result.seconds:.1f} s; '-' = class absent from labels and predictions (not in mIoU)[/]"
    )
    if save_predictions is not None:
        out.print(f"predictions: {save_predictions}")


def _seg_open_all(paths, names, format, classes, class_map, require_labels):
    """Open each dataset and apply the ``--names`` at the same position."""
    from synth2real.data.readers import open_dataset
    from synth2real.data.select import parse_names
    from synth2real.errors import ConfigError

    names = list(names or [])
    if names and len(names) != len(paths):
        raise ConfigError(
            f"give --names once per --data, in the same order ({len(paths)} --data, {len(names)} --names); "
            "use 'all' for a dataset used whole"
        )
    out = []
    for i, p in enumerate(paths):
        ds = open_dataset(p, format=format, classes=classes, class_map=class_map)
        spec = names[i] if names else "all"
        if spec.strip().lower() != "all":
            try:
                ds = ds.select(parse_names(spec))
            except KeyError as e:
                raise ConfigError(f"--names {spec}: {e.args[0]}") from None
        if require_labels and not ds.has_labels:
            missing = [s.name for s in ds.samples if s.label_path is None]
            raise ConfigError(
                f"{p}: {len(missing)} selected image(s) have no label (e.g. {missing[:3]})"
            )
        out.append(ds)
    return out


def _seg_read_yaml(path: Path) -> dict:
    import yaml

    from synth2real.errors import DataError

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise DataError(path, f"cannot read the train config ({e})") from None
    if not isinstance(data, dict):
        raise DataError(path, "a train config is a mapping of option: value")
    return data


def _seg_value(raw: str):
    import yaml

    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _seg_crop(raw) -> int | tuple[int, int]:
    from synth2real.errors import ConfigError

    text = str(raw).lower().replace(" ", "")
    try:
        if "x" in text:
            h, w = text.split("x")
            return (int(h), int(w))
        return int(text)
    except ValueError:
        raise ConfigError(f"--crop expects N or HxW, got {raw!r}") from None


# ---------------------------------------------------------------------------------------
# pilot / demo  (pilot)
# ---------------------------------------------------------------------------------------
def _omp_passive() -> None:
    """Let idle OpenMP threads sleep instead of spinning (set before torch loads).

    On CPUs shared with other jobs, spinning threads slow torch down by 10-50x; on a
    quiet machine the cost is a few percent. ``OMP_WAIT_POLICY`` set by the user wins.
    """
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@app.command("pilot")
def pilot_cmd(
    source: Annotated[
        Path, typer.Option("--source", help="Labelled synthetic images (dataset folder).")
    ],
    references: Annotated[
        Path, typer.Option("--references", help="Labelled real references (dataset folder).")
    ],
    test: Annotated[
        Path,
        typer.Option(
            "--test",
            help="Labelled real test images (dataset folder; may be the references' folder with --test-names).",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", help="Output folder (translations, runs, results, report.html)."),
    ],
    methods: Annotated[
        str,
        typer.Option(
            "--methods", help="Comma-separated translation methods (see `synth2real methods`)."
        ),
    ] = "reinhard,reinhard-cw",
    seeds: Annotated[
        str, typer.Option("--seeds", help="Number of training seeds (3 -> 0,1,2) or a comma list.")
    ] = "3",
    reference_names: Annotated[
        str | None,
        typer.Option(
            "--reference-names",
            help="Subset of --references: FILE (one name a line), FILE.json:KEY, or a,b,c.",
        ),
    ] = None,
    test_names: Annotated[
        str | None, typer.Option("--test-names", help="Subset of --test (same syntax).")
    ] = None,
    source_names: Annotated[
        str | None, typer.Option("--source-names", help="Subset of --source (same syntax).")
    ] = None,
    source_limit: Annotated[
        int | None,
        typer.Option("--source-limit", help="Use a fixed random subset of N synthetic images."),
    ] = None,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="Short training budget for a first look (cannot separate close methods).",
        ),
    ] = False,
    budget: Annotated[
        str | None,
        typer.Option(
            "--budget",
            help="Training budget overrides, e.g. iterations=600,batch=8,crop=256,max_size=512.",
        ),
    ] = None,
    real_ratio: Annotated[
        float,
        typer.Option(
            "--real-ratio",
            help="Share of each batch drawn from the references in the +real settings.",
        ),
    ] = 0.5,
    model: Annotated[
        str, typer.Option("--model", help="Segmentation model (small-unet, segformer).")
    ] = "small-unet",
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:1, mps.")] = "auto",
    workers: Annotated[int, typer.Option("--workers", help="Translation worker processes.")] = 1,
    jobs: Annotated[
        str,
        typer.Option(
            "--jobs",
            help="Training runs at once, each in its own process: N or auto (1 on a GPU, "
            "one per CPU core up to 4 on a CPU).",
        ),
    ] = "auto",
    metric: Annotated[
        str, typer.Option("--metric", help="What the verdict is judged on: miou or iou:<class>.")
    ] = "miou",
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="Method parameter, METHOD.KEY=VALUE (repeatable)."),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir",
            help="Keep translations (and the source shrunk to the training size) here, to share them between pilots; default: inside --out.",
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Continue the pilot in --out: finished runs and translations are kept."
        ),
    ] = False,
    format: FormatOpt = None,
    classes: ClassesOpt = None,
    class_map: ClassMapOpt = None,
) -> None:
    """Run the pilot: translate, train and score every setting, write the HTML report.

    Settings: source-only, real-only, source+real, and per method translated and translated+real; each trained once per seed with one fixed budget and scored on the real test images at their own resolution (docs/PILOT.md).
    """
    _omp_passive()
    from synth2real.data.select import parse_names
    from synth2real.errors import ConfigError
    from synth2real.methods.registry import parse_param
    from synth2real.pilot import DEFAULT_BUDGET, QUICK_BUDGET, PilotConfig, parse_budget, run_pilot
    from synth2real.pilot.config import parse_jobs

    method_params: dict = {}
    for item in param or []:
        key, sep, raw = item.partition("=")
        mname, dot, pkey = key.partition(".")
        if not sep or not dot:
            raise ConfigError(f"--param: expected METHOD.KEY=VALUE, got {item!r}")
        method_params.setdefault(mname, {})[pkey] = parse_param(mname, pkey, raw)
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
        real_ratio=real_ratio,
        model=model,
        device=device,
        workers=workers,
        jobs=parse_jobs(jobs, device),
        metric=metric,
        format=format,
        classes=str(classes) if classes else None,
        class_map=str(class_map) if class_map else None,
        method_params=method_params,
        cache_dir=cache_dir,
    )
    result = run_pilot(cfg, out, resume=resume)
    Console().print(
        f"report: {result.report}\nresults: {result.results_json}, {result.results_csv}"
    )


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("runs/demo"),
    seeds: Annotated[int, typer.Option("--seeds", help="Training seeds.")] = 2,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda.")] = "cpu",
    jobs: Annotated[
        str, typer.Option("--jobs", help="Training runs at once: N or auto (see pilot --help).")
    ] = "auto",
) -> None:
    """Run the pilot on the embedded toy data (no download, a few minutes on CPU)."""
    _omp_passive()
    from synth2real.pilot.demo import run_demo
    from synth2real.pilot.config import parse_jobs

    result = run_demo(out, seeds=seeds, device=device, jobs=parse_jobs(jobs, device))
    Console().print(f"\n[bold]demo report[/]: {result.report.resolve()}")


# ---------------------------------------------------------------------------------------
if __name__ == "__main__":  # pragma: no cover
    main()
