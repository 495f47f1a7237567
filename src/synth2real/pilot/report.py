"""The pilot's HTML report: one self-contained file a manager can read offline.

Everything is inline: CSS in the template, images as base64 JPEG thumbnails, charts as
SVG drawn here. No script, no font or style from the internet, so the file opens the
same way on an air-gapped laptop, in a mail attachment, or in CI's headless browser.

:func:`write_report` renders ``results.json`` content (see :mod:`synth2real.pilot.results`)
plus thumbnails from the pilot's datasets (:mod:`synth2real.pilot.figures`) into
``DIR/report.html``.
"""

from __future__ import annotations

import html
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from synth2real.data.io import atomic_write_text
from synth2real.pilot.figures import bar_chart, collect_images, fmt
from synth2real.pilot.machine import describe_machine
from synth2real.pilot.verdict import (
    BASELINES,
    PER_METHOD,
    RECIPE_HELP,
    RECIPE_SETTINGS,
    SETTING_HELP,
    display_key,
    group_key,
    metric_label,
    run_key,
)

esc = html.escape


# ---------------------------------------------------------------------------------------
# formatting helpers
# ---------------------------------------------------------------------------------------
def _count(n: int, noun: str) -> str:
    """``1 seed``, ``3 seeds``."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _secs(v: Any) -> str:
    if v is None:
        return "–"
    v = float(v)
    if v < 1:
        return f"{v * 1000:.0f} ms"
    if v < 120:
        return f"{v:.1f} s"
    if v < 7200:
        return f"{v / 60:.1f} min"
    return f"{v / 3600:.1f} h"


def ordered_summary(results: dict) -> list[dict]:
    """Summary rows in report order: per recipe (``mix`` first), its baselines, then each
    method's settings."""
    rows = {run_key(r): r for r in results.get("summary", [])}
    methods = [m for m in results["config"]["methods"] if m != "none"]
    recipes = results["config"].get("recipes") or ["mix"]
    order = []
    for rec in recipes:
        settings = RECIPE_SETTINGS.get(rec, ())
        order += [(rec, s, None) for s in BASELINES if s in settings]
        order += [(rec, s, m) for m in methods for s in PER_METHOD if s in settings]
    return [rows[k] for k in order if k in rows]


# ---------------------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------------------
def _verdict_section(results: dict) -> str:
    v = results["verdict"]
    statuses = {m["status"] for m in v["methods"].values()}
    cls = "win" if v["winners"] else ("bad" if "hurts" in statuses else "")
    items = []
    for mv in v["methods"].values():
        items.append(
            f'<li><span class="badge {esc(mv["status"])}">{esc(mv["status"])}</span>{esc(mv["summary"])}</li>'
        )
    notes = list(v.get("notes", []))
    cfg = results["config"]
    kind = str(cfg.get("budget_name") or "").split("+")[0]
    if kind in ("quick", "demo"):
        notes.insert(
            0,
            f"{kind.capitalize()} budget: a first look. Budgets this short often cannot "
            "separate methods: differences smaller than the seed spread are noise.",
        )
    if results.get("partial"):
        notes.insert(0, "This pilot is still running or was interrupted: some runs are missing.")
    rule = (
        "Rule: a method <b>wins</b> when <i>translated+real</i> beats both <i>source+real</i> and "
        "<i>real-only</i> by more than the seed spread (the larger max-min range over seeds of the two); "
        "it <b>hurts</b> when translating makes the synthetic data worse than leaving it alone by more "
        "than the spread."
    )
    seeds = results["config"]["seeds"]
    facts = (
        f"Judged on {esc(results['metric_label'])} over {_count(len(seeds), 'seed')} on {results['data']['test']} real test "
        f"images at their own resolution; model {esc(results['config']['model'])}, "
        f"{_budget_line(results['budget'])}."
    )
    note_html = "".join(f'<p class="note">{esc(n)}</p>' for n in notes)
    questions = "".join(
        f'<li class="question"><span class="badge answer-{esc(q["answer"])}">{esc(q["answer"])}</span>'
        f"<b>{esc(q['question'])}</b> {esc(q['summary'].split(': ', 1)[-1])}</li>"
        for q in v.get("questions", {}).values()
    )
    if questions:
        questions = f'<ul class="questions">{questions}</ul>'
        rule += (
            " Across recipes: the synthetic data <b>helps</b> when some run on synthetic or "
            "translated images beats <i>every</i> run without synthetic data (<i>real-only</i>, "
            "and <i>real-only (selftrain)</i> when self-training ran, so that a gain from the "
            "unlabelled images is not credited to the synthetic data); a translation "
            "<b>helps</b> when it beats the same recipe on the untouched synthetic images. "
            "The per-method badges judge the mix recipe."
        )
    return (
        f'<section class="card verdict {cls}" id="verdict"><p class="headline">{esc(v["headline"])}</p>'
        f"{questions}<ul>{''.join(items)}</ul>{_gains_table(results)}{note_html}"
        f'<p class="facts">{rule}<br>{facts}</p></section>'
    )


