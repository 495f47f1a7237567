"""Device choice and thread settings shared by training, evaluation and prediction."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from synth2real.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA, else Apple MPS, else CPU; ``"cuda:1"`` etc. pass through.

    Raises:
        ConfigError: unknown device, or an explicit device that is not available.
    """
    if isinstance(device, torch.device):
        return device
    d = str(device).strip().lower()
    if d == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = d.split(":")[0]
    if kind not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device must be one of {DEVICES} (or cuda:N), got {device!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device 'cuda' asked for, but torch sees no CUDA GPU (CPU build or no driver)"
        )
    if kind == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ConfigError("device 'mps' asked for, but it is not available")
    return torch.device(d)


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX tiles), where bf16
    autocast is faster than fp32; elsewhere oneDNN emulates it (``cpu_amp="auto"``)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` (no change when ``None``)."""
    if not n:
        yield
        return
    if n < 1:
        raise ConfigError(f"num_threads must be >= 1, got {n}")
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)
