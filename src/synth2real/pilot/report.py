"""The pilot's HTML report: one self-contained file a manager can read offline.

Everything is inline: CSS in the template, images as base64 JPEG thumbnails, charts as
SVG drawn here. No script, no font or style from the internet, so the file opens the
same way on an air-gapped laptop, in a mail attachment, or in CI's headless browser.

:func:`write_report` renders ``results.json`` content (see :mod:`synth2real.pilot.runner`)
plus thumbnails from the pilot's datasets into ``DIR/report.html``.
"""

from __future__ import annotations

import base64
import html
import json
import math
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import numpy as np

from synth2real.data.io import atomic_write_text, encode_image
from synth2real.pilot.machine import describe_machine
from synth2real.pilot.verdict import BASELINES, PER_METHOD, SETTING_HELP, group_key, metric_label

SETTING_COLORS = {
    "source-only": "#8c93a3",
    "real-only": "#d08c2a",
    "source+real": "#5b7fbf",
    "translated": "#86c0a6",
    "translated+real": "#1e7d45",
}

esc = html.escape


# ---------------------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------------------
def thumbnail(image: np.ndarray, max_side: int = 256) -> np.ndarray:
    """Downscale ``HxWx3 uint8`` so its longer side is at most ``max_side`` (area filter)."""
    import cv2

    h, w = image.shape[:2]
    s = max_side / max(h, w)
    if s >= 1:
        return image
    return cv2.resize(
        image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA
    )


def data_uri(image: np.ndarray, max_side: int = 256, quality: int = 82) -> str:
    """``data:image/jpeg;base64,...`` of a thumbnail of ``image`` (``HxWx3 uint8``)."""
    thumb = np.ascontiguousarray(thumbnail(image, max_side))
    b64 = base64.b64encode(encode_image(thumb, "jpeg", quality)).decode("ascii")
    return f"data:image/jpeg;base64,{b64}"


