"""docs/DIFFUSION.md matches the code: every parameter of every pipeline with its default,
every preset with its overrides."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from synth2real.diffusion.config import CrossImageConfig, DiffusionConfig, StyleIDConfig
from synth2real.methods.presets import PRESETS
from synth2real.methods.registry import get_entry

DOC = Path(__file__).resolve().parents[2] / "docs" / "DIFFUSION.md"
CONFIGS = (DiffusionConfig, CrossImageConfig, StyleIDConfig)


def tables() -> dict[str, tuple[str, dict[str, str]]]:
    """``{config class name: (heading, {parameter: default column})}`` from the parameter
    tables, each under a ``###`` heading that names its config class."""
    out: dict[str, tuple[str, dict[str, str]]] = {}
    rows: dict[str, str] | None = None
    for line in DOC.read_text().splitlines():
        heading = re.match(r"^### .*\(`(\w+Config)`\)$", line)
        if heading:
            rows = {}
            out[heading.group(1)] = (line, rows)
            continue
        if line.startswith("#"):
            rows = None
        m = re.match(r"^\| `(\w+)` \| (.+?) \| .+ \|$", line)
        if m and rows is not None:
            rows[m.group(1)] = m.group(2)
    return out


def render(value) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, str):
        return f"`{value}`"
    return str(value)


def own_fields(config: type) -> list:
    inherited = (
        {f.name for f in fields(DiffusionConfig)} if config is not DiffusionConfig else set()
    )
    return [f for f in fields(config) if f.name not in inherited]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.__name__)
def test_each_pipeline_table_lists_its_parameters_with_their_defaults(config):
    assert config.__name__ in tables(), f"docs/DIFFUSION.md has no table for {config.__name__}"
    _, rows = tables()[config.__name__]
    want = own_fields(config)
    assert {f.name for f in want} == set(rows), config.__name__
    for f in want:
        assert rows[f.name].startswith(render(f.default)), (f.name, rows[f.name])


def test_every_preset_is_documented_with_its_overrides():
    text = DOC.read_text()
    rows = tables()
    for name, (_, _, overrides) in PRESETS.items():
        assert f"| `{name}` |" in text, f"preset {name} missing from the preset table"
        config = get_entry(name).resolve().config_class
        heading, table = rows[config.__name__]
        assert f"`{name}`" in heading, f"{name} is not named above {config.__name__}'s table"
        for key, value in overrides.items():
            assert value != getattr(config, key), f"{name}: {key} overrides nothing"
            assert name in table[key], f"{key}: the {name} preset's value is not documented"
