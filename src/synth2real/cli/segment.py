"""``synth2real train`` and ``synth2real evaluate``: options in, a checkpoint / scores out."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from synth2real.cli.common import (
    ClassesOpt,
    ClassMapOpt,
    FormatOpt,
    UnlabeledNamesOpt,
    UnlabeledOpt,
    console,
    option,
    table_console,
)
from synth2real.segment.config import DEFAULT_MODEL


def train_cmd(
    data: option(
        list[Path],
        "--data",
        help="Labelled dataset folder; repeat to mix several (e.g. translated, then real).",
    ),
    out: option(Path, "--out", help="Output folder (model.safetensors, model.json)."),
    names: option(
        list[str] | None,
        "--names",
        help="Use only these samples of the --data at the same position: FILE (one name a line), "
        "FILE.json:key (e.g. splits.json:references) or a,b,c; 'all' for every sample.",
    ) = None,
    weights: option(
        str | None,
        "--weights",
        help="Sampling probability of each --data, e.g. 0.5,0.5 (default: by size).",
    ) = None,
    real_fraction: option(
        float | None,
        "--real-fraction",
        help="Probability of drawing from the last --data (the real references).",
    ) = None,
    unlabeled: UnlabeledOpt = None,
    unlabeled_names: UnlabeledNamesOpt = None,
    recipe: option(
        str | None,
        "--recipe",
        help="How the data is used: mix (default), finetune (the mix, then the last "
        "--data alone) or selftrain (needs --unlabeled); same as --set recipe=...",
    ) = None,
    format: FormatOpt = None,
    classes: ClassesOpt = None,
    class_map: ClassMapOpt = None,
    config: option(
        Path | None, "--config", help="YAML file of train options (the TrainConfig fields)."
    ) = None,
    model: option(
        str | None,
        "--model",
        help=f"{DEFAULT_MODEL} (CPU, default), small-unet or segformer (GPU).",
    ) = None,
    pretrained: option(
        str | None,
        "--pretrained",
        help="Pretrained weights: hub id or local folder; 'none' for random init.",
    ) = None,
    iterations: option(int | None, "--iterations", help="Optimizer steps (default 2000).") = None,
    batch_size: option(int | None, "--batch-size", help="Crops per step (default 8).") = None,
    crop: option(
        str | None, "--crop", help="Crop size: 256, HxW like 256x512, or [256, 512]."
    ) = None,
    lr: option(float | None, "--lr", help="Peak learning rate (default: the model's).") = None,
    seed: option(int | None, "--seed", help="Random seed (default 0).") = None,
    device: option(str | None, "--device", help="auto, cpu, cuda or mps.") = None,
    threads: option(int | None, "--threads", help="CPU threads for torch.") = None,
    set_: option(
        list[str] | None,
        "--set",
        help="Any train option as key=value, several separated by commas (e.g. "
        "loss=ce,max_size=512,crop=256x512; the same keys and forms as pilot --budget); "
        "repeatable.",
    ) = None,
    resume: option(
        bool,
        "--resume/--no-resume",
        help="Continue a stopped run in --out (default) or start afresh.",
    ) = True,
    json_out: option(bool, "--json", help="Print the result as JSON.") = False,
) -> None:
    """Train a segmentation model on a dataset (optionally mixed with real references).

    Example: translated synthetic data and 10 real references, half and half:
    synth2real train --data out/reinhard --data cracks/validation
    --names all --names cracks/splits.json:references --weights 0.5,0.5 --out runs/m
    """
    import json
    import time

    from synth2real.guard import check_output, names_file

    local = Path(pretrained) if pretrained and Path(pretrained).exists() else None
    inputs = {
        "--data": data,
        "--names": [names_file(n) for n in names or []],
        "--unlabeled": unlabeled,
        "--unlabeled-names": names_file(unlabeled_names),
        "--classes": classes,
        "--class-map": class_map,
        "--config": config,
        "--pretrained": local,
    }
    check_output(out, inputs)  # first: before torch is even imported
    from synth2real.errors import ConfigError
    from synth2real.segment.config import (
        make_config,
        parse_setting,
        parse_settings,
        read_settings_file,
    )
    from synth2real.segment.train import train

    base = read_settings_file(config) if config is not None else None
    settings = parse_settings(set_, base, option="--set")
    if crop is not None:
        settings["crop"] = parse_setting("crop", crop, option="--crop")
    if recipe is not None:
        settings["recipe"] = parse_setting("recipe", recipe, option="--recipe")
    if pretrained is not None:
        settings["pretrained"] = (
            False if pretrained.lower() in ("none", "false", "random") else pretrained
        )
    given = {
        "model": model, "iterations": iterations, "batch_size": batch_size, "lr": lr,
        "seed": seed, "device": device, "num_threads": threads, "real_fraction": real_fraction,
    }  # fmt: skip
    cfg = make_config(
        settings, option="train options", **{k: v for k, v in given.items() if v is not None}
    )
    datasets = _open_all(data, names, format, classes, class_map, require_labels=True)
    if unlabeled_names is not None and unlabeled is None:
        raise ConfigError("--unlabeled-names needs --unlabeled")
    unl = None
    if unlabeled is not None:
        from synth2real.data.unlabeled import open_unlabeled

        unl = open_unlabeled(unlabeled, unlabeled_names)
    w = None
    if weights is not None:
        try:
            w = [float(v) for v in weights.split(",")]
        except ValueError:
            raise ConfigError(
                f"--weights expects numbers separated by commas, got {weights!r}"
            ) from None
    t0 = time.perf_counter()
    result = train(
        datasets, cfg, out, weights=w, unlabeled=unl, resume=resume, progress=not json_out
    )
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
            f"[green]trained[/] {cfg.model} ({cfg.recipe}) for {result.iterations} iterations in "
            f"{result.seconds:.0f} s (loss {summary['final_loss']:.4f}): {result.checkpoint}"
        )


def evaluate_cmd(
    checkpoint: option(
        Path, "--checkpoint", help="A model.safetensors written by train, or its --out folder."
    ),
    data: option(Path, "--data", help="Labelled dataset folder (real test images)."),
    names: option(
        str | None,
        "--names",
        help="Score only these samples: FILE, FILE.json:key (splits.json:test) or a,b,c.",
    ) = None,
    format: FormatOpt = None,
    classes: ClassesOpt = None,
    class_map: ClassMapOpt = None,
    save_predictions: option(
        Path | None,
        "--save-predictions",
        help="Write masks/<name>.png, overlays/<name>.jpg and scores.json here.",
    ) = None,
    device: option(str, "--device", help="auto, cpu, cuda or mps.") = "auto",
    json_out: option(bool, "--json", help="Print the scores as JSON on stdout.") = False,
) -> None:
    """Score a checkpoint on a labelled real set: per-class IoU, mIoU, confusion matrix.

    Every image is predicted at its own resolution; pixels labelled ignore_index are not
    scored; a class absent from both the labels and the predictions is left out of mIoU.
    """
    import json

    from synth2real.guard import check_output, names_file
    from synth2real.segment.checkpoint import resolve_checkpoint

    if save_predictions is not None:  # never over the labels it scores against
        inputs = {
            "--data": data,
            "--checkpoint": resolve_checkpoint(checkpoint),  # the file: runs/m/pred is fine
            "--names": names_file(names),
            "--classes": classes,
            "--class-map": class_map,
        }
        check_output(save_predictions, inputs, option="--save-predictions")
    from synth2real.segment.evaluate import evaluate

    (dataset,) = _open_all([data], [names] if names else None, format, classes, class_map, True)
    result = evaluate(
        checkpoint, dataset, device=device, save_dir=save_predictions, progress=not json_out
    )
    if json_out:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    from rich.table import Table

    out = table_console()
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
        out.print(f"predictions: {escape(str(save_predictions))}", soft_wrap=True)


def _open_all(paths, names, format, classes, class_map, require_labels):
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
            hint = (
                "unlabelled photos cannot be trained or scored on; train's selftrain recipe "
                "takes them with --unlabeled"
                if len(missing) == len(ds)
                else "leave them out with --names, or see `synth2real inspect` for why"
            )
            raise ConfigError(
                f"{p}: {len(missing)} selected image(s) have no label (e.g. {missing[:3]}); {hint}"
            )
        out.append(ds)
    return out
