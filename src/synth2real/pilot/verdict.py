"""Aggregate pilot runs over seeds and decide, per method, whether it wins.

Pure functions on run records (plain dicts, as written to ``results.json``); no files,
no models. A run record holds at least ``setting``, ``method`` (``None`` for the
baselines), ``seed``, ``miou``, ``pixel_accuracy`` and ``iou`` (``{class name: IoU}``;
``None`` where a class is absent from both the test labels and the predictions).

The rule (docs/BENCHMARK.md): a method **wins** when its ``translated+real`` beats both
``source+real`` and ``real-only`` by more than the seed spread. Here "beats A by more than
the seed spread" means ``mean(M) - mean(A) > max(range(M), range(A))`` where ``range`` is
``max - min`` over the seeds of one setting: a margin larger than the scatter either
side shows between seeds. A method **hurts** when ``translated+real`` is worse than
``source+real``, or ``translated`` worse than ``source-only``, by more than the spread:
translating made the synthetic data worse than leaving it alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

BASELINES = ("source-only", "real-only", "source+real")
PER_METHOD = ("translated", "translated+real")
SETTINGS = ("source-only", "real-only", "source+real", "translated", "translated+real")

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


def group_key(setting: str, method: str | None) -> str:
    """The display key of a (setting, method) pair: ``translated+real [reinhard]``."""
    return setting if method is None else f"{setting} [{method}]"


def aggregate(runs: Sequence[dict], metric: str) -> dict[tuple[str, str | None], Stat]:
    """``{(setting, method): Stat of metric over seeds}`` for every pair present in ``runs``."""
    groups: dict[tuple[str, str | None], list[float | None]] = {}
    for r in runs:
        groups.setdefault((r["setting"], r.get("method")), []).append(metric_value(r, metric))
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


def compare(stats: dict, a: tuple[str, str | None], b: tuple[str, str | None]) -> Comparison | None:
    sa, sb = stats.get(a), stats.get(b)
    if sa is None or sb is None or not sa.n or not sb.n:
        return None
    return Comparison(group_key(*a), group_key(*b), sa.mean - sb.mean, max(sa.spread, sb.spread))


@dataclass
class MethodVerdict:
    """What the pilot says about one method.

    ``status`` is ``wins``, ``hurts``, ``no-win`` or ``incomplete`` (a setting it needs has
    no finished run yet).
    """

    method: str
    status: str
    summary: str
    comparisons: list[Comparison] = field(default_factory=list)
    mean: float = math.nan  # translated+real mean of the verdict metric

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "status": self.status,
            "summary": self.summary,
            "mean": _clean(self.mean),
            "comparisons": [
                {
                    "a": c.a,
                    "b": c.b,
                    "margin": _clean(c.margin),
                    "spread": _clean(c.spread),
                    "result": c.word,
                }
                for c in self.comparisons
            ],
        }


@dataclass
class Verdict:
    """The pilot's answer: which method to use, by how much, and which methods hurt."""

    metric: str
    headline: str
    recommended: str | None
    best: tuple[str, str | None] | None
    methods: dict[str, MethodVerdict]
    notes: list[str] = field(default_factory=list)

    @property
    def winners(self) -> list[str]:
        return [m for m, v in self.methods.items() if v.status == "wins"]

    @property
    def hurting(self) -> list[str]:
        return [m for m, v in self.methods.items() if v.status == "hurts"]

    def to_dict(self) -> dict:
        return {
            "metric": self.metric,
            "headline": self.headline,
            "recommended": self.recommended,
            "best": list(self.best) if self.best else None,
            "winners": self.winners,
            "hurting": self.hurting,
            "methods": {m: v.to_dict() for m, v in self.methods.items()},
            "notes": self.notes,
        }


def _fmt(s: Stat) -> str:
    if s.n > 1:
        return f"{s.mean:.3f} ({s.min:.3f}..{s.max:.3f}, {s.n} seeds)"
    return f"{s.mean:.3f} (1 seed)"