def _delta(a: dict | None, b: dict | None) -> str:
    if not a or not b or a.get("mean") is None or b.get("mean") is None:
        return "–"
    d = a["mean"] - b["mean"]
    spread = max(a["max"] - a["min"], b["max"] - b["min"])
    cls = "pos" if d > spread else ("neg" if -d > spread else "")
    return f'<span class="{cls}">{d:+.3f}</span>'


def _gains_table(results: dict) -> str:
    """Per method: translated+real's mean and its margins over the baselines, on the
    verdict metric and on mIoU (margins beyond the seed spread in colour)."""
    rows = {run_key(r)[1:]: r for r in results.get("summary", []) if run_key(r)[0] == "mix"}
    methods = [m for m in results["config"]["methods"] if m != "none"]
    metrics = [results["metric"]] + (["miou"] if results["metric"] != "miou" else [])
    sr, ro, so = (
        rows.get(("source+real", None)),
        rows.get(("real-only", None)),
        rows.get(("source-only", None)),
    )
    if not methods or not any(("translated+real", m) in rows for m in methods):
        return ""
    group = "".join(f'<th colspan="4" class="grp">{esc(metric_label(m))}</th>' for m in metrics)
    head = "<th>mean</th><th>vs source+real</th><th>vs real-only</th><th>alone vs source-only</th>"
    head *= len(metrics)
    body = []
    for m in methods:
        tr, t = rows.get(("translated+real", m)), rows.get(("translated", m))
        if tr is None:
            continue
        status = results["verdict"]["methods"].get(m, {}).get("status", "")
        cells = ""
        for metric in metrics:
            st = tr.get(metric)
            cells += (
                f"<td>{fmt(st['mean'] if st else None)}</td>"
                f"<td>{_delta(st, (sr or {}).get(metric))}</td>"
                f"<td>{_delta(st, (ro or {}).get(metric))}</td>"
                f"<td>{_delta((t or {}).get(metric), (so or {}).get(metric))}</td>"
            )
        body.append(
            f'<tr><td class="l">{esc(m)}</td><td class="l"><span class="badge {esc(status)}">'
            f"{esc(status)}</span></td>{cells}</tr>"
        )
    return (
        '<div class="tablewrap gains"><table><thead><tr><th class="l" rowspan="2">method</th>'
        f'<th class="l" rowspan="2">verdict</th>{group}</tr><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
        '<p class="facts">Recipe mix. Mean over seeds of <i>translated+real</i>, its margins over the baselines, '
        "and the margin of <i>translated</i> alone over <i>source-only</i>; green / red: larger than "
        "the seed spread.</p>"
    )


def _budget_line(budget: dict) -> str:
    keys = ["iterations", "batch_size", "crop", "lr"]
    parts = [
        f"{k.replace('_size', '')} {budget[k]}"
        for k in keys
        if k in budget and budget[k] is not None
    ]
    return ", ".join(parts) if parts else "budget: see Setup"


#: value columns per table: with more classes, the per-class table is cut into several
#: tables of this many columns, each with the setting names, so every class is on the page
COLUMNS_PER_TABLE = 5


def _metrics_table(results: dict, rows: list[dict]) -> str:
    classes = results["classes"]
    metrics = (
        [("miou", "mIoU")]
        + [(f"iou:{c}", f"{c} IoU") for c in classes]
        + [("pixel_accuracy", "pixel acc.")]
    )
    parts = [
        _metrics_part(
            rows, metrics[i : i + COLUMNS_PER_TABLE], last=i + COLUMNS_PER_TABLE >= len(metrics)
        )
        for i in range(0, len(metrics), COLUMNS_PER_TABLE)
    ]
    return (
        "".join(parts)
        + '<p class="facts">Each cell: mean over seeds, then ± standard deviation and [min..max]. '
        "Best mean per column in green (none where the best is 0.000). "
        + (
            f"The {len(metrics)} columns are cut into {len(parts)} tables of at most "
            f"{COLUMNS_PER_TABLE}. "
            if len(parts) > 1
            else ""
        )
        + "</p>"
    )


def best_means(rows: list[dict], metric: str) -> float | None:
    """The best mean of a column, or ``None`` when it shows as 0.000 (a tie at zero is
    no best value)."""
    vals = [r[metric]["mean"] for r in rows if r.get(metric) and r[metric]["mean"] is not None]
    if not vals or fmt(max(vals)) == fmt(0.0):
        return None
    return max(vals)


