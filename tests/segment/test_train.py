import os
import signal

import numpy as np
import pytest
import torch

from synth2real.data.classes import ClassSpec
from synth2real.errors import ConfigError, DataError, OutputExistsError
from synth2real.segment import train as train_mod
from synth2real.segment.checkpoint import load_checkpoint, read_meta, save_checkpoint
from synth2real.segment.models import create_model
from synth2real.segment.train import TrainConfig, learning_rate, train
from tests.segment.fixtures import make_dataset, tiny_config
from tests.segment.test_models import TINY_SEGFORMER

_cfg = tiny_config


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    return make_dataset(root / "a", n=6, size=(48, 56)), make_dataset(
        root / "b", n=3, size=(40, 40), seed=5
    )


@pytest.fixture(scope="module")
def full_run(data, tmp_path_factory):
    """The reference uninterrupted run that determinism and resume tests compare with."""
    return train(data[0], _cfg(), tmp_path_factory.mktemp("full") / "run", progress=False)


def test_training_loss_decreases(data, tmp_path):
    cfg = _cfg(iterations=40, batch_size=4, crop=32, lr=3e-3, model_kwargs={})  # default model
    res = train([data[0]], cfg, tmp_path / "run", progress=False)
    assert res.iterations == 40 and len(res.losses) == 40
    first, last = np.mean(res.losses[:8]), np.mean(res.losses[-8:])
    assert last < 0.75 * first, (first, last)
    assert res.checkpoint == tmp_path / "run" / "model.safetensors"
    assert not (tmp_path / "run" / "last.safetensors").exists()
    assert (tmp_path / "run" / "model.json").is_file()


