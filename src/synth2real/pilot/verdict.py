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
translating made the synthetic data worse than leaving it alone. These per-method
words judge the ``mix`` recipe (the pilot's original runs).

Across recipes (``mix``, ``finetune``, ``selftrain``; a record without ``recipe`` is
``mix``) the verdict answers two questions, each by more than the seed spread:

- **does the synthetic data help?** Some run group on synthetic or translated images
  (any recipe) beats *every* baseline that uses no synthetic data: ``real-only`` of
  ``mix`` and, when self-training ran, ``real-only`` of ``selftrain`` (the references
  plus the unlabelled images). A gain from the unlabelled images is so never credited
  to the synthetic data.
- **does a translation help?** Method M beats the same recipe on the untouched
  synthetic images (``translated+real`` against ``source+real``; in ``mix`` also
  ``translated`` against ``source-only``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from synth2real.pilot.stats import (  # noqa: F401  (re-exported: the verdict's vocabulary)
    BASELINES,
    PER_METHOD,
    RECIPE_HELP,
    RECIPE_SETTINGS,
    SETTING_HELP,
    SETTINGS,
    SYNTHETIC,
    Comparison,
    Key,
    Stat,
    _clean,
    aggregate,
    compare,
    display_key,
    fmt_stat,
    group_key,
    metric_label,
    metric_value,
    run_key,
    stat,
)


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
            "comparisons": [_comparison_dict(c) for c in self.comparisons],
        }


@dataclass
class Question:
    """One of the verdict's two questions across recipes: ``answer`` is ``yes``, ``no``
    or ``incomplete``; ``best`` the key that answers it (or comes closest)."""

    question: str
    answer: str
    summary: str
    best: Key | None = None
    comparisons: list[Comparison] = field(default_factory=list)
    by_recipe: dict[str, str] = field(default_factory=dict)  # each recipe's closest run

    def to_dict(self) -> dict:
        return {
            "question": self.question,
            "answer": self.answer,
            "summary": self.summary,
            "by_recipe": self.by_recipe,
            "best": list(self.best) if self.best else None,
            "comparisons": [_comparison_dict(c) for c in self.comparisons],
        }


def _comparison_dict(c: Comparison) -> dict:
    return {
        "a": c.a,
        "b": c.b,
        "margin": _clean(c.margin),
        "spread": _clean(c.spread),
        "result": c.word,
    }


@dataclass
class Verdict:
    """The pilot's answer: which method (and recipe) to use, by how much, and which
    methods hurt. ``questions``: ``synthetic`` (does the synthetic data help?) and
    ``translation`` (does a translation help?)."""

    metric: str
    headline: str
    recommended: str | None
    best: Key | None
    methods: dict[str, MethodVerdict]
    notes: list[str] = field(default_factory=list)
    questions: dict[str, Question] = field(default_factory=dict)
    recommended_recipe: str | None = None

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
            "recommended_recipe": self.recommended_recipe,
            "best": list(self.best) if self.best else None,
            "winners": self.winners,
            "hurting": self.hurting,
            "methods": {m: v.to_dict() for m, v in self.methods.items()},
            "questions": {k: q.to_dict() for k, q in self.questions.items()},
            "notes": self.notes,
        }


