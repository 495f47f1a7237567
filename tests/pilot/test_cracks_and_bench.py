"""The pilot on a sliver of the real cracks set, and the benchmark's RESULTS.md writer."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from synth2real.pilot import PilotConfig, run_pilot
from tests.pilot.fakes import fake_results, plan_means

REPO = Path(__file__).resolve().parents[2]


def _bench_module(name: str = "pilot_cracks"):
    spec = importlib.util.spec_from_file_location(name, REPO / f"benchmarks/{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_pilot_on_a_sliver_of_cracks(cracks_root, tmp_path):
    """Supervisely folders, splits.json names with extensions, JPEGs of odd sizes."""
    splits = json.loads((cracks_root / "splits.json").read_text())
    cfg = PilotConfig(
        source=cracks_root / "source_synthetic",
        references=cracks_root / "validation",
        test=cracks_root / "validation",
        reference_names=splits["references"][:2],
        test_names=splits["test"][:2],
        source_limit=4,
        methods=["reinhard-cw"],
        seeds=1,
        budget={"iterations": 2, "batch_size": 2, "crop": 64, "max_size": 128, "warmup": 0,
                "model_kwargs": {"channels": [4, 8]}},
        device="cpu",
        metric="iou:cracks",
    )  # fmt: skip
    r = run_pilot(cfg, tmp_path / "out", progress=False)
    assert r.report.is_file()
    assert r.results["classes"] == ["background", "cracks"]
    assert r.results["data"] == {
        "source": 4, "references": 2, "test": 2,
        "reference_names": [Path(n).stem for n in splits["references"][:2]],
    }  # fmt: skip
    assert len(r.results["runs"]) == 5
    # the synthetic images were shrunk once to the training resolution and translated there
    assert len(list((tmp_path / "out/source_max128/images").glob("*.png"))) == 4
    assert (tmp_path / "out/translated-max128/reinhard-cw").is_dir()


def test_results_md_is_rendered_from_the_json(tmp_path):
    bench = _bench_module()
    methods = ["reinhard", "fda"]
    means = plan_means(
        methods,
        {("source-only", None): 0.30, ("real-only", None): 0.35, ("source+real", None): 0.40},
        {"reinhard": {"translated": 0.33, "translated+real": 0.46},
         "fda": {"translated": 0.20, "translated+real": 0.30}},
    )  # fmt: skip
    res = fake_results(means, methods, budget_name="quick")
    res["benchmark"] = {"mode": "quick", "command": "pilot_cracks.py --quick", "wall_seconds": 812.0,
                        "runs_trained_now": 21, "runs_resumed": 0, "commit": "abc1234"}  # fmt: skip
    (tmp_path / "cracks_quick.json").write_text(json.dumps(res))
    md = bench.render_results_md(tmp_path)
    assert "## quick mode" in md and "## full mode" not in md
    assert "| translated+real | reinhard | 0.460 ± 0.010 [0.450..0.470] |" in md
    assert "`reinhard`: **wins**" in md and "`fda`: **hurts**" in md
    assert "Test CPU (2 cores" in md and "iterations=10" in md and "13.5 min" in md
    assert "Seeds**: 0, 1, 2" in md
    assert f"from `{tmp_path.resolve()}/cracks_*.json`" in md  # the folder it was read from
    assert "from `docs/results/cracks_*.json`" in bench.render_results_md(
        bench.REPO / "docs/results"
    )
    assert "No results yet" in bench.render_results_md(tmp_path / "empty")


def test_render_only_refreshes_a_stale_verdict_and_leaves_the_runs_as_measured(tmp_path):
    bench = _bench_module()
    means = plan_means(
        ["fda"],
        {("source-only", None): 0.30, ("real-only", None): 0.35, ("source+real", None): 0.40},
        {"fda": {"translated": 0.33, "translated+real": 0.46}},
    )
    res = fake_results(means, ["fda"], budget_name="quick")
    res["benchmark"] = {"mode": "quick", "command": "pilot_cracks.py --quick", "wall_seconds": 1.0,
                        "runs_trained_now": 21, "runs_resumed": 0, "commit": "abc1234"}  # fmt: skip
    fresh = dict(res["verdict"])
    res["verdict"] = {**fresh, "headline": "an old wording"}
    path = tmp_path / "results" / "cracks_quick.json"
    path.parent.mkdir()
    path.write_text(json.dumps(res))
    assert bench.main(["--render-only", "--docs", str(tmp_path)]) == 0
    after = json.loads(path.read_text())
    assert after["verdict"] == fresh and after["runs"] == res["runs"]
    assert "an old wording" not in (tmp_path / "RESULTS.md").read_text()
    assert fresh["headline"] in (tmp_path / "RESULTS.md").read_text()
    stamp = path.stat().st_mtime_ns
    bench.main(["--render-only", "--docs", str(tmp_path)])  # nothing stale: not rewritten
    assert path.stat().st_mtime_ns == stamp


def test_results_md_gains_the_recipes_table_and_keeps_the_other_modes(tmp_path):
    bench = _bench_module()
    assert bench.MODES["recipes"]["budget"] == bench.MODES["full"]["budget"]
    assert bench.MODES["recipes"]["methods"] == ["none", "fda", "reinhard-cwc", "histmatch-cwc"]
    methods = ["fda", "reinhard-cwc", "histmatch-cwc"]
    recipes = ("mix", "finetune", "selftrain")
    per = {"translated": 0.30, "translated+real": 0.41, ("finetune", "translated+real"): 0.42,
           ("selftrain", "translated+real"): 0.43}  # fmt: skip
    means = plan_means(
        methods,
        {("source-only", None): 0.30, ("real-only", None): 0.35, ("source+real", None): 0.40,
         ("finetune", "source+real", None): 0.41, ("selftrain", "real-only", None): 0.50,
         ("selftrain", "source+real", None): 0.44},
        {m: per for m in methods},
        recipes=recipes,
    )  # fmt: skip
    res = fake_results(means, methods, recipes=recipes)
    res["data"]["unlabeled"] = 150
    res["benchmark"] = {"mode": "recipes", "command": "pilot_cracks.py --recipes", "wall_seconds": 60.0,
                        "runs_trained_now": 54, "runs_resumed": 0, "commit": "abc1234"}  # fmt: skip
    (tmp_path / "cracks_recipes.json").write_text(json.dumps(res))
    quick = fake_results(plan_means(["fda"], dict(list(means.items())[:3]), {"fda": {
        "translated": 0.3, "translated+real": 0.4}}), ["fda"], budget_name="quick")  # fmt: skip
    quick["benchmark"] = {**res["benchmark"], "mode": "quick", "command": "pilot_cracks.py --quick"}
    (tmp_path / "cracks_quick.json").write_text(json.dumps(quick))
    md = bench.render_results_md(tmp_path)
    assert md.index("## recipes mode") < md.index("## quick mode")
    assert "| recipe | setting | method | cracks IoU |" in md
    rows = [x for x in md.splitlines() if x.startswith(("| mix ", "| finetune ", "| selftrain "))]
    assert len(rows) == 9 + 4 + 5  # every recipe x setting x method, losing ones included
    assert "| selftrain | real-only | – | 0.500 ± 0.010 [0.490..0.510] |" in md
    assert "| finetune | translated+real | fda | 0.420 ± 0.010 [0.410..0.430] |" in md
    assert "used 150 unlabelled real images" in md
    # the self-trained baseline is the one to beat: the synthetic data does not help
    assert "Does the synthetic data help? **no**" in md
    assert "closest in recipe finetune: translated+real [fda] (finetune)" in md
    # the quick section keeps its old table (no recipe column)
    quick_part = md[md.index("## quick mode") :]
    assert "| setting | method | cracks IoU |" in quick_part and "| recipe |" not in quick_part


def test_new_defaults_keep_the_old_result_and_compare_them(tmp_path):
    bench = _bench_module()
    methods = ["fda"]

    def result(model: str, shift: float, **settings) -> dict:
        means = plan_means(
            methods,
            {("source-only", None): 0.30 + shift, ("real-only", None): 0.35,
             ("source+real", None): 0.40},
            {"fda": {"translated": 0.30, "translated+real": 0.41}},
        )  # fmt: skip
        res = fake_results(means, methods, budget_name="full")
        res["config"]["model"] = model
        res["budget"] = {**res["budget"], **settings}
        res["benchmark"] = {"mode": "full", "command": "pilot_cracks.py --full",
                            "wall_seconds": 600.0, "runs_trained_now": 15, "runs_resumed": 0,
                            "commit": "abc1234"}  # fmt: skip
        return res

    old = result("small-unet", 0.0, cpu_amp=False)
    (tmp_path / "cracks_full.json").write_text(json.dumps(old))
    (tmp_path / "cracks_full.csv").write_text("old csv")
    # the same defaults again: replaced in place, nothing kept
    assert (
        bench.keep_previous_defaults(tmp_path, "full", result("small-unet", 0.1, cpu_amp=False))
        is None
    )
    # other defaults at another mode budget: no comparison either (steps differ)
    longer = result("small-unet-add", 0.0)
    longer["config"]["budget"] = {**longer["config"]["budget"], "iterations": 11}
    assert bench.keep_previous_defaults(tmp_path, "full", longer) is None
    assert not (tmp_path / "cracks_full_previous.json").exists()
    new = result("small-unet-add", 0.05, cpu_amp="auto", class_weighting="none")
    prev = bench.keep_previous_defaults(tmp_path, "full", new)
    assert (
        prev == tmp_path / "cracks_full_previous.json"
        and not (tmp_path / "cracks_full.json").exists()
    )
    assert (tmp_path / "cracks_full_previous.csv").read_text() == "old csv"
    (tmp_path / "cracks_full.json").write_text(json.dumps(new))
    md = bench.render_results_md(tmp_path)
    assert (
        '### full mode: the defaults now against before (model: small-unet -> small-unet-add; cpu_amp: false -> "auto")'
        in md
    )
    rows = [x for x in md.splitlines() if x.startswith("| source-only | – | 0.300")]
    assert rows and "| +0.050 | 0.020 (outside) |" in rows[0]
    assert (
        "| real-only | – | 0.350 ± 0.010 [0.340..0.360] | 0.350 ± 0.010 [0.340..0.360] | +0.000 | 0.020 |"
        in md
    )
    assert (
        "4 of 5 rows differ by no more than the seed spread; outside it: source-only (+0.050)."
        in md
    )
    assert "The machine changed too" not in md  # both ran on the fake "Test CPU"
    # another CPU is named, since the timings then compare machines too
    moved = {**new, "machine": {**new["machine"], "cpu": "Other CPU"}}
    assert bench.machine_change(moved, old) == (
        " The machine changed too (Test CPU (2 cores) -> Other CPU (2 cores)): the training "
        "times compare machines as well as defaults, and the same seeds need not give the "
        "same numbers on another CPU."
    )
    (tmp_path / "cracks_full.json").write_text(json.dumps(moved))
    assert bench.machine_change(moved, old) in bench.render_results_md(tmp_path)
    (tmp_path / "cracks_full.json").write_text(json.dumps(new))
    # a settings change alone (same model) is a change of defaults too
    os.replace(tmp_path / "cracks_full.json", tmp_path / "x.json")
    (tmp_path / "cracks_full.json").write_text(json.dumps(new))
    freq = result("small-unet-add", 0.0, cpu_amp="auto", class_weighting="frequency")
    assert bench.keep_previous_defaults(tmp_path, "full", freq) is not None
    # a result from before cpu_amp existed was fp32: the change is named all the same
    older = {**old, "budget": {k: v for k, v in old["budget"].items() if k != "cpu_amp"}}
    assert 'cpu_amp: false -> "auto"' in bench.default_changes(new, older)


def test_a_recipes_default_change_compares_each_recipe_with_itself(tmp_path):
    """mix, finetune and selftrain all have a source+real row: each is compared with the
    same recipe's row of the previous result, never with another recipe's."""
    bench = _bench_module()
    recipes = ("mix", "finetune", "selftrain")

    def result(shift: float, cpu_amp):
        means = plan_means(
            ["fda"],
            {("source-only", None): 0.30, ("real-only", None): 0.35,
             ("source+real", None): 0.40, ("finetune", "source+real", None): 0.20 + shift,
             ("selftrain", "real-only", None): 0.50, ("selftrain", "source+real", None): 0.60},
            {"fda": {"translated": 0.30, "translated+real": 0.41,
                     ("finetune", "translated+real"): 0.42,
                     ("selftrain", "translated+real"): 0.43}},
            recipes=recipes,
        )  # fmt: skip
        res = fake_results(means, ["fda"], recipes=recipes)
        res["budget"] = {**res["budget"], "cpu_amp": cpu_amp}
        res["benchmark"] = {"mode": "recipes", "command": "pilot_cracks.py --recipes",
                            "wall_seconds": 60.0, "runs_trained_now": 30, "runs_resumed": 0,
                            "commit": "abc1234"}  # fmt: skip
        return res

    (tmp_path / "cracks_recipes.json").write_text(json.dumps(result(0.0, False)))
    new = result(0.05, "auto")
    assert bench.keep_previous_defaults(tmp_path, "recipes", new) is not None
    (tmp_path / "cracks_recipes.json").write_text(json.dumps(new))
    md = bench.render_results_md(tmp_path)
    part = md[md.index("### recipes mode: the defaults now against before") :]
    assert "| recipe | setting | method | before: cracks IoU |" in part
    rows = {x.split(" | ")[0] + " | " + x.split(" | ")[1]: x for x in part.splitlines()
            if x.startswith("| ") and "source+real" in x and "| – |" in x}  # fmt: skip
    assert "| +0.000 |" in rows["| mix | source+real"]
    assert (
        "| 0.200 ± 0.010 [0.190..0.210] | 0.250 ± 0.010 [0.240..0.260] | +0.050 |"
        in (rows["| finetune | source+real"])
    )
    assert "| +0.000 |" in rows["| selftrain | source+real"]
    assert "outside it: source+real (finetune) (+0.050)." in part


def test_recipes_long_compares_each_row_with_the_recipes_mode_and_asks_no_translation_question(
    tmp_path,
):
    """A recipes-long result without translations says so instead of an
    'incomplete' answer, and a section puts each of its rows beside the same recipe's row
    at 1000 steps, with the margin of the best synthetic run over each baseline at both."""
    bench = _bench_module()
    long_mode = bench.MODES["recipes-long"]
    assert (
        long_mode["methods"] == bench.MODES["recipes"]["methods"]
        and long_mode["recipes"] == bench.MODES["recipes"]["recipes"]
    )
    assert long_mode["budget"] == {**bench.MODES["full"]["budget"], "iterations": 2000}
    recipes = ("mix", "finetune", "selftrain")

    def result(mode, iterations, selftrain_source_real, methods):
        base = {("source-only", None): 0.30, ("real-only", None): 0.35,
                ("source+real", None): 0.40, ("finetune", "source+real", None): 0.41,
                ("selftrain", "real-only", None): 0.45,
                ("selftrain", "source+real", None): selftrain_source_real}  # fmt: skip
        per = {"translated": 0.30, "translated+real": 0.41, ("finetune", "translated+real"): 0.42,
               ("selftrain", "translated+real"): 0.43}  # fmt: skip
        res = fake_results(plan_means(methods, base, {m: per for m in methods}, recipes=recipes),
                           methods, recipes=recipes)  # fmt: skip
        res["config"]["budget"] = {**res["config"]["budget"], "iterations": iterations}
        res["benchmark"] = {"mode": mode, "command": f"pilot_cracks.py --{mode}",
                            "wall_seconds": 60.0, "runs_trained_now": 30, "runs_resumed": 0,
                            "commit": "abc1234"}  # fmt: skip
        return res

    (tmp_path / "cracks_recipes.json").write_text(
        json.dumps(result("recipes", 1000, 0.46, ["fda"]))
    )
    (tmp_path / "cracks_recipes-long.json").write_text(
        json.dumps(result("recipes-long", 2000, 0.52, []))
    )
    md = bench.render_results_md(tmp_path)
    assert md.index("## recipes mode") < md.index("## recipes-long mode")
    long_part = md[md.index("## recipes-long mode") :]
    assert "Does a translation help? Not asked: this mode translates nothing." in long_part
    assert "Per method" not in long_part and "incomplete" not in long_part
    # with the 2000-step margin above the spread the synthetic data helps there, not at 1000
    assert "Does the synthetic data help? **yes**" in long_part
    growth = long_part[long_part.index("### recipes-long mode: 2000 steps against") :]
    rows = [x for x in growth.splitlines() if x.startswith("| selftrain | source+real")]
    assert rows == [
        "| selftrain | source+real | – | 0.460 ± 0.010 [0.450..0.470] | 0.520 ± 0.010 "
        "[0.510..0.530] | +0.060 | 13 s | 13 s |"
    ]
    assert (
        "| 1000 | source+real (selftrain) | real-only (selftrain) | +0.010 | 0.020 | is within noise of |"
        in growth
    )
    assert (
        "| 2000 | source+real (selftrain) | real-only (selftrain) | +0.070 | 0.020 | beats |"
        in growth
    )
    # no translated rows: the 1000-step recipes mode's fda rows have no partner
    assert "fda" not in growth
    # self-training at 1000 steps against mixing at 2000 (about equal time): each setting
    # both recipes ran, margin = mix minus selftrain, judged by the larger seed range
    equal = growth[growth.index("At about equal training time per run") :]
    rows = [x for x in equal.splitlines() if x.startswith("| ") and "steps" not in x]
    assert rows == [
        "| real-only | – | 0.450 (0.440..0.460, 3 seeds) | 13 s | 0.350 (0.340..0.360, 3 seeds) "
        "| 13 s | -0.100 | 0.020 | mix loses to selftrain |",
        "| source+real | – | 0.460 (0.450..0.470, 3 seeds) | 13 s | 0.400 (0.390..0.410, "
        "3 seeds) | 13 s | -0.060 | 0.020 | mix loses to selftrain |",
    ]


def test_finetune_sweep_files_are_rendered_from_their_json_under_their_budgets_name(tmp_path):
    """The committed sweep is the script's output, and a trial budget gets its own file (the
    300-step file came from an earlier version of the renderer: only its name is checked)."""
    mod = _bench_module("finetune_sweep")
    bench = REPO / "docs/benchmarks"
    for name in ("finetune_sweep", "finetune_sweep_300steps"):
        record = json.loads((bench / f"{name}.json").read_text(encoding="utf-8"))
        assert mod.stem(record["iterations"]) == name
        mod.write(record, tmp_path)
    md = (tmp_path / "finetune_sweep.md").read_text()
    assert md == (bench / "finetune_sweep.md").read_text()
    full = json.loads((bench / "finetune_sweep.json").read_text(encoding="utf-8"))
    grid = full["grid"]
    assert md.count("| finetune split=") == len(grid["ft_split"]) * len(grid["ft_lr_scale"])
    # a run records its wall time (the committed one predates that) and the page shows it
    mod.write({**full, "wall_seconds": 1800.0}, tmp_path)
    assert (
        "one torch thread each; 30.0 min wall time." in (tmp_path / "finetune_sweep.md").read_text()
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "finetune_sweep.json", "finetune_sweep.md",
        "finetune_sweep_300steps.json", "finetune_sweep_300steps.md",
    ]  # fmt: skip


def test_budget_cracks_says_the_candidates_training_time_as_a_factor_of_the_defaults(tmp_path):
    """A candidate that trains twice as long per run reads 'x2.00 the default's', not a
    speed-up, and --render-only rewrites the .md from the stored summaries."""
    bench = _bench_module("budget_cracks")

    def summary(mean, seconds):
        return {s: {"seeds": [0, 1], "iou_cracks": [mean - 0.01, mean + 0.01], "mean": mean,
                    "min": mean - 0.01, "max": mean + 0.01, "train_seconds": seconds}
                for s in bench.SETTINGS}  # fmt: skip

    default, candidate = summary(0.30, 100.0), summary(0.40, 200.0)
    comparison = bench.compare_paths(default, candidate)
    assert comparison["real-only"]["time_ratio"] == 2.0
    assert comparison["real-only"]["delta"] == pytest.approx(0.10)
    assert not comparison["real-only"]["within"]
    p = {"mode": "full", "change": {"iterations": 4000}, "machine_start": "Test CPU",
         "machine_end": {"load_avg": [1.0, 1.0, 1.0]}, "budget": {"iterations": 1000},
         "model": "m", "seeds": [0, 1], "jobs": 2, "command": "budget_cracks.py", "stem": "budget_cracks_t",
         "paths": {"default": {"source": "a", "summary": default},
                   "candidate": {"source": "b", "summary": candidate}}}  # fmt: skip
    bench.OUT = tmp_path
    (tmp_path / "budget_cracks_t.json").write_text(json.dumps(p))
    bench.render_only()
    md = (tmp_path / "budget_cracks_t.md").read_text()
    assert "- real-only: candidate - default = +0.100 crack IoU" in md
    assert "training time per run x2.00 the default's." in md
    assert json.loads((tmp_path / "budget_cracks_t.json").read_text())["comparison"] == comparison


def test_budget_cracks_reuses_the_committed_default_only_with_its_real_ratio():
    """A --real-ratio candidate is compared against committed runs trained with the
    pilot's default ratio; committed runs of another ratio are never passed off as the
    default."""
    bench = _bench_module("budget_cracks")
    budget = dict(bench.MODES["full"]["budget"])
    got = bench.committed_default(budget, 0.5)
    assert got is not None and {r["setting"] for r in got["runs"]} == set(bench.SETTINGS)
    assert bench.committed_default(budget, 0.25) is None
    assert bench.committed_default({**budget, "iterations": 7}, 0.5) is None


def test_same_numbers_counts_and_marks_runs_that_differ(tmp_path):
    mod = _bench_module("same_numbers")
    cmd = mod.pilot_command(tmp_path, tmp_path / "out", "--quick --seeds 2", "--seg-model x", "2")
    assert cmd[cmd.index("--jobs") + 1] == "2" and cmd[-2:] == ["--seg-model", "x"]
    assert cmd[cmd.index("--test-names") + 1] == f"{tmp_path / 'splits.json'}:test"
    run = {"iou": {"cracks": 0.25}, "final_loss": 1.0, "model": "small-unet"}
    other = {"iou": {"cracks": 0.26}, "final_loss": 1.0, "model": "small-unet"}
    result = {
        "machine": "m", "load_end": None, "wall_min": 1.0, "commit": "c", "before": "a",
        "after": "HEAD", "after_resolved": "b", "before_args": "", "after_args": "--x",
        "pilot_args": "--quick", "equal": 1, "total": 2,
        "runs": {"1": {
            "source-only | - | seed 0": {"before": run, "after": run, "equal": True},
            "real-only | - | seed 0": {"before": run, "after": other, "equal": False},
        }},
    }  # fmt: skip
    text = mod.render(result)
    assert "| 1 | source-only | - | 0 | small-unet | 0.25 | 0.25 | 1.0 | 1.0 | yes |" in text
    assert "| 1 | real-only | - | 0 | small-unet | 0.25 | 0.26 | 1.0 | 1.0 | NO |" in text
    assert "**1 of 2 runs equal bit for bit**" in text
