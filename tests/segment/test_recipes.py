"""The recipes inside train(): mix unchanged, fine-tuning phases, self-training, RCS."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from synth2real.data.unlabeled import open_unlabeled
from synth2real.errors import ConfigError, DataError, OutputExistsError
from synth2real.segment import recipes
from synth2real.segment import train as train_mod
from synth2real.segment.checkpoint import load_checkpoint, read_meta, read_tensors
from synth2real.segment.config import RECIPES, TrainConfig, make_config, parse_settings
from synth2real.segment.recipes import BatchSampler, learning_rate
from synth2real.segment.sampling import SampleLoader, augment
from synth2real.segment.selftrain import ema_alpha
from synth2real.segment.train import train
from tests.segment.fixtures import make_dataset, tiny_config

_cfg = tiny_config


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("rec")
    a = make_dataset(root / "a", n=6, size=(48, 56))
    b = make_dataset(root / "b", n=3, size=(40, 40), seed=5)
    u = open_unlabeled(make_dataset(root / "u", n=4, size=(44, 52), seed=9).root)
    return a, b, u


def _weights(path):
    model, _ = load_checkpoint(path)
    return model.state_dict()


def _same_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


# -- settings --------------------------------------------------------------------------------
def test_recipe_keys_go_through_the_one_parser_and_into_the_checkpoint(data, tmp_path):
    assert RECIPES == ("mix", "finetune", "selftrain") and TrainConfig().recipe == "mix"
    assert (TrainConfig().ft_split, TrainConfig().ft_lr_scale) == (0.9, 0.03)  # the sweep's pick
    s = parse_settings("recipe=finetune,ft_split=0.5,ft_lr_scale=0.2,rcs=true,st_ema_alpha=0.9")
    assert s == {
        "recipe": "finetune", "ft_split": 0.5, "ft_lr_scale": 0.2, "rcs": True, "st_ema_alpha": 0.9
    }  # fmt: skip
    cfg = make_config(s, iterations=4)
    assert (cfg.ft_phase1, cfg.rcs_temperature, cfg.st_pseudo_threshold) == (2, 0.01, 0.968)
    with pytest.raises(ConfigError, match="--budget: unknown train option 'st_alpha'"):
        parse_settings("st_alpha=0.9", option="--budget")
    for bad, key in [("recipe=dacs", "recipe"), ("ft_split=1", "ft_split"),
                     ("ft_lr_scale=0", "ft_lr_scale"), ("st_ema_alpha=1", "st_ema_alpha"),
                     ("rcs_temperature=0", "rcs_temperature")]:  # fmt: skip
        with pytest.raises(ConfigError, match=key):
            make_config(parse_settings(bad))
    with pytest.raises(ConfigError, match="ft_split"):  # a phase would be empty
        make_config(recipe="finetune", ft_split=0.5, iterations=1)
    # each phase keeps at least one iteration
    assert make_config(recipe="finetune", ft_split=0.9, iterations=3).ft_phase1 == 2
    assert make_config(recipe="finetune", ft_split=0.1, iterations=3).ft_phase1 == 1
    res = train([data[0], data[1]], _cfg(iterations=2, recipe="finetune", ft_split=0.5),
                tmp_path / "r", progress=False)  # fmt: skip
    stored = read_meta(res.checkpoint)["train_config"]
    assert stored["recipe"] == "finetune" and stored["ft_split"] == 0.5
    assert stored["st_ema_alpha"] == 0.99 and stored["rcs"] is False
    assert TrainConfig.from_dict(stored) == res_cfg_of(res)


def res_cfg_of(res):
    return TrainConfig.from_dict(read_meta(res.checkpoint)["train_config"])


# -- mix: unchanged --------------------------------------------------------------------------
def test_mix_draws_the_crops_the_pre_recipe_loop_drew(data):
    """BatchSampler with rcs off makes the calls the former ``_make_batch`` made, on the
    same generator, so a mix run's random draws are those of before recipes existed."""
    cfg = _cfg(scale_range=(0.8, 1.3), color_jitter=0.1, vflip=True)
    loaders = [SampleLoader(d, cfg.max_size) for d in data[:2]]
    probs = np.array([0.3, 0.7])
    sampler = BatchSampler(loaders, probs, cfg, 3, 255)
    for it in (0, 5, 11):
        rng = np.random.default_rng([cfg.seed, it])  # the former loop, verbatim
        images, labels = [], []
        for _ in range(cfg.batch_size):
            d = int(rng.choice(len(loaders), p=probs))
            i = int(rng.integers(len(loaders[d])))
            image, label = loaders[d].load(i)
            img, lab = augment(
                image, label, rng, crop=cfg.crop_hw, scale_range=cfg.scale_range,
                hflip=cfg.hflip, vflip=cfg.vflip, jitter=cfg.color_jitter, ignore_index=255,
            )  # fmt: skip
            images.append(img)
            labels.append(lab)
        got = sampler.draw(it)
        assert np.array_equal(got.images, np.stack(images))
        assert np.array_equal(got.labels, np.stack(labels))
        assert got.target is None


