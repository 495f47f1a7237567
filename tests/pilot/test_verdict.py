"""The win / lose / no-win rule of docs/BENCHMARK.md on constructed results."""

import math

import pytest

from synth2real.pilot.stats import Comparison
from synth2real.pilot.verdict import _short_by, decide, longer_budget_note, stat
from tests.pilot.fakes import fake_runs, plan_means

BASE = {("source-only", None): 0.30, ("real-only", None): 0.35, ("source+real", None): 0.40}


def runs_for(per_method, jitter=0.01, seeds=(0, 1, 2), base=BASE):
    return fake_runs(plan_means(list(per_method), base, per_method), seeds=seeds, jitter=jitter)


def test_stat_mean_std_range():
    s = stat([0.1, 0.3, None, float("nan"), 0.2])
    assert s.n == 3 and s.mean == pytest.approx(0.2)
    assert s.std == pytest.approx(0.1)
    assert (s.min, s.max, s.spread) == (0.1, 0.3, pytest.approx(0.2))
    assert math.isnan(stat([]).mean)


def test_clear_winner_is_recommended():
    runs = runs_for(
        {
            "good": {"translated": 0.33, "translated+real": 0.46},
            "better": {"translated": 0.34, "translated+real": 0.50},
        }
    )
    v = decide(runs, ["good", "better"], "iou:cracks")
    assert v.methods["good"].status == "wins" and v.methods["better"].status == "wins"
    assert v.recommended == "better"  # higher mean first
    assert v.headline.startswith("Use better.")
    assert "+0.100 over source+real" in v.headline and "+0.150 over real-only" in v.headline
    assert v.best == ("mix", "translated+real", "better")


def test_margin_within_seed_spread_is_no_win():
    # +0.015 over source+real, but seeds scatter over 0.04 (jitter 0.02 x 2)
    runs = runs_for({"m": {"translated": 0.31, "translated+real": 0.415}}, jitter=0.02)
    v = decide(runs, ["m"], "iou:cracks")
    assert v.methods["m"].status == "no-win"
    assert "Without real images" not in v.methods["m"].summary  # +0.01 is within noise
    assert v.recommended is None and v.winners == []
    assert v.headline.startswith("No method wins on cracks IoU.")
    assert "Best measured: translated+real [m]" in v.headline


def test_translation_alone_beating_source_only_is_said():
    runs = runs_for({"m": {"translated": 0.50, "translated+real": 0.415}}, jitter=0.02)
    v = decide(runs, ["m"], "iou:cracks")
    assert v.methods["m"].status == "no-win"
    expected = "beats the untouched synthetic data: +0.200 cracks IoU over source-only"
    assert expected in v.methods["m"].summary


def test_beating_source_real_but_not_real_only_is_no_win():
    base = {("source-only", None): 0.30, ("real-only", None): 0.55, ("source+real", None): 0.40}
    runs = runs_for({"m": {"translated": 0.31, "translated+real": 0.50}}, base=base)
    v = decide(runs, ["m"], "iou:cracks")
    assert v.methods["m"].status == "no-win"
    assert "loses to real-only" in v.methods["m"].summary
    assert "real images alone" in v.headline


def test_method_that_hurts_is_reported():
    runs = runs_for({"bad": {"translated": 0.20, "translated+real": 0.30}})
    v = decide(runs, ["bad"], "iou:cracks")
    assert v.methods["bad"].status == "hurts"
    assert v.hurting == ["bad"]
    assert "Hurts: bad" in v.headline
    assert "translated [bad] loses to source-only" in v.methods["bad"].summary


def test_loses_to_source_only_alone_is_noted_even_without_hurting_the_mix():
    runs = runs_for({"m": {"translated": 0.20, "translated+real": 0.41}})
    v = decide(runs, ["m"], "iou:cracks")
    assert v.methods["m"].status == "hurts"  # translated alone is worse than untouched


