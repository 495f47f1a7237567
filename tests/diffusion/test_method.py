"""The diffusion methods (CrossImageMethod, StyleIDMethod on the shared DiffusionMethod):
presets, parameters, loading, sizes, NaN and OOM handling, end to end."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from synth2real.diffusion.cross_image import CrossImageMethod
from synth2real.diffusion.method import DiffusionMethod, fit_to, working_size
from synth2real.diffusion.quirks import ReferenceQuirks
from synth2real.diffusion.styleid import StyleIDMethod
from synth2real.errors import ConfigError, ModelNotFoundError
from synth2real.methods import create_method, describe, list_methods
from synth2real.methods.base import References
from synth2real.methods.registry import parse_param
from tests.diffusion.helpers import blobs, make_references

PRESETS = ["adain-diffusion", "cross-image", "cacti", "cactif", "styleid"]
FAST = dict(working_size=64, num_inference_steps=6, skip=2, classwise_steps=(1, 3), batch_size=2)


def fast(name: str, model_dir, **kw) -> DiffusionMethod:
    params = dict(FAST, model=str(model_dir), **kw)
    if name == "styleid":
        params["skip"] = 1
    return create_method(name, **params)  # type: ignore[return-value]


def test_presets_are_registered_without_importing_torch():
    code = (
        "import sys; from synth2real.methods import list_methods; "
        "print(list_methods('diffusion')); "
        "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules; "
        "assert not [m for m in sys.modules if m.startswith('synth2real.diffusion')]"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert all(p in res.stdout for p in PRESETS)
    assert set(PRESETS) <= set(list_methods("diffusion"))


@pytest.mark.parametrize("name", PRESETS)
def test_every_parameter_is_documented_with_the_preset_default(name):
    entry, params = describe(name)
    assert entry.family == "diffusion" and entry.summary
    for p in params:
        assert p.doc, f"{name}: parameter {p.name} has no documentation"
        assert "Default" in p.doc, f"{name}: {p.name} does not state its default"
    by = {p.name: p.default for p in params}
    expected = {
        "adain-diffusion": dict(swap=False, adain="global", filtering=False, skip=30),
        "cross-image": dict(swap=True, adain="global", filtering=False, sharpen=1.67),
        "cacti": dict(swap=True, adain="classwise", filtering=False, freeu="reference"),
        "cactif": dict(swap=True, adain="classwise", filtering=True, filter_p=0.25),
        "styleid": dict(adain="global", skip=0, gamma=0.75, tau=1.5, freeu="off"),
    }[name]
    for key, value in expected.items():
        assert by[key] == value, (name, key)
    assert by["model"] == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert by["num_inference_steps"] == 50 and by["batch_size"] == 4
    # each pipeline lists its own parameters only
    if name == "styleid":
        assert not {"sharpen", "filter_p", "classwise_steps", "pipeline"} & set(by)
    else:
        assert not {"gamma", "tau", "style_cache_gb", "pipeline"} & set(by)


@pytest.mark.parametrize("name", PRESETS)
def test_every_old_parameter_name_is_still_accepted_by_every_preset(name, caplog):
    """One set of --param values serves every diffusion preset (as when all five were one
    class): another pipeline's parameters are parsed by their types, accepted, and ignored
    with a warning; ``pipeline`` must name the preset's own pipeline."""
    old = {"pipeline": "styleid", "gamma": "0.3", "tau": "1", "style_cache_gb": "1"}
    old |= {"sharpen": "1.5", "filter_p": "0.2", "swap": "true", "classwise_steps": "[1, 3]"}
    old |= {"erosion": "1", "thin_share": "0.1", "reference_quirks": "false", "seed": "1"}
    own = {p.name for p in describe(name)[1]}
    assert parse_param(name, "classwise_steps", "[1, 3]") == (1, 3)
    assert parse_param(name, "gamma", "0.3") == 0.3
    assert parse_param(name, "style_cache_gb", "null") is None
    values = {"gamma": 0.3, "sharpen": 1.5, "classwise_steps": (1, 3), "seed": 3}
    with caplog.at_level("WARNING", logger="synth2real.diffusion"):
        m = create_method(name, **values)
    for key, value in values.items():
        if key in own:
            assert m.params()[key] == (list(value) if isinstance(value, tuple) else value)
        else:
            assert key not in m.params() and key in caplog.text
    assert set(m.params()) == own
    for key, raw in old.items():  # known to the parser (a ConfigError otherwise)
        assert parse_param(name, key, raw) is not None
    pipeline = "styleid" if name == "styleid" else "three-branch"
    assert create_method(name, pipeline=pipeline).params() == create_method(name).params()
    other = "three-branch" if name == "styleid" else "styleid"
    with pytest.raises(ConfigError, match=f"pipeline='{other}'"):
        create_method(name, pipeline=other)
    with pytest.raises(ConfigError, match="no parameter"):
        create_method(name, no_such_parameter=1)