def test_other_recipes_keys_leave_a_mix_run_unchanged(data, tmp_path):
    ds = [data[0], data[1]]
    plain = train(ds, _cfg(), tmp_path / "plain", progress=False)
    other = _cfg(ft_split=0.3, ft_lr_scale=0.5, st_ema_alpha=0.5, st_mix_weight=3.0)
    again = train(ds, other, tmp_path / "other", progress=False)
    assert plain.losses == again.losses and _same_weights(plain.checkpoint, again.checkpoint)
    assert plain.mix_losses == [] and "mix_losses" not in read_meta(plain.checkpoint)


def test_selftrain_with_zero_mix_weight_has_the_mix_runs_losses(data, tmp_path):
    """The labelled draws and the supervised loss of a self-training step are the mix
    recipe's: with ``st_mix_weight=0`` the total loss is the mix run's, step by step."""
    ds = [data[0], data[1]]
    mix = train(ds, _cfg(), tmp_path / "mix", progress=False)
    st = train(ds, _cfg(recipe="selftrain", st_mix_weight=0.0), tmp_path / "st",
               unlabeled=data[2], progress=False)  # fmt: skip
    assert st.losses == mix.losses
    assert len(st.mix_losses) == 12 and all(v > 0 for v in st.mix_losses)


# -- fine-tuning -----------------------------------------------------------------------------
def test_finetune_learning_rate_restarts_at_the_scaled_peak():
    cfg = TrainConfig(recipe="finetune", iterations=100, warmup=5, lr=1.0, ft_split=0.8,
                      ft_lr_scale=0.1)  # fmt: skip
    lrs = [learning_rate(i, cfg) for i in range(100)]
    assert cfg.ft_phase1 == 80
    # phase 1: a run of 80 (warm-up 5, cosine to 1 %)
    assert lrs[0] == pytest.approx(1 / 6) and lrs[5] == pytest.approx(1.0)
    assert lrs[79] < 0.011 < lrs[78]
    # phase 2: a run of 20 from 0.1 (warm-up min(5, 20 // 10) = 2)
    assert lrs[80] == pytest.approx(0.1 / 3) and lrs[81] == pytest.approx(0.2 / 3)
    assert lrs[82] == pytest.approx(0.1) and max(lrs[80:]) == pytest.approx(0.1)
    t = (19 - 2) / (20 - 2)  # the last step of phase 2, cosine to 1 % of 0.1
    assert lrs[99] == pytest.approx(0.001 + 0.099 * 0.5 * (1 + np.cos(np.pi * t)))
    mix = TrainConfig(iterations=100, warmup=5, lr=1.0, ft_split=0.8, ft_lr_scale=0.1)
    assert [learning_rate(i, mix) for i in range(100)][80] > 0.05  # mix: one schedule


def test_finetune_phase_two_draws_only_the_last_dataset_at_the_scaled_lr(
    data, tmp_path, monkeypatch
):
    drawn = {}
    real = train_mod._make_batch

    def watch(sampler, it):
        batch = real(sampler, it)
        drawn[it] = batch.sources.tolist()
        if it == 9 and crash["on"]:
            raise RuntimeError("power cut")
        return batch

    crash = {"on": True}
    monkeypatch.setattr(train_mod, "_make_batch", watch)
    cfg = _cfg(recipe="finetune", ft_split=0.5, ft_lr_scale=0.25, lr=1e-2, save_every=7,
               batch_size=4, prefetch=False)  # fmt: skip
    with pytest.raises(RuntimeError):
        train([data[0], data[1]], cfg, tmp_path / "ft", weights=[0.5, 0.5], progress=False)
    state = read_meta(tmp_path / "ft" / "last.safetensors")
    assert state["iteration"] == 7
    # the optimizer stepped iteration 6, phase 2's first (warm-up min(2, 6 // 10) = 0)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.25 * 1e-2)
    crash["on"] = False
    res = train([data[0], data[1]], cfg, tmp_path / "ft", weights=[0.5, 0.5], progress=False)
    assert res.resumed_from == 7 and len(res.losses) == 12
    phase1 = [d for it in range(6) for d in drawn[it]]
    assert set(phase1) == {0, 1}
    assert all(drawn[it] == [1] * 4 for it in range(6, 12))