def overlay(
    image: np.ndarray,
    label: np.ndarray,
    palette: list,
    ignore_index: int = 255,
    alpha: float = 0.55,
) -> np.ndarray:
    """The label map drawn over the image: class colours blended at ``alpha``, background
    (class 0) left as is, so thin classes stay visible. Returns ``HxWx3 uint8``."""
    out = image.astype(np.float32).copy()
    for c, color in enumerate(palette):
        if c == 0:
            continue
        m = label == c
        if m.any():
            out[m] = (1 - alpha) * out[m] + alpha * np.asarray(color, np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _references_used(tds) -> dict[str, str]:
    """``{image name: reference name}`` from a translation's ``manifest.jsonl`` (empty when
    there is none). Every method of a pilot uses the same choice (seed, round-robin)."""
    path = Path(getattr(tds, "root", "")) / "manifest.jsonl"
    out: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(e, dict) and e.get("name") and e.get("reference"):
            out[str(e["name"])] = str(e["reference"])
    return out


def collect_images(data: dict, methods: list[str], n_rows: int = 4, max_side: int = 256) -> dict:
    """Thumbnails for the report from the pilot's datasets.

    Args:
        data: ``{"source": Dataset, "references": Dataset, "translated": {method: Dataset}}``.
        methods: the translation methods, in column order.
        n_rows: how many synthetic images to show (evenly spread over the source).

    Returns:
        ``{"columns": [...], "rows": [[uri, ...], ...], "names": [...], "references":
        [(name, uri), ...]}``.
    """
    source, refs = data["source"], data["references"]
    translated = data.get("translated", {})
    palette = source.classes.palette()
    n = len(source)
    # prefer images where every class is present (so class-wise effects are visible)
    idx = _pick_rows(source, n_rows)
    shown = [m for m in methods if m in translated]
    used = _references_used(translated[shown[0]]) if shown else {}
    ref_index = {s.name: i for i, s in enumerate(refs.samples)}
    columns = ["synthetic", "label"] + shown + ["its reference" if used else "a reference"]
    rows, names = [], []
    for j, i in enumerate(idx):
        s = source.samples[i]
        img = source.image(i)
        lab = source.label(i)
        row = [data_uri(img, max_side)]
        row.append(
            data_uri(overlay(img, lab, palette, source.classes.ignore_index), max_side)
            if lab is not None
            else ""
        )
        for m in columns[2:-1]:
            tds = translated[m]
            try:
                t = tds.select([s.name])
                row.append(data_uri(t.image(0), max_side))
            except KeyError:
                row.append("")
        r = ref_index.get(used.get(s.name, ""), j % len(refs))  # the one the methods used
        row.append(data_uri(refs.image(r), max_side))
        rows.append(row)
        names.append(s.name)
    ref_thumbs = [(s.name, data_uri(refs.image(i), 200)) for i, s in enumerate(refs.samples[:24])]
    return {
        "columns": columns,
        "rows": rows,
        "names": names,
        "references": ref_thumbs,
        "n_source": n,
    }


def _pick_rows(source, n_rows: int) -> list[int]:
    n = len(source)
    if n <= n_rows:
        return list(range(n))
    candidates = np.linspace(0, n - 1, num=min(n, n_rows * 4)).round().astype(int).tolist()
    k = source.classes.num_classes
    scored = []
    for i in dict.fromkeys(candidates):
        lab = source.label(i)
        present = 0 if lab is None else int((np.bincount(lab.ravel(), minlength=256)[:k] > 0).sum())
        scored.append((-present, i))
    scored.sort()
    return sorted(i for _, i in scored[:n_rows])


# ---------------------------------------------------------------------------------------
# formatting helpers
# ---------------------------------------------------------------------------------------
def _f(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{digits}f}"


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
    """Summary rows in report order: the baselines, then each method's two settings."""
    rows = {(r["setting"], r["method"]): r for r in results.get("summary", [])}
    methods = [m for m in results["config"]["methods"] if m != "none"]
    order = [(s, None) for s in BASELINES] + [(s, m) for m in methods for s in PER_METHOD]
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
        f"Judged on {esc(results['metric_label'])} over {len(seeds)} seed(s) on {results['data']['test']} real test "
        f"images at their own resolution; model {esc(results['config']['model'])}, "
        f"{_budget_line(results['budget'])}."
    )
    note_html = "".join(f'<p class="note">{esc(n)}</p>' for n in notes)
    return (
        f'<section class="card verdict {cls}" id="verdict"><p class="headline">{esc(v["headline"])}</p>'
        f"<ul>{''.join(items)}</ul>{_gains_table(results)}{note_html}"
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
    rows = {(r["setting"], r["method"]): r for r in results.get("summary", [])}
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
                f"<td>{_f(st['mean'] if st else None)}</td>"
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
        '<p class="facts">Mean over seeds of <i>translated+real</i>, its margins over the baselines, '
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


def bar_chart(rows: list[dict], metric: str, title: str) -> str:
    """Horizontal bars (mean) with a min..max whisker and one dot per seed, as inline SVG."""
    rows = [r for r in rows if r.get(metric) and r[metric]["n"]]
    if not rows:
        return ""
    left, right, bar_w, row_h, top = 250, 90, 520, 24, 34
    width = left + bar_w + right
    height = top + row_h * len(rows) + 26
    vmax = max(max(r[metric]["max"] for r in rows), 1e-6)
    axis = _nice_ceiling(vmax)
    x = lambda v: left + bar_w * (v / axis)  # noqa: E731
    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, DejaVu Sans, sans-serif" font-size="12">',
        f'<text x="{left}" y="18" font-size="14" font-weight="600" fill="#1d2330">{esc(title)}</text>',
    ]
    step = _tick_step(axis)
    t = 0.0
    while t <= axis + 1e-9:
        xx = x(t)
        parts.append(
            f'<line x1="{xx:.1f}" y1="{top - 6}" x2="{xx:.1f}" y2="{top + row_h * len(rows)}" stroke="#e3e6ec"/>'
        )
        parts.append(
            f'<text x="{xx:.1f}" y="{height - 8}" text-anchor="middle" fill="#5d6678">{t:.2f}</text>'
        )
        t += step
    for i, r in enumerate(rows):
        y = top + i * row_h
        st = r[metric]
        color = SETTING_COLORS.get(r["setting"], "#888")
        label = group_key(r["setting"], r["method"])
        parts.append(
            f'<text x="{left - 8}" y="{y + 16}" text-anchor="end" fill="#1d2330">{esc(label)}</text>'
        )
        parts.append(
            f'<rect x="{left}" y="{y + 4}" width="{max(0.5, x(st["mean"]) - left):.1f}" height="{row_h - 8}" '
            f'fill="{color}" rx="2"><title>{esc(label)}: mean {_f(st["mean"])}, '
            f"min {_f(st['min'])}, max {_f(st['max'])}, std {_f(st['std'])}</title></rect>"
        )
        if st["n"] > 1:
            cy = y + row_h / 2
            parts.append(
                f'<line x1="{x(st["min"]):.1f}" y1="{cy:.1f}" x2="{x(st["max"]):.1f}" y2="{cy:.1f}" '
                f'stroke="#1d2330" stroke-width="1.5"/>'
            )
            for end in (st["min"], st["max"]):
                parts.append(
                    f'<line x1="{x(end):.1f}" y1="{cy - 5:.1f}" x2="{x(end):.1f}" y2="{cy + 5:.1f}" '
                    f'stroke="#1d2330" stroke-width="1.5"/>'
                )
            for val in st["values"]:
                if val is not None:
                    parts.append(
                        f'<circle cx="{x(val):.1f}" cy="{cy:.1f}" r="2.6" fill="#fff" stroke="#1d2330"/>'
                    )
        parts.append(
            f'<text x="{left + bar_w + 8}" y="{y + 16}" fill="#1d2330">{_f(st["mean"])}'
            + (f' <tspan fill="#5d6678">±{_f(st["std"])}</tspan>' if st["n"] > 1 else "")
            + "</text>"
        )
    parts.append("</svg>")
    return f'<div class="chart">{"".join(parts)}</div>'