def _metrics_part(rows: list[dict], metrics: list[tuple[str, str]], last: bool) -> str:
    best = {m: best_means(rows, m) for m, _ in metrics}
    head = "".join(f"<th>{esc(lbl)}</th>" for _, lbl in metrics) + (
        "<th>seeds</th>" if last else ""
    )
    body = []
    current_group = None
    for r in rows:
        recipe = r.get("recipe") or "mix"
        group = ("baselines" if r["method"] is None else f"method: {r['method']}") + (
            f" · recipe {recipe}" if recipe != "mix" else ""
        )
        if group != current_group:
            body.append(
                f'<tr class="group"><td colspan="{len(metrics) + 2}">{esc(group)}</td></tr>'
            )
            current_group = group
        cells = []
        for m, _ in metrics:
            st = r.get(m)
            if not st or st["mean"] is None:
                cells.append("<td>–</td>")
                continue
            cls = (
                ' class="best"' if best[m] is not None and abs(st["mean"] - best[m]) < 1e-12 else ""
            )
            spread = (
                f'<br><span class="spread">±{fmt(st["std"])} [{fmt(st["min"])}..{fmt(st["max"])}]</span>'
                if st["n"] > 1
                else ""
            )
            cells.append(f"<td{cls}>{fmt(st['mean'])}{spread}</td>")
        label = group_key(r["setting"], None, recipe)
        help_ = SETTING_HELP.get(r["setting"], "") + (
            f"; {RECIPE_HELP[recipe]}" if recipe != "mix" and recipe in RECIPE_HELP else ""
        )
        body.append(
            f'<tr><td class="l" title="{esc(help_)}">{esc(label)}</td>'
            f"{''.join(cells)}" + (f"<td>{len(r['seeds'])}</td>" if last else "") + "</tr>"
        )
    return (
        f'<div class="tablewrap metrics"><table><thead><tr><th class="l">setting</th>{head}'
        f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _grid_section(images: dict | None) -> str:
    if not images or not images.get("rows"):
        return "<p>No images available.</p>"
    cols = images["columns"]
    style = f"grid-template-columns: repeat({len(cols)}, minmax(90px, 1fr));"
    cells = [f'<div class="colhead" title="{esc(c)}">{esc(c)}</div>' for c in cols]
    for name, row in zip(images["names"], images["rows"], strict=True):
        for c, uri in zip(cols, row, strict=True):
            if uri:
                cells.append(
                    f'<figure><img src="{uri}" alt="{esc(c)}: {esc(name)}" title="{esc(name)}"></figure>'
                )
            else:
                cells.append("<figure></figure>")
    refs = "".join(
        f'<img src="{uri}" alt="reference {esc(n)}" title="{esc(n)}">'
        for n, uri in images["references"]
    )
    return (
        f'<div class="grid" style="{style}">{"".join(cells)}</div>'
        '<p class="facts">Each row: one synthetic image, its label drawn over it, the same image after each '
        "method, and the real reference it was translated towards (for methods that pool all references, the one the manifest records). Labels are kept unchanged by every method.</p>"
        f'<h3 style="font-size:15px;margin:18px 0 8px">The real references ({len(images["references"])})</h3>'
        f'<div class="refs">{refs}</div>'
    )


def _timing_section(results: dict, rows: list[dict]) -> str:
    tr = results.get("translations", {})
    body = []
    for m, info in tr.items():
        spi = info.get("seconds_per_image")
        total = spi * info.get("images", 0) if spi is not None else None
        body.append(
            f'<tr><td class="l">{esc(m)}</td><td>{_secs(spi)}</td><td>{info.get("images", "–")}</td>'
            f"<td>{_secs(total)}</td><td>{'GPU' if info.get('needs_gpu') else 'CPU'}</td></tr>"
        )
    t1 = (
        '<div class="tablewrap"><table><thead><tr><th class="l">method</th><th>translation / image</th>'
        "<th>images</th><th>total</th><th>runs on</th></tr></thead><tbody>"
        + ("".join(body) or '<tr><td class="l" colspan="5">no translation method</td></tr>')
        + "</tbody></table></div>"
    )
    body = []
    for r in rows:
        body.append(
            f'<tr><td class="l">{esc(display_key(run_key(r)))}</td>'
            f"<td>{_secs(r['train_seconds']['mean'])}</td><td>{_secs(r['train_seconds']['max'])}</td>"
            f"<td>{_secs(r['eval_seconds']['mean'])}</td></tr>"
        )
    t2 = (
        '<div class="tablewrap" style="margin-top:12px"><table><thead><tr><th class="l">setting</th>'
        "<th>training (mean)</th><th>training (max)</th><th>scoring the test set</th></tr></thead><tbody>"
        + "".join(body)
        + "</tbody></table></div>"
    )
    total_train = sum(r.get("train_seconds") or 0 for r in results.get("runs", []))
    return (
        t1
        + t2
        + f'<p class="facts">Total training time of all {len(results.get("runs", []))} runs: {_secs(total_train)}.</p>'
    )


def _setup_section(results: dict) -> str:
    cfg, b, d = results["config"], results["budget"], results["data"]
    budget = ", ".join(f"{k}={v}" for k, v in b.items())
    kv = [
        ("machine", describe_machine(results["machine"])),
        ("model", cfg["model"]),
        (
            "training budget",
            f"{budget} ({cfg.get('budget_name', 'custom')}); identical for every run",
        ),
        ("seeds", ", ".join(str(s) for s in cfg["seeds"])),
        ("real share in +real settings", f"{cfg['real_ratio']:.0%} of each batch"),
        (
            "synthetic images",
            f"{d['source']} from {cfg['source']}"
            + (f" (random subset of {cfg['source_limit']})" if cfg.get("source_limit") else ""),
        ),
        ("real references", f"{d['references']} from {cfg['references']}"),
        ("real test images", f"{d['test']} from {cfg['test']} (scored at their own resolution)"),
        ("classes", ", ".join(results["classes"])),
        ("verdict metric", results["metric_label"]),
        ("methods", ", ".join(cfg["methods"]) or "–"),
        ("recipes", ", ".join(cfg.get("recipes") or ["mix"])),
        *(
            [("unlabelled real images", f"{d['unlabeled']} from {cfg.get('unlabeled')}")]
            if d.get("unlabeled")
            else []
        ),
        (
            "translation",
            f"once per method, seed {cfg.get('translate_seed', 0)}, shared by all training seeds",
        ),
    ]
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(str(v))}</dd>" for k, v in kv)
    gloss = "".join(f"<dt>{esc(s)}</dt><dd>{esc(h)}</dd>" for s, h in SETTING_HELP.items())
    gloss += "".join(
        f"<dt>recipe {esc(r)}</dt><dd>{esc(h)}</dd>"
        for r, h in RECIPE_HELP.items()
        if r in (cfg.get("recipes") or ["mix"])
    )
    return (
        f'<section class="card"><dl class="kv">{items}</dl></section>'
        f'<h2>What the settings mean</h2><section class="card"><dl class="kv">{gloss}</dl></section>'
    )


