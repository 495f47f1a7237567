"""The pilot's options for the diffusion methods: ``--device`` reaches them,
``--diffusion-model`` gives them their weights, ``--seg-model`` names the segmentation
model (``--model`` still works, with a warning)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from synth2real.cli import app
from synth2real.errors import ConfigError
from synth2real.pilot.config import PilotConfig, check_methods
from synth2real.segment.config import DEFAULT_MODEL
from tests.pilot.fixtures import make_tiny_pilot_data

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_pilot_data(tmp_path_factory.mktemp("diffusion-options"))


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from tests.diffusion.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture
def record_pilot(monkeypatch):
    import synth2real.pilot

    seen: list[PilotConfig] = []

    def fake(cfg, out, **kw):
        seen.append(cfg)
        return SimpleNamespace(report=None, results_json=None, results_csv=None)

    monkeypatch.setattr(synth2real.pilot, "run_pilot", fake)
    return seen


def _pilot(tiny, tmp_path, *extra):
    return [
        "pilot", "--source", str(tiny["source"]), "--references", str(tiny["references"]),
        "--test", str(tiny["test"]), "--out", str(tmp_path / "p"), *extra,
    ]  # fmt: skip


def test_device_and_weights_reach_the_diffusion_methods_only(tiny, tmp_path, record_pilot):
    res = runner.invoke(
        app,
        _pilot(tiny, tmp_path, "--methods", "cactif,reinhard", "--device", "cuda:1",
               "--diffusion-model", "/w/sd15", "--seg-model", "segformer", "--jobs", "1"),
    )  # fmt: skip
    assert res.exit_code == 0, res.output + repr(res.exception)
    cfg = record_pilot[-1]
    assert (cfg.model, cfg.device, cfg.diffusion_model) == ("segformer", "cuda:1", "/w/sd15")
    assert cfg.params_for("cactif") == {"device": "cuda:1", "model": "/w/sd15"}
    assert cfg.params_for("reinhard") == {}
    assert cfg.to_dict()["diffusion_model"] == "/w/sd15"


def test_method_params_win_over_the_pilots_options():
    cfg = PilotConfig(
        source="s", references="r", test="t", methods=["cacti", "styleid"], device="cuda:1",
        diffusion_model="/w/sd15",
        method_params={"cacti": {"device": "cuda:0", "model": "/w/other", "batch_size": 2}},
    )  # fmt: skip
    assert cfg.params_for("cacti") == {"device": "cuda:0", "model": "/w/other", "batch_size": 2}
    assert cfg.params_for("styleid") == {"device": "cuda:1", "model": "/w/sd15"}


def test_the_old_model_option_still_names_the_segmentation_model(tiny, tmp_path, record_pilot):
    res = runner.invoke(
        app, _pilot(tiny, tmp_path, "--methods", "reinhard", "--model", "segformer", "--jobs", "1")
    )
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert record_pilot[-1].model == "segformer" and record_pilot[-1].diffusion_model is None
    text = " ".join(res.output.split())
    assert "--model is deprecated here: use --seg-model (the segmentation model)" in text
    res = runner.invoke(
        app,
        _pilot(tiny, tmp_path, "--methods", "reinhard", "--model", "segformer",
               "--seg-model", "small-unet"),
    )  # fmt: skip
    assert res.exit_code != 0 and "give --seg-model only" in str(res.exception)
    assert runner.invoke(app, _pilot(tiny, tmp_path, "--methods", "reinhard")).exit_code == 0
    assert record_pilot[-1].model == DEFAULT_MODEL == "small-unet-add"  # the default


def test_help_shows_the_new_names_only():
    out = " ".join(runner.invoke(app, ["pilot", "--help"], env={"COLUMNS": "200"}).output.split())
    assert "--seg-model" in out and "--diffusion-model" in out
    assert "--model " not in out.replace("--seg-model", "").replace("--diffusion-model", "")


def test_diffusion_weights_need_a_diffusion_method():
    cfg = PilotConfig(
        source="s", references="r", test="t", methods=["reinhard"], diffusion_model="/w"
    )
    with pytest.raises(ConfigError, match="none of the methods"):
        check_methods(cfg)
    check_methods(PilotConfig(source="s", references="r", test="t", methods=["cacti"],
                              diffusion_model="/w"))  # fmt: skip


@pytest.mark.slow
def test_a_pilot_translation_with_cactif_on_cuda_1_asks_for_cuda_1(
    tiny, tmp_path, monkeypatch, tiny_model_dir
):
    """The pilot's translation of a diffusion method loads its model on the pilot's device
    with the pilot's weights: ``load_models`` is replaced by one that records what it is
    asked for and gives tiny CPU models, whatever the device."""
    import synth2real.diffusion.method as method_mod
    from synth2real.data.readers import open_dataset
    from synth2real.pilot.inputs import translate_method
    from synth2real.translate import load_references

    asked = []
    real = method_mod.load_models

    def fake_load(model, device="auto", dtype="auto"):
        asked.append((model, device))
        return real(str(tiny_model_dir), device="cpu", dtype="float32")

    monkeypatch.setattr(method_mod, "load_models", fake_load)
    fast = dict(working_size=64, num_inference_steps=4, skip=2, classwise_steps=[1, 2])
    cfg = PilotConfig(
        source=tiny["source"], references=tiny["references"], test=tiny["test"],
        methods=["cactif"], device="cuda:1", diffusion_model="/weights/sd15",
        method_params={"cactif": fast},
    )  # fmt: skip
    source = open_dataset(tiny["source"]).select(
        [s.name for s in open_dataset(tiny["source"]).samples[:2]]
    )
    info = translate_method(
        cfg, "cactif", source, load_references(tiny["references"]), tmp_path / "t" / "cactif",
        progress=False,
    )  # fmt: skip
    assert asked == [("/weights/sd15", "cuda:1")]
    assert info["params"]["device"] == "cuda:1" and info["params"]["model"] == "/weights/sd15"
    assert info["complete"] and len(open_dataset(tmp_path / "t" / "cactif")) == 2
