"""The one interface every translation method implements.

A method is *prepared* once from the references (real images, with label maps when the
user has them), then *applied* to each synthetic ``(image, label)`` pair, returning an
image of exactly the same size. Parameters are plain ``__init__`` arguments, documented
in the class docstring (``Args:`` section) with their defaults, or the fields of a
parameter dataclass the class names as ``config_class`` (documented in its docstring);
the registry reads them from there, so the CLI, presets and docs cannot drift from the
code. A family of methods whose parameters are shared writes them once, in its base
class, and hands them on with :func:`inherit_parameters`.

Shapes: ``image`` is ``HxWx3 uint8 RGB``; ``label`` is ``HxW uint8`` class indices with
``classes.ignore_index`` for pixels of no class.
"""

from __future__ import annotations

import inspect
import typing
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from synth2real.data.classes import ClassSpec
from synth2real.errors import ConfigError


@dataclass
class References:
    """The real reference images a method adapts towards.

    Attributes:
        images: ``HxWx3 uint8`` RGB images (sizes may differ from each other).
        labels: one ``HxW uint8`` label map per image, or ``None`` where unlabelled.
        names: a name per image (recorded in the manifest).
        classes: the class spec the label maps use (the content's class spec).
        predicted: ``True`` for each label map that was predicted by a model rather
            than drawn by a person (recorded in the manifest and the report).
        root: the folder the references were read from (recorded), or ``None``.
    """

    images: list[np.ndarray]
    labels: list[np.ndarray | None]
    names: list[str]
    classes: ClassSpec
    predicted: list[bool] = field(default_factory=list)
    root: str | None = None

    def __post_init__(self) -> None:
        if not self.images:
            raise ConfigError("at least one reference image is needed")
        if len(self.labels) != len(self.images) or len(self.names) != len(self.images):
            raise ConfigError("references: images, labels and names differ in length")
        if not self.predicted:
            self.predicted = [False] * len(self.images)
        for name, img, lab in zip(self.names, self.images, self.labels, strict=True):
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ConfigError(
                    f"reference {name}: expected HxWx3 uint8, got {img.shape} {img.dtype}"
                )
            if lab is not None and lab.shape != img.shape[:2]:
                raise ConfigError(
                    f"reference {name}: label map {lab.shape} differs from image {img.shape[:2]}"
                )

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labelled(self) -> bool:
        """True when every reference has a label map."""
        return all(lab is not None for lab in self.labels)

    def class_frequencies(self) -> np.ndarray:
        """``len x num_classes`` pixel shares per reference (zeros where unlabelled)."""
        k = self.classes.num_classes
        out = np.zeros((len(self), k), dtype=np.float64)
        for i, lab in enumerate(self.labels):
            if lab is None:
                continue
            counts = np.bincount(lab.ravel(), minlength=256)[:k]
            total = counts.sum()
            if total:
                out[i] = counts / total
        return out


