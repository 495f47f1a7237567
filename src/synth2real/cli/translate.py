"""``synth2real translate``: options in, :func:`synth2real.translate.translate_folder` called."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape

from synth2real.cli.common import (
    ClassesOpt,
    ClassMapOpt,
    FormatOpt,
    SourceLimitOpt,
    SourceNamesOpt,
    console,
    option,
    show_library_log,
)


def translate_cmd(
    source: option(Path, "--source", "The (synthetic) dataset to translate."),
    references: option(
        Path, "--references", "Folder of real reference images (any format, labelled or not)."
    ),
    method: option(str, "--method", "Method name (see `synth2real methods`)."),
    out: option(Path, "--out", "Output folder (a translated copy of the dataset)."),
    reference_names: option(
        str | None,
        "--reference-names",
        "Which references: a,b,c | FILE (one name a line) | FILE.json:KEY (e.g. splits.json:references).",
    ) = None,
    source_names: SourceNamesOpt = None,
    source_limit: SourceLimitOpt = None,
    param: option(
        list[str] | None,
        "--param",
        "Method parameter KEY=VALUE or METHOD.KEY=VALUE (repeatable); see "
        "`synth2real methods NAME`.",
        "-p",
    ) = None,
    seed: option(int, "--seed", "Run seed (per image: seed + sample name).") = 0,
    workers: option(int, "--workers", "Processes for CPU methods.") = 1,
    resume: option(bool, "--resume", "Continue a stopped run of the same configuration.") = False,
    overwrite: option(bool, "--overwrite", "Replace a different run in --out.") = False,
    reference_choice: option(
        str,
        "--reference-choice",
        "Reference per image: round-robin, random (seeded) or matched (closest class shares).",
    ) = "round-robin",
    format: FormatOpt = None,
    classes: ClassesOpt = None,
    class_map: ClassMapOpt = None,
    reference_format: option(
        str | None, "--reference-format", "Format of the references folder; detected when omitted."
    ) = None,
    reference_classes: option(
        Path | None, "--reference-classes", "Class spec YAML of the references' label maps."
    ) = None,
    reference_class_map: option(
        Path | None,
        "--reference-class-map",
        "Class map of the references onto the source's classes.",
    ) = None,
    shard: option(
        str | None,
        "--shard",
        "I/N: translate only shard I of N (0-based); automatic under accelerate launch.",
    ) = None,
    layout: option(
        str, "--layout", "Output layout: auto (the source's where simple), generic or supervisely."
    ) = "auto",
    reference_labels_from: option(
        Path | None,
        "--reference-labels-from",
        "A model.safetensors (from `synth2real train`, or its --out folder) that predicts "
        "label maps for references without labels, so class-wise methods can use "
        "unlabelled photos.",
    ) = None,
    diffusion_model: option(
        str | None,
        "--diffusion-model",
        "Diffusion methods: Stable Diffusion weights, a hub id or a local folder in "
        "diffusers layout (same as --param model=...).",
    ) = None,
    old_model: option(str | None, "--model", "Deprecated: --diffusion-model.", hidden=True) = None,
    device: option(
        str | None,
        "--device",
        "auto, cpu, cuda, cuda:1, mps: for diffusion methods and "
        "--reference-labels-from (default auto).",
    ) = None,
    no_progress: option(bool, "--no-progress", "Do not draw a progress bar.") = False,
) -> None:
    """Translate a synthetic dataset towards real reference images.

    Writes a translated copy of --source into --out (same names, sizes and labels) with a
    manifest.jsonl recording the method, parameters, reference and seed of every image.
    References without label maps work with global methods; class-wise methods need
    --reference-labels-from CHECKPOINT to predict them.
    """
    from synth2real.cli.deprecated import renamed
    from synth2real.methods.registry import parse_method_params
    from synth2real.translate import translate_folder

    model = renamed(
        "--diffusion-model", diffusion_model, "--model", old_model, "the diffusion weights"
    )
    show_library_log()
    summary = translate_folder(
        source,
        references,
        method,
        out,
        params=parse_method_params(param, method).get(method, {}),
        model=model,
        device=device,
        reference_names=reference_names,
        source_names=source_names,
        source_limit=source_limit,
        reference_labels_from=reference_labels_from,
        format=format,
        classes=classes,
        class_map=class_map,
        reference_format=reference_format,
        reference_classes=reference_classes,
        reference_class_map=reference_class_map,
        seed=seed,
        reference_choice=reference_choice,
        workers=workers,
        resume=resume,
        overwrite=overwrite,
        progress=not no_progress,
        shard=parse_shard(shard),
        layout=layout,
    )
    msg = (
        f"[bold]{escape(summary.method)}[/]: {summary.written} written, {summary.skipped} "
        f"already done -> {escape(str(summary.out))}"
    )
    if summary.written:
        msg += f" ({summary.seconds_per_image:.3f} s/image)"
    console.print(msg)
    if summary.manifest is None:
        console.print(
            "[dim]other shards are unfinished: manifest.jsonl is written by the last one[/]"
        )


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """``"1/4"`` -> ``(1, 4)``; ``None`` stays ``None``."""
    from synth2real.errors import ConfigError

    if spec is None:
        return None
    i, sep, n = spec.partition("/")
    if not sep or not i.strip().isdigit() or not n.strip().isdigit():
        raise ConfigError(f"--shard expects I/N (e.g. 0/4), got {spec!r}")
    return int(i), int(n)
