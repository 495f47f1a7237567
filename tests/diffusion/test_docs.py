"""docs/DIFFUSION.md matches the code: every parameter, its default, every preset."""

from __future__ import annotations

import re
from pathlib import Path

from synth2real.diffusion.method import DiffusionMethod
from synth2real.diffusion.presets import PRESETS
from synth2real.methods.base import _init_params

DOC = Path(__file__).resolve().parents[2] / "docs" / "DIFFUSION.md"


def table_rows() -> dict[str, str]:
    rows = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"^\| `(\w+)` \| (.+?) \| .+ \|$", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def render(value) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, str):
        return f"`{value}`"
    return str(value)


def test_parameter_table_lists_every_parameter_with_its_default():
    rows = table_rows()
    params = _init_params(DiffusionMethod)
    assert {p.name for p in params} <= set(rows), "parameters missing from docs/DIFFUSION.md"
    for p in params:
        assert rows[p.name].startswith(render(p.default)), (p.name, rows[p.name], render(p.default))


def test_every_preset_is_documented_with_its_overrides():
    text = DOC.read_text()
    rows = table_rows()
    defaults = {p.name: p.default for p in _init_params(DiffusionMethod)}
    for name, (_, overrides) in PRESETS.items():
        assert f"| `{name}` |" in text, f"preset {name} missing from the preset table"
        for key, value in overrides.items():
            if value != defaults[key]:
                assert name in rows[key], f"{key}: the {name} preset's value is not documented"