def method_verdict(method: str, stats: dict, label: str) -> MethodVerdict:
    """Apply the win/hurt rule to one method (see the module docstring)."""
    tr = (("translated+real", method), ("source+real", None))
    c_sr = compare(stats, *tr)
    c_ro = compare(stats, ("translated+real", method), ("real-only", None))
    c_so = compare(stats, ("translated", method), ("source-only", None))
    comps = [c for c in (c_sr, c_ro, c_so) if c is not None]
    s = stats.get(("translated+real", method))
    mean = s.mean if s is not None else math.nan
    if c_sr is None or c_ro is None:
        missing = [
            group_key(*k)
            for k in (("translated+real", method), ("source+real", None), ("real-only", None))
            if k not in stats or not stats[k].n
        ]
        return MethodVerdict(
            method, "incomplete", f"{method}: no result yet for {', '.join(missing)}", comps, mean
        )
    hurts = [c for c in (c_sr, c_so) if c is not None and c.loses]
    if c_sr.beats and c_ro.beats:
        status = "wins"
        summary = (
            f"{method} wins: translated+real {label} {_fmt(stats[('translated+real', method)])}, "
            f"{c_sr.margin:+.3f} over source+real and {c_ro.margin:+.3f} over real-only, "
            f"more than the seed spread ({max(c_sr.spread, c_ro.spread):.3f})."
        )
    elif hurts:
        status = "hurts"
        summary = f"{method} hurts: " + "; ".join(c.sentence(label) for c in hurts) + "."
    else:
        status = "no-win"
        summary = (
            f"{method} does not win: " + "; ".join(c.sentence(label) for c in (c_sr, c_ro)) + "."
        )
    if c_so is not None and c_so.loses and status != "hurts":
        summary += f" Note: {c_so.sentence(label)}."
    if c_so is not None and c_so.beats:
        summary += (
            f" Without real images, its translation beats the untouched synthetic data: "
            f"{c_so.margin:+.3f} {label} over source-only (seed spread {c_so.spread:.3f})."
        )
    return MethodVerdict(method, status, summary, comps, mean)


def decide(runs: Sequence[dict], methods: Sequence[str], metric: str = "miou") -> Verdict:
    """The pilot's verdict on ``methods`` from finished ``runs``, judged on ``metric``.

    Args:
        runs: run records (see the module docstring); unfinished runs are simply absent.
        methods: the translation methods of the pilot (baselines are implied).
        metric: ``miou``, ``pixel_accuracy`` or ``iou:<class name>``.
    """
    label = metric_label(metric)
    stats = aggregate(runs, metric)
    verdicts = {m: method_verdict(m, stats, label) for m in methods}
    notes = []
    seeds = {s.n for s in stats.values() if s.n}
    if seeds and max(seeds) < 2:
        notes.append(
            "Only one seed per setting: no seed spread was measured, so any margin counts. Use 3 seeds or more."
        )
    ranked = sorted(
        ((k, s) for k, s in stats.items() if s.n and (k[1] is None or k[1] in methods)),
        key=lambda kv: kv[1].mean,
        reverse=True,
    )
    best = ranked[0][0] if ranked else None
    winners = sorted(
        (m for m, v in verdicts.items() if v.status == "wins"), key=lambda m: -verdicts[m].mean
    )
    hurting = [m for m, v in verdicts.items() if v.status == "hurts"]
    if winners:
        rec = winners[0]
        headline = f"Use {rec}. " + verdicts[rec].summary.split(": ", 1)[1]
        if len(winners) > 1:
            headline += f" Also winning: {', '.join(winners[1:])}."
    elif not stats:
        rec = None
        headline = "No finished runs yet."
    else:
        rec = None
        headline = f"No method wins on {label}."
        if best is not None:
            headline += f" Best measured: {group_key(*best)} at {_fmt(stats[best])}."
            if best == ("real-only", None):
                headline += " The few real images alone did at least as well as any synthetic mix at this budget."
            elif best == ("source+real", None):
                headline += " Mixing the untouched synthetic images with the real ones did best: translation did not add a measurable gain."
    if hurting:
        headline += f" Hurts: {', '.join(hurting)} (worse than the untouched synthetic data by more than the seed spread)."
    incomplete = [m for m, v in verdicts.items() if v.status == "incomplete"]
    if incomplete:
        notes.append(f"Incomplete (runs missing): {', '.join(incomplete)}.")
    return Verdict(metric, headline, rec, best, verdicts, notes)
