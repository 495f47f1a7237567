"""Properties every classical method shares: registry, documentation, sizes, determinism."""

import numpy as np
import pytest

from synth2real.errors import ConfigError
from synth2real.methods import References, create_method, describe, list_methods
from synth2real.methods.registry import parse_param
from tests.methods.scenes import CLASSES, references, scene

CLASSICAL = [
    "none",
    "reinhard",
    "reinhard-cw",
    "reinhard-cwc",
    "histmatch",
    "histmatch-cw",
    "histmatch-cwc",
    "fda",
]
CLASSWISE = [n for n in CLASSICAL if "-cw" in n]


def test_registry_lists_every_classical_method_in_order():
    assert list_methods("classical")[: len(CLASSICAL)] == CLASSICAL


@pytest.mark.parametrize("name", CLASSICAL)
def test_every_parameter_is_documented_with_its_default(name):
    entry, params = describe(name)
    assert entry.summary
    for p in params:
        assert p.doc, f"{name}.{p.name} has no Args: entry"
        assert "Default" in p.doc or name == "none", (
            f"{name}.{p.name} doc does not state its default"
        )


@pytest.mark.parametrize("name", CLASSICAL)
def test_params_round_trip_through_the_registry(name):
    m = create_method(name)
    again = create_method(name, **m.params())
    assert again.params() == m.params()
    assert m.name == name


def test_none_is_the_identity_and_returns_a_copy():
    img, label = scene(33, 47, 0)
    m = create_method("none")
    m.prepare(references())
    out = m.apply(img, label, 0)
    np.testing.assert_array_equal(out, img)
    assert out is not img and not np.shares_memory(out, img)


@pytest.mark.parametrize("name", CLASSICAL)
def test_odd_sizes_grayscale_and_differently_sized_references(name):
    refs = references(sizes=((41, 77), (120, 33), (64, 64)))
    gray = refs.images[1].mean(axis=2, keepdims=True).astype(np.uint8).repeat(3, axis=2)
    refs = References([refs.images[0], gray, refs.images[2]], refs.labels, refs.names, CLASSES)
    m = create_method(name)
    m.prepare(refs)
    for h, w in [(37, 91), (91, 37), (1, 5), (256, 9)]:
        img, label = scene(h, w, h * w)
        out = m.apply(img, label, 1)
        assert out.shape == img.shape and out.dtype == np.uint8
        np.testing.assert_array_equal(out, m.apply(img, label, 1))  # deterministic
        if name != "none" and h * w > 100:
            assert not np.array_equal(out, img)


@pytest.mark.parametrize("name", CLASSWISE)
def test_classwise_methods_refuse_unlabelled_references(name):
    refs = references()
    unlabelled = References(refs.images, [refs.labels[0], None, None], refs.names, CLASSES)
    with pytest.raises(ConfigError, match="ref1"):
        create_method(name).prepare(unlabelled)


def test_inputs_are_validated():
    m = create_method("reinhard-cw")
    m.prepare(references())
    img, label = scene(20, 20, 1)
    with pytest.raises(ValueError, match="HxWx3"):
        m.apply(img[..., 0], label, 0)
    with pytest.raises(ValueError, match="differs"):
        m.apply(img, label[:10], 0)
    with pytest.raises(IndexError):
        m.apply(img, label, 7)
    with pytest.raises(RuntimeError, match="prepare"):
        create_method("fda").apply(img, label, 0)


def test_cli_values_are_parsed_to_the_parameter_types():
    assert parse_param("fda", "beta", "0.05") == 0.05
    assert parse_param("reinhard", "pooled", "false") is False
    assert parse_param("histmatch-cwc", "thin_classes", "crack,road") == "crack,road"
    assert create_method("histmatch-cwc", thin_classes="crack, road").thin_classes == (
        "crack",
        "road",
    )
    assert parse_param("reinhard-cwc", "contrast", "preserve") == "preserve"
    with pytest.raises(ConfigError):
        parse_param("reinhard", "contrast", "sharpen")
    with pytest.raises(ConfigError, match="no parameter"):
        parse_param("fda", "alpha", "1")


def test_inherit_parameters_merges_signature_and_args_docs():
    """A subclass taking ``**common`` gets its parent's parameters first, then its own,
    and an ``Args:`` section with the parent's entries (its own where it redefines one)."""
    import inspect

    from synth2real.methods.base import Method, inherit_parameters
    from synth2real.methods.registry import parse_args_doc

    class Parent(Method):
        """Parent.

        Args:
            alpha: first, in 0..1. Default ``0.5``.
            beta: second. Default ``2``.
        """

        def __init__(self, alpha: float = 0.5, beta: int = 2):
            super().__init__()
            self.alpha, self.beta = alpha, beta

        def __init_subclass__(cls, **kwargs):
            super().__init_subclass__(**kwargs)
            inherit_parameters(cls, cls.__mro__[1])

        def apply(self, image, label, ref):
            return image

    class Child(Parent):
        """Child.

        Args:
            beta: second, said more precisely. Default ``2``.
            gamma: own. Default ``"x"``.

        Returns nothing in particular.
        """

        def __init__(self, *, gamma: str = "x", **common):
            super().__init__(**common)
            self.gamma = gamma

    sig = inspect.signature(Child)
    assert list(sig.parameters) == ["alpha", "beta", "gamma"]
    assert all(p.kind is p.KEYWORD_ONLY for p in sig.parameters.values())
    assert sig.parameters["alpha"].annotation is float
    assert sig.parameters["alpha"].default == 0.5
    docs = parse_args_doc(Child.__doc__)
    assert list(docs) == ["alpha", "beta", "gamma"]
    assert docs["alpha"].startswith("first, in 0..1") and "more precisely" in docs["beta"]
    assert Child.__doc__.rstrip().endswith("Returns nothing in particular.")
    assert Child(alpha=0.1, gamma="y").params() == {"alpha": 0.1, "beta": 2, "gamma": "y"}
