"""Constructed pilot results (no training) for verdict and report tests."""

from __future__ import annotations

from synth2real.pilot.config import PilotConfig
from synth2real.pilot.results import build_results
from synth2real.pilot.runs import plan_runs

CLASSES = ["background", "cracks"]


def fake_runs(means: dict, seeds=(0, 1, 2), jitter: float = 0.01, classes=CLASSES) -> list[dict]:
    """Run records whose crack IoU is ``means[key] + jitter * (seed - 1)``; ``key`` is
    ``(setting, method)`` (recipe mix) or ``(recipe, setting, method)``.

    Background IoU is 0.9 + the same offset; mIoU their mean. With more than two
    ``classes``, the others score 0.
    """
    runs = []
    for key, m in means.items():
        recipe, setting, method = key if len(key) == 3 else ("mix", *key)
        for s in seeds:
            c = m + jitter * (s - 1)
            iou = {classes[0]: 0.9 + jitter * (s - 1), classes[1]: c}
            iou.update({k: 0.0 for k in classes[2:]})
            runs.append(
                {
                    "recipe": recipe,
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
    classes=CLASSES,
    recipes=("mix",),
) -> dict:
    cfg = PilotConfig(
        recipes=list(recipes),
        unlabeled="unlabeled" if "selftrain" in recipes else None,
        source="src",
        references="refs",
        test="test",
        methods=methods,
        seeds=list(seeds),
        metric=metric,
        budget_name=budget_name,
        budget={"iterations": 10, "batch_size": 2, "crop": 32},
    )
    runs = fake_runs(means, seeds, jitter, classes)
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
    return build_results(cfg, dict(cfg.budget), runs, translations, list(classes), counts, machine)


def plan_means(methods, base: dict, per_method: dict, recipes=("mix",)) -> dict:
    """``means`` for fake_runs: baselines from ``base``, methods from ``per_method[m]``
    (keys ``(setting, method)`` for mix, ``(recipe, setting, method)`` for the others);
    checked to be exactly the runs the pilot plans."""
    out = dict(base)
    for m in methods:
        out.update(
            {(s[0], s[1], m) if len(s) == 2 else (s, m): v for s, v in per_method[m].items()}
        )

    def key(r):
        return (r.setting, r.method) if r.recipe == "mix" else (r.recipe, r.setting, r.method)

    assert {key(r) for r in plan_runs(methods, [0], recipes)} == set(out)
    return out
