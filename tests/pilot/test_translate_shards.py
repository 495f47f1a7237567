"""A diffusion translation in the pilot is sharded over the visible GPUs (one process per
GPU); checked on the CPU with a fake device list and a classical method."""

from __future__ import annotations

import json
from types import SimpleNamespace

from synth2real.data.readers import open_dataset
from synth2real.pilot import devices as pconfig
from synth2real.pilot import inputs
from synth2real.pilot.config import PilotConfig
from synth2real.translate import load_references
from tests.pilot.fixtures import make_tiny_pilot_data


def _cfg(paths, **kw) -> PilotConfig:
    return PilotConfig(
        source=paths["source"], references=paths["references"], test=paths["test"],
        methods=["reinhard"], **kw,
    )  # fmt: skip


def test_only_a_gpu_method_on_several_gpus_is_sharded(tmp_path, monkeypatch):
    paths = {k: tmp_path / k for k in ("source", "references", "test")}
    gpu = SimpleNamespace(needs_gpu=True, name="cactif")
    monkeypatch.setattr(pconfig, "visible_devices", lambda: ["cuda:0", "cuda:1"])
    assert inputs.translation_devices(_cfg(paths), gpu) == ["cuda:0", "cuda:1"]
    assert inputs.translation_devices(_cfg(paths, device="cuda"), gpu) == ["cuda:0", "cuda:1"]
    cpu_method = SimpleNamespace(needs_gpu=False, name="reinhard")
    assert inputs.translation_devices(_cfg(paths), cpu_method) is None
    assert inputs.translation_devices(_cfg(paths, device="cuda:1"), gpu) is None
    own = _cfg(paths, method_params={"cactif": {"device": "cuda:1"}})
    assert inputs.translation_devices(own, gpu) is None  # the user's --param wins
    monkeypatch.setattr(pconfig, "visible_devices", lambda: ["cuda:0"])
    assert inputs.translation_devices(_cfg(paths), gpu) is None


def test_sharded_translation_writes_what_one_process_writes(tmp_path, monkeypatch):
    paths = make_tiny_pilot_data(tmp_path / "data")
    cfg = _cfg(paths, device="cpu")
    source = open_dataset(paths["source"])
    refs = load_references(open_dataset(paths["references"]))
    one = inputs.translate_method(cfg, "reinhard", source, refs, tmp_path / "one" / "m", False)
    calls = []
    real = inputs._translate_sharded

    def spy(cfg, name, devices, *a):
        calls.append(devices)
        summary = real(cfg, name, devices, *a)  # two spawned processes, one shard each
        calls.append(summary)
        return summary

    monkeypatch.setattr(inputs, "translation_devices", lambda c, m: ["cpu", "cpu"])
    monkeypatch.setattr(inputs, "_translate_sharded", spy)
    two = inputs.translate_method(cfg, "reinhard", source, refs, tmp_path / "two" / "m", False)
    assert calls[0] == ["cpu", "cpu"] and calls[1].written == 6 and calls[1].manifest
    assert one["complete"] and two["complete"] and two["timed_images"] == len(source) == 6
    a, b = tmp_path / "one" / "m", tmp_path / "two" / "m"
    files = sorted(p.relative_to(a) for p in (a / "images").rglob("*") if p.is_file())
    assert len(files) == 6
    for f in files:  # the same bytes, whichever process translated the image
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    names = [json.loads(x)["name"] for x in (b / "manifest.jsonl").read_text().splitlines()]
    assert sorted(names) == sorted(s.name for s in source.samples)  # merged: every image


def test_a_cached_translation_of_other_inputs_is_refused_naming_what_differs(tmp_path):
    import pytest

    from synth2real.errors import OutputExistsError

    paths = make_tiny_pilot_data(tmp_path / "data")
    cfg = _cfg(paths, device="cpu")
    source = open_dataset(paths["source"])
    refs = load_references(open_dataset(paths["references"]))
    tdir = tmp_path / "cache" / "reinhard"
    first = inputs.translate_method(cfg, "reinhard", source, refs, tdir, False)
    assert first["complete"]
    # the same call again reuses it; a cache copied from elsewhere names its old source
    assert inputs.translate_method(cfg, "reinhard", source, refs, tdir, False) == first
    info = tdir.parent / "reinhard.json"
    rec = json.loads(info.read_text())
    rec["inputs"]["source"] = "/elsewhere/source_max256"
    info.write_text(json.dumps(rec))
    with pytest.raises(OutputExistsError) as err:
        inputs.translate_method(cfg, "reinhard", source, refs, tdir, False)
    msg = str(err.value)
    assert "source: '/elsewhere/source_max256' now " in msg and "seed" not in msg
