"""The pilot end to end on a tiny fixture: every setting, resume, results and report."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from synth2real.errors import ConfigError, OutputExistsError
from synth2real.pilot import PilotConfig, plan_runs, run_pilot
from synth2real.pilot.verdict import SETTINGS
from tests.pilot.fixtures import TINY_BUDGET, make_tiny_pilot_data

REPO = Path(__file__).resolve().parents[2]
METHODS = ["none", "reinhard", "histmatch-cw"]


def config(paths, **kw) -> PilotConfig:
    args = dict(
        source=paths["source"],
        references=paths["references"],
        test=paths["test"],
        methods=METHODS,
        seeds=2,
        budget=dict(TINY_BUDGET),
        device="cpu",
        metric="iou:line",
    )
    args.update(kw)
    return PilotConfig(**args)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("pilot")
    paths = make_tiny_pilot_data(root / "data")
    out = root / "out"
    result = run_pilot(config(paths), out, progress=False)
    return paths, out, result


def test_plan_covers_every_setting_and_seed():
    plan = plan_runs(["none", "a", "b"], [0, 1])
    assert len(plan) == 2 * (3 + 2 * 2)
    assert {r.setting for r in plan} == set(SETTINGS)
    assert {r.method for r in plan} == {None, "a", "b"}  # "none" is the source baseline
    assert len({r.relpath for r in plan}) == len(plan)
    assert [r.seed for r in plan[:7]] == [0] * 7  # seed-major


def test_pilot_writes_every_run_results_and_report(tiny):
    _, out, result = tiny
    res = json.loads((out / "results.json").read_text())
    assert result.ran == 2 * (3 + 2 * 2) and result.skipped == 0
    pairs = {(r["setting"], r["method"], r["seed"]) for r in res["runs"]}
    expected = {(s.setting, s.method, s.seed) for s in plan_runs(METHODS, [0, 1])}
    assert pairs == expected
    for r in res["runs"]:
        assert 0.0 <= r["miou"] <= 1.0
        assert set(r["iou"]) == {"background", "line"}
        assert r["train_seconds"] > 0 and r["iterations"] == 3
        assert r["budget"]["iterations"] == 3 and r["budget"]["crop"] in (32, [32, 32])
        assert (out / r["checkpoint"]).is_file()
        if r["method"]:
            assert r["translate_seconds_per_image"] is not None
    # one translation per method, timed per image
    assert set(res["translations"]) == {"reinhard", "histmatch-cw"}
    for info in res["translations"].values():
        assert info["complete"] and info["images"] == 6 and info["seconds_per_image"] > 0
    assert res["verdict"]["methods"].keys() == {"reinhard", "histmatch-cw"}
    assert res["machine"]["cpu"] and res["budget"]["batch_size"] == 2
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == len(res["runs"])
    assert {"iou_line", "iou_background", "train_seconds", "translate_seconds_per_image"} <= set(
        rows[0]
    )


class _Imgs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs).get("src", ""))


def test_report_lists_methods_and_settings_and_embeds_images(tiny):
    _, out, result = tiny
    html = result.report.read_text()
    for name in ("reinhard", "histmatch-cw", *SETTINGS):
        assert name in html
    p = _Imgs()
    p.feed(html)
    # 4 grid rows x (synthetic, label, 2 methods, reference) + 2 reference thumbnails
    assert len(p.srcs) == 4 * 5 + 2
    assert all(s.startswith("data:image/jpeg;base64,") for s in p.srcs)


class _Counter:
    def __init__(self, real, fail_at=None):
        self.real, self.calls, self.fail_at = real, 0, fail_at
        self.dirs: set[str] = set()

    def __call__(self, *a, **kw):
        self.calls += 1
        self.dirs.add(Path(a[2]).parent.as_posix())
        if self.fail_at is not None and self.calls == self.fail_at:
            raise KeyboardInterrupt
        return self.real(*a, **kw)


def test_resume_skips_finished_runs_and_redoes_missing_ones(tiny, tmp_path, monkeypatch):
    from synth2real.segment import train as train_mod

    paths, out0, _ = tiny
    out = tmp_path / "copy"
    shutil.copytree(out0, out)
    counter = _Counter(train_mod.train)
    monkeypatch.setattr(train_mod, "train", counter)
    with pytest.raises(OutputExistsError, match="--resume"):
        run_pilot(config(paths), out, progress=False)
    r = run_pilot(config(paths), out, resume=True, progress=False, estimate=False)
    assert counter.calls == 0 and r.skipped == 14 and r.ran == 0
    # a lost run is redone, and only that one
    stamp = (out / "runs/real-only/seed1/result.json").stat().st_mtime_ns
    (out / "runs/translated+real/reinhard/seed0/result.json").unlink()
    r = run_pilot(config(paths), out, resume=True, progress=False, estimate=False)
    assert r.ran == 1 and counter.dirs == {(out / "runs/translated+real/reinhard/seed0").as_posix()}
    assert (out / "runs/real-only/seed1/result.json").stat().st_mtime_ns == stamp
    # a new seed adds its runs only
    counter.dirs.clear()
    r = run_pilot(config(paths, seeds="0,1,2"), out, resume=True, progress=False, estimate=False)
    assert r.ran == 7 and r.skipped == 14
    assert len(counter.dirs) == 7 and all(d.endswith("seed2") for d in counter.dirs)
    assert len(r.results["runs"]) == 21


def test_interrupted_pilot_resumes_where_it_stopped(tmp_path, monkeypatch):
    from synth2real.segment import train as train_mod

    paths = make_tiny_pilot_data(tmp_path / "data")
    cfg = config(paths, methods=["reinhard"], seeds=1)
    counter = _Counter(train_mod.train, fail_at=3)
    monkeypatch.setattr(train_mod, "train", counter)
    with pytest.raises(KeyboardInterrupt):
        run_pilot(cfg, tmp_path / "out", progress=False, estimate=False)
    partial = json.loads((tmp_path / "out/results.json").read_text())
    assert partial["partial"] and len(partial["runs"]) == 2
    counter.fail_at = None
    r = run_pilot(cfg, tmp_path / "out", resume=True, progress=False, estimate=False)
    assert r.skipped == 2 and r.ran == 3 and counter.calls == 3 + 3
    assert not r.results["partial"]


def test_changed_budget_or_data_refuses_to_resume(tiny, tmp_path):
    paths, out0, _ = tiny
    out = tmp_path / "copy"
    shutil.copytree(out0, out, ignore=shutil.ignore_patterns("runs", "translated"))
    with pytest.raises(OutputExistsError, match="budget"):
        run_pilot(
            config(paths, budget={**TINY_BUDGET, "iterations": 4}), out, resume=True, progress=False
        )
    with pytest.raises(OutputExistsError, match="real_ratio"):
        run_pilot(config(paths, real_ratio=0.25), out, resume=True, progress=False)


def test_a_longer_rerun_in_a_new_out_reuses_the_first_pilots_translations(
    tiny, tmp_path, monkeypatch
):
    """What the verdict's longer-budget note says: a new --out with --cache-dir set to the
    first pilot's --out trains again but translates nothing, and leaves the first pilot's
    files as they were."""
    import synth2real.translate as translate_pkg

    paths, out0, _ = tiny
    first = tmp_path / "first"
    shutil.copytree(out0, first)

    def files(root: Path) -> dict[str, tuple[int, int]]:
        return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
                for p in root.rglob("*") if p.is_file()}  # fmt: skip

    before = files(first)
    calls = []
    real_translate = translate_pkg.translate_dataset

    def counting(*a, **kw):
        calls.append(1)
        return real_translate(*a, **kw)

    monkeypatch.setattr(translate_pkg, "translate_dataset", counting)
    longer = config(paths, seeds=1, budget={**TINY_BUDGET, "iterations": 6}, cache_dir=first)
    r = run_pilot(longer, tmp_path / "second", progress=False, estimate=False)
    assert r.ran == 7 and {run["iterations"] for run in r.results["runs"]} == {6}
    assert not calls and not any((tmp_path / "second").glob("translated*"))
    assert files(first) == before  # read as a cache, not written


def test_bad_settings_fail_before_any_work(tmp_path):
    paths = make_tiny_pilot_data(tmp_path / "data")
    with pytest.raises(ConfigError, match="unknown method"):
        run_pilot(config(paths, methods=["nope"]), tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="budget"):
        run_pilot(config(paths, budget={"iterationz": 3}), tmp_path / "b", progress=False)
    with pytest.raises(ConfigError, match="both references and test"):
        run_pilot(config(paths, test=paths["references"]), tmp_path / "c", progress=False)
    # a typo in --metric is found before anything is translated or trained
    with pytest.raises(
        ConfigError, match=r"no class 'lines'; the classes are \['background', 'line'\]"
    ):
        run_pilot(config(paths, metric="iou:lines"), tmp_path / "d", progress=False)
    with pytest.raises(ConfigError, match="has no parameter"):
        run_pilot(
            config(paths, method_params={"reinhard": {"strenght": 1}}),
            tmp_path / "e",
            progress=False,
        )
    with pytest.raises(ConfigError, match=r"\['fda'\], which are not among the methods"):
        run_pilot(
            config(paths, method_params={"fda": {"beta": 0.1}}), tmp_path / "f", progress=False
        )
    for d in "abcdef":
        assert not (tmp_path / d).exists()  # nothing written: a corrected rerun just works


def test_source_is_shrunk_once_through_the_dataset_writer(tmp_path):
    import json as json_

    from synth2real.data.readers import open_dataset
    from synth2real.pilot.inputs import source_at_size
    from synth2real.segment.sampling import downscale

    paths = make_tiny_pilot_data(tmp_path / "data")
    source = open_dataset(paths["source"]).select(["s03", "s01"])
    assert source_at_size(source, 32, tmp_path / "c", progress=False) is source  # not larger
    small = source_at_size(source, 16, tmp_path / "c", progress=False)
    root = tmp_path / "c/source_max16"
    assert [s.name for s in small] == ["s03", "s01"] and small.root == root
    assert small.format == "generic" and small.classes == source.classes
    for a, b in zip(source.samples, small.samples, strict=True):
        img, lab = downscale(source.image(a), source.label(a), 16)
        np.testing.assert_array_equal(small.image(b), img)
        np.testing.assert_array_equal(small.label(b), lab)
    run = json_.loads((root / "run.json").read_text())
    assert run["method"] == "downscale" and run["params"] == {"max_size": 16}
    # a second call (resume) keeps what is there and adds what is missing
    stamp = (root / "images/s03.png").stat().st_mtime_ns
    (root / "images/s01.png").unlink()
    again = source_at_size(source, 16, tmp_path / "c", progress=False)
    assert (root / "images/s03.png").stat().st_mtime_ns == stamp
    assert (root / "images/s01.png").is_file() and len(again) == 2
    # the same folder shrunk from another source is refused, not mixed in
    other = open_dataset(paths["test"])
    with pytest.raises(OutputExistsError, match="differs in: source"):
        source_at_size(other, 16, tmp_path / "c", progress=False)
    # a folder an earlier version shrank (no run.json) is adopted: its images are kept
    (root / "run.json").unlink()
    source_at_size(source, 16, tmp_path / "c", progress=False)
    assert (root / "images/s03.png").stat().st_mtime_ns == stamp
    assert (root / "run.json").is_file()


@pytest.mark.browser
def test_report_renders_in_headless_chromium(tiny, tmp_path):
    _, out, result = tiny
    if shutil.which("chromium") is None and not os.environ.get("S2R_CHROMIUM"):
        if os.environ.get("S2R_REQUIRE_BROWSER"):
            pytest.fail("chromium is missing but S2R_REQUIRE_BROWSER is set")
        pytest.skip("chromium not installed (apt-get install chromium)")
    shot = tmp_path / "report.png"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts/check_report.py"),
            str(result.report),
            "--json",
            "--screenshot",
            str(shot),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check = json.loads(proc.stdout)
    assert check["ok"] and check["problems"] == []
    assert check["images"] == 4 * 5 + 2 and check["svgs"] >= 1
    assert shot.stat().st_size > 10_000


@pytest.mark.browser
def test_browser_check_catches_a_broken_image(tmp_path):
    if shutil.which("chromium") is None and not os.environ.get("S2R_CHROMIUM"):
        if os.environ.get("S2R_REQUIRE_BROWSER"):
            pytest.fail("chromium is missing but S2R_REQUIRE_BROWSER is set")
        pytest.skip("chromium not installed")
    page = tmp_path / "bad.html"
    page.write_text(
        "<html><body><section id='verdict'>" + "x" * 300 + "</section><svg></svg>"
        "<img alt='missing' src='nope.png'><script>console.error('boom')</script></body></html>"
    )
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts/check_report.py"), str(page), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    problems = " ".join(json.loads(proc.stdout)["problems"])
    assert "image did not load: missing" in problems
    assert "boom" in problems


def test_test_set_is_decoded_once(tmp_path):
    import pickle

    from synth2real.data.dataset import CachedDataset
    from synth2real.data.readers import open_dataset

    paths = make_tiny_pilot_data(tmp_path / "data")
    ds = open_dataset(paths["test"])
    calls = []
    real_pair = ds.pair
    ds.pair = lambda item: calls.append(item) or real_pair(item)
    view = CachedDataset(ds)
    for _ in range(3):
        for s in view.samples:
            image, label = view.pair(s)
    assert len(calls) == len(ds) == 3
    assert view.image(0) is view.pair(0)[0] and view.label(1) is view.pair(1)[1]
    with pytest.raises(ValueError):
        image[0, 0] = 0  # read-only: the cache cannot be corrupted in place
    # a view of the same format, classes and samples; a subset shares the cache
    assert (view.format, view.classes, view.samples) == (ds.format, ds.classes, ds.samples)
    assert view.decoder is ds.decoder  # format-specific attributes are the base's
    sub = view.select([ds.samples[1].name])
    assert isinstance(sub, CachedDataset) and sub.image(0) is view.image(1)
    assert len(calls) == 3
    # pickled for a worker process: without the decoded arrays, decoding again there
    del ds.pair  # (the counting lambda cannot be pickled)
    copy = pickle.loads(pickle.dumps(view))
    assert copy._pairs == {} and len(copy) == 3
    np.testing.assert_array_equal(copy.image(2), view.image(2))


def test_parallel_jobs_train_the_same_runs_as_one_job(tiny, tmp_path):
    paths, out0, seq = tiny
    out = tmp_path / "par"
    r = run_pilot(config(paths, jobs=2), out, progress=False)
    assert r.ran == 14 and r.skipped == 0 and not r.results["partial"]

    def scores(res):
        return {
            (x["setting"], x["method"], x["seed"]): (x["iou"]["line"], x["miou"])
            for x in res["runs"]
        }

    a, b = scores(seq.results), scores(r.results)
    assert a.keys() == b.keys()
    for k in a:  # same data, seeds and budget: equal up to float rounding across threads
        assert b[k] == pytest.approx(a[k], abs=0.02), k
    # the records come in plan order whatever order the processes finished in
    assert [(x["setting"], x["method"], x["seed"]) for x in r.results["runs"]] == [
        (x["setting"], x["method"], x["seed"]) for x in seq.results["runs"]
    ]
    # a lost run is redone by the parallel path too, the others are kept
    (out / "runs/real-only/seed1/result.json").unlink()
    r2 = run_pilot(config(paths, jobs=2), out, resume=True, progress=False)
    assert r2.ran == 1 and r2.skipped == 13
    with pytest.raises(ConfigError, match="--jobs"):
        config(paths, jobs=0)


def test_image_grid_shows_the_reference_each_image_was_translated_with(tiny):
    from synth2real.data.readers import open_dataset
    from synth2real.pilot.figures import collect_images, data_uri

    paths, out, _ = tiny
    source = open_dataset(paths["source"])
    refs = open_dataset(paths["references"])
    refs = refs.select([s.name for s in refs.samples][::-1])  # order differs from the pilot's
    translated = {m: open_dataset(out / "translated" / m) for m in ("reinhard", "histmatch-cw")}
    manifest = [
        json.loads(x) for x in (out / "translated/reinhard/manifest.jsonl").read_text().splitlines()
    ]
    used = {e["name"]: e["reference"] for e in manifest}
    assert len(set(used.values())) > 1  # round-robin: the grid must pick the right one
    imgs = collect_images(
        {"source": source, "references": refs, "translated": translated},
        ["reinhard", "histmatch-cw"],
    )
    assert imgs["columns"][-1] == "its reference"
    by_name = {s.name: i for i, s in enumerate(refs.samples)}
    for name, row in zip(imgs["names"], imgs["rows"], strict=True):
        assert row[-1] == data_uri(refs.image(by_name[used[name]]), 256)
