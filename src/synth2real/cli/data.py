"""``synth2real methods`` and ``synth2real inspect``: what the registry and a dataset hold."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from synth2real.cli.common import ClassesOpt, ClassMapOpt, FormatOpt, option, table_console


def methods_cmd(
    name: Annotated[str | None, typer.Argument(help="Show one method's parameters.")] = None,
) -> None:
    """List the translation methods, or one method's parameters and defaults."""
    from rich.markup import escape
    from rich.table import Table

    from synth2real.methods import describe, list_methods

    out = table_console()
    if name is None:
        table = Table(title="translation methods", show_lines=False)
        table.add_column("name", style="bold")
        table.add_column("family")
        table.add_column("what it does")
        for n in list_methods():
            from synth2real.methods.registry import get_entry

            e = get_entry(n)
            table.add_row(escape(n), e.family, escape(e.summary))
        out.print(table)
        out.print("[dim]synth2real methods NAME shows a method's parameters[/]")
        return
    entry, params = describe(name)
    out.print(f"[bold]{escape(name)}[/] ({entry.family}): {escape(entry.summary)}")
    table = Table(show_lines=False)
    table.add_column("parameter", style="bold")
    table.add_column("default")
    table.add_column("type")
    table.add_column("meaning")
    for p in params:  # cells are text: ``[height, width]`` is not rich markup
        table.add_row(*(escape(str(v)) for v in (p.name, repr(p.default), p.annotation, p.doc)))
    out.print(table)


def inspect_cmd(
    path: Annotated[Path, typer.Argument(help="Dataset folder.")],
    format: FormatOpt = None,
    classes: ClassesOpt = None,
    class_map: ClassMapOpt = None,
    json_out: option(bool, "--json", "Print JSON instead of tables.") = False,
    workers: option(int | None, "--workers", "Scanning threads (default: CPUs, at most 8).") = None,
    max_problems: option(
        int, "--max-problems", "Problems listed in the table (all in --json)."
    ) = 20,
    strict: option(bool, "--strict", "Exit with status 1 when any sample cannot be used.") = False,
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


def _in_root(path: str | None, root) -> str:
    """``path`` relative to the dataset folder when it lies inside it (``.`` for the
    folder itself), else whole."""
    if not path:
        return ""
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path


def _render_inspect(report, max_problems: int) -> None:
    from rich.table import Table
    from rich.text import Text

    out = table_console()
    out.print(f"dataset {escape(str(report.root))}")
    summary = Table(show_header=False)
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
        probs.add_column("file", no_wrap=True)  # in the dataset printed above; never cut
        probs.add_column("message", overflow="fold")
        order = {"error": 0, "warning": 1, "info": 2}
        shown = sorted(report.problems, key=lambda p: order.get(p["severity"], 3))
        for p in shown[:max_problems]:
            probs.add_row(
                Text(p["severity"], style=colour.get(p["severity"], "")),
                p["kind"],
                _in_root(p["path"], report.root),
                p["message"],
            )
        out.print(probs)
        if len(shown) > max_problems:
            out.print(
                f"[dim]{len(shown) - max_problems} more: --max-problems N or --json lists them all[/]"
            )
    else:
        out.print("[green]no problems found[/]")