def test_each_pipeline_has_its_own_class():
    assert type(create_method("cactif")) is CrossImageMethod
    assert type(create_method("adain-diffusion")) is CrossImageMethod
    assert type(create_method("styleid")) is StyleIDMethod
    assert create_method("cactif").config.filtering and not create_method("cacti").config.filtering


def test_reference_quirks_switch_the_sigma_offset():
    def quirks(**kw):
        return create_method("cacti", **kw).config.quirks

    assert quirks() == ReferenceQuirks()  # METHOD.md's behaviour by default
    on = quirks(reference_quirks=True)
    assert on.sigma_offset == 1.0 and on.classwise_loop and on.zero_last_noise
    assert on.border_erodes and on.reference_statistics and on.reference_labels
    assert on.no_swap_steps == (1,) and not on.shared_noise  # shared_noise: its own option
    assert quirks(shared_noise=True) == ReferenceQuirks(shared_noise=True)
    assert quirks(reference_quirks=True, adain_sigma_offset=0.5).sigma_offset == 0.5
    only = quirks(adain_sigma_offset=1.0)
    assert only.sigma_offset == 1.0 and not only.classwise_loop and not only.zero_last_noise
    # StyleID's quirks are the port's
    port = create_method("styleid", reference_quirks=True).config.quirks
    assert port == ReferenceQuirks(port_initial_adain=True, port_layers=True, x0_output=True)
    assert create_method("styleid").config.quirks == ReferenceQuirks()


def test_the_reference_quirks_skip_the_swap_on_step_1():
    cfg = create_method("cactif", reference_quirks=True).config
    assert [cfg.swap_at(j) for j in range(4)] == [True, False, True, True]
    first = create_method("cactif", reference_quirks=True, swap_steps=[2, 20]).config
    assert [first.swap_at(j) for j in range(4)] == [False, False, True, True]
    assert all(create_method("cactif").config.swap_at(j) for j in range(20))


@pytest.mark.parametrize(
    ("value", "mode"),
    [("reference", "reference"), ("diffusers", "diffusers"), ("off", "off"), (True, "diffusers"),
     (False, "off"), ("OFF", "off")],
)  # fmt: skip
def test_freeu_takes_a_mode_or_the_old_bool(value, mode):
    m = create_method("cacti", freeu=value, freeu_params=[0.8, 0.3, 1.1, 1.3])
    assert m.config.freeu == mode and m.params()["freeu"] == mode
    assert (m.freeu.mode, m.freeu.s1, m.freeu.s2, m.freeu.b1, m.freeu.b2) == (
        mode, 0.8, 0.3, 1.1, 1.3,
    )  # fmt: skip


def test_freeu_defaults_follow_the_published_runs_and_bad_values_are_refused():
    for name in ("adain-diffusion", "cross-image", "cacti", "cactif"):
        assert create_method(name).freeu.mode == "reference", name
    assert create_method("styleid").freeu.mode == "off"
    assert parse_param("cactif", "freeu", "diffusers") == "diffusers"
    assert parse_param("cactif", "freeu", "false") is False
    with pytest.raises(ConfigError, match="freeu must be one of reference, diffusers, off"):
        create_method("cactif", freeu="paper")