def render_report(results: dict, images: dict | None = None) -> str:
    """The report's HTML (a complete document) from ``results.json`` content and thumbnails."""
    rows = ordered_summary(results)
    metric = results["metric"]
    charts = bar_chart(
        rows, metric, f"{metric_label(metric)} on the real test images (mean, min..max, seeds)"
    )
    if metric != "miou":
        charts += bar_chart(rows, "miou", "mIoU on the real test images (mean, min..max, seeds)")
    d = results["data"]
    sub = (
        f"{d['source']} synthetic images, {d['references']} real references, {d['test']} real test images · "
        f"{_count(len(results['config']['seeds']), 'seed')} · {esc(results['machine'].get('time', ''))}"
    )
    body = [
        "<h1>synth2real pilot</h1>",
        f'<p class="sub">{sub}</p>',
        _verdict_section(results),
        "<h2>Scores on the real test images</h2>",
        charts,
        _metrics_table(results, rows),
        "<h2>What the methods do to the synthetic images</h2>",
        _grid_section(images),
        "<h2>Time</h2>",
        _timing_section(results, rows),
        "<h2>Setup</h2>",
        _setup_section(results),
        "<footer>Written by synth2real. Raw numbers: <code>results.json</code> and <code>results.csv</code> "
        "next to this file (one row per setting, method and seed).</footer>",
    ]
    template = Template(
        resources.files("synth2real.pilot").joinpath("templates/report.html").read_text("utf-8")
    )
    return template.substitute(title="synth2real pilot report", body="\n".join(body))


def write_report(
    results: dict, out: str | Path, *, data: dict | None = None, name: str = "report.html"
) -> Path:
    """Render and atomically write ``out/name``; thumbnails come from ``data`` (the pilot's
    open datasets) when given. Returns the report's path."""
    out = Path(out)
    images = None
    if data is not None:
        methods = [m for m in results["config"]["methods"] if m != "none"]
        images = collect_images(data, methods)
    path = out / name
    atomic_write_text(path, render_report(results, images))
    return path
