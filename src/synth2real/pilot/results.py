"""The pilot's results: ``results.json`` (settings, machine, runs, summary, verdict) and
``results.csv`` (one row per run)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from synth2real.data.io import atomic_write_text
from synth2real.pilot.config import PilotConfig
from synth2real.pilot.verdict import aggregate, decide, metric_label, run_key, stat


def build_results(
    cfg: PilotConfig,
    budget: dict,
    records: list[dict],
    translations: dict,
    classes: list[str],
    counts: dict,
    machine: dict,
    partial: bool = False,
) -> dict:
    """The content of ``results.json``: settings, machine, every run, summary, verdict.

    Pure: no files are read (``counts``: ``{"source": n, "references": n, "test": n,
    "reference_names": [...]}``).
    """
    verdict = decide(records, cfg.translation_methods, cfg.metric)
    metrics = ["miou", "pixel_accuracy"] + [f"iou:{c}" for c in classes]
    keys = list(dict.fromkeys(run_key(r) for r in records))
    aggs = {m: aggregate(records, m) for m in metrics}
    summary = []
    for k in keys:
        rows = [r for r in records if run_key(r) == k]
        entry: dict[str, Any] = {
            "recipe": k[0],
            "setting": k[1],
            "method": k[2],
            "seeds": [r["seed"] for r in rows],
        }
        for m in metrics:
            entry[m] = aggs[m][k].to_dict()
        entry["train_seconds"] = stat(r.get("train_seconds") for r in rows).to_dict()
        entry["eval_seconds"] = stat(r.get("eval_seconds") for r in rows).to_dict()
        summary.append(entry)
    return {
        "version": 1,
        "partial": partial,
        "config": json.loads(json.dumps(cfg.to_dict(), default=str)),
        "budget": budget,
        "machine": machine,
        "classes": list(classes),
        "metric": cfg.metric,
        "metric_label": metric_label(cfg.metric),
        "data": counts,
        "translations": translations,
        "runs": records,
        "summary": summary,
        "verdict": verdict.to_dict(),
    }


def write_results(
    out: Path,
    cfg: PilotConfig,
    budget: dict,
    records: list[dict],
    translations: dict,
    data: dict,
    partial: bool,
) -> dict:
    """Write ``out/results.json`` and ``out/results.csv`` (atomically); the results."""
    from synth2real.pilot.machine import machine_info

    classes = list(data["source"].classes.names)
    counts = {
        "source": len(data["source"]),
        "references": len(data["references"]),
        "test": len(data["test"]),
        "reference_names": [s.name for s in data["references"]],
    }
    if data.get("unlabeled") is not None:
        counts["unlabeled"] = len(data["unlabeled"])
    results = build_results(
        cfg, budget, records, translations, classes, counts, machine_info(cfg.device), partial
    )
    atomic_write_text(out / "results.json", json.dumps(results, indent=2, default=str))
    atomic_write_text(out / "results.csv", results_csv(records, classes, results["machine"]))
    return results


CSV_FIELDS = [
    "recipe",
    "setting",
    "method",
    "seed",
    "miou",
    "pixel_accuracy",
    "train_seconds",
    "eval_seconds",
    "iterations",
    "translate_seconds_per_image",
    "train_images",
    "test_images",
    "model",
    "device",
]


def results_csv(records: Sequence[dict], classes: Sequence[str], machine: dict) -> str:
    """One row per run: recipe, setting, method, seed, metrics, per-class IoU (``iou_<class>``), timings, budget, machine."""
    buf = io.StringIO()
    fields = (
        CSV_FIELDS[:6]
        + [f"iou_{c}" for c in classes]
        + CSV_FIELDS[6:]
        + ["budget", "cpu", "cores", "gpu"]
    )
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in records:
        row = {k: r.get(k) for k in CSV_FIELDS}
        row["method"] = r.get("method") or ""
        row["recipe"] = r.get("recipe") or "mix"
        for c in classes:
            row[f"iou_{c}"] = (r.get("iou") or {}).get(c)
        row["budget"] = json.dumps(r.get("budget"), sort_keys=True)
        row.update(cpu=machine.get("cpu"), cores=machine.get("cores"), gpu=machine.get("gpu") or "")
        w.writerow(row)
    return buf.getvalue()
