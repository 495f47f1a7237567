"""Numbers over seeds: the settings and recipes of a pilot, a run record's metric, mean
and spread (:class:`Stat`), and one setting against another (:class:`Comparison`).

Pure functions on run records (plain dicts, as written to ``results.json``). A run is
keyed by ``(recipe, setting, method)``: the recipe (how the data is used: ``mix``,
``finetune``, ``selftrain``; ``mix`` for records written before recipes existed), the
setting (what data: BASELINES, PER_METHOD) and the translation method (``None`` for the
baselines).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

BASELINES = ("source-only", "real-only", "source+real")
PER_METHOD = ("translated", "translated+real")
SETTINGS = ("source-only", "real-only", "source+real", "translated", "translated+real")

#: settings that train on the synthetic images (untouched or translated)
SYNTHETIC = ("source-only", "source+real", "translated", "translated+real")
#: the settings each recipe runs. ``finetune`` needs synthetic and real labelled data
#: (phase 1 the mix, phase 2 the references alone); ``selftrain`` runs with the
#: references: ``real-only`` (references + unlabelled images, no synthetic data: the
#: fair baseline of the recipe) and the two mixes; the settings without references are
#: left out (the user has them, and each would cost 1 + methods runs per seed).
RECIPE_SETTINGS = {
    "mix": SETTINGS,
    "finetune": ("source+real", "translated+real"),
    "selftrain": ("real-only", "source+real", "translated+real"),
}
RECIPE_HELP = {
    "mix": "the references drawn into every batch from the first step (real share --real-ratio)",
    "finetune": "the mix first, then the references alone at a lower learning rate, same total steps",
    "selftrain": "the mix plus unlabelled real images, pseudo-labelled by an EMA teacher (ClassMix)",
}
#: a run's key: (recipe, setting, method)
Key = tuple[str, str, "str | None"]

SETTING_HELP = {
    "source-only": "the synthetic images as they are",
    "real-only": "the real references alone",
    "source+real": "the untouched synthetic images mixed with the real references",
    "translated": "the synthetic images after the method",
    "translated+real": "the method's output mixed with the real references",
}


@dataclass(frozen=True)
class Stat:
    """Mean and spread of one number over seeds (``nan`` everywhere when no value)."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / self.n if self.n else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation (``ddof=1``); 0 for a single value."""
        if self.n < 2:
            return 0.0 if self.n else math.nan
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (self.n - 1))

    @property
    def min(self) -> float:
        return min(self.values) if self.n else math.nan

    @property
    def max(self) -> float:
        return max(self.values) if self.n else math.nan

    @property
    def spread(self) -> float:
        """``max - min`` over the seeds (0 for one seed)."""
        return self.max - self.min if self.n else math.nan

    def to_dict(self) -> dict:
        return {
            "mean": _clean(self.mean),
            "std": _clean(self.std),
            "min": _clean(self.min),
            "max": _clean(self.max),
            "n": self.n,
            "values": [_clean(v) for v in self.values],
        }


def _clean(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 6)


def stat(values: Iterable[float | None]) -> Stat:
    """A :class:`Stat` of ``values``, dropping ``None`` and ``nan``."""
    return Stat(tuple(float(v) for v in values if v is not None and not math.isnan(float(v))))


def metric_value(run: dict, metric: str) -> float | None:
    """One number of a run: ``miou``, ``pixel_accuracy``, ``iou:<class>`` or any run key."""
    if metric.startswith("iou:"):
        return (run.get("iou") or {}).get(metric[4:])
    v = run.get(metric)
    return float(v) if isinstance(v, (int, float)) else None


def metric_label(metric: str) -> str:
    """Human name of a metric key: ``iou:cracks`` -> ``cracks IoU``."""
    if metric.startswith("iou:"):
        return f"{metric[4:]} IoU"
    return {"miou": "mIoU", "pixel_accuracy": "pixel accuracy"}.get(metric, metric)


def group_key(setting: str, method: str | None, recipe: str = "mix") -> str:
    """The display name of a run group: ``translated+real [reinhard]`` (recipe mix),
    ``translated+real [reinhard] (finetune)``."""
    name = setting if method is None else f"{setting} [{method}]"
    return name if recipe == "mix" else f"{name} ({recipe})"


def run_key(run: dict) -> Key:
    """``(recipe, setting, method)`` of a run record or summary row."""
    return (run.get("recipe") or "mix", run["setting"], run.get("method"))


def display_key(key: Key) -> str:
    """:func:`group_key` of a ``(recipe, setting, method)`` key."""
    return group_key(key[1], key[2], key[0])


def aggregate(runs: Sequence[dict], metric: str) -> dict[Key, Stat]:
    """``{(recipe, setting, method): Stat of metric over seeds}`` for every group present."""
    groups: dict[Key, list[float | None]] = {}
    for r in runs:
        groups.setdefault(run_key(r), []).append(metric_value(r, metric))
    return {k: stat(v) for k, v in groups.items()}


@dataclass
class Comparison:
    """``a`` (a method's setting) against ``b`` (a baseline), on one metric."""

    a: str
    b: str
    margin: float  # mean(a) - mean(b)
    spread: float  # max(range(a), range(b))

    @property
    def beats(self) -> bool:
        return self.margin > self.spread

    @property
    def loses(self) -> bool:
        return -self.margin > self.spread

    @property
    def word(self) -> str:
        if self.beats:
            return "beats"
        if self.loses:
            return "loses to"
        return "ties with" if self.margin == 0 else ("is within noise of")

    def sentence(self, label: str) -> str:
        return (
            f"{self.a} {self.word} {self.b}: {self.margin:+.3f} {label} "
            f"(seed spread {self.spread:.3f})"
        )


def compare(stats: dict, a: Key, b: Key) -> Comparison | None:
    """``a`` against ``b`` (``(recipe, setting, method)`` keys); ``None`` if one has no run."""
    sa, sb = stats.get(a), stats.get(b)
    if sa is None or sb is None or not sa.n or not sb.n:
        return None
    return Comparison(display_key(a), display_key(b), sa.mean - sb.mean, max(sa.spread, sb.spread))


def fmt_stat(s: Stat) -> str:
    """``0.412 (0.401..0.423, 3 seeds)``."""
    if s.n > 1:
        return f"{s.mean:.3f} ({s.min:.3f}..{s.max:.3f}, {s.n} seeds)"
    return f"{s.mean:.3f} (1 seed)"
