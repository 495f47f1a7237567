"""The name registry shared by the methods and the segmentation models."""

from __future__ import annotations

import pytest

from synth2real.errors import ConfigError
from synth2real.methods import list_methods
from synth2real.methods.registry import get_entry, register_lazy
from synth2real.registry import Registry
from synth2real.segment.models import get_model_entry, list_models, register_model


def test_a_registry_keeps_order_refuses_twice_and_names_what_exists():
    reg: Registry[int] = Registry("widget")
    reg.add("b", 2)
    reg.add("a", 1)
    assert reg.names() == ["b", "a"] and list(reg) == ["b", "a"] and len(reg) == 2
    assert "a" in reg and "c" not in reg and reg.get("a") == 1
    assert dict(reg.items()) == {"b": 2, "a": 1}
    with pytest.raises(ValueError, match="widget name 'a' registered twice"):
        reg.add("a", 3)
    assert reg.get("a") == 1  # the first registration stays
    with pytest.raises(ConfigError, match="unknown widget 'c'; available: b, a"):
        reg.get("c")


def test_methods_and_models_use_it():
    with pytest.raises(ConfigError, match="unknown method 'nope'; available: none, "):
        get_entry("nope")
    with pytest.raises(ValueError, match="method name 'cacti' registered twice"):
        register_lazy("cacti", "synth2real.diffusion.cross_image:CrossImageMethod", summary="")
    assert list_methods()[-5:] == ["adain-diffusion", "cross-image", "cacti", "cactif", "styleid"]
    with pytest.raises(ConfigError, match="unknown model 'nope'; available: small-unet"):
        get_model_entry("nope")
    with pytest.raises(ValueError, match="model name 'small-unet' registered twice"):
        register_model("small-unet", summary="", default_lr=1.0)(object)
    assert list_models()[0] == "small-unet"