class Method(ABC):
    """Base class of every translation method (classical or diffusion).

    Subclasses document their parameters in an ``Args:`` docstring section, store them in
    ``__init__``, and implement :meth:`apply`. Class attributes say what the method needs.
    """

    #: registry name, set by :func:`~synth2real.methods.registry.register`.
    name: ClassVar[str] = ""
    #: True when the method needs label maps of the references (class-wise methods).
    #: A class default; methods whose presets differ set it per instance in ``__init__``.
    needs_reference_labels: bool = False
    #: True when the method needs a GPU to be practical (diffusion).
    needs_gpu: ClassVar[bool] = False
    #: How many content images :meth:`apply_batch` should receive at once.
    batch_size: int = 1
    #: A dataclass whose fields are the method's parameters (types, defaults, and the
    #: ``Args:`` documentation of its docstring); the instance keeps it as ``config``.
    #: ``None``: the parameters are the ``__init__`` arguments.
    config_class: ClassVar[type | None] = None

    @classmethod
    def compatible_parameters(cls) -> list[inspect.Parameter]:
        """Parameter names accepted (for compatibility) that do nothing for this method;
        they are created and parsed like the others but not listed."""
        return []

    def __init__(self) -> None:
        self.references: References | None = None

    # -- life cycle --------------------------------------------------------------------
    def prepare(self, references: References) -> None:
        """Compute whatever depends only on the references (statistics, inversions).

        Called once before the first :meth:`apply`. Subclasses that override it call
        ``super().prepare(references)`` first.
        """
        if self.needs_reference_labels and not references.labelled:
            missing = [
                n for n, lab in zip(references.names, references.labels, strict=True) if lab is None
            ]
            raise ConfigError(
                f"method {self.name!r} is class-wise and needs a label map for every "
                f"reference; unlabelled: {missing[:5]}. Give labelled references, use a "
                "global method, or predict reference label maps with a segmentation "
                "model (`translate --reference-labels-from MODEL.safetensors`, or "
                "load_references(..., predictor=...); see docs/METHODS.md)."
            )
        self.references = references

    @abstractmethod
    def apply(self, image: np.ndarray, label: np.ndarray | None, ref: int) -> np.ndarray:
        """Translate one image.

        Args:
            image: ``HxWx3 uint8`` RGB synthetic image.
            label: its ``HxW uint8`` label map (class indices), or ``None``.
            ref: index into the prepared references of the reference chosen for this image
                (methods that pool all references may ignore it).

        Returns:
            ``HxWx3 uint8`` RGB image of exactly the input's size.
        """

    def apply_batch(
        self,
        images: Sequence[np.ndarray],
        labels: Sequence[np.ndarray | None],
        refs: Sequence[int],
        seeds: Sequence[int] | None = None,
    ) -> list[np.ndarray]:
        """Translate several images; the default loops over :meth:`apply`.

        Args:
            images, labels, refs: as for :meth:`apply`, one entry per image.
            seeds: one seed per image (from :func:`image_seed`: the run's seed and the
                sample's name), or ``None``. Methods that draw random numbers must draw
                them from these seeds only, so that an image's output does not depend on
                the number of workers, the shard, or which images share its batch.
                Deterministic methods ignore them.
        """
        return [self.apply(im, lab, r) for im, lab, r in zip(images, labels, refs, strict=True)]

    def reference_indices(self, ref: int) -> list[int]:
        """Indices of the references whose pixels shape the output for chosen ``ref``.

        Recorded in the manifest. The default is the chosen reference alone; methods that
        pool statistics over all references return every index.
        """
        return [ref]

    # -- introspection -----------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """The method's parameters as given to ``__init__`` (recorded in the manifest)."""
        holder = self if self.config_class is None else getattr(self, "config", None)
        out = {}
        for p in _init_params(type(self)):
            if hasattr(holder, p.name):
                v = getattr(holder, p.name)
                out[p.name] = list(v) if isinstance(v, tuple) else v
        return out

    def check_prepared(self) -> References:
        if self.references is None:
            raise RuntimeError(f"{type(self).__name__}.prepare(references) was not called")
        return self.references

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


