"""Constructed pilot results (no training) for verdict and report tests."""

from __future__ import annotations

from synth2real.pilot.config import PilotConfig
from synth2real.pilot.results import build_results
from synth2real.pilot.runs import plan_runs

CLASSES = ["background", "cracks"]


def fake_runs(means: dict, seeds=(0, 1, 2), jitter: float = 0.01, classes=CLASSES) -> list[dict]:
    """Run records whose crack IoU is ``means[(setting, method)] + jitter * (seed - 1)``.

    Background IoU is 0.9 + the same offset; mIoU their mean.
    """
    runs = []
    for (setting, method), m in means.items():
        for s in seeds:
            c = m + jitter * (s - 1)
            iou = {classes[0]: 0.9 + jitter * (s - 1), classes[1]: c}
            runs.append(
                {
                    "setting": setting,
                    "method": method,
                    "seed": s,
                    "iou": iou,
                    "miou": sum(iou.values()) / len(iou),
                    "pixel_accuracy": 0.95,
                    "train_seconds": 12.0 + s,
                    "eval_seconds": 2.0,
                    "iterations": 10,
                }
            )
    return runs


def fake_results(
    means: dict,
    methods: list[str],
    seeds=(0, 1, 2),
    jitter: float = 0.01,
    metric: str = "iou:cracks",
    budget_name: str = "custom",
) -> dict:
    cfg = PilotConfig(
        source="src",
        references="refs",
        test="test",
        methods=methods,
        seeds=list(seeds),
        metric=metric,
        budget_name=budget_name,
        budget={"iterations": 10, "batch_size": 2, "crop": 32},
    )
    runs = fake_runs(means, seeds, jitter)
    translations = {
        m: {"method": m, "seconds_per_image": 0.02, "images": 8, "needs_gpu": False}
        for m in methods
    }
    counts = {"source": 8, "references": 2, "test": 3, "reference_names": ["r0", "r1"]}
    machine = {
        "cpu": "Test CPU",
        "cores": 2,
        "device": "cpu",
        "torch": "x",
        "time": "2025-01-01T00:00:00+00:00",
    }
    return build_results(cfg, dict(cfg.budget), runs, translations, CLASSES, counts, machine)


def plan_means(methods, base: dict, per_method: dict) -> dict:
    """``means`` for fake_runs: baselines from ``base``, methods from ``per_method[m]``."""
    out = dict(base)
    for m in methods:
        out.update({(s, m): v for s, v in per_method[m].items()})
    assert {(r.setting, r.method) for r in plan_runs(methods, [0])} == set(out)
    return out
