"""The report's pictures: image thumbnails (base64 JPEG) and bar charts (inline SVG)."""

from __future__ import annotations

import base64
import html
import math
from typing import Any

import numpy as np

from synth2real.data.io import encode_image
from synth2real.pilot.verdict import display_key, run_key
from synth2real.segment.draw import overlay

SETTING_COLORS = {
    "source-only": "#8c93a3",
    "real-only": "#d08c2a",
    "source+real": "#5b7fbf",
    "translated": "#86c0a6",
    "translated+real": "#1e7d45",
}

#: bars of the other recipes are lighter shades of their setting's colour
RECIPE_OPACITY = {"mix": 1.0, "finetune": 0.7, "selftrain": 0.45}

esc = html.escape


def fmt(v: Any, digits: int = 3) -> str:
    """``v`` with ``digits`` decimals; a dash for a missing value (``None``, NaN)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{digits}f}"


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


def _references_used(tds) -> dict[str, str]:
    """``{image name: reference name}`` from a translation's manifest (empty when there is
    none). Every method of a pilot uses the same choice (seed, round-robin)."""
    from synth2real.data.writer import read_manifest

    return {
        str(e["name"]): str(e["reference"])
        for e in read_manifest(getattr(tds, "root", ""))
        if e.get("reference")
    }


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
            data_uri(overlay(img, lab, palette, alpha=0.55), max_side) if lab is not None else ""
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


def bar_chart(rows: list[dict], metric: str, title: str) -> str:
    """Horizontal bars (mean) with a min..max whisker and one dot per seed, as inline SVG."""
    rows = [r for r in rows if r.get(metric) and r[metric]["n"]]
    if not rows:
        return ""
    left, right, bar_w, row_h, top = 310, 90, 520, 24, 34
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
        recipe = r.get("recipe") or "mix"
        pattern = RECIPE_OPACITY.get(recipe, 1.0)
        label = display_key(run_key(r))
        parts.append(
            f'<text x="{left - 8}" y="{y + 16}" text-anchor="end" fill="#1d2330">{esc(label)}</text>'
        )
        parts.append(
            f'<rect x="{left}" y="{y + 4}" width="{max(0.5, x(st["mean"]) - left):.1f}" height="{row_h - 8}" '
            f'fill="{color}" fill-opacity="{pattern}" stroke="{color}" rx="2"><title>{esc(label)}: mean {fmt(st["mean"])}, '
            f"min {fmt(st['min'])}, max {fmt(st['max'])}, std {fmt(st['std'])}</title></rect>"
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
            f'<text x="{left + bar_w + 8}" y="{y + 16}" fill="#1d2330">{fmt(st["mean"])}'
            + (f' <tspan fill="#5d6678">±{fmt(st["std"])}</tspan>' if st["n"] > 1 else "")
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
