"""The dataset-level runner: references, reference choice, output, resume, workers, shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from synth2real.cli import app
from synth2real.data.readers import open_dataset
from synth2real.errors import ConfigError, DataError, OutputExistsError
from synth2real.methods import References, create_method
from synth2real.translate import choose_references, load_references, translate_dataset
from tests.gen_data import write_generic, write_supervisely

REPO = Path(__file__).resolve().parents[1]
CLASSICAL = [
    "none",
    "reinhard",
    "reinhard-cw",
    "reinhard-cwc",
    "histmatch",
    "histmatch-cw",
    "histmatch-cwc",
    "fda",
]
SIZES = [(24, 32), (31, 17), (40, 40), (17, 45), (32, 24), (28, 28)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_generic(root / "syn", SIZES, nested=True)
    write_generic(root / "real", [(50, 36), (29, 61), (44, 44)], seed=100, tint=(30, -20, 10))
    return root


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
        and p.parent.name != "manifest.parts"
        and p.name not in ("manifest.jsonl", "run.json")
    }


def _manifest(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", CLASSICAL)
def test_every_method_writes_a_readable_dataset_with_identical_labels(data, tmp_path, name):
    src = open_dataset(data / "syn")
    refs = load_references(data / "real")
    out = tmp_path / "out"
    s = translate_dataset(src, refs, create_method(name), out, progress=False)
    assert (s.written, s.skipped, s.manifest) == (len(SIZES), 0, out / "manifest.jsonl")
    res = open_dataset(out)
    assert [x.name for x in res] == [x.name for x in src] and res.classes == src.classes
    for a, b in zip(src.samples, res.samples, strict=True):
        assert b.label_path.read_bytes() == a.label_path.read_bytes()  # byte-identical labels
        img = res.image(b)
        assert img.shape == src.image(a).shape
        if name == "none":
            np.testing.assert_array_equal(img, src.image(a))
    entries = _manifest(out)
    assert [e["name"] for e in entries] == [x.name for x in src]
    e = entries[0]
    assert e["method"] == name and e["params"] == create_method(name).params()
    assert e["reference"] == refs.names[0] and e["seed"] == 0 and e["seconds"] >= 0
    assert e["source_image"] == str(src.samples[0].image_path)
    expected_used = [refs.names[0]] if name in ("none", "fda") else refs.names
    assert e["references_used"] == expected_used


def test_zero_workers_is_refused_naming_the_option_before_writing(data, tmp_path):
    src, refs = open_dataset(data / "syn"), load_references(data / "real")
    with pytest.raises(ConfigError, match="--workers must be >= 1, got 0"):
        translate_dataset(src, refs, create_method("fda"), tmp_path / "o", workers=0)
    assert not (tmp_path / "o").exists()


def test_same_bytes_with_one_or_two_workers(data, tmp_path):
    src = open_dataset(data / "syn")
    refs = load_references(data / "real")
    for name in ("reinhard-cwc", "fda"):
        a = translate_dataset(
            src, refs, create_method(name), tmp_path / f"{name}1", seed=3, progress=False
        )
        b = translate_dataset(
            src, refs, create_method(name), tmp_path / f"{name}2", seed=3, workers=2, progress=False
        )
        assert a.written == b.written == len(SIZES)
        assert _tree(tmp_path / f"{name}1") == _tree(tmp_path / f"{name}2")
        ma, mb = _manifest(tmp_path / f"{name}1"), _manifest(tmp_path / f"{name}2")
        assert [(x["name"], x["image_seed"], x["reference"]) for x in ma] == [
            (x["name"], x["image_seed"], x["reference"]) for x in mb
        ]


def test_two_shards_then_merge_equal_one_run(data, tmp_path):
    src = open_dataset(data / "syn")
    refs = load_references(data / "real")
    m = "histmatch-cwc"
    one = translate_dataset(
        src, refs, create_method(m), tmp_path / "one", reference_choice="random", progress=False
    )
    s0 = translate_dataset(
        src,
        refs,
        create_method(m),
        tmp_path / "sh",
        reference_choice="random",
        shard=(0, 2),
        progress=False,
    )
    assert (
        s0.manifest is None
        and s0.written == 3
        and not (tmp_path / "sh" / "manifest.jsonl").exists()
    )
    s1 = translate_dataset(
        src,
        refs,
        create_method(m),
        tmp_path / "sh",
        reference_choice="random",
        shard=(1, 2),
        progress=False,
    )
    assert s1.written == 3 and s1.manifest == tmp_path / "sh" / "manifest.jsonl"
    assert _tree(tmp_path / "one") == _tree(tmp_path / "sh")
    strip = lambda es: [{k: v for k, v in e.items() if "seconds" not in k} for e in es]  # noqa: E731
    assert strip(_manifest(tmp_path / "sh")) == strip(_manifest(one.out))
    # resuming a finished shard does nothing
    again = translate_dataset(
        src,
        refs,
        create_method(m),
        tmp_path / "sh",
        reference_choice="random",
        shard=(0, 2),
        resume=True,
        progress=False,
    )
    assert (again.written, again.skipped) == (0, 3)


def test_refuses_another_run_unless_overwrite(data, tmp_path):
    src = open_dataset(data / "syn")
    refs = load_references(data / "real")
    out = tmp_path / "out"
    translate_dataset(src, refs, create_method("reinhard"), out, progress=False)
    with pytest.raises(OutputExistsError, match="different run"):
        translate_dataset(src, refs, create_method("histmatch"), out, progress=False)
    with pytest.raises(OutputExistsError, match="different run"):
        translate_dataset(
            src, refs, create_method("reinhard"), out, seed=1, resume=True, progress=False
        )
    with pytest.raises(OutputExistsError, match="--resume"):
        translate_dataset(src, refs, create_method("reinhard"), out, progress=False)
    s = translate_dataset(
        src, refs, create_method("histmatch"), out, overwrite=True, progress=False
    )
    assert s.written == len(SIZES) and _manifest(out)[0]["method"] == "histmatch"


def test_resume_after_the_cli_is_killed(data, tmp_path):
    out = tmp_path / "out"
    cmd = [
        sys.executable, "-m", "synth2real", "translate", "--source", str(data / "syn"),
        "--references", str(data / "real"), "--method", "reinhard-cw", "--out", str(out),
        "--no-progress", "--seed", "5",
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")]
        ),
    }
    proc = subprocess.Popen(
        cmd, env={**env, "S2R_DEBUG_SLEEP_PER_IMAGE": "0.5"}, stderr=subprocess.PIPE
    )
    part = out / "manifest.parts" / "shard-0-of-1.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not part.exists() or part.read_text().count("\n") < 2):
        time.sleep(0.05)
    proc.kill()  # SIGKILL: no cleanup handlers run
    proc.wait()
    done = part.read_text().count("\n")
    assert 2 <= done < len(SIZES), "the run was not interrupted mid-way"
    (out / "images" / ".img99.png.zzz.tmp").write_bytes(b"half")  # what a kill mid-write leaves
    refused = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    resumed = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(SIZES) - done} written, {done} already done" in " ".join(resumed.stderr.split())
    src = open_dataset(data / "syn")
    translate_dataset(
        src,
        load_references(data / "real"),
        create_method("reinhard-cw"),
        tmp_path / "ref",
        seed=5,
        progress=False,
    )
    assert _tree(out) == _tree(tmp_path / "ref")
    assert not list(out.rglob("*.tmp"))
    assert [e["name"] for e in _manifest(out)] == [s.name for s in src]


def test_reference_choice_strategies():
    refs = References(
        [np.zeros((4, 4, 3), np.uint8)] * 3,
        [np.zeros((4, 4), np.uint8), np.eye(4, dtype=np.uint8), np.ones((4, 4), np.uint8)],
        ["bg", "quarter", "full"],
        open_spec(),
    )
    names = [f"n{i}" for i in range(7)]
    assert choose_references(names, refs, "round-robin") == [0, 1, 2, 0, 1, 2, 0]
    rnd = choose_references(names, refs, "random", seed=1)
    assert rnd == choose_references(names, refs, "random", seed=1)
    assert rnd != choose_references(names, refs, "random", seed=2)
    # per name, whatever the order or the other names
    assert choose_references(names[::-1], refs, "random", seed=1) == rnd[::-1]
    shares = np.array([[1.0, 0.0], [0.7, 0.3], [0.1, 0.9], [0.8, 0.2]])
    assert choose_references(names[:4], refs, "matched", content_shares=shares) == [0, 1, 2, 1]
    with pytest.raises(ConfigError):
        choose_references(names, refs, "closest")


def open_spec():
    from synth2real.data.classes import ClassSpec

    return ClassSpec(("background", "fg"))


def test_matched_choice_is_recorded(data, tmp_path):
    src = open_dataset(data / "syn")
    refs = load_references(data / "real")
    translate_dataset(
        src, refs, create_method("fda"), tmp_path / "o", reference_choice="matched", progress=False
    )
    entries = _manifest(tmp_path / "o")
    shares = refs.class_frequencies()
    for e, s in zip(entries, src.samples, strict=True):
        lab = src.label(s)
        mine = np.bincount(lab.ravel(), minlength=256)[:3] / (lab < 3).sum()
        best = np.abs(shares - mine).sum(1).min()
        assert np.abs(shares[refs.names.index(e["reference"])] - mine).sum() <= best + 1e-9
        assert e["reference_choice"] == "matched" and e["references_used"] == [e["reference"]]


def test_reference_names_subset_order_and_json_selection(data, tmp_path):
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"references": ["img02", "img00.png"]}))
    refs = load_references(data / "real", names=f"{splits}:references")
    assert refs.names == ["img02", "img00"] and refs.labelled
    assert load_references(data / "real", names=["img01"]).names == ["img01"]
    with pytest.raises(DataError, match="nope"):
        load_references(data / "real", names="nope,img00")


def test_references_from_an_open_dataset_equal_those_from_its_folder(data):
    ds = open_dataset(data / "real").select(["img02", "img00"])
    a = load_references(ds)
    b = load_references(data / "real", names=["img02", "img00"])
    assert a.names == b.names == ["img02", "img00"] and a.root == b.root == str(data / "real")
    assert a.classes == b.classes
    for x, y in zip(a.images + a.labels, b.images + b.labels, strict=True):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ConfigError, match="its own classes"):
        load_references(ds, classes=ds.classes)


def test_unlabelled_references_need_a_predictor_for_classwise_methods(data, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, p in enumerate(sorted((data / "real" / "images").glob("*.png"))):
        im = Image.open(p)
        (im.convert("L") if i == 0 else im).save(photos / f"p{i}.png")  # one grayscale photo
    src = open_dataset(data / "syn")
    refs = load_references(photos, classes=src.classes)
    assert not refs.labelled and refs.images[0].shape[2] == 3  # grayscale read as RGB
    with pytest.raises(ConfigError, match="needs a label map for every reference"):
        translate_dataset(src, refs, create_method("reinhard-cw"), tmp_path / "o", progress=False)
    translate_dataset(
        src, refs, create_method("reinhard"), tmp_path / "g", progress=False
    )  # global: fine

    calls = []

    def predictor(images):
        calls.append(len(images))
        return [np.where(im.mean(axis=2) < 70, 2, 0).astype(np.uint8) for im in images]

    refs = load_references(photos, classes=src.classes, predictor=predictor)
    assert calls == [3] and refs.labelled and refs.predicted == [True] * 3
    translate_dataset(src, refs, create_method("reinhard-cw"), tmp_path / "p", progress=False)
    e = _manifest(tmp_path / "p")[0]
    assert e["reference_labels_predicted"] is True
    run = json.loads((tmp_path / "p" / "run.json").read_text())
    assert run["references"]["predicted"] == [True] * 3
    with pytest.raises(DataError, match="class indices"):
        load_references(
            photos,
            classes=src.classes,
            predictor=lambda ims: [np.full(im.shape[:2], 9, np.uint8) for im in ims],
        )
    with pytest.raises(DataError, match="differs"):
        load_references(
            photos,
            classes=src.classes,
            predictor=lambda ims: [np.zeros((3, 3), np.uint8) for _ in ims],
        )


def test_classwise_methods_need_matching_classes_and_labelled_sources(data, tmp_path):
    src = open_dataset(data / "syn")
    refs = load_references(data / "real")
    from synth2real.data.classes import ClassSpec

    other = References(refs.images, refs.labels, refs.names, ClassSpec(("a", "b", "c")))
    with pytest.raises(ConfigError, match="differ from the source"):
        translate_dataset(src, other, create_method("histmatch-cw"), tmp_path / "o", progress=False)
    unl = write_generic(tmp_path / "unl", [(10, 12)], labels=False)
    with pytest.raises((ConfigError, DataError), match="no label map|differ"):
        translate_dataset(
            open_dataset(unl, classes=src.classes),
            refs,
            create_method("histmatch-cw"),
            tmp_path / "u",
            progress=False,
        )
    # a global method translates unlabelled sources (and writes no labels)
    s = translate_dataset(
        open_dataset(unl, classes=src.classes),
        refs,
        create_method("histmatch"),
        tmp_path / "u2",
        progress=False,
    )
    assert s.written == 1 and not (tmp_path / "u2" / "labels").exists()


def test_supervisely_source_end_to_end(tmp_path):
    src_root = write_supervisely(tmp_path / "proj" / "syn", [(30, 40), (22, 35)])
    write_supervisely(tmp_path / "proj" / "real", [(50, 50), (40, 61)], seed=50)
    src = open_dataset(src_root)
    refs = load_references(tmp_path / "proj" / "real")
    translate_dataset(src, refs, create_method("reinhard-cwc"), tmp_path / "out", progress=False)
    out = open_dataset(tmp_path / "out")
    assert out.format == "supervisely" and out.classes == src.classes
    for a, b in zip(src.samples, out.samples, strict=True):
        assert a.name == b.name
        assert b.label_path.read_bytes() == a.label_path.read_bytes()
        np.testing.assert_array_equal(src.label(a), out.label(b))


def test_cli_translate(data, tmp_path):
    runner = CliRunner()
    out = tmp_path / "out"
    args = [
        "translate", "--source", str(data / "syn"), "--references", str(data / "real"),
        "--reference-names", "img00,img02", "--method", "fda", "--param", "beta=0.05",
        "--out", str(out), "--reference-choice", "random", "--seed", "4", "--no-progress",
    ]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    entries = _manifest(out)
    assert entries[0]["params"]["beta"] == 0.05 and entries[0]["seed"] == 4
    assert {e["reference"] for e in entries} <= {"img00", "img02"}
    bad = runner.invoke(app, [*args[:-1], "--param", "beta", "--no-progress"])
    assert bad.exit_code != 0


def test_cli_translates_a_subset_of_the_source_first(data, tmp_path):
    """--source-names and --source-limit: try a method on a few images before all of them."""
    runner = CliRunner()
    base = ["translate", "--source", str(data / "syn"), "--references", str(data / "real"),
            "--method", "reinhard", "--no-progress"]  # fmt: skip

    def names(out):
        return [e["name"] for e in _manifest(out)]

    res = runner.invoke(app, [*base, "--out", str(tmp_path / "a"), "--source-limit", "2"])
    assert res.exit_code == 0, res.output
    picked = names(tmp_path / "a")
    assert len(picked) == 2 and len(list((tmp_path / "a" / "images").rglob("*.png"))) == 2
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "b"), "--source-limit", "2"])
    assert names(tmp_path / "b") == picked  # a fixed subset
    every = [s.name for s in open_dataset(data / "syn").samples]
    chosen = [every[1], every[4]]
    res = runner.invoke(
        app, [*base, "--out", str(tmp_path / "c"), "--source-names", ",".join(chosen),
              "--source-limit", "5"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert sorted(names(tmp_path / "c")) == sorted(chosen)
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "d"), "--source-limit", "0"])
    assert res.exit_code != 0 and "--source-limit must be >= 1" in str(res.exception)
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "d"), "--source-names", "nope"])
    assert res.exit_code != 0 and "nope" in str(res.exception)
    assert not (tmp_path / "d").exists()


def test_cracks_dataset_with_its_reference_split(cracks_root, tmp_path):
    """The real data: Supervisely, references from splits.json inside validation/."""
    src = open_dataset(cracks_root / "source_synthetic")
    src = src.subset(src.samples[:3])
    refs = load_references(
        cracks_root / "validation", names=f"{cracks_root / 'splits.json'}:references"
    )
    assert len(refs) == 10 and refs.labelled
    assert len({im.shape for im in refs.images}) > 1  # sizes differ from each other and the content
    s = translate_dataset(
        src, refs, create_method("histmatch-cwc"), tmp_path / "out", progress=False
    )
    assert s.written == 3
    out = open_dataset(tmp_path / "out")
    for a, b in zip(src.samples, out.samples, strict=True):
        np.testing.assert_array_equal(src.label(a), out.label(b))
        assert out.image(b).shape == src.image(a).shape


def test_resume_with_another_shard_count_skips_finished_images(data, tmp_path):
    src = open_dataset(data / "syn")
    refs = load_references(data / "real")
    out = tmp_path / "out"
    translate_dataset(src, refs, create_method("histmatch"), out, shard=(0, 2), progress=False)
    s = translate_dataset(src, refs, create_method("histmatch"), out, resume=True, progress=False)
    assert (s.written, s.skipped) == (3, 3) and s.manifest is not None
    assert [e["name"] for e in _manifest(out)] == [x.name for x in src]


def test_output_may_not_overlap_the_inputs(data, tmp_path):
    src = open_dataset(data / "syn")
    refs = load_references(data / "real")
    for out in (data / "syn" / "translated", data / "real" / "out", data):
        with pytest.raises(ConfigError, match="overlaps"):
            translate_dataset(src, refs, create_method("none"), out, progress=False)
    assert not (data / "syn" / "translated").exists() and not (data / "real" / "out").exists()


def test_cli_predicts_labels_of_unlabelled_references_with_a_checkpoint(data, tmp_path):
    from synth2real.segment.train import TrainConfig, train

    photos = tmp_path / "photos"
    photos.mkdir()
    for i, p in enumerate(sorted((data / "real" / "images").glob("*.png"))):
        Image.open(p).save(photos / f"p{i}.png")
    src = open_dataset(data / "syn")
    cfg = TrainConfig(
        iterations=3, batch_size=2, crop=16, device="cpu", model_kwargs={"channels": [4, 8]}
    )
    ckpt = train(src, cfg, tmp_path / "model", progress=False).checkpoint
    runner = CliRunner()
    base = ["translate", "--source", str(data / "syn"), "--references", str(photos),
            "--method", "reinhard-cw", "--no-progress"]  # fmt: skip
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "a")])
    assert res.exit_code != 0 and "needs a label map" in str(res.output) + str(res.exception)
    assert not (tmp_path / "a" / "manifest.jsonl").exists()
    res = runner.invoke(
        app, [*base, "--out", str(tmp_path / "b"), "--reference-labels-from", str(ckpt)]
    )
    assert res.exit_code == 0, res.output
    entries = _manifest(tmp_path / "b")
    assert len(entries) == len(SIZES) and all(e["reference_labels_predicted"] for e in entries)
    # train's folder names the same model, and an --out beside the model is no overlap
    beside = tmp_path / "model" / "translated"
    res = runner.invoke(
        app, [*base, "--out", str(beside), "--reference-labels-from", str(tmp_path / "model")]
    )
    assert res.exit_code == 0, res.output
    for e in entries:  # the same translations
        a, b = (np.asarray(Image.open(d / e["image"])) for d in (tmp_path / "b", beside))
        assert np.array_equal(a, b)
    # a model of other classes is refused by name
    other = tmp_path / "other"
    write_generic(other, [(20, 20), (20, 20)], seed=5)
    (other / "classes.yaml").write_text("names: [x, y, z]\n")
    spec_ckpt = train(
        open_dataset(other, classes=other / "classes.yaml", format="generic"),
        cfg,
        tmp_path / "model2",
        progress=False,
    ).checkpoint
    res = runner.invoke(
        app, [*base, "--out", str(tmp_path / "c"), "--reference-labels-from", str(spec_ckpt)]
    )
    assert res.exit_code != 0
    assert "predicts classes" in str(res.output) + str(res.exception)