def test_finetune_needs_two_datasets(data, tmp_path):
    with pytest.raises(ConfigError, match="at least 2 datasets"):
        train(data[0], _cfg(recipe="finetune"), tmp_path / "r", progress=False)
    assert not (tmp_path / "r" / "last.safetensors").exists()


# -- self-training ---------------------------------------------------------------------------
def test_selftrain_needs_unlabeled_images_and_others_refuse_them(data, tmp_path):
    with pytest.raises(ConfigError, match="--unlabeled"):
        train(data[0], _cfg(recipe="selftrain"), tmp_path / "a", progress=False)
    for recipe in ("mix", "finetune"):
        with pytest.raises(ConfigError, match="only by recipe 'selftrain'"):
            train([data[0], data[1]], _cfg(recipe=recipe), tmp_path / "b",
                  unlabeled=data[2], progress=False)  # fmt: skip


def test_teacher_follows_the_student_at_the_documented_rate_inside_train(
    data, tmp_path, monkeypatch
):
    seen = []
    real_update = recipes.SelfTrainer.update
    real_loss = recipes.SelfTrainer.mixed_loss

    def update(self, student, it):
        before = {k: v.clone() for k, v in self.teacher.state_dict().items()}
        a = real_update(self, student, it)
        assert a == ema_alpha(it + 1, self.cfg.st_ema_alpha)
        s = student.state_dict()
        for k, t in self.teacher.state_dict().items():
            if t.is_floating_point():
                torch.testing.assert_close(t, a * before[k] + (1 - a) * s[k], rtol=1e-6, atol=1e-7)
            else:
                assert torch.equal(t, s[k])  # num_batches_tracked copied
        seen.append((it, a))
        return a

    def mixed_loss(self, student, *args, **kw):
        assert not self.teacher.training and student.training
        assert all(not p.requires_grad for p in self.teacher.parameters())
        return real_loss(self, student, *args, **kw)

    monkeypatch.setattr(recipes.SelfTrainer, "update", update)
    monkeypatch.setattr(recipes.SelfTrainer, "mixed_loss", mixed_loss)
    cfg = _cfg(recipe="selftrain", st_ema_alpha=0.7, iterations=6)
    train(data[0], cfg, tmp_path / "st", unlabeled=data[2], progress=False)
    # every step, with the true mean until 1 - 1/(t+1) reaches alpha: 1/2, 2/3, then 0.7
    assert [it for it, _ in seen] == list(range(6))
    assert [a for _, a in seen] == pytest.approx([0.5, 2 / 3, 0.7, 0.7, 0.7, 0.7])


