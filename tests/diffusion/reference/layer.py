"""One attention layer run by the official CACTIF processor and by synth2real's processor
classes, on the same diffusers ``Attention`` module and hidden states ``[out, style,
content]`` (used by ``test_parity_attention.py`` and ``benchmarks/parity_probe.py``)."""

from __future__ import annotations

import tempfile
import types
from pathlib import Path

import torch

from . import loader

HW = (8, 16)  # the layer's token grid (the reference's filter assumes width = 2 x height)
TOKENS = HW[0] * HW[1]
CHANNELS, HEADS = 32, 4
#: two style positions whose keys are equal and whose values differ
TIED = (5, 77)
#: out tokens whose query is zero in :func:`zero_queries`
ZERO_QUERIES = 24


def attention_module(seed: int = 0):
    """A diffusers ``Attention`` (self-attention, 4 heads of 8 channels)."""
    from diffusers.models.attention_processor import Attention

    torch.manual_seed(seed)
    return Attention(
        query_dim=CHANNELS, heads=HEADS, dim_head=CHANNELS // HEADS, bias=False, out_bias=True
    ).eval()


def hidden_states(seed: int = 1) -> torch.Tensor:
    """``(3, TOKENS, CHANNELS)`` random rows, scaled for peaked attention."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn((3, TOKENS, CHANNELS), generator=g) * 3


def tied_keys(attn, hidden: torch.Tensor) -> torch.Tensor:
    """Force argmax ties whose tie-break matters: ``to_k`` ignores channel 0, the style
    tokens at :data:`TIED` differ only there (equal keys, different values) and dominate
    the attention, and the out tokens at those positions are equal (so the official
    sharpening centres both columns on the same row mean and keeps the tie)."""
    with torch.no_grad():
        attn.to_k.weight[:, 0] = 0
    h = hidden.clone()
    j1, j2 = TIED
    h[1, j1] = h[1, j1] * 3
    h[1, j2] = h[1, j1]
    h[1, j2, 0] += 4.0
    h[0, j2] = h[0, j1]
    return h


def zero_queries(hidden: torch.Tensor) -> torch.Tensor:
    """The first :data:`ZERO_QUERIES` out tokens zero (``to_q`` has no bias): their
    attention is uniform, every style key ties (the degenerate case)."""
    h = hidden.clone()
    h[0, :ZERO_QUERIES] = 0
    return h


def official_processor(attn, *, filtering: bool):
    """The official processor bound to a ``CACTIFModel`` whose "UNet" holds ``attn``."""
    ref = loader.cactif()
    tmp = tempfile.TemporaryDirectory()
    cfg = ref.config.RunConfig(latents_path=Path(tmp.name), filtering=filtering)
    pipe = types.SimpleNamespace(
        unet=torch.nn.ModuleDict({"up_blocks": torch.nn.ModuleList([attn])})
    )
    model = ref.cactif_model.CACTIFModel(cfg, pipe=pipe)
    model.enable_edit = True
    model._tmp = tmp  # keep the folder as long as the model
    return model, attn.processor


def official(attn, hidden, *, filtering: bool, step: int = 5) -> tuple[torch.Tensor, bool]:
    """The official processor's output at model step ``step``, and whether it swapped."""
    model, proc = official_processor(attn, filtering=filtering)
    model.step = step
    with torch.no_grad(), loader.cuda_is_cpu(), loader.token_counts_for(HW) as mixed:
        out = proc(attn, hidden.clone(), perform_swap=True)
    return out, bool(mixed)


def processor(attn, hidden, *, filtering: bool, chunk_size=None) -> torch.Tensor:
    """synth2real's processor class (``SwapProcessor``, ``FilteredSwapProcessor``: what
    the walk installs) on ``attn`` for the rows ``[out, style, content]``."""
    from synth2real.diffusion.processors import FilteredSwapProcessor, SwapLayout, SwapProcessor

    layout = SwapLayout(1, 1, torch.zeros(1, dtype=torch.long), 1.67, chunk_size)
    proc = (
        FilteredSwapProcessor("layer", layout, 0.25)
        if filtering
        else SwapProcessor("layer", layout)
    )
    original = attn.processor
    attn.set_processor(proc)
    try:
        with torch.no_grad():
            return attn(hidden.clone())
    finally:
        attn.set_processor(original)


def row_differences(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """Max abs difference per batch row (out, style, content)."""
    return [float((a[r] - b[r]).abs().max()) for r in range(a.shape[0])]
