"""Every diffusion preset from the command line, on a tiny model saved in diffusers layout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from synth2real.cli import app
from synth2real.data.readers import open_dataset
from tests.gen_data import write_generic

REPO = Path(__file__).resolve().parents[2]
PRESETS = ["adain-diffusion", "cross-image", "cacti", "cactif", "styleid"]
# odd sizes and aspect ratios; the working size is the shorter side 64, rounded to 32
SIZES = [(40, 70), (64, 64), (90, 50)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-data")
    write_generic(root / "syn", SIZES)
    write_generic(root / "real", [(50, 80), (72, 64)], seed=100, tint=(30, -20, 10))
    return root


def args(data: Path, out: Path, preset: str, model: Path, model_flag: bool = False) -> list[str]:
    a = [
        "translate",
        "--source", str(data / "syn"),
        "--references", str(data / "real"),
        "--method", preset,
        "--out", str(out),
        "--no-progress",
        # no GPU here: the CPU is asked for explicitly (``auto`` would be refused)
        *(["--diffusion-model", str(model), "--device", "cpu"] if model_flag
          else ["--param", f"model={model}", "--param", "device=cpu"]),
        "--param", "working_size=64",
        "--param", "num_inference_steps=5",
        "--param", "classwise_steps=[1, 3]",
        "--param", "batch_size=2",
    ]  # fmt: skip
    return a + ["--param", "skip=1" if preset == "styleid" else "skip=2"]


@pytest.mark.parametrize("preset", PRESETS)
def test_cli_translate_with_every_preset(data, tmp_path, tiny_model_dir, preset):
    out = tmp_path / "out"
    res = CliRunner().invoke(app, args(data, out, preset, tiny_model_dir))
    assert res.exit_code == 0, res.output + repr(res.exception)
    src, got = open_dataset(data / "syn"), open_dataset(out)
    assert [s.name for s in got] == [s.name for s in src]
    for a, b in zip(src.samples, got.samples, strict=True):
        assert b.label_path.read_bytes() == a.label_path.read_bytes()  # labels untouched
        img = got.image(b)
        assert img.shape == src.image(a).shape and img.std() > 0
    entries = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert {e["method"] for e in entries} == {preset}
    assert entries[0]["params"]["model"] == str(tiny_model_dir)
    assert entries[0]["params"]["working_size"] == 64


@pytest.mark.parametrize("flag", ["--diffusion-model", "--model"])
def test_weights_flag_is_refused_by_classical_methods(data, tmp_path, tiny_model_dir, flag):
    res = CliRunner().invoke(
        app,
        ["translate", "--source", str(data / "syn"), "--references", str(data / "real"),
         "--method", "reinhard", "--out", str(tmp_path / "o"), flag, str(tiny_model_dir)],
    )  # fmt: skip
    assert res.exit_code != 0
    assert "--diffusion-model applies to diffusion methods" in res.output + str(res.exception)
    assert "reinhard' takes no weights" in res.output + str(res.exception)
    assert not (tmp_path / "o").exists()


def test_the_old_model_flag_still_gives_the_weights_and_warns(data, tmp_path, tiny_model_dir):
    a = args(data, tmp_path / "out", "adain-diffusion", tiny_model_dir, True)
    a[a.index("--diffusion-model")] = "--model"
    res = CliRunner().invoke(app, a)
    assert res.exit_code == 0, res.output + repr(res.exception)
    text = " ".join(res.output.split())
    assert "--model is deprecated here: use --diffusion-model (the diffusion weights)" in text
    entry = json.loads((tmp_path / "out" / "manifest.jsonl").read_text().splitlines()[0])
    assert entry["params"]["model"] == str(tiny_model_dir)
    # the help's option table truncates names at a narrow terminal: read it at a wide one
    wide = CliRunner(env={"COLUMNS": "200"})
    help_text = " ".join(wide.invoke(app, ["translate", "--help"]).output.split())
    assert "--diffusion-model" in help_text and "--model " not in help_text


def test_python_m_synth2real_translate_cactif_in_a_fresh_process(data, tmp_path, tiny_model_dir):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    res = subprocess.run(
        [sys.executable, "-m", "synth2real", *args(data, out, "cactif", tiny_model_dir, True)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=600,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    got = open_dataset(out)
    assert len(got) == len(SIZES)
    assert all(got.image(s).dtype == np.uint8 for s in got.samples)
    entry = json.loads((out / "manifest.jsonl").read_text().splitlines()[0])
    assert entry["params"]["model"] == str(tiny_model_dir)  # --diffusion-model reached it
    assert entry["params"]["device"] == "cpu"


def test_cli_reports_missing_weights_without_a_traceback(data, tmp_path, monkeypatch, capsys):
    from synth2real.cli import main

    a = args(data, tmp_path / "out", "cross-image", tmp_path / "nowhere")
    monkeypatch.setattr(sys, "argv", ["synth2real", *a])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "hf download" in err and "Traceback" not in err


def test_cli_says_once_where_a_diffusion_method_runs_and_warns_on_cpu(
    data, tmp_path, tiny_model_dir
):
    res = CliRunner().invoke(
        app, args(data, tmp_path / "out", "cross-image", tiny_model_dir) + ["--workers", "2"]
    )
    assert res.exit_code == 0, res.output + repr(res.exception)
    text = " ".join(res.output.split())  # rich wraps long lines
    assert text.count(f"model {tiny_model_dir} on cpu, UNet in float32") == 1
    assert text.count("warning: cross-image runs on the CPU") == 1
    assert "minutes per image" in text
    assert "workers=2 ignored" in text and "accelerate launch" in text
