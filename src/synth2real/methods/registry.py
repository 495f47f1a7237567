"""Methods and presets by name (timm-style): ``create_method("reinhard-cw", seed=0)``.

A registry entry is a method class plus default overrides (a *preset*), so one class can
appear under several names (``reinhard``, ``reinhard-cw``) and the diffusion presets
(``cacti``, ``cactif`` ...) are named sets of parameters, not subclasses. Entries may name
their class lazily as ``"module:Class"`` so listing methods never imports torch/diffusers
(the diffusion presets are data: :mod:`synth2real.methods.presets`).
"""

from __future__ import annotations

import importlib
import inspect
import re
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from synth2real.errors import ConfigError
from synth2real.methods.base import Method, _init_params
from synth2real.registry import Registry


@dataclass
class MethodEntry:
    name: str
    target: type[Method] | str  # the class, or "package.module:ClassName"
    defaults: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    family: str = "classical"  # "classical" or "diffusion"

    def resolve(self) -> type[Method]:
        if isinstance(self.target, str):
            module, _, attr = self.target.partition(":")
            self.target = getattr(importlib.import_module(module), attr)
        return self.target  # type: ignore[return-value]


_REGISTRY: Registry[MethodEntry] = Registry("method")


def register(name: str, *, summary: str = "", family: str = "classical", **defaults: Any):
    """Class decorator: register ``cls`` under ``name`` with preset ``defaults``.

    Stack it to register several presets of one class.
    """

    def deco(cls: type[Method]) -> type[Method]:
        _REGISTRY.add(
            name, MethodEntry(name, cls, dict(defaults), summary or _first_line(cls), family)
        )
        if not cls.name:
            cls.name = name
        return cls

    return deco


def register_lazy(
    name: str, target: str, *, summary: str, family: str = "diffusion", **defaults: Any
) -> None:
    """Register ``"module:Class"`` under ``name`` without importing it."""
    _REGISTRY.add(name, MethodEntry(name, target, dict(defaults), summary, family))


def _ensure_loaded() -> None:
    # importing the package registers the built-in methods
    importlib.import_module("synth2real.methods")


def list_methods(family: str | None = None) -> list[str]:
    """Registered method names (optionally only ``"classical"`` or ``"diffusion"``)."""
    _ensure_loaded()
    return [n for n, e in _REGISTRY.items() if family is None or e.family == family]


def get_entry(name: str) -> MethodEntry:
    _ensure_loaded()
    return _REGISTRY.get(name)


def create_method(name: str, **overrides: Any) -> Method:
    """Instantiate method ``name`` with its preset defaults updated by ``overrides``.

    Raises:
        ConfigError: unknown method or parameter, or a value of the wrong type.
    """
    entry = get_entry(name)
    cls = entry.resolve()
    known = {p.name: p for p in _init_params(cls)}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ConfigError(
            f"method {name!r} has no parameter(s) {unknown}; parameters: {sorted(known)}"
        )
    kwargs = {**entry.defaults, **overrides}
    try:
        method = cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"method {name!r}: {e}") from e
    method.name = name  # instance attribute: the preset's name, not the class's
    return method


@dataclass
class ParamInfo:
    name: str
    default: Any
    annotation: str
    doc: str


def describe(name: str) -> tuple[MethodEntry, list[ParamInfo]]:
    """The entry and its parameters (defaults after the preset, docs from the docstring)."""
    entry = get_entry(name)
    cls = entry.resolve()
    docs = _param_docs(cls)
    hints = _type_hints(cls)
    hidden = {p.name for p in cls.compatible_parameters()}
    out = []
    for p in _init_params(cls):
        if p.name in hidden:
            continue
        default = entry.defaults.get(p.name, p.default)
        if default is inspect.Parameter.empty:
            default = None
        ann = hints.get(p.name, p.annotation)
        ann_s = ann if isinstance(ann, str) else getattr(ann, "__name__", str(ann))
        out.append(
            ParamInfo(p.name, default, str(ann_s).replace("typing.", ""), docs.get(p.name, ""))
        )
    return entry, out


