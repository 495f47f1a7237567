"""Recipes in the pilot (issue 9): parsing, unlabelled images, the plan, the verdict's two
questions, the report with many classes, and a tiny pilot with every recipe end to end."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from synth2real.errors import ConfigError, DataError
from synth2real.pilot import PilotConfig, plan_runs, run_pilot
from synth2real.pilot.config import budget_id, effective_budget, parse_recipes
from synth2real.pilot.report import COLUMNS_PER_TABLE, render_report
from synth2real.pilot.results import results_csv
from synth2real.pilot.runs import runs_per_recipe
from synth2real.pilot.verdict import decide
from tests.pilot.fakes import fake_results, fake_runs, plan_means
from tests.pilot.fixtures import TINY_BUDGET, make_tiny_pilot_data, write_dataset
from tests.pilot.test_report import Collector

REPO = Path(__file__).resolve().parents[2]
ALL = ("mix", "finetune", "selftrain")


def config(paths, **kw) -> PilotConfig:
    args = dict(
        source=paths["source"],
        references=paths["references"],
        test=paths["test"],
        methods=["reinhard"],
        seeds=1,
        budget=dict(TINY_BUDGET),
        device="cpu",
        metric="iou:line",
    )
    args.update(kw)
    return PilotConfig(**args)


# -- options -------------------------------------------------------------------------------
def test_parse_recipes_and_their_errors():
    assert parse_recipes(None) == ["mix"] and parse_recipes("") == ["mix"]
    assert parse_recipes("finetune, MIX,finetune") == ["finetune", "mix"]
    with pytest.raises(ConfigError, match=r"unknown recipe 'fintune'; choose from mix, finetune"):
        parse_recipes("mix,fintune")
    paths = {"source": "s", "references": "r", "test": "t"}
    with pytest.raises(
        ConfigError, match="selftrain needs unlabelled real images: give --unlabeled"
    ):
        config(paths, recipes="mix,selftrain")
    with pytest.raises(ConfigError, match="--unlabeled u: only the selftrain recipe"):
        config(paths, recipes="mix,finetune", unlabeled="u")
    with pytest.raises(ConfigError, match="--unlabeled-names needs --unlabeled"):
        config(paths, unlabeled_names=["a"])
    with pytest.raises(ConfigError, match=r"recipe is set by the pilot for each run \(--recipes\)"):
        config(paths, budget={**TINY_BUDGET, "recipe": "finetune"})
    cfg = config(
        paths, recipes="selftrain,mix", unlabeled="u", budget={**TINY_BUDGET, "ft_split": 0.5}
    )
    assert cfg.recipes == ["selftrain", "mix"] and cfg.to_dict()["recipes"] == ["selftrain", "mix"]
    assert cfg.fixed()["unlabeled"] == str(Path("u").resolve())


def test_mix_budget_ids_are_those_of_the_pilot_before_recipes():
    """Computed with the pilot of commit 9e935fe (before the recipe fields existed, when
    small-unet was the default model and trained in fp32): old pilot folders' finished mix
    runs still count with ``--seg-model small-unet --budget cpu_amp=false``; the new
    default model and the new cpu_amp default are new ids (other weights)."""
    paths = {"source": "s", "references": "r", "test": "t"}
    from synth2real.pilot.config import DEFAULT_BUDGET, QUICK_BUDGET

    for budget, old in ((DEFAULT_BUDGET, "58f4771eeef0"), (QUICK_BUDGET, "869b256e7899"), (TINY_BUDGET, "80cab5b55063")):  # fmt: skip
        cfg = config(paths, budget={**budget, "cpu_amp": False}, model="small-unet")
        assert budget_id(effective_budget(cfg), cfg.model) == old
        # cpu_amp="auto" (the default since) may train in bf16: not the old runs
        cfg = config(paths, budget=dict(budget), model="small-unet")
        assert budget_id(effective_budget(cfg), cfg.model) != old
        cfg = config(paths, budget=dict(budget))
        assert cfg.model == "small-unet-add"
        assert budget_id(effective_budget(cfg), cfg.model) != old
    # a recipe field away from its default is part of the id
    cfg = config(paths, budget={**TINY_BUDGET, "ft_split": 0.5})
    assert budget_id(effective_budget(cfg), cfg.model) != "80cab5b55063"


# -- the plan ------------------------------------------------------------------------------
def test_runs_planned_per_recipe_with_mix_paths_unchanged():
    methods, seeds = ["none", "a", "b"], [0, 1]
    mix = plan_runs(methods, seeds)
    plan = plan_runs(methods, seeds, ALL)
    assert runs_per_recipe(plan) == {
        "mix": 2 * 7,
        "finetune": 2 * (1 + 2),
        "selftrain": 2 * (2 + 2),
    }
    assert [r.relpath for r in plan if r.recipe == "mix"] == [r.relpath for r in mix]
    assert "runs/translated+real/a/seed0" in {r.relpath for r in mix}  # where they always were
    assert len({r.relpath for r in plan}) == len(plan)
    other = {r.relpath for r in plan if r.recipe != "mix"}
    assert "runs/finetune/translated+real/b/seed1" in other
    assert "runs/selftrain/real-only/seed0" in other
    assert all(p.split("/")[1] in ("finetune", "selftrain") for p in other)
    assert {(r.setting, r.method) for r in plan if r.recipe == "finetune"} == {
        ("source+real", None), ("translated+real", "a"), ("translated+real", "b")
    }  # fmt: skip
    assert {r.setting for r in plan if r.recipe == "selftrain"} == {
        "real-only", "source+real", "translated+real"
    }  # fmt: skip
    assert {r.seed for r in plan[: len(plan) // 2]} == {0}  # seed-major across recipes
    assert plan_runs(methods, seeds, ["finetune"]) == [r for r in plan if r.recipe == "finetune"]


# -- unlabelled images: refused before any work --------------------------------------------
@pytest.fixture
def data(tmp_path):
    paths = make_tiny_pilot_data(tmp_path / "data")
    paths["unlabeled"] = write_dataset(tmp_path / "data/unlabeled", 3, True, seed=3, prefix="u")
    return paths


def _selftrain(paths, **kw):
    return config(paths, recipes="mix,selftrain", unlabeled=paths["unlabeled"], **kw)


def test_unlabeled_image_with_a_test_image_content_is_refused_by_name(data, tmp_path):
    # the same bytes under another name and folder
    img = data["unlabeled"] / "images"
    shutil.copyfile(data["test"] / "images/t01.png", img / "holiday.png")
    with pytest.raises(ConfigError) as e:
        run_pilot(_selftrain(data), tmp_path / "out", progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "1 unlabelled image(s) are test images (same file content)" in msg
    assert f"{img / 'holiday.png'} = {data['test'] / 'images/t01.png'}" in msg
    assert not (tmp_path / "out").exists()
    # --unlabeled-names that leave it out make the same folders fine for the check
    cfg = _selftrain(data, unlabeled_names=["u00", "u01"])
    from synth2real.pilot.inputs import open_inputs

    assert len(open_inputs(cfg)["unlabeled"]) == 2
    # a plain image folder (no labels, no classes.yaml) is fine too, read as it is
    plain = tmp_path / "photos"
    plain.mkdir()
    for i in range(2):
        shutil.copyfile(data["unlabeled"] / f"images/u0{i}.png", plain / f"p{i}.png")
    got = open_inputs(_selftrain({**data, "unlabeled": plain}, format="generic"))["unlabeled"]
    assert [s.label_path for s in got.samples] == [None, None] and len(got) == 2


def test_a_budget_too_short_for_finetuning_fails_before_any_work(data, tmp_path):
    cfg = config(data, recipes="mix,finetune", budget={**TINY_BUDGET, "iterations": 1})
    with pytest.raises(ConfigError, match="ft_split: leaves a fine-tuning phase empty"):
        run_pilot(cfg, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_empty_or_unreadable_unlabeled_folders_are_refused(data, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="empty"):
        run_pilot(_selftrain({**data, "unlabeled": empty}), tmp_path / "a", progress=False)
    bad = data["unlabeled"] / "images/u01.png"
    bad.write_bytes(bad.read_bytes()[:60])  # truncated
    with pytest.raises(DataError, match="u01.png"):
        run_pilot(_selftrain(data), tmp_path / "b", progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_refuses_with_one_line_and_exit_2(data, tmp_path, monkeypatch, capsys):
    from synth2real.cli import main

    shutil.copyfile(data["test"] / "images/t02.png", data["unlabeled"] / "images/copy.png")
    args = [
        "synth2real", "pilot", "--source", str(data["source"]), "--references",
        str(data["references"]), "--test", str(data["test"]), "--methods", "reinhard",
        "--recipes", "mix,selftrain", "--unlabeled", str(data["unlabeled"]),
        "--device", "cpu", "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    monkeypatch.setattr(sys, "argv", args)
    monkeypatch.setenv("COLUMNS", "40")  # a narrow terminal must not wrap the message
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2
    out = "".join(capsys.readouterr())
    line = next(x for x in out.splitlines() if x.startswith("error:"))
    assert str(data["unlabeled"] / "images/copy.png") in line and "t02.png" in line
    # selftrain without --unlabeled: the same one-line refusal
    monkeypatch.setattr(sys, "argv", args[: args.index("--unlabeled")] + args[-4:])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2 and "give --unlabeled" in "".join(capsys.readouterr())
    assert not (tmp_path / "out").exists()
    # the output may not sit inside the unlabelled folder (an input)
    monkeypatch.setattr(sys, "argv", args[:-1] + [str(data["unlabeled"] / "out")])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2 and "--unlabeled" in "".join(capsys.readouterr())


# -- the verdict's two questions -----------------------------------------------------------
BASE = {("source-only", None): 0.30, ("real-only", None): 0.35, ("source+real", None): 0.40}


def test_a_gain_from_the_unlabelled_images_is_not_credited_to_the_synthetic_data():
    # self-training lifts everything, the synthetic data adds nothing on top of it
    means = plan_means(
        ["m"],
        {**BASE, ("selftrain", "real-only", None): 0.55, ("selftrain", "source+real", None): 0.56},
        {
            "m": {
                "translated": 0.31,
                "translated+real": 0.41,
                ("selftrain", "translated+real"): 0.555,
            }
        },
        recipes=("mix", "selftrain"),
    )
    v = decide(fake_runs(means), ["m"], "iou:cracks")
    syn = v.questions["synthetic"]
    assert syn.answer == "no"
    # source+real (selftrain) beats mix real-only by far: not enough
    assert "real-only (selftrain)" in syn.summary and syn.best == ("selftrain", "source+real", None)
    assert v.recommended is None and v.recommended_recipe is None
    assert v.questions["translation"].answer == "no"
    assert v.headline.startswith("No use of the synthetic data wins on cracks IoU: no run on")
    # the mix words are still given per method
    assert v.methods["m"].status == "no-win"


def test_synthetic_data_and_translation_help_through_finetuning():
    means = plan_means(
        ["good", "bad"],
        {**BASE, ("finetune", "source+real", None): 0.45},
        {
            "good": {"translated": 0.33, "translated+real": 0.42, ("finetune", "translated+real"): 0.60},
            "bad": {"translated": 0.20, "translated+real": 0.30, ("finetune", "translated+real"): 0.30},
        },
        recipes=("mix", "finetune"),
    )  # fmt: skip
    v = decide(fake_runs(means), ["good", "bad"], "iou:cracks")
    syn, tra = v.questions["synthetic"], v.questions["translation"]
    assert syn.answer == "yes" and syn.best == ("finetune", "translated+real", "good")
    assert "+0.250 over real-only" in syn.summary
    assert tra.answer == "yes" and tra.best == ("finetune", "translated+real", "good")
    assert "translated+real [good] (finetune) beats source+real (finetune): +0.150" in tra.summary
    assert "translated+real [bad] (finetune) loses to source+real (finetune)" in tra.summary
    assert v.recommended == "good" and v.recommended_recipe == "finetune"
    assert v.headline.startswith("Use good with the finetune recipe: translated+real [good]")
    assert "Its translation beats source+real (finetune) by +0.150" in v.headline
    assert v.methods["bad"].status == "hurts" and "Hurts: bad" in v.headline


def test_untouched_synthetic_data_helping_recommends_no_method():
    means = plan_means(
        ["m"],
        {**BASE, ("finetune", "source+real", None): 0.60},
        # the best run group is m's, but within the seed spread of the untouched images
        {"m": {"translated": 0.31, "translated+real": 0.41, ("finetune", "translated+real"): 0.61}},
        recipes=("mix", "finetune"),
    )
    v = decide(fake_runs(means), ["m"], "iou:cracks")
    assert v.questions["synthetic"].answer == "yes"
    assert v.questions["synthetic"].best == ("finetune", "translated+real", "m")
    assert v.questions["translation"].answer == "no"
    assert v.recommended is None and v.recommended_recipe == "finetune"
    # the headline names the untouched run group it recommends, not the translated one
    assert v.headline.startswith(
        "Use the untouched synthetic images with the finetune recipe: source+real (finetune) "
        "cracks IoU 0.600 (0.590..0.610, 3 seeds), +0.250 over real-only (seed spread 0.020)"
    )
    assert "translated+real [m] (finetune) at 0.610" in v.headline
    assert "is within the seed spread of it: the translation of m adds nothing" in v.headline


def test_a_translated_winner_whose_untouched_twin_falls_short_is_not_credited_to_either():
    means = plan_means(
        ["m"],
        {**BASE, ("source+real", None): 0.34, ("finetune", "source+real", None): 0.36},
        # m's run group beats real-only (+0.025 > 0.02) but not source+real (+0.015)
        {
            "m": {
                "translated": 0.31,
                "translated+real": 0.34,
                ("finetune", "translated+real"): 0.375,
            }
        },
        recipes=("mix", "finetune"),
    )
    v = decide(fake_runs(means), ["m"], "iou:cracks")
    assert v.questions["synthetic"].best == ("finetune", "translated+real", "m")
    assert v.recommended is None and v.recommended_recipe == "finetune"
    assert v.headline.startswith(
        "Use the synthetic data with the finetune recipe: translated+real [m]"
    )
    assert "Whether m translates it or not makes no difference" in v.headline
    assert "source+real (finetune) alone does not beat every baseline" in v.headline


def test_missing_selftrain_baseline_leaves_the_synthetic_question_open():
    means = plan_means(
        ["m"],
        {**BASE, ("selftrain", "real-only", None): 0.35, ("selftrain", "source+real", None): 0.90},
        {"m": {"translated": 0.31, "translated+real": 0.41, ("selftrain", "translated+real"): 0.5}},
        recipes=("mix", "selftrain"),
    )
    runs = [
        r for r in fake_runs(means) if (r["recipe"], r["setting"]) != ("selftrain", "real-only")
    ]
    q = decide(runs, ["m"], "iou:cracks").questions["synthetic"]
    assert q.answer == "incomplete" and "real-only (selftrain)" in q.summary


# -- report and csv ------------------------------------------------------------------------
CLASSES19 = ["background", "cracks", *(f"class{i:02d}" for i in range(17))]


def _results19():
    means = plan_means(
        ["fda"],
        {**BASE, ("finetune", "source+real", None): 0.45, ("selftrain", "real-only", None): 0.4,
         ("selftrain", "source+real", None): 0.42},
        {"fda": {"translated": 0.3, "translated+real": 0.41, ("finetune", "translated+real"): 0.5,
                 ("selftrain", "translated+real"): 0.43}},
        recipes=ALL,
    )  # fmt: skip
    return fake_results(means, ["fda"], classes=CLASSES19, recipes=ALL)


def test_report_shows_every_one_of_19_classes_recipes_and_no_best_on_zero_ties():
    res = _results19()
    html = render_report(res, None)
    p = Collector()
    p.feed(html)
    text = " ".join(p.text)
    for c in CLASSES19:
        assert f"<th>{c} IoU</th>" in html
    # 21 columns (mIoU, 19 classes, pixel accuracy) in tables of at most 5: all on the page
    assert html.count('class="tablewrap metrics"') == -(-21 // COLUMNS_PER_TABLE) == 5
    # the 17 classes at 0.000 everywhere: no cell of theirs is marked best
    for part in html.split('class="tablewrap metrics"')[1:]:
        table = part.split("</table>")[0]
        heads = [h.split("</th>")[0] for h in table.split("<th>")[1:]]
        rows = [r for r in table.split("<tr>")[1:] if "<td" in r]
        for row in rows:
            cells = row.split("<td")[2:]  # after the setting name
            for head, cell in zip(heads, cells, strict=False):
                if head.startswith("class"):
                    assert not cell.startswith(' class="best"'), (head, cell)
    assert html.count('class="best"') > 0  # the non-zero columns are marked
    for label in (
        "translated+real [fda] (finetune)",
        "real-only (selftrain)",
        "source+real (selftrain)",
    ):
        assert f">{label}</text>" in html  # a bar per recipe's setting
    assert "Does the synthetic data help?" in text and "Does a translation help?" in text
    assert "recipe finetune" in text and "recipes" in text


def test_results_csv_has_the_recipe_of_every_run():
    res = _results19()
    rows = list(
        csv.DictReader(io.StringIO(results_csv(res["runs"], res["classes"], res["machine"])))
    )
    assert len(rows) == len(res["runs"]) == 3 * (5 + 2 + 3)
    assert [r["recipe"] for r in rows] == [r["recipe"] for r in res["runs"]]
    assert {r["recipe"] for r in rows} == set(ALL)
    assert {s["recipe"] for s in res["summary"]} == set(ALL)
    # records written before recipes existed count as mix
    old = [{k: v for k, v in r.items() if k != "recipe"} for r in res["runs"][:2]]
    assert [
        r["recipe"] for r in csv.DictReader(io.StringIO(results_csv(old, res["classes"], {})))
    ] == ["mix", "mix"]


@pytest.mark.browser
def test_report_with_19_classes_fits_the_page_in_headless_chromium(tmp_path):
    if shutil.which("chromium") is None and not os.environ.get("S2R_CHROMIUM"):
        if os.environ.get("S2R_REQUIRE_BROWSER"):
            pytest.fail("chromium is missing but S2R_REQUIRE_BROWSER is set")
        pytest.skip("chromium not installed (apt-get install chromium)")
    page = tmp_path / "report.html"
    page.write_text(render_report(_results19(), None))
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts/check_report.py"), str(page), "--json"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    check = json.loads(proc.stdout)
    assert proc.returncode == 0 and check["problems"] == [], proc.stdout + proc.stderr
    shown = set(check["columns"])
    assert {f"{c} IoU" for c in CLASSES19} <= shown
    # the check sees a table that is too wide: the old one-table layout fails it
    import synth2real.pilot.report as report

    old = report.COLUMNS_PER_TABLE
    try:
        report.COLUMNS_PER_TABLE = 100
        page.write_text(render_report(_results19(), None))
    finally:
        report.COLUMNS_PER_TABLE = old
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts/check_report.py"), str(page), "--json"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 1 and "table wider than the page" in proc.stdout


# -- end to end ----------------------------------------------------------------------------
def test_tiny_pilot_with_every_recipe_end_to_end_and_resume(data, tmp_path):
    # first a mix-only pilot, as an older folder would be; then the recipes join it
    out = tmp_path / "out"
    first = run_pilot(config(data), out, progress=False, estimate=False)
    assert first.ran == 5
    stamp = (out / "runs/translated+real/reinhard/seed0/result.json").stat().st_mtime_ns
    cfg = config(data, recipes="mix,finetune,selftrain", unlabeled=data["unlabeled"])
    r = run_pilot(cfg, out, resume=True, progress=False)
    assert r.skipped == 5 and r.ran == 2 + 3
    assert (out / "runs/translated+real/reinhard/seed0/result.json").stat().st_mtime_ns == stamp
    assert not (out / "probe").exists()  # the timing probe cleans up
    res = json.loads((out / "results.json").read_text())
    got = {(x["recipe"], x["setting"], x["method"]) for x in res["runs"]}
    assert got == {(s.recipe, s.setting, s.method) for s in plan_runs(["reinhard"], [0], ALL)}
    for x in res["runs"]:
        assert x["iterations"] == 3 and 0 <= x["miou"] <= 1
        assert (x["unlabeled_images"] == 3) == (x["recipe"] == "selftrain")
        assert (out / x["checkpoint"]).is_file()
    for rel in ("runs/finetune/translated+real/reinhard/seed0", "runs/selftrain/real-only/seed0"):
        assert (out / rel / "result.json").is_file()
    ckpt = json.loads((out / "runs/finetune/source+real/seed0/train/model.json").read_text())
    assert ckpt["train_config"]["recipe"] == "finetune"  # trained with its recipe
    assert res["data"]["unlabeled"] == 3 and res["config"]["recipes"] == list(ALL)
    assert set(res["verdict"]["questions"]) == {"synthetic", "translation"}
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert sorted({x["recipe"] for x in rows}) == sorted(ALL)
    html = r.report.read_text()
    assert "translated+real [reinhard] (selftrain)" in html and "Does a translation help?" in html
    # the unlabelled images are fixed once given
    other = write_dataset(tmp_path / "other", 2, True, seed=5, prefix="o")
    from synth2real.errors import OutputExistsError

    with pytest.raises(OutputExistsError, match="unlabeled"):
        run_pilot(
            config(data, recipes="mix,selftrain", unlabeled=other), out, resume=True, progress=False
        )


def test_estimate_adds_the_runs_left_per_recipe_and_divides_by_jobs():
    from synth2real.pilot.estimate import StepCost, describe, estimate

    costs = {"mix": StepCost(0.5, 2.0, cold=3.0, scoring=1.0), "selftrain": StepCost(1.5, 2.0)}
    # finetune steps cost what mix steps do; selftrain has its own; cold counted once
    total = 2 * (2 + 10 * 0.5 + 1) + 1 * (2 + 10 * 0.5 + 1) + 1 * (2 + 10 * 1.5)
    got = estimate(costs, {"mix": 2, "finetune": 1, "selftrain": 1}, 10, jobs=2)
    assert got == pytest.approx(total / 2 + 3.0)
    assert estimate(costs, {"mix": 1}, 10, jobs=4) == pytest.approx(8.0 + 3.0)  # 1 run: 1 job
    line = describe(costs, got, 2)
    assert "selftrain 1.5 s/step" in line and "at 2 run(s) at a time" in line
