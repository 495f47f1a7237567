"""Every option form works in every command that takes it: ``train --set/--crop/--config``
and ``pilot --budget`` share one settings parser, ``translate --param`` and ``pilot --param``
one method-parameter parser. The commands run up to the library call, which is replaced by
a recorder, so nothing is trained or translated here."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from synth2real.cli import app, main
from synth2real.errors import ConfigError
from synth2real.pilot.config import make_train_config
from synth2real.segment.config import TrainConfig
from tests.pilot.fixtures import make_tiny_pilot_data

runner = CliRunner()

#: (setting as typed, TrainConfig field, value it must give)
FORMS = [
    ("crop=256", "crop", 256),
    ("crop=256x512", "crop", (256, 512)),
    ("crop=[256, 512]", "crop", (256, 512)),
    ("batch=4", "batch_size", 4),
    ("iters=7", "iterations", 7),
    ("steps=9", "iterations", 9),
    ("lr=3e-4", "lr", 3e-4),
    ("hflip=false", "hflip", False),
    ("max_size=None", "max_size", None),
    ("max_size=none", "max_size", None),
    ("scale_range=[0.5, 2]", "scale_range", (0.5, 2.0)),
    ("model_kwargs={channels: [4, 8]}", "model_kwargs", {"channels": [4, 8]}),
    ("class_weighting=none", "class_weighting", "none"),  # a string field keeps "none"
]
#: (setting, words the error must contain)
BAD = [
    ("crop=abc", ["crop='abc'", "HxW"]),
    ("iterz=3", ["iterz", "unknown train option"]),
    ("lr=fast", ["lr='fast'", "a number"]),
    ("hflip=3", ["hflip=3", "true or false"]),
    ("iterations=1.5", ["iterations=1.5", "an integer"]),
    ("batch", ["key=value", "'batch'"]),
]


@pytest.fixture
def record_train(monkeypatch, tmp_path):
    """Replace segment.train.train: keep the TrainConfig it was called with."""
    from synth2real.segment import train as train_mod

    seen: list[TrainConfig] = []

    def fake(datasets, cfg, out, **kw):
        seen.append(cfg)
        return SimpleNamespace(
            checkpoint=Path(out) / "model.safetensors",
            iterations=cfg.iterations,
            resumed_from=0,
            seconds=0.0,
            losses=[0.5],
        )

    monkeypatch.setattr(train_mod, "train", fake)
    return seen


@pytest.fixture
def record_pilot(monkeypatch):
    """Replace run_pilot: keep the PilotConfig it was called with."""
    import synth2real.pilot

    seen = []

    def fake(cfg, out, **kw):
        seen.append(cfg)
        return SimpleNamespace(report=None, results_json=None, results_csv=None)

    monkeypatch.setattr(synth2real.pilot, "run_pilot", fake)
    return seen


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_pilot_data(tmp_path_factory.mktemp("cli-options"))


def train_args(tiny, tmp_path, *extra):
    return ["train", "--data", str(tiny["source"]), "--out", str(tmp_path / "r"), *extra]


def pilot_args(tiny, tmp_path, *extra):
    return [
        "pilot", "--source", str(tiny["source"]), "--references", str(tiny["references"]),
        "--test", str(tiny["test"]), "--out", str(tmp_path / "p"), "--methods", "reinhard",
        "--device", "cpu", "--jobs", "1", *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("form,field,value", FORMS)
def test_each_setting_form_works_in_train_and_pilot(
    form, field, value, tiny, tmp_path, record_train, record_pilot
):
    res = runner.invoke(app, train_args(tiny, tmp_path, "--set", form))
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert getattr(record_train[-1], field) == value
    res = runner.invoke(app, pilot_args(tiny, tmp_path, "--budget", form))
    assert res.exit_code == 0, res.output + repr(res.exception)
    cfg = record_pilot[-1]
    assert getattr(make_train_config(cfg, 0, None), field) == value
    assert cfg.budget_name == "default+custom"


def test_several_settings_in_one_option_and_repeated(tiny, tmp_path, record_train, record_pilot):
    items = ["iters=5,crop=[64, 32]", "batch=2,lr=1e-3"]
    expected = {"iterations": 5, "crop": (64, 32), "batch_size": 2, "lr": 1e-3}
    res = runner.invoke(app, train_args(tiny, tmp_path, "--set", items[0], "--set", items[1]))
    assert res.exit_code == 0, res.output + repr(res.exception)
    res = runner.invoke(app, pilot_args(tiny, tmp_path, "--budget", items[0], "--budget", items[1]))
    assert res.exit_code == 0, res.output + repr(res.exception)
    for cfg in (record_train[-1], make_train_config(record_pilot[-1], 0, None)):
        assert {k: getattr(cfg, k) for k in expected} == expected
    assert record_pilot[-1].budget["max_size"] == 256  # the preset is updated, not replaced


def test_train_crop_flag_and_config_file_take_the_same_forms(tiny, tmp_path, record_train):
    for crop, want in (("96", 96), ("64x128", (64, 128)), ("[64, 128]", (64, 128))):
        res = runner.invoke(app, train_args(tiny, tmp_path, "--crop", crop))
        assert res.exit_code == 0, res.output + repr(res.exception)
        assert record_train[-1].crop == want
    cfg_file = tmp_path / "train.yaml"
    cfg_file.write_text("crop: 64x128\niters: 5\nlr: 3e-4\nmax_size: none\n")
    res = runner.invoke(
        app, train_args(tiny, tmp_path, "--config", str(cfg_file), "--set", "batch=3")
    )
    assert res.exit_code == 0, res.output + repr(res.exception)
    got = record_train[-1]
    assert (got.crop, got.iterations, got.lr, got.max_size, got.batch_size) == (
        (64, 128), 5, 3e-4, None, 3,
    )  # fmt: skip
    cfg_file.write_text("crop: abc\n")
    res = runner.invoke(app, train_args(tiny, tmp_path, "--config", str(cfg_file)))
    assert isinstance(res.exception, ConfigError) and str(cfg_file) in str(res.exception)


@pytest.mark.parametrize("form,words", BAD)
def test_each_bad_setting_is_a_config_error_naming_it_in_both_commands(
    form, words, tiny, tmp_path, record_train, record_pilot
):
    for args, option in (
        (train_args(tiny, tmp_path, "--set", form), "--set"),
        (pilot_args(tiny, tmp_path, "--budget", form), "--budget"),
    ):
        res = runner.invoke(app, args)
        assert isinstance(res.exception, ConfigError), (args, res.output, res.exception)
        for w in [option, *words]:
            assert w in str(res.exception), (w, str(res.exception))
    assert record_train == [] and record_pilot == []


def test_values_the_trainer_refuses_fail_before_any_work(tiny, tmp_path, record_train):
    res = runner.invoke(app, train_args(tiny, tmp_path, "--set", "crop=4"))
    assert isinstance(res.exception, ConfigError) and "TrainConfig.crop" in str(res.exception)
    res = runner.invoke(app, pilot_args(tiny, tmp_path, "--budget", "crop=4"))  # the real pilot
    assert isinstance(res.exception, ConfigError)
    assert "--budget: TrainConfig.crop: must be >= 8" in str(res.exception)
    assert record_train == [] and not (tmp_path / "p").exists()


def test_bad_budget_is_an_error_line_not_a_traceback(tiny, tmp_path, monkeypatch, capsys):
    """``pilot --budget crop=256x51x`` used to end in a ValueError traceback."""
    argv = ["synth2real", *pilot_args(tiny, tmp_path, "--budget", "crop=256x51x")]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "--budget: crop='256x51x'" in err and "Traceback" not in err
    assert not (tmp_path / "p").exists()


def test_budget_may_not_set_what_the_pilot_sets_per_run(tiny, tmp_path, record_pilot):
    res = runner.invoke(app, pilot_args(tiny, tmp_path, "--budget", "seed=3"))
    assert isinstance(res.exception, ConfigError) and "--seeds" in str(res.exception)


# -- method parameters ---------------------------------------------------------------------
@pytest.fixture
def record_translate(monkeypatch):
    import synth2real.translate

    seen = []

    def fake(source, references, method, out, **kw):
        seen.append((method, kw))
        return SimpleNamespace(
            method=method, written=0, skipped=0, out=out, seconds_per_image=0.0, manifest=out
        )

    monkeypatch.setattr(synth2real.translate, "translate_folder", fake)
    return seen


def translate_args(tiny, tmp_path, *extra):
    return [
        "translate", "--source", str(tiny["source"]), "--references", str(tiny["references"]),
        "--method", "fda", "--out", str(tmp_path / "t"), "--no-progress", *extra,
    ]  # fmt: skip


def test_method_params_in_translate_and_pilot(tiny, tmp_path, record_translate, record_pilot):
    for flag, form in (("--param", "beta=0.05"), ("--param", "fda.beta=0.05"), ("-p", "beta=0.05")):
        res = runner.invoke(app, translate_args(tiny, tmp_path, flag, form))
        assert res.exit_code == 0, res.output + repr(res.exception)
        assert record_translate[-1][1]["params"] == {"beta": 0.05}
    res = runner.invoke(
        app,
        pilot_args(tiny, tmp_path, "--methods", "fda,reinhard", "--param", "fda.beta=0.05",
                   "--param", "reinhard.strength=0.5"),
    )  # fmt: skip
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert record_pilot[-1].method_params == {"fda": {"beta": 0.05}, "reinhard": {"strength": 0.5}}


@pytest.mark.parametrize(
    "command,form,words",
    [
        ("translate", "beta", ["KEY=VALUE", "'beta'"]),
        ("translate", "nope=1", ["fda", "no parameter 'nope'", "beta"]),
        ("translate", "beta=abc", ["fda.beta", "'abc'"]),
        ("translate", "reinhard.strength=1", ["runs 'fda'", "'reinhard'"]),
        ("pilot", "beta=0.05", ["METHOD.KEY=VALUE"]),
        ("pilot", "fdaa.beta=0.05", ["unknown method 'fdaa'"]),
        ("pilot", "reinhard.nope=1", ["reinhard", "no parameter 'nope'"]),
    ],
)
def test_bad_method_params_are_clear(
    command, form, words, tiny, tmp_path, record_translate, record_pilot
):
    make = translate_args if command == "translate" else pilot_args
    res = runner.invoke(app, make(tiny, tmp_path, "--param", form))
    assert isinstance(res.exception, ConfigError), res.output
    for w in ["--param", *words]:
        assert w in str(res.exception), (w, str(res.exception))
    assert record_translate == [] and record_pilot == []