def parse_param(name: str, key: str, raw: str) -> Any:
    """Convert a CLI ``key=value`` string to the type of ``name``'s parameter ``key``."""
    entry = get_entry(name)
    cls = entry.resolve()
    params = {p.name: p for p in _init_params(cls)}
    if key not in params:
        raise ConfigError(f"method {name!r} has no parameter {key!r}; parameters: {sorted(params)}")
    hint = _type_hints(cls).get(key, params[key].annotation)
    default = entry.defaults.get(key, params[key].default)
    return _coerce(raw, hint, default, f"{name}.{key}")


def _coerce(raw: str, hint: Any, default: Any, what: str) -> Any:
    import yaml

    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    candidates = (
        args
        if origin in (typing.Union, getattr(__import__("types"), "UnionType", None))
        else (hint,)
    )
    if value is None and (type(None) in candidates or default is None):
        return None
    for c in candidates:
        if c is bool and isinstance(value, bool):
            return value
        if c is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if c is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if c is str:
            return str(raw)
        if typing.get_origin(c) in (tuple, list) and isinstance(value, (list, tuple)):
            return tuple(value)
        if typing.get_origin(c) is typing.Literal and value in typing.get_args(c):
            return value
    if hint is inspect.Parameter.empty:
        return value
    raise ConfigError(f"{what}: cannot read {raw!r} as {hint}")


def _type_hints(cls: type) -> dict[str, Any]:
    if getattr(cls, "config_class", None) is not None:
        return {p.name: p.annotation for p in _init_params(cls)}
    try:
        return typing.get_type_hints(cls.__init__)
    except Exception:
        return {}


def _param_docs(cls: type) -> dict[str, str]:
    """``{parameter: doc}`` from the ``Args:`` section of the class docstring, or of its
    ``config_class`` and the dataclasses that one extends (the most derived wins)."""
    config = getattr(cls, "config_class", None)
    if config is None:
        return parse_args_doc(cls.__doc__ or "")
    docs: dict[str, str] = {}
    for klass in reversed(config.__mro__):
        docs.update(parse_args_doc(vars(klass).get("__doc__") or ""))
    return docs


def _first_line(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


_ARG_RE = re.compile(r"^\s{4}(\w+)\s*(\([^)]*\))?:\s*(.*)$")


def parse_args_doc(doc: str) -> dict[str, str]:
    """Google-style ``Args:`` section -> {name: description}."""
    doc = inspect.cleandoc(doc)
    out: dict[str, str] = {}
    in_args = False
    current = None
    for line in doc.splitlines():
        if line.strip() in ("Args:", "Arguments:", "Parameters:"):
            in_args = True
            continue
        if in_args:
            if line and not line.startswith(" "):
                break
            m = _ARG_RE.match(line)
            if m:
                current = m.group(1)
                out[current] = m.group(3).strip()
            elif current and line.strip():
                out[current] += " " + line.strip()
    return out


def parse_method_params(
    items: Iterable[str] | None, method: str | None = None, *, option: str = "--param"
) -> dict[str, dict[str, Any]]:
    """``--param`` items -> ``{method: {parameter: value}}``: the one parser of method
    parameters given as text (``translate --param``, ``pilot --param``).

    An item is ``METHOD.KEY=VALUE``. With ``method`` given (a command that runs one
    method), ``KEY=VALUE`` is short for ``method.KEY=VALUE``. Each value is read as the
    parameter's type (:func:`parse_param`).

    Raises:
        ConfigError: naming the item: not ``[METHOD.]KEY=VALUE``, another method than
            ``method``, an unknown method or parameter, a value of the wrong type.
    """
    form = "KEY=VALUE" if method is not None else "METHOD.KEY=VALUE"
    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        name, dot, param = key.strip().rpartition(".")
        if not sep or not param or (dot and not name) or (not dot and method is None):
            raise ConfigError(f"{option}: expected {form}, got {item!r}")
        name = name if dot else str(method)
        if method is not None and name != method:
            raise ConfigError(f"{option} {item}: this command runs {method!r}, not {name!r}")
        try:
            value = parse_param(name, param, raw)
        except ConfigError as e:
            raise ConfigError(f"{option} {item}: {e}") from None
        out.setdefault(name, {})[param] = value
    return out