def test_selftrain_resumes_with_its_teacher_to_the_same_result(data, tmp_path, monkeypatch):
    cfg = _cfg(recipe="selftrain", st_pseudo_threshold=0.5)
    ds = [data[0], data[1]]
    full = train(ds, cfg, tmp_path / "full", unlabeled=data[2], progress=False)
    real = train_mod._make_batch
    calls = {"n": 0}

    def crashing(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 9:
            raise RuntimeError("power cut")
        return real(*a, **kw)

    monkeypatch.setattr(train_mod, "_make_batch", crashing)
    with pytest.raises(RuntimeError):
        train(ds, cfg, tmp_path / "stop", unlabeled=data[2], progress=False)
    state = tmp_path / "stop" / "last.safetensors"
    assert read_meta(state)["iteration"] == 5
    teacher, student = read_tensors(state, "teacher."), read_tensors(state, "model.")
    assert teacher.keys() == student.keys()  # parameters and buffers
    assert any(k.endswith("running_mean") for k in teacher)
    assert any(not torch.equal(teacher[k], student[k]) for k in teacher)
    monkeypatch.setattr(train_mod, "_make_batch", real)
    resumed = train(ds, cfg, tmp_path / "stop", unlabeled=data[2], progress=False)
    assert resumed.resumed_from == 5
    assert resumed.losses == full.losses and resumed.mix_losses == full.mix_losses
    assert _same_weights(full.checkpoint, resumed.checkpoint)
    final = read_tensors(resumed.checkpoint, "")
    assert not any(k.startswith("teacher.") for k in final)  # the final model is the student
    meta = json.loads((tmp_path / "stop" / "model.json").read_text())
    assert meta["unlabeled"]["samples"] == 4 and meta["train_config"]["recipe"] == "selftrain"
    # a finished run with other unlabelled images is refused like other data changes
    fewer = data[2].subset(data[2].samples[:3])
    with pytest.raises(OutputExistsError, match="unlabeled"):
        train(ds, cfg, tmp_path / "stop", unlabeled=fewer, progress=False)


def test_out_inside_the_unlabeled_folder_is_refused(data):
    out = data[2].root / "run"
    with pytest.raises(ConfigError, match="--unlabeled"):
        train(data[0], _cfg(recipe="selftrain"), out, unlabeled=data[2], progress=False)
    assert not out.exists()


# -- rare-class sampling in train ------------------------------------------------------------
def test_rcs_draws_crops_holding_the_rarest_class(data, tmp_path):
    loaders = [SampleLoader(data[0], None)]
    probs = np.ones(1)

    def share_with(cfg, c):
        s = BatchSampler(loaders, probs, cfg, 3, 255)
        labels = np.concatenate([s.draw(it).labels for it in range(40)])
        return np.mean([(lab == c).sum() > 10 for lab in labels])

    counts = sum(np.bincount(loaders[0].load(i)[1].ravel(), minlength=3) for i in range(6))
    rare = int(np.argmin(counts))
    plain = share_with(_cfg(crop=16), rare)
    rcs = share_with(_cfg(crop=16, rcs=True, rcs_min_pixels=20), rare)
    assert rcs > plain + 0.3 and rcs > 0.7, (plain, rcs)  # the crop loop may give up
    res = train(data[0], _cfg(iterations=3, rcs=True), tmp_path / "r", progress=False)
    assert read_meta(res.checkpoint)["train_config"]["rcs"] is True


# -- unlabelled images -----------------------------------------------------------------------
def test_open_unlabeled_reads_folders_and_datasets_without_their_labels(tmp_path):
    ds = make_dataset(tmp_path / "d", n=4, size=(32, 32))
    unl = open_unlabeled(ds.root)
    assert len(unl) == 4 and all(s.label_path is None for s in unl)
    (tmp_path / "names.json").write_text(json.dumps({"unlabeled": ["img_001", "img_003"]}))
    picked = open_unlabeled(ds.root, f"{tmp_path / 'names.json'}:unlabeled")
    assert [s.name for s in picked] == ["img_001", "img_003"]
    assert [s.name for s in open_unlabeled(ds.root, ["img_002"])] == ["img_002"]
    photos = tmp_path / "photos" / "nested"
    photos.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photos / "a b.jpg")
    assert [s.name for s in open_unlabeled(tmp_path / "photos")] == ["nested/a b"]
    loader = SampleLoader(open_unlabeled(tmp_path / "photos"), None, labels=False)
    image, label = loader.load(0)
    assert image.shape == (8, 8, 3) and label.shape == (8, 8) and not label.any()


def test_open_unlabeled_errors_name_the_folder_or_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        open_unlabeled(tmp_path / "empty")
    ds = make_dataset(tmp_path / "d", n=2, size=(16, 16))
    with pytest.raises(DataError, match="img_009"):
        open_unlabeled(ds.root, "img_000,img_009")
    bad = tmp_path / "bad"
    bad.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(bad / "ok.png")
    (bad / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError) as e:
        open_unlabeled(bad)
    assert "broken.png" in str(e.value)


def test_a_run_stored_before_the_recipe_keys_existed_is_the_same_run(data, tmp_path):
    res = train(data[0], _cfg(iterations=2, cpu_amp=False), tmp_path / "old", progress=False)
    meta = read_meta(res.checkpoint)
    new_keys = ("recipe", "ft_split", "ft_lr_scale", "st_", "rcs")
    meta["train_config"] = {
        k: v for k, v in meta["train_config"].items() if not k.startswith(new_keys)
    }
    meta.pop("unlabeled")
    run = {k: read_meta(res.checkpoint)[k] for k in ("data", "weights", "classes", "unlabeled")}
    run["train_config"] = _cfg(iterations=2, cpu_amp=False).result_dict()
    assert train_mod._same_run(meta, run) == []
    run["train_config"] = _cfg(
        iterations=2, cpu_amp=False, recipe="finetune", ft_split=0.5
    ).result_dict()
    assert train_mod._same_run(meta, run) == ["train_config.recipe", "train_config.ft_split"]
