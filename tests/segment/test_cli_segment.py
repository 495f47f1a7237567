import json

from typer.testing import CliRunner

from synth2real.cli import app
from tests.segment.fixtures import make_generic

runner = CliRunner()


def test_train_then_evaluate_end_to_end(tmp_path):
    train_root = make_generic(tmp_path / "train", n=4, size=(64, 64))
    real_root = make_generic(tmp_path / "real", n=3, size=(48, 70), seed=2)
    (tmp_path / "refs.txt").write_text("img_000\nimg_001\n")
    args = [
        "train", "--data", str(train_root), "--data", str(real_root),
        "--names", "all", "--names", str(tmp_path / "refs.txt"),
        "--weights", "0.5,0.5", "--out", str(tmp_path / "run"),
        "--iterations", "4", "--batch-size", "2", "--crop", "32x64", "--device", "cpu",
        "--threads", "1", "--set", "warmup=0", "--set", "loss=ce", "--json",
    ]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["iterations"] == 4 and summary["resumed_from"] == 0
    ckpt = tmp_path / "run" / "model.safetensors"
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["train_config"]["crop"] == [32, 64] and meta["train_config"]["loss"] == "ce"
    assert [d["samples"] for d in meta["data"]] == [4, 2]
    # a second call finds the finished run
    res = runner.invoke(app, args)
    assert json.loads(res.output)["resumed_from"] == 4

    res = runner.invoke(
        app,
        ["evaluate", "--checkpoint", str(ckpt), "--data", str(real_root), "--names", "img_002",
         "--device", "cpu", "--save-predictions", str(tmp_path / "pred"), "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    scores = json.loads(res.output)
    assert scores["num_images"] == 1
    assert sum(map(sum, scores["confusion"])) == 48 * 70
    assert (tmp_path / "pred" / "masks" / "img_002.png").is_file()

    res = runner.invoke(
        app, ["evaluate", "--checkpoint", str(ckpt), "--data", str(real_root), "--device", "cpu"]
    )
    assert res.exit_code == 0, res.output
    assert "crack" in res.output and "mIoU" in res.output
    # train's --out folder stands for its model; predictions may go beside it
    res = runner.invoke(
        app,
        ["evaluate", "--checkpoint", str(tmp_path / "run"), "--data", str(real_root),
         "--names", "img_002", "--device", "cpu", "--json",
         "--save-predictions", str(tmp_path / "run" / "pred")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (tmp_path / "run" / "pred" / "masks" / "img_002.png").is_file()
    again = json.loads(res.output)
    assert again.pop("seconds") > 0 and again == {k: v for k, v in scores.items() if k != "seconds"}


def test_train_reports_bad_options(tmp_path):
    root = make_generic(tmp_path / "d", n=2, size=(32, 32))
    base = ["train", "--data", str(root), "--out", str(tmp_path / "r")]
    res = runner.invoke(app, [*base, "--set", "iterz=3"])
    assert res.exit_code != 0 and "iterz" in str(res.exception)
    res = runner.invoke(app, [*base, "--crop", "abc"])
    assert "--crop" in str(res.exception)
    res = runner.invoke(app, [*base, "--set", "lr=fast"])
    assert "lr='fast'" in str(res.exception) and "a number" in str(res.exception)
    res = runner.invoke(app, [*base, "--names", "a", "--names", "b"])
    assert "once per --data" in str(res.exception)


def test_train_selftrain_with_unlabeled_images_end_to_end(tmp_path):
    root = make_generic(tmp_path / "train", n=3, size=(48, 48))
    photos = make_generic(tmp_path / "photos", n=3, size=(40, 56), seed=4)  # labels not read
    args = [
        "train", "--data", str(root), "--unlabeled", str(photos),
        "--unlabeled-names", "img_000,img_002", "--recipe", "selftrain",
        "--out", str(tmp_path / "run"), "--iterations", "3", "--batch-size", "2",
        "--crop", "32", "--device", "cpu", "--threads", "1", "--set", "st_pseudo_threshold=0.5",
        "--json",
    ]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["iterations"] == 3
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["train_config"]["recipe"] == "selftrain"
    assert meta["train_config"]["st_pseudo_threshold"] == 0.5
    assert meta["unlabeled"]["samples"] == 2
    assert not (photos / "run").exists()


def test_train_unlabeled_errors(tmp_path):
    root = make_generic(tmp_path / "d", n=2, size=(32, 32))
    photos = make_generic(tmp_path / "photos", n=2, size=(32, 32))
    base = ["train", "--data", str(root), "--iterations", "1", "--device", "cpu"]
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "r"), "--set", "recipe=selftrain"])
    assert "--unlabeled" in str(res.exception)
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "r"), "--unlabeled", str(photos)])
    assert "only by recipe 'selftrain'" in str(res.exception)
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "r"), "--recipe", "dacs"])
    assert "recipe" in str(res.exception) and "'selftrain'" in str(res.exception)
    inside = photos / "run"
    res = runner.invoke(
        app, [*base, "--out", str(inside), "--unlabeled", str(photos), "--recipe", "selftrain"]
    )
    assert "overlaps --unlabeled" in str(res.exception) and not inside.exists()
    (tmp_path / "empty").mkdir()
    res = runner.invoke(
        app,
        [*base, "--out", str(tmp_path / "r"), "--unlabeled", str(tmp_path / "empty"),
         "--recipe", "selftrain"],
    )  # fmt: skip
    assert "empty" in str(res.exception) and str(tmp_path / "empty") in str(res.exception)


def test_images_without_labels_are_refused_with_what_to_do(tmp_path):
    root = make_generic(tmp_path / "d", n=3, size=(32, 32))
    next((root / "labels").iterdir()).unlink()
    base = ["train", "--iterations", "1", "--device", "cpu", "--out", str(tmp_path / "r")]
    res = runner.invoke(app, [*base, "--data", str(root)])
    msg = str(res.exception)
    assert res.exit_code != 0 and "1 selected image(s) have no label" in msg
    assert "--names" in msg and "synth2real inspect" in msg
    res = runner.invoke(app, [*base, "--data", str(root / "images")])  # photos only
    assert "3 selected image(s)" in str(res.exception) and "--unlabeled" in str(res.exception)
    assert not (tmp_path / "r").exists()


def test_main_exits_2_with_one_line_for_a_recipe_error(tmp_path, capsys, monkeypatch):
    import sys

    import pytest

    from synth2real.cli import main

    root = make_generic(tmp_path / "d", n=2, size=(32, 32))
    monkeypatch.setattr(
        sys, "argv",
        ["synth2real", "train", "--data", str(root), "--out", str(tmp_path / "r"),
         "--recipe", "finetune", "--iterations", "20", "--device", "cpu"],
    )  # fmt: skip
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2
    err = capsys.readouterr()
    text = (err.out + err.err).strip()
    assert "at least 2 datasets" in text and "Traceback" not in text