def test_same_seed_same_losses_other_seed_other_losses(data, full_run, tmp_path):
    a = full_run
    b = train(data[0], _cfg(prefetch=False), tmp_path / "b", progress=False)
    c = train(data[0], _cfg(seed=1), tmp_path / "c", progress=False)
    assert a.losses == b.losses
    assert a.losses != c.losses
    ma, _ = load_checkpoint(a.checkpoint)
    mb, _ = load_checkpoint(b.checkpoint)
    for (k, va), vb in zip(ma.state_dict().items(), mb.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k


def test_checkpoint_round_trip(data, tmp_path):
    torch.manual_seed(0)
    model = create_model("small-unet", 3, channels=(8, 16, 32)).eval()
    # make BatchNorm statistics non-trivial so that buffers must be saved too
    model.train()
    with torch.no_grad():
        model(torch.rand(2, 3, 32, 32))
    model.eval()
    meta = {"classes": data[0].classes.to_dict(), "iteration": 7}
    save_checkpoint(tmp_path / "m.safetensors", model, meta)
    loaded, meta2 = load_checkpoint(tmp_path / "m.safetensors")
    x = torch.rand(1, 3, 32, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert meta2["model"] == "small-unet" and meta2["num_classes"] == 3
    assert meta2["iteration"] == 7 and meta2["classes"]["names"] == list(data[0].classes.names)
    assert not loaded.training


def test_final_checkpoint_carries_its_config(data, tmp_path):
    res = train([data[0], data[1]], _cfg(), tmp_path / "r", weights=[0.25, 0.75], progress=False)
    meta = read_meta(res.checkpoint)
    assert meta["iteration"] == 12
    assert meta["classes"]["names"] == ["background", "crack", "blob"]
    assert meta["ignore_index"] == 255
    assert meta["train_config"]["crop"] == 32
    assert meta["weights"] == [0.25, 0.75]
    assert [d["samples"] for d in meta["data"]] == [6, 3]
    assert len(meta["losses"]) == 12


def test_resume_after_ctrl_c_matches_an_uninterrupted_run(data, full_run, tmp_path, monkeypatch):
    full = full_run

    real = train_mod._make_batch
    calls = {"n": 0}

    def interrupting(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 8:  # Ctrl-C during iteration 8 (index 7)
            os.kill(os.getpid(), signal.SIGINT)
        return real(*a, **kw)

    monkeypatch.setattr(train_mod, "_make_batch", interrupting)
    with pytest.raises(KeyboardInterrupt):
        train(data[0], _cfg(), tmp_path / "stop", progress=False)
    state = tmp_path / "stop" / "last.safetensors"
    # the step in flight finished, then the state was saved (batch 8 may be prefetched
    # during step 7)
    stopped_at = read_meta(state)["iteration"]
    assert stopped_at in (7, 8)
    assert not (tmp_path / "stop" / "model.safetensors").exists()
    with pytest.raises(DataError, match="training has not finished; rerun the same train"):
        load_checkpoint(tmp_path / "stop")  # the folder of an unfinished run
    monkeypatch.setattr(train_mod, "_make_batch", real)
    resumed = train(data[0], _cfg(), tmp_path / "stop", progress=False)
    assert resumed.resumed_from == stopped_at
    assert resumed.losses == full.losses
    ma, _ = load_checkpoint(full.checkpoint)
    mb, _ = load_checkpoint(resumed.checkpoint)
    for va, vb in zip(ma.state_dict().values(), mb.state_dict().values(), strict=True):
        assert torch.equal(va, vb)
    assert read_meta(tmp_path / "stop") == read_meta(resumed.checkpoint)  # folder = its model


def test_resume_from_a_periodic_checkpoint_after_a_crash(data, full_run, tmp_path, monkeypatch):
    full = full_run
    real = train_mod._make_batch
    calls = {"n": 0}

    def crashing(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 9:
            raise RuntimeError("power cut")
        return real(*a, **kw)

    monkeypatch.setattr(train_mod, "_make_batch", crashing)
    with pytest.raises(RuntimeError):
        train(data[0], _cfg(), tmp_path / "crash", progress=False)
    assert read_meta(tmp_path / "crash" / "last.safetensors")["iteration"] == 5
    monkeypatch.setattr(train_mod, "_make_batch", real)
    resumed = train(data[0], _cfg(), tmp_path / "crash", progress=False)
    assert resumed.resumed_from == 5
    assert resumed.losses == full.losses


def test_finished_run_is_returned_and_other_config_refused(data, tmp_path):
    first = train(data[0], _cfg(), tmp_path / "r", progress=False)
    again = train(data[0], _cfg(num_threads=2), tmp_path / "r", progress=False)  # runtime field
    assert again.resumed_from == 12 and again.losses == first.losses
    with pytest.raises(OutputExistsError, match="lr"):
        train(data[0], _cfg(lr=0.1), tmp_path / "r", progress=False)
    with pytest.raises(OutputExistsError, match="data"):
        train(data[1], _cfg(), tmp_path / "r", progress=False)
    fresh = train(data[0], _cfg(lr=0.1), tmp_path / "r", resume=False, progress=False)
    assert fresh.resumed_from == 0 and read_meta(fresh.checkpoint)["train_config"]["lr"] == 0.1


def test_a_moved_dataset_is_the_same_data(data, tmp_path):
    import shutil

    first = train(data[1], _cfg(iterations=3), tmp_path / "r", progress=False)
    moved = make_dataset(tmp_path / "elsewhere", n=3, size=(40, 40), seed=5)
    assert moved.root != data[1].root
    again = train(moved, _cfg(iterations=3), tmp_path / "r", progress=False)
    assert again.resumed_from == 3 and again.losses == first.losses
    shutil.rmtree(tmp_path / "elsewhere")


def test_zero_weight_dataset_is_never_read(data, tmp_path):
    broken = make_dataset(tmp_path / "broken", n=2, size=(32, 32))
    for s in broken.samples:
        s.image_path.unlink()
    res = train(
        [data[0], broken], _cfg(iterations=3), tmp_path / "r", weights=[1, 0], progress=False
    )
    assert res.iterations == 3
    with pytest.raises(Exception, match="not found"):
        train(
            [data[0], broken], _cfg(iterations=3), tmp_path / "r2", weights=[0, 1], progress=False
        )


def test_bad_datasets_are_refused(data, tmp_path):
    other = make_dataset(
        tmp_path / "o", n=2, size=(32, 32), classes=ClassSpec(("bg", "crack", "blob"))
    )
    with pytest.raises(ConfigError, match="classes"):
        train([data[0], other], _cfg(), tmp_path / "r", progress=False)
    unlabelled = data[0].subset([type(s)(s.name, s.image_path, None) for s in data[0].samples])
    with pytest.raises(ConfigError, match="unlabelled"):
        train(unlabelled, _cfg(), tmp_path / "r", progress=False)
    with pytest.raises(ConfigError, match="stride 32 in height and width, e.g. crop 64x32"):
        train(data[0], _cfg(crop=(70, 40), model_kwargs={}), tmp_path / "r", progress=False)
    with pytest.raises(ConfigError, match="iterations"):
        _cfg(iterations=0)
    with pytest.raises(ConfigError, match="unknown train option 'iterz'"):
        TrainConfig.from_dict({"iterz": 3})
    assert TrainConfig.from_dict({"iters": 3, "crop": "32x64"}).crop == (32, 64)  # aliases


def test_frequency_class_weights_are_computed_and_stored(data, tmp_path):
    res = train(
        data[0], _cfg(iterations=2, class_weighting="frequency"), tmp_path / "r", progress=False
    )
    w = read_meta(res.checkpoint)["class_weights"]
    assert len(w) == 3 and w[1] > w[0] and max(w) <= 10


def test_learning_rate_schedule():
    cfg = TrainConfig(iterations=100, warmup=10, lr=1.0)
    lrs = [learning_rate(i, cfg) for i in range(100)]
    assert lrs[0] < lrs[9] < lrs[10] == pytest.approx(1.0)
    assert lrs[-1] < 0.02 and all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))


def test_segformer_tiny_random_config_trains_one_step(data, tmp_path):
    cfg = _cfg(
        model="segformer", model_kwargs={"config": TINY_SEGFORMER}, pretrained=False, iterations=1
    )
    res = train(data[0], cfg, tmp_path / "sf", progress=False)
    assert np.isfinite(res.losses[0])
    model, meta = load_checkpoint(res.checkpoint)
    assert meta["model"] == "segformer"
    assert model(torch.rand(1, 3, 64, 32)).shape == (1, 3, 64, 32)
