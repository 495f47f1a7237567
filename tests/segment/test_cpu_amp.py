"""bf16 autocast on the CPU (``cpu_amp``): a train setting like any other."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from synth2real.errors import ConfigError, OutputExistsError
from synth2real.segment.config import make_config, parse_settings
from synth2real.segment.train import train
from tests.segment.fixtures import make_dataset


def _cfg(**kw):
    base = dict(
        iterations=4,
        batch_size=2,
        crop=32,
        model_kwargs={"channels": [4, 8, 16]},
        device="cpu",
        num_threads=1,
        seed=0,
        warmup=0,
    )
    return make_config({**base, **kw})


def test_cpu_amp_is_parsed_like_every_setting():
    assert parse_settings("cpu_amp=true") == {"cpu_amp": True}
    assert parse_settings("cpu_amp=auto") == {"cpu_amp": "auto"}
    assert make_config().cpu_amp == "auto"  # on where the CPU has native bf16
    for bad in ("cpu_amp=maybe", "cpu_amp=1"):
        with pytest.raises(ConfigError, match="cpu_amp"):
            make_config(parse_settings(bad))


@pytest.mark.parametrize("native", [True, False])
def test_auto_follows_the_cpu_and_the_run_records_what_it_computed_in(
    tmp_path, monkeypatch, native
):
    import synth2real.segment.train as train_mod

    monkeypatch.setattr(train_mod, "native_cpu_bf16", lambda: native)
    ds = make_dataset(tmp_path / "d", n=4, size=(40, 40))
    res = train(ds, _cfg(iterations=1), tmp_path / "auto", progress=False)
    meta = json.loads((tmp_path / "auto" / "model.json").read_text())
    again = train(ds, _cfg(iterations=1), tmp_path / "auto", progress=False)  # finished run
    assert res.precision == again.precision == ("bfloat16" if native else "float32")
    assert meta["train_config"]["cpu_amp"] is native  # resolved, not "auto"
    assert meta["precision"] == ("bfloat16" if native else "float32")
    # the same command on a CPU of the other kind is another run: not reused
    monkeypatch.setattr(train_mod, "native_cpu_bf16", lambda: not native)
    with pytest.raises(OutputExistsError, match="cpu_amp"):
        train(ds, _cfg(iterations=1), tmp_path / "auto", progress=False)


def test_a_run_stored_before_cpu_amp_existed_was_fp32():
    from synth2real.segment.train import _same_run

    run = {"train_config": _cfg(cpu_amp=False).result_dict(), "data": [], "weights": [1.0],
           "classes": {}, "unlabeled": None}  # fmt: skip
    old = {**run, "train_config": {k: v for k, v in run["train_config"].items() if k != "cpu_amp"}}
    assert _same_run(old, run) == []
    bf16 = {**run, "train_config": {**run["train_config"], "cpu_amp": True}}
    assert _same_run(old, bf16) == ["train_config.cpu_amp"]


def test_cpu_amp_trains_in_bf16_and_is_part_of_the_run(tmp_path, monkeypatch):
    ds = make_dataset(tmp_path / "d", n=4, size=(40, 40))
    seen = []
    real = torch.nn.Conv2d.forward

    def spy(self, x):  # the dtype the convolutions compute in
        out = real(self, x)
        if out.device.type == "cpu":  # not the meta-device shape check
            seen.append(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.Conv2d, "forward", spy)
    fp32 = train(ds, _cfg(cpu_amp=False), tmp_path / "fp32", progress=False)
    assert set(seen) == {torch.float32}
    seen.clear()
    bf16 = train(ds, _cfg(cpu_amp=True), tmp_path / "bf16", progress=False)
    assert set(seen) == {torch.bfloat16}
    assert np.isfinite(bf16.losses).all() and bf16.losses != fp32.losses
    meta = json.loads((tmp_path / "bf16" / "model.json").read_text())
    assert meta["train_config"]["cpu_amp"] is True
    with pytest.raises(OutputExistsError, match="cpu_amp"):  # another result: no reuse
        train(ds, _cfg(cpu_amp=False), tmp_path / "bf16", progress=False)