def image_seed(seed: int, name: str) -> int:
    """A 63-bit seed for one image from the run's ``seed`` and the sample's ``name``.

    Stable across processes, machines and Python versions (BLAKE2b, not ``hash()``), so an
    image gets the same random numbers whatever the order, worker or shard it runs in.
    """
    import hashlib

    digest = hashlib.blake2b(f"{int(seed)}\x00{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def config_parameters(config: type) -> list[inspect.Parameter]:
    """The fields of parameter dataclass ``config`` as keyword-only parameters, with their
    defaults and resolved type annotations."""
    hints = typing.get_type_hints(config)
    kind = inspect.Parameter.KEYWORD_ONLY
    return [
        inspect.Parameter(f.name, kind, default=f.default, annotation=hints[f.name])
        for f in fields(config)
    ]


def _init_params(cls: type) -> list[inspect.Parameter]:
    """The parameters of method class ``cls``: its ``config_class`` fields and then its
    :meth:`~Method.compatible_parameters`, or else its ``__init__`` arguments."""
    config = getattr(cls, "config_class", None)
    if config is not None:
        return config_parameters(config) + list(cls.compatible_parameters())
    sig = inspect.signature(cls.__init__)
    return [
        p
        for p in sig.parameters.values()
        if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


# -- inherited parameters ------------------------------------------------------------------
def inherit_parameters(cls: type, parent: type) -> None:
    """Give method class ``cls`` the parameters and ``Args:`` documentation of ``parent``.

    For subclasses whose ``__init__(self, *, own..., **common)`` passes ``**common`` on to
    ``parent``: the signature becomes ``parent``'s parameters followed by ``cls``'s own
    (all keyword-only, with evaluated annotations), and the docstring's ``Args:`` section
    lists ``parent``'s entries (replaced by ``cls``'s own entry for a parameter it
    documents again) and then ``cls``'s others. The registry, ``synth2real methods NAME``
    and ``help()`` read both, so a shared parameter is written and documented once.
    Call it from the parent's ``__init_subclass__``.
    """
    if "__init__" in vars(cls):
        _extend_signature(cls.__init__, parent.__init__)
    cls.__doc__ = _extend_args_doc(cls.__doc__ or "", parent.__doc__ or "")


def _extend_signature(init: Any, parent_init: Any) -> None:
    """Give ``init(self, *, own..., **common)`` the signature and evaluated annotations
    of ``parent_init``'s parameters followed by its own (keyword-only, as it takes them).

    A subclass ``__init__`` without ``**common`` spells out its signature and is left as
    it is.
    """
    sig = inspect.signature(init)
    params = list(sig.parameters.values())
    var_kw = [p for p in params if p.kind is p.VAR_KEYWORD]
    if not var_kw:
        return
    own = [p for p in params[1:] if p.kind is p.KEYWORD_ONLY]
    names = {p.name for p in own}
    inherited = [
        p.replace(kind=p.KEYWORD_ONLY)
        for p in list(inspect.signature(parent_init).parameters.values())[1:]
        if p.name not in names
    ]
    hints = {**typing.get_type_hints(parent_init), **typing.get_type_hints(init)}
    merged = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in inherited + own]
    init.__signature__ = sig.replace(parameters=[params[0], *merged])
    init.__annotations__ = {p.name: hints[p.name] for p in merged if p.name in hints}
    init.__annotations__["return"] = None


def _args_entries(doc: str) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """Split a Google-style docstring: (lines before ``Args:``, {name: entry lines},
    lines after the section); the lines are dedented (``inspect.cleandoc``)."""
    lines = inspect.cleandoc(doc).splitlines()
    if "Args:" not in lines:
        return lines, {}, []
    start = lines.index("Args:")
    entries: dict[str, list[str]] = {}
    end = len(lines)
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if line and not line.startswith(" "):
            end = i
            break
        if line.startswith("    ") and not line.startswith("     ") and ":" in line:
            entries[line.split(":", 1)[0].strip()] = [line]
        elif entries and line.strip():
            entries[list(entries)[-1]].append(line)
    return lines[:start], entries, lines[end:]


def _extend_args_doc(doc: str, parent_doc: str) -> str:
    """``doc`` whose ``Args:`` section lists ``parent_doc``'s entries (in their order, each
    replaced by ``doc``'s own entry for it where there is one), then ``doc``'s others."""
    head, own, rest = _args_entries(doc)
    _, inherited, _ = _args_entries(parent_doc)
    entries = {k: own.get(k, v) for k, v in inherited.items()}
    entries.update((k, v) for k, v in own.items() if k not in entries)
    if not entries:
        return doc
    body = [line for lines in entries.values() for line in lines]
    while head and not head[-1].strip():
        head.pop()
    return "\n".join([*head, "", "Args:", *body, *([""] + rest if rest else [])]) + "\n"


def check_output(image: np.ndarray, out: np.ndarray, method: str) -> np.ndarray:
    """Validate a method's output against its input (same size, uint8 RGB)."""
    if out.shape != image.shape or out.dtype != np.uint8:
        raise RuntimeError(
            f"method {method!r} returned {out.shape} {out.dtype} for input {image.shape} uint8"
        )
    return out