def method_verdict(method: str, stats: dict, label: str) -> MethodVerdict:
    """Apply the win/hurt rule to one method in the ``mix`` recipe (module docstring)."""
    tr_key = ("mix", "translated+real", method)
    sr, ro, so = (
        ("mix", "source+real", None),
        ("mix", "real-only", None),
        ("mix", "source-only", None),
    )
    c_sr = compare(stats, tr_key, sr)
    c_ro = compare(stats, tr_key, ro)
    c_so = compare(stats, ("mix", "translated", method), so)
    comps = [c for c in (c_sr, c_ro, c_so) if c is not None]
    s = stats.get(tr_key)
    mean = s.mean if s is not None else math.nan
    if c_sr is None or c_ro is None:
        missing = [display_key(k) for k in (tr_key, sr, ro) if k not in stats or not stats[k].n]
        return MethodVerdict(
            method, "incomplete", f"{method}: no result yet for {', '.join(missing)}", comps, mean
        )
    hurts = [c for c in (c_sr, c_so) if c is not None and c.loses]
    if c_sr.beats and c_ro.beats:
        status = "wins"
        summary = (
            f"{method} wins: translated+real {label} {fmt_stat(stats[tr_key])}, "
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


def no_synthetic_baselines(stats: dict) -> list[Key]:
    """The runs without synthetic data every synthetic run must beat: ``real-only`` of
    ``mix`` and, when self-training ran, ``real-only`` of ``selftrain`` (the references
    plus the unlabelled images), so that what the unlabelled images give is never
    credited to the synthetic data."""
    keys: list[Key] = [("mix", "real-only", None)]
    if any(k[0] == "selftrain" for k in stats):
        keys.append(("selftrain", "real-only", None))
    return keys


def synthetic_question(stats: dict, methods: Sequence[str], label: str) -> Question:
    """Does the synthetic data help? Yes when some run group on synthetic or translated
    images (any recipe) beats every baseline without synthetic data by more than the
    seed spread (:func:`no_synthetic_baselines`)."""
    q = "Does the synthetic data help?"
    bases = no_synthetic_baselines(stats)
    missing = [display_key(b) for b in bases if b not in stats or not stats[b].n]
    cands = [
        k
        for k, s in stats.items()
        if s.n and k[1] in SYNTHETIC and (k[2] is None or k[2] in methods)
    ]
    if missing or not cands:
        what = ", ".join(missing) if missing else "any run on synthetic data"
        return Question(q, "incomplete", f"No result yet for {what}.")
    comps = {c: [compare(stats, c, b) for b in bases] for c in cands}
    base_names = " and ".join(display_key(b) for b in bases)

    def slack(c: Key) -> float:  # the worst margin beyond the spread
        return min(x.margin - x.spread for x in comps[c])

    def worst(c: Key) -> Comparison:
        return min(comps[c], key=lambda x: x.margin - x.spread)

    by_recipe = {}
    for rec in dict.fromkeys(k[0] for k in cands):
        c = max((k for k in cands if k[0] == rec), key=slack)
        w = worst(c)
        by_recipe[rec] = f"{display_key(c)}: {w.margin:+.3f} {label} against {w.b} " + (
            f"(seed spread {w.spread:.3f}), beating every baseline"
            if slack(c) > 0
            else f"(seed spread {w.spread:.3f}), {_short_by(w)}"
        )
    winners = sorted(
        (c for c in cands if all(x.beats for x in comps[c])), key=lambda c: -stats[c].mean
    )
    if winners:
        w = winners[0]
        summary = f"Yes: {display_key(w)} {label} {fmt_stat(stats[w])}, {_margins(comps[w])}."
        if len(winners) > 1:
            summary += f" Also beating {base_names}: {', '.join(map(display_key, winners[1:]))}."
        return Question(q, "yes", summary, w, comps[w], by_recipe)
    c = max(cands, key=slack)
    w = worst(c)
    summary = (
        f"No: no run on synthetic data beats {base_names} by more than the seed spread. "
        f"Closest: {display_key(c)} at {fmt_stat(stats[c])}, {w.margin:+.3f} {label} "
        f"against {w.b} (seed spread {w.spread:.3f}), {_short_by(w)}."
    )
    return Question(q, "no", summary, c, comps[c], by_recipe)


def _short_by(w: Comparison) -> str:
    """How far a margin falls short of the spread; one that rounds to 0.000 says so
    (a tie with the spread does not clear it: the margin must be larger)."""
    gap = w.spread - w.margin
    return f"short by {gap:.3f}" if round(gap, 3) > 0 else "short by less than 0.001"


def translation_question(stats: dict, methods: Sequence[str], label: str) -> Question:
    """Does a translation help? Yes when method M, in some recipe, beats the same recipe
    on the untouched synthetic images by more than the seed spread (``translated+real``
    against ``source+real``; in ``mix`` also ``translated`` against ``source-only``)."""
    q = "Does a translation help?"
    pairs: list[tuple[Key, Key]] = []
    for recipe in dict.fromkeys(k[0] for k in stats):
        for m in methods:
            pairs.append(((recipe, "translated+real", m), (recipe, "source+real", None)))
            if recipe == "mix":
                pairs.append(((recipe, "translated", m), (recipe, "source-only", None)))
    comps = [(a, c) for a, b in pairs if (c := compare(stats, a, b)) is not None]
    if not comps:
        return Question(q, "incomplete", "No translated run with its untouched counterpart yet.")
    comps.sort(key=lambda ac: -(ac[1].margin - ac[1].spread))
    beats = [(a, c) for a, c in comps if c.beats]
    losing = [c for _, c in comps if c.loses]
    if beats:
        summary = "Yes: " + "; ".join(c.sentence(label) for _, c in beats) + "."
        answer, best = "yes", beats[0][0]
    else:
        a, c = comps[0]
        summary = (
            "No: no translation beats the untouched synthetic images of the same recipe by "
            f"more than the seed spread. Closest: {c.sentence(label)}."
        )
        answer, best = "no", a
    if losing:
        summary += " Worse than untouched: " + "; ".join(c.sentence(label) for c in losing) + "."
    return Question(q, answer, summary, best, [c for _, c in comps])


def longer_budget_note(iterations: int | None) -> str:
    """The note of a verdict in which nothing won, for runs of ``iterations`` steps:
    measured on the cracks benchmark (docs/RESULTS.md, recipes-long mode against the
    recipes mode, 3 seeds)."""
    rerun = f"--budget iterations={2 * iterations}" if iterations else "--budget iterations=N"
    return (
        "Nothing won by more than the seed spread at this budget, and a longer one can "
        "change that: on the cracks benchmark twice the steps (2000 instead of 1000) raised "
        "every setting by 0.03 to 0.10 crack IoU and made the synthetic data win "
        "(synth2real's docs/RESULTS.md). Before concluding, rerun with twice the iterations "
        f"({rerun}) into a new --out (a pilot's budget is fixed); --cache-dir set to this "
        "pilot's --cache-dir, or to its --out if it had none, reuses its translations."
    )


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
    questions = {
        "synthetic": synthetic_question(stats, methods, label),
        "translation": translation_question(stats, methods, label),
    }
    notes = []
    seeds = {s.n for s in stats.values() if s.n}
    if seeds and max(seeds) < 2:
        notes.append(
            "Only one seed per setting: no seed spread was measured, so any margin counts. Use 3 seeds or more."
        )
    ranked = sorted(
        ((k, s) for k, s in stats.items() if s.n and (k[2] is None or k[2] in methods)),
        key=lambda kv: kv[1].mean,
        reverse=True,
    )
    best = ranked[0][0] if ranked else None
    winners = sorted(
        (m for m, v in verdicts.items() if v.status == "wins"), key=lambda m: -verdicts[m].mean
    )
    hurting = [m for m, v in verdicts.items() if v.status == "hurts"]
    rec, rec_recipe = (winners[0], "mix") if winners else (None, None)
    recipes = any(k[0] != "mix" for k in stats)
    if recipes:
        rec, rec_recipe, headline = _recipes_headline(questions, stats, label)
    elif winners:
        headline = f"Use {rec}. " + verdicts[rec].summary.split(": ", 1)[1]
        if len(winners) > 1:
            headline += f" Also winning: {', '.join(winners[1:])}."
    elif not stats:
        headline = "No finished runs yet."
    else:
        headline = f"No method wins on {label}."
        if best is not None:
            headline += f" Best measured: {display_key(best)} at {fmt_stat(stats[best])}."
            if best == ("mix", "real-only", None):
                headline += " The few real images alone did at least as well as any synthetic mix at this budget."
            elif best == ("mix", "source+real", None):
                headline += " Mixing the untouched synthetic images with the real ones did best: translation did not add a measurable gain."
    if hurting:
        headline += f" Hurts: {', '.join(hurting)} (worse than the untouched synthetic data by more than the seed spread)."
    incomplete = [m for m, v in verdicts.items() if v.status == "incomplete"]
    if incomplete:
        notes.append(f"Incomplete (runs missing): {', '.join(incomplete)}.")
    separated = questions["synthetic"].answer == "yes" if recipes else bool(winners)
    if stats and seeds and max(seeds) >= 2 and not separated and not incomplete:
        steps = [r["iterations"] for r in runs if r.get("iterations")]
        notes.append(longer_budget_note(max(steps) if steps else None))
    return Verdict(metric, headline, rec, best, verdicts, notes, questions, rec_recipe)


def _recipes_headline(
    questions: dict[str, Question], stats: dict, label: str
) -> tuple[str | None, str | None, str]:
    """``(method, recipe, headline)`` of a pilot that ran more than the mix recipe: the
    answers to the two questions; a method is recommended only when its run group beats
    every baseline without synthetic data *and* the same recipe on untouched images."""
    syn, tra = questions["synthetic"], questions["translation"]
    detail = syn.summary.split(": ", 1)[-1]
    if syn.answer == "yes" and syn.best is not None:
        recipe, _, method = syn.best
        gain = next((c for c in tra.comparisons if c.beats and c.a == display_key(syn.best)), None)
        if method is not None and gain is not None:
            head = (
                f"Use {method} with the {recipe} recipe: {detail} Its translation beats "
                f"{gain.b} by {gain.margin:+.3f} (seed spread {gain.spread:.3f})."
            )
            return method, recipe, head
        if method is None:
            return (
                None,
                recipe,
                f"Use the untouched synthetic images with the {recipe} recipe: {detail}",
            )
        return None, recipe, _untranslated_headline(stats, syn.best, label, detail)
    if syn.answer == "incomplete":
        head = f"Does the synthetic data help? Not known yet: {detail}"
    else:
        head = f"No use of the synthetic data wins on {label}: {detail}"
    if tra.answer == "yes":
        head += " Within a recipe, a translation helps: " + tra.summary.split(": ", 1)[-1]
    return None, None, head


def _untranslated_headline(stats: dict, best: Key, label: str, detail: str) -> str:
    """The headline when the best run group is translated but its translation adds
    nothing beyond the seed spread: name the untouched synthetic images of the same recipe
    when they beat every baseline themselves, else say that translating or not makes no
    measurable difference."""
    recipe, _, method = best
    src = (recipe, "source+real", None)
    comps = [compare(stats, src, b) for b in no_synthetic_baselines(stats)]
    tail = (
        f"The best run group, {display_key(best)} at {fmt_stat(stats[best])}, is within the "
        f"seed spread of it: the translation of {method} adds nothing measurable."
    )
    if comps and all(c is not None and c.beats for c in comps):
        return (
            f"Use the untouched synthetic images with the {recipe} recipe: {display_key(src)} "
            f"{label} {fmt_stat(stats[src])}, {_margins(comps)}. {tail}"
        )
    return (
        f"Use the synthetic data with the {recipe} recipe: {detail} Whether {method} "
        f"translates it or not makes no difference beyond the seed spread, and "
        f"{display_key(src)} alone does not beat every baseline by more than the spread."
    )


def _margins(comps: Sequence[Comparison]) -> str:
    """``+0.049 over real-only (seed spread 0.033), ...``: each margin with the spread it
    was judged against."""
    return ", ".join(f"{c.margin:+.3f} over {c.b} (seed spread {c.spread:.3f})" for c in comps)
