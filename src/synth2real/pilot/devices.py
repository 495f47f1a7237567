"""How many training runs at once, and on which device: ``--jobs`` and the visible GPUs.

:func:`visible_devices` is the one place the pilot asks which GPUs exist (tests replace
it with a fake list); :func:`job_devices` spreads worker processes over them.
"""

from __future__ import annotations

import os

from synth2real.errors import ConfigError


def visible_devices() -> list[str]:
    """The CUDA devices this process may use (``["cuda:0", "cuda:1"]``; ``[]`` without
    CUDA). ``CUDA_VISIBLE_DEVICES`` is honoured by torch. The one place the pilot asks
    which GPUs exist: tests replace it with a fake list."""
    import torch

    if not torch.cuda.is_available():
        return []
    return [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def _spreads_over_gpus(device: str) -> bool:
    """``auto`` and ``cuda`` may use every visible GPU; ``cuda:1``, ``cpu`` name one."""
    return device.strip().lower() in ("auto", "cuda")


def auto_jobs(device: str = "auto") -> int:
    """Training runs at once: one per visible GPU (``device`` ``auto`` or ``cuda``; 1 for
    one named GPU or MPS); on a CPU one per core, at most 4.

    Measured on 2 cores (docs/PILOT.md): two single-threaded runs trained ~1.6-2x faster in
    total than one run using both cores.
    """
    from synth2real.segment.device import resolve_device

    if _spreads_over_gpus(device):
        gpus = visible_devices()
        if gpus:
            return len(gpus)
    if resolve_device(device).type != "cpu":
        return 1
    return max(1, min(4, os.cpu_count() or 1))


def job_devices(device: str, jobs: int) -> list[str] | None:
    """The device of each of ``jobs`` worker processes: with ``device`` ``auto`` or
    ``cuda`` and more than one visible GPU, the GPUs in turn (``jobs=3`` on 2 GPUs:
    ``cuda:0, cuda:1, cuda:0``), each process pinned to its own; else ``None`` (every
    job trains on ``device``)."""
    if not _spreads_over_gpus(device):
        return None
    gpus = visible_devices()
    if len(gpus) < 2:
        return None
    return [gpus[i % len(gpus)] for i in range(jobs)]


def parse_jobs(spec: int | str, device: str = "auto") -> int:
    """``"auto"`` -> :func:`auto_jobs`; else a positive int."""
    if isinstance(spec, str) and spec.strip().lower() == "auto":
        return auto_jobs(device)
    try:
        n = int(spec)
    except (TypeError, ValueError):
        raise ConfigError(f"--jobs must be a positive integer or auto, got {spec!r}") from None
    if n < 1:
        raise ConfigError(f"--jobs must be >= 1, got {n}")
    return n