@pytest.mark.parametrize("name", ["cactif", "styleid"])
def test_freeu_runs_in_every_unet_call_of_a_batch_inversion_included(name, tiny_model_dir):
    """The reference's FreeU hooks are on while a batch translates (StyleID's inversion
    passes too) and gone afterwards, so that methods sharing a UNet each get their own."""
    m = fast(name, tiny_model_dir, freeu="reference")
    m.prepare(make_references(n=1))
    up = m.models.unet.up_blocks
    seen: list[int] = []
    probe = up[-1].register_forward_pre_hook(
        lambda mod, args: seen.append(len(mod._forward_pre_hooks))
    )
    try:
        img, lab = blobs(64, 64, 3, seed=5)
        m.apply(img, lab, 0)
    finally:
        probe.remove()
    steps = 6 - (1 if name == "styleid" else 2)
    assert len(seen) == (2 * steps if name == "styleid" else steps)  # inversion + sampling
    assert set(seen) == {2}  # FreeU's hook besides the probe, in every call
    assert all(len(b._forward_pre_hooks) == 0 for b in up)  # removed afterwards
    off = fast(name, tiny_model_dir, freeu="off")
    off.set_models(m.models)
    off.prepare(make_references(n=1))
    assert np.abs(off.apply(img, lab, 0).astype(int) - m.apply(img, lab, 0).astype(int)).max() > 0


def test_cli_style_parameters_parse_to_the_right_types():
    assert parse_param("cactif", "working_size", "[64, 128]") == (64, 128)
    assert parse_param("cactif", "working_size", "512") == 512
    assert parse_param("cactif", "swap_steps", "null") is None
    assert parse_param("cactif", "filter_p", "0.1") == 0.1
    assert parse_param("cactif", "model", "/some/folder") == "/some/folder"
    with pytest.raises(ConfigError):
        create_method("cactif", filter_p=2.0)
    with pytest.raises(ConfigError):
        create_method("adain-diffusion", filtering=True)  # filtering needs the swap
    with pytest.raises(ConfigError):
        create_method("styleid", adain="classwise")


@pytest.mark.parametrize(
    "hw,size,want",
    [
        ((512, 512), 512, (512, 512)),
        ((1024, 2048), 512, (512, 1024)),
        ((350, 512), 512, (512, 768)),
        ((720, 1280), 512, (512, 896)),
        ((70, 200), 64, (64, 192)),
        ((100, 100), (128, 64), (128, 64)),
    ],
)
def test_working_size_rule(hw, size, want):
    assert working_size(*hw, size, 64) == want


def test_working_size_rejects_non_multiples():
    with pytest.raises(ConfigError):
        working_size(64, 64, (100, 64), 64)
    with pytest.raises(ConfigError):
        working_size(64, 64, 32, 64)


def test_fit_to_crop_keeps_aspect_and_label_alignment():
    img = np.zeros((40, 100, 3), np.uint8)
    lab = np.zeros((40, 100), np.uint8)
    img[:, 50:] = 200
    lab[:, 50:] = 1
    out, olab = fit_to(img, lab, (64, 64), "crop")
    assert out.shape == (64, 64, 3) and olab.shape == (64, 64)
    assert set(np.unique(olab)) == {0, 1}
    assert (out[..., 0][olab == 1] > 150).all() and (out[..., 0][olab == 0] < 50).all()
    out2, _ = fit_to(img, None, (64, 32), "stretch")
    assert out2.shape == (64, 32, 3)


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_runs_end_to_end_on_a_saved_tiny_model(name, tiny_model_dir):
    refs = make_references(n=2, h=72, w=96, k=3)
    m = fast(name, tiny_model_dir)
    m.prepare(refs)
    # odd sizes, non-2:1 aspect ratios, label maps not multiples of 64
    items = [blobs(70, 200, 3, seed=1), blobs(128, 64, 3, seed=2), blobs(70, 200, 3, seed=3)]
    images, labels = [i for i, _ in items], [lab for _, lab in items]
    outs = m.apply_batch(images, labels, [0, 1, 1])
    for lab, out in zip(labels, outs, strict=True):
        assert out.shape == (*lab.shape, 3) and out.dtype == np.uint8
        assert out.std() > 0  # not a constant (black) image
    assert m.params()["model"] == str(tiny_model_dir)
    m.close()