def test_metric_choice_changes_the_verdict():
    runs = runs_for({"m": {"translated": 0.33, "translated+real": 0.46}})
    # background IoU is identical for every setting (0.9 +- jitter): nothing wins on it
    v = decide(runs, ["m"], "iou:background")
    assert v.methods["m"].status == "no-win"
    assert decide(runs, ["m"], "miou").methods["m"].status == "wins"


def test_missing_runs_make_a_method_incomplete():
    runs = [
        r
        for r in runs_for({"m": {"translated": 0.33, "translated+real": 0.46}})
        if r["setting"] != "real-only"
    ]
    v = decide(runs, ["m"], "iou:cracks")
    assert v.methods["m"].status == "incomplete"
    assert "real-only" in v.methods["m"].summary
    assert any("Incomplete" in n for n in v.notes)


def test_a_margin_just_under_the_spread_is_not_short_by_zero():
    """Measured on cracks (5 seeds): +0.0487 against a spread of 0.0489 printed as
    'short by 0.000', which reads as a win; a tie does not clear the bar either."""
    assert _short_by(Comparison("a", "b", margin=0.0487, spread=0.0489)) == (
        "short by less than 0.001"
    )
    assert _short_by(Comparison("a", "b", margin=0.05, spread=0.05)) == "short by less than 0.001"
    assert _short_by(Comparison("a", "b", margin=0.030, spread=0.048)) == "short by 0.018"


def test_single_seed_is_flagged():
    runs = runs_for({"m": {"translated": 0.33, "translated+real": 0.46}}, seeds=(0,))
    v = decide(runs, ["m"], "iou:cracks")
    assert any("one seed" in n for n in v.notes)


def test_a_verdict_where_nothing_won_suggests_a_longer_budget():
    """Measured on cracks: twice the steps turned 'no' into 'yes'. The note comes only
    when nothing won with a measured spread, never beside a winner or with one seed."""
    tie = runs_for({"m": {"translated": 0.31, "translated+real": 0.415}}, jitter=0.02)
    # the rerun it suggests doubles the steps the runs trained
    tie = [{**r, "iterations": 300} for r in tie]
    note = longer_budget_note(300)
    assert "(--budget iterations=600) into a new --out" in note
    assert note.endswith("reuses its translations.")
    assert note in decide(tie, ["m"], "iou:cracks").notes
    no_steps = [{k: v for k, v in r.items() if k != "iterations"} for r in tie]
    assert longer_budget_note(None) in decide(no_steps, ["m"], "iou:cracks").notes

    def suggests_longer(v) -> bool:
        return any(n.startswith("Nothing won by more than the seed spread") for n in v.notes)

    win = runs_for({"m": {"translated": 0.33, "translated+real": 0.46}})
    assert not suggests_longer(decide(win, ["m"], "iou:cracks"))
    one_seed = runs_for({"m": {"translated": 0.31, "translated+real": 0.415}}, seeds=(0,))
    assert not suggests_longer(decide(one_seed, ["m"], "iou:cracks"))
    # recipes: a translation that wins over the mix baselines is not enough when the
    # self-trained real-only baseline is as good: the synthetic data did not help
    recipes = ("mix", "selftrain")
    base = {
        **BASE,
        ("selftrain", "real-only", None): 0.50,
        ("selftrain", "source+real", None): 0.44,
    }
    per = {
        "m": {"translated": 0.33, "translated+real": 0.46, ("selftrain", "translated+real"): 0.45}
    }
    means = plan_means(["m"], base, per, recipes=recipes)
    v = decide(fake_runs(means), ["m"], "iou:cracks")
    assert v.questions["synthetic"].answer == "no" and suggests_longer(v)
    means[("selftrain", "source+real", None)] = 0.60
    v = decide(fake_runs(means), ["m"], "iou:cracks")
    assert v.questions["synthetic"].answer == "yes" and not suggests_longer(v)
