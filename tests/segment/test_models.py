import pytest
import torch

from synth2real.errors import ConfigError, ModelNotFoundError
from synth2real.segment.models import count_parameters, create_model, list_models

TINY_SEGFORMER = {
    "hidden_sizes": [8, 16, 16, 16],
    "depths": [1, 1, 1, 1],
    "num_attention_heads": [1, 1, 1, 1],
    "decoder_hidden_size": 16,
}


def test_registry_lists_both_models():
    assert {"small-unet", "segformer"} <= set(list_models())
    with pytest.raises(ConfigError, match="unknown model"):
        create_model("resnet-9000", 2)
    with pytest.raises(ConfigError, match="no option"):
        create_model("small-unet", 2, widht=3)


def test_small_unet_logits_at_input_resolution_and_size_budget():
    model = create_model("small-unet", 3)
    assert model.name == "small-unet"
    assert 0.3e6 <= count_parameters(model) <= 1.5e6
    x = torch.rand(2, 3, 64, 96)
    assert model(x).shape == (2, 3, 64, 96)
    with pytest.raises(ValueError, match="multiple"):
        model(torch.rand(1, 3, 50, 64))
    with pytest.raises(ConfigError):
        create_model("small-unet", 3, pretrained="some/weights")


def test_small_unet_sees_a_one_pixel_line():
    """The full-resolution skip lets a 1-px change at full resolution reach the output there."""
    torch.manual_seed(0)
    model = create_model("small-unet", 2, channels=(8, 16, 32)).eval()
    x = torch.full((1, 3, 32, 32), 0.5)
    x2 = x.clone()
    x2[0, :, 16, :] = 0.0
    with torch.no_grad():
        d = (model(x2) - model(x)).abs().sum(1)[0]
    assert d[16].mean() > 2 * d[12].mean()


@pytest.mark.parametrize("skip", ["concat", "add"])
def test_small_unet_skip_variants_see_a_one_pixel_line(skip):
    torch.manual_seed(0)
    model = create_model("small-unet", 2, channels=(8, 16, 32), skip=skip).eval()
    assert model.init_kwargs["skip"] == skip
    x = torch.full((1, 3, 32, 32), 0.5)
    x2 = x.clone()
    x2[0, :, 16, :] = 0.0
    with torch.no_grad():
        d = (model(x2) - model(x)).abs().sum(1)[0]
    assert model(x).shape == (1, 2, 32, 32)
    assert d[16].mean() > 2 * d[12].mean()


def test_small_unet_add_skip_is_smaller_and_checked():
    concat = create_model("small-unet", 2)
    add = create_model("small-unet", 2, skip="add")
    assert count_parameters(add) < count_parameters(concat)
    with pytest.raises(ConfigError, match="skip"):
        create_model("small-unet", 2, skip="sum")


def test_a_checkpoint_from_before_skip_rebuilds_as_concat(tmp_path):
    """Checkpoints written before ``skip`` existed store no such key: they load as concat."""
    from synth2real.segment.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = create_model("small-unet", 2, channels=(8, 16)).eval()
    model.init_kwargs = {"channels": [8, 16], "norm": "bn"}  # what older versions stored
    save_checkpoint(tmp_path / "m.safetensors", model, {})
    loaded_model, meta = load_checkpoint(tmp_path / "m.safetensors")
    assert "skip" not in meta["model_kwargs"]
    assert loaded_model.skip == "concat"
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded_model.eval()(x), model(x))


def test_small_unet_groupnorm_variant():
    model = create_model("small-unet", 2, channels=(8, 16), norm="gn")
    assert model.stride == 2
    assert model(torch.rand(1, 3, 8, 8)).shape == (1, 2, 8, 8)


def test_segformer_tiny_random_config():
    model = create_model("segformer", 4, pretrained=False, config=TINY_SEGFORMER)
    assert model.stride == 32
    out = model(torch.rand(1, 3, 64, 96))
    assert out.shape == (1, 4, 64, 96)
    assert model.init_kwargs["config"]["hidden_sizes"] == [8, 16, 16, 16]


def test_segformer_without_reachable_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # default weights not cached and offline: random init with a clear warning
    with pytest.warns(UserWarning, match="random init"):
        model = create_model("segformer", 2, config=TINY_SEGFORMER, weights="nobody/no-such-model")
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 2, 32, 32)
    # weights the user demanded explicitly: an error
    with pytest.raises(ModelNotFoundError, match="not found"):
        create_model("segformer", 2, pretrained="nobody/no-such-model")
    with pytest.raises(ModelNotFoundError):
        create_model("segformer", 2, pretrained=str(tmp_path / "missing-folder"))


def test_segformer_loads_a_local_folder(tmp_path):
    src = create_model("segformer", 3, pretrained=False, config=TINY_SEGFORMER)
    src.net.save_pretrained(tmp_path / "weights")
    model = create_model("segformer", 2, pretrained=str(tmp_path / "weights"))
    a, b = dict(src.net.named_parameters()), dict(model.net.named_parameters())
    enc = [k for k in a if "patch_embeddings" in k and k.endswith("proj.weight")]
    assert enc and all(torch.equal(a[k], b[k]) for k in enc)  # encoder weights from the folder
    assert model.num_classes == 2
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 2, 32, 32)