def test_many_classes_with_cactif(tiny_model_dir):
    refs = make_references(n=2, h=64, w=64, k=30, seed=3)
    m = fast("cactif", tiny_model_dir, erosion=1)
    m.prepare(refs)
    img, lab = blobs(96, 64, 30, seed=4)
    out = m.apply(img, lab, 1)
    assert out.shape == img.shape
    assert m.reference_indices(1) == [0, 1]  # missing classes pool over all references


def test_without_edits_the_output_is_the_vae_reconstruction(tiny_model_dir):
    refs = make_references(n=1)
    m = fast("adain-diffusion", tiny_model_dir, adain="none", freeu=False)
    m.prepare(refs)
    img, lab = blobs(64, 96, 3, seed=5)
    out = m.apply(img, lab, 0)
    models = m.models
    with torch.no_grad():
        x = torch.from_numpy(img).float().permute(2, 0, 1)[None] / 127.5 - 1
        rec = models.decode(models.encode(x))[0]
    rec8 = ((rec.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    assert np.abs(out.astype(int) - rec8.astype(int)).max() <= 1


def test_seeds_make_results_independent_of_batching(tiny_model_dir):
    refs = make_references(n=2)
    m = fast("cross-image", tiny_model_dir)
    m.prepare(refs)
    items = [blobs(64, 64, 3, seed=s) for s in (6, 7, 8)]
    images, labels = [i for i, _ in items], [lab for _, lab in items]
    together = m.apply_batch(images, labels, [0, 1, 0], seeds=[11, 12, 13])
    alone = m.apply_batch(images[1:2], labels[1:2], [1], seeds=[12])
    assert np.abs(together[1].astype(int) - alone[0].astype(int)).max() <= 1
    other = m.apply_batch(images[1:2], labels[1:2], [1], seeds=[99])
    assert np.abs(other[0].astype(int) - alone[0].astype(int)).max() > 1
    # without seeds: derived from the method's seed and the pixels, still per image
    a = m.apply_batch(images, labels, [0, 1, 0])
    b = m.apply(images[2], labels[2], 0)
    assert np.abs(a[2].astype(int) - b.astype(int)).max() <= 1


def test_references_are_encoded_once_and_no_unet_pass_is_wasted(tiny_model_dir):
    refs = make_references(n=3)
    m = fast("cacti", tiny_model_dir, working_size=(64, 64))
    encodes, unet_rows = [], []
    m.prepare(refs)  # fixed working size: references encoded now
    models = m.models
    enc = models.vae.encode
    models.vae.encode = lambda x, *a, **k: (encodes.append(x.shape[0]), enc(x, *a, **k))[1]
    h = models.unet.register_forward_pre_hook(
        lambda mod, a, kw: unet_rows.append(a[0].shape[0]), with_kwargs=True
    )
    items = [blobs(64, 64, 3, seed=s) for s in range(5)]
    m.apply_batch([i for i, _ in items], [lab for _, lab in items], [0, 1, 2, 0, 1])
    h.remove()
    assert encodes == [2, 2, 1]  # content only, batch_size 2; references were encoded in prepare
    steps = FAST["num_inference_steps"] - FAST["skip"]
    assert unet_rows == [2 * 2 + 2] * steps + [2 * 2 + 2] * steps + [2 + 1] * steps


def test_classwise_presets_need_labels(tiny_model_dir):
    refs = make_references(n=2)
    unlabelled = References(refs.images, [None, None], refs.names, refs.classes)
    m = fast("cacti", tiny_model_dir)
    with pytest.raises(ConfigError, match="label map"):
        m.prepare(unlabelled)
    m.prepare(refs)
    img, _ = blobs(64, 64, 3)
    with pytest.raises(ConfigError, match="label map"):
        m.apply(img, None, 0)
    g = fast("cross-image", tiny_model_dir)
    g.prepare(unlabelled)  # global presets work without labels
    assert g.apply(img, None, 1).shape == img.shape


@pytest.mark.filterwarnings("ignore:The `local_dir_use_symlinks`")
def test_missing_weights_give_a_clear_error(tmp_path):
    m = create_method("cactif", model=str(tmp_path / "no-such-folder"))
    with pytest.raises(ModelNotFoundError, match="hf download"):
        m.prepare(make_references(n=1))
    (tmp_path / "partial" / "unet").mkdir(parents=True)
    m = create_method("cactif", model=str(tmp_path / "partial"))
    with pytest.raises(ModelNotFoundError, match="missing vae/, scheduler/"):
        m.prepare(make_references(n=1))
    m = create_method("cactif", model="nobody-here/no-such-model-xyz")  # offline in tests
    with pytest.raises(ModelNotFoundError, match="--param model="):
        m.prepare(make_references(n=1))


def _nan_in(module, while_dtype: torch.dtype | None):
    """Make ``module`` return NaNs (only while its weights are ``while_dtype``, if given)."""

    def hook(mod, args, out):
        if while_dtype is None or next(mod.parameters()).dtype == while_dtype:
            o = out if isinstance(out, torch.Tensor) else out[0]
            o.fill_(float("nan"))
        return out

    return module.register_forward_hook(hook)


def test_half_precision_nans_are_redone_in_float32(tiny_model_dir, caplog):
    m = fast("cross-image", tiny_model_dir, dtype="bfloat16")
    m.prepare(make_references(n=1))
    assert m.models.dtype == torch.bfloat16
    h = _nan_in(m.models.unet, torch.bfloat16)
    img, lab = blobs(64, 64, 3)
    with caplog.at_level("WARNING", logger="synth2real.diffusion"):
        out = m.apply(img, lab, 0)
    h.remove()
    assert m.models.dtype == torch.float32 and any("float32" in n for n in m.models.notes)
    assert "float32" in caplog.text
    assert out.std() > 0


def test_nans_that_persist_raise_instead_of_writing_black_images(tiny_model_dir):
    from synth2real.diffusion.loading import NonFiniteError

    m = fast("cross-image", tiny_model_dir, dtype="float32")
    m.prepare(make_references(n=1))
    h = _nan_in(m.models.unet, None)
    img, lab = blobs(64, 64, 3)
    with pytest.raises(NonFiniteError):
        m.apply(img, lab, 0)
    h.remove()
    # a half-precision VAE that gives NaNs is moved to float32
    m2 = fast("adain-diffusion", tiny_model_dir, dtype="bfloat16")
    m2.prepare(make_references(n=1))
    hv = _nan_in(m2.models.vae.decoder, torch.bfloat16)
    out = m2.apply(img, lab, 0)
    hv.remove()
    assert next(m2.models.vae.parameters()).dtype == torch.float32 and out.std() > 0


def test_out_of_memory_halves_the_batch(tiny_model_dir, monkeypatch):
    m = fast("cross-image", tiny_model_dir, batch_size=4)
    m.prepare(make_references(n=2))
    real = DiffusionMethod._run_once
    sizes = []

    def flaky(self, batch):
        sizes.append(len(batch))
        if len(batch) > 1:
            raise torch.OutOfMemoryError("simulated")
        return real(self, batch)

    monkeypatch.setattr(DiffusionMethod, "_run_once", flaky)
    items = [blobs(64, 64, 3, seed=s) for s in range(3)]
    outs = m.apply_batch([i for i, _ in items], [lab for _, lab in items], [0, 1, 0])
    assert len(outs) == 3 and all(o.shape == (64, 64, 3) for o in outs)
    assert sizes[0] == 3 and sizes.count(1) == 3
    assert m.batch_size == 4 and m.params()["batch_size"] == 4  # the parameter is unchanged
    sizes.clear()
    m.apply_batch([i for i, _ in items], [lab for _, lab in items], [0, 1, 0])
    assert sizes == [1, 1, 1]  # later batches start at the size that fitted


@pytest.mark.parametrize("name", ["cactif", "styleid"])
def test_the_unet_keeps_its_own_processors_outside_a_batch(name, tiny_model_dir):
    m = fast(name, tiny_model_dir)
    m.prepare(make_references(n=1))
    unet = m.models.unet
    before = dict(unet.attn_processors)
    layer = m._layers[0].module
    seen = set()
    hook = layer.register_forward_pre_hook(lambda mod, a: seen.add(type(mod.processor).__name__))
    img, lab = blobs(64, 64, 3)
    try:
        m.apply(img, lab, 0)
    finally:
        hook.remove()
    want = {"FilteredSwapProcessor"} if name == "cactif" else {"RecordProcessor", "InjectProcessor"}
    assert seen == want  # the edit ran during the batch ...
    assert unet.attn_processors == before  # ... and is gone after it
    m.close()  # models and everything computed from the references dropped
    assert m._models is None and not m._ref_latents


def test_styleid_inverts_each_reference_once_per_working_size(tiny_model_dir):
    m = fast("styleid", tiny_model_dir, working_size=(64, 64))
    m.prepare(make_references(n=2))
    unet_rows = []
    h = m.models.unet.register_forward_pre_hook(
        lambda mod, a, kw: unet_rows.append(a[0].shape[0]), with_kwargs=True
    )
    items = [blobs(64, 64, 3, seed=s) for s in range(4)]
    images, labels = [i for i, _ in items], [lab for _, lab in items]
    try:
        first = m.apply_batch(images[:2], labels[:2], [0, 0], seeds=[1, 2])
        m.apply_batch(images[2:], labels[2:], [0, 0])
        m.apply_batch(images[2:], labels[2:], [1, 0])
    finally:
        h.remove()
    n = FAST["num_inference_steps"] - 1  # the fast styleid runs skip=1
    assert unet_rows == (
        [2 + 1] * n
        + [2] * n  # reference 0 inverted with the first batch
        + [2] * n
        + [2] * n  # then reused: contents only
        + [2 + 1] * n
        + [2] * n  # reference 1 is new
    )
    assert m.style_cache().inverted == 2
    again = m.apply_batch(images[:2], labels[:2], [0, 0], seeds=[1, 2])
    for a, b in zip(first, again, strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    m.prepare(make_references(n=2))  # new references: nothing cached survives
    assert m.style_cache().inverted == 0 and not m.style_cache().trajectories
    with pytest.raises(ConfigError):
        create_method("styleid", style_cache_gb=-1)


def test_thin_classes_keep_their_own_classwise_statistics_by_default(tiny_model_dir):
    """A 2-px crack covers a quarter of the 8x8 blocks it crosses: the default keeps it
    at latent size (on the reference and the content alike) so class-wise AdaIN matches
    crack statistics; plain majority voting (thin_share=0) erases it into background."""
    from synth2real.data.classes import ClassSpec

    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    lab = np.zeros((64, 64), np.uint8)
    lab[:, 32:] = 1
    lab[:, 12:14] = 2  # a vertical crack, 2 px wide
    refs = References([img], [lab], ["r"], ClassSpec(("background", "road", "crack")))
    m = fast("cacti", tiny_model_dir, working_size=(64, 64))
    assert m.config.thin_share == 0.25
    m.prepare(refs)
    assert int(m._bank((64, 64)).source[0, 2]) == 0  # the crack's own statistics
    majority = fast("cacti", tiny_model_dir, working_size=(64, 64), thin_share=0.0)
    majority.prepare(refs)
    assert int(majority._bank((64, 64)).source[0, 2]) == 2  # vanished: global statistics
    assert m.apply(img, lab, 0).shape == img.shape