def _nice_ceiling(v: float) -> float:
    for c in (0.05, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
        if v <= c + 1e-9:
            return c
    return math.ceil(v)


def _tick_step(axis: float) -> float:
    for step in (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0):
        if axis / step <= 8:
            return step
    return axis / 5


def _metrics_table(results: dict, rows: list[dict]) -> str:
    classes = results["classes"]
    metrics = (
        [("miou", "mIoU")]
        + [(f"iou:{c}", f"{c} IoU") for c in classes]
        + [("pixel_accuracy", "pixel acc.")]
    )
    best = {}
    for m, _ in metrics:
        vals = [r[m]["mean"] for r in rows if r.get(m) and r[m]["mean"] is not None]
        best[m] = max(vals) if vals else None
    head = "".join(f"<th>{esc(lbl)}</th>" for _, lbl in metrics)
    body = []
    current_group = None
    for r in rows:
        group = "baselines" if r["method"] is None else f"method: {r['method']}"
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
                f'<br><span class="spread">±{_f(st["std"])} [{_f(st["min"])}..{_f(st["max"])}]</span>'
                if st["n"] > 1
                else ""
            )
            cells.append(f"<td{cls}>{_f(st['mean'])}{spread}</td>")
        label = r["setting"]
        body.append(
            f'<tr><td class="l" title="{esc(SETTING_HELP.get(label, ""))}">{esc(label)}</td>'
            f"{''.join(cells)}<td>{len(r['seeds'])}</td></tr>"
        )
    return (
        f'<div class="tablewrap"><table><thead><tr><th class="l">setting</th>{head}<th>seeds</th>'
        f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
        '<p class="facts">Each cell: mean over seeds, then ± standard deviation and [min..max]. '
        "Best mean per column in green.</p>"
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
            f'<tr><td class="l">{esc(group_key(r["setting"], r["method"]))}</td>'
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
        (
            "translation",
            f"once per method, seed {cfg.get('translate_seed', 0)}, shared by all training seeds",
        ),
    ]
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(str(v))}</dd>" for k, v in kv)
    gloss = "".join(f"<dt>{esc(s)}</dt><dd>{esc(h)}</dd>" for s, h in SETTING_HELP.items())
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
        f"{len(results['config']['seeds'])} seeds · {esc(results['machine'].get('time', ''))}"
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


def load_results(path: str | Path) -> dict:
    """Read a pilot's ``results.json``."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
