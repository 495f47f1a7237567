"""bf16 autocast on the CPU (``cpu_amp``): a train setting like any other."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from synth2real.errors import OutputExistsError
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
    assert make_config().cpu_amp is False  # off unless asked for
    with pytest.raises(Exception, match="cpu_amp"):
        parse_settings("cpu_amp=maybe")


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
    fp32 = train(ds, _cfg(), tmp_path / "fp32", progress=False)
    assert set(seen) == {torch.float32}
    seen.clear()
    bf16 = train(ds, _cfg(cpu_amp=True), tmp_path / "bf16", progress=False)
    assert set(seen) == {torch.bfloat16}
    assert np.isfinite(bf16.losses).all() and bf16.losses != fp32.losses
    meta = json.loads((tmp_path / "bf16" / "model.json").read_text())
    assert meta["train_config"]["cpu_amp"] is True
    with pytest.raises(OutputExistsError, match="cpu_amp"):  # another result: no reuse
        train(ds, _cfg(), tmp_path / "bf16", progress=False)
