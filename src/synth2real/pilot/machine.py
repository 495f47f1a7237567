"""What machine a measurement ran on: stated next to every number synth2real reports."""

from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, ``platform`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info(device: str | None = None) -> dict:
    """A JSON-able description of this machine and the software measured on it.

    Keys: ``cpu``, ``cores`` (logical CPUs usable by this process), ``torch_threads``,
    ``memory_gib``, ``load_avg`` (1/5/15 min at call time: other work running alongside),
    ``gpu`` (name or ``None``), ``device`` (what the run used; ``"auto: cpu"`` says what
    ``"auto"`` chose), ``python``, ``torch``,
    ``platform``, ``time`` (UTC ISO 8601).
    """
    info: dict = {
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(terse=True),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        pages, page = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages * page / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        info["memory_gib"] = None
    try:
        info["load_avg"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        info["load_avg"] = None
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # torch missing or broken: still describe the machine
        info.setdefault("torch", None)
        info.setdefault("torch_threads", None)
        info.setdefault("gpu", None)
    info["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY")
    if device == "auto":  # say what it chose here (each run also records its own device)
        from synth2real.segment.device import resolve_device

        device = f"auto: {resolve_device('auto').type}"
    info["device"] = device
    return info


def describe_machine(info: dict) -> str:
    """One line for reports: ``Intel Xeon (2 cores, 24 GiB), cpu, torch 2.13, load 0.5``."""
    parts = [f"{info.get('cpu', '?')} ({info.get('cores', '?')} cores"]
    if info.get("memory_gib"):
        parts[0] += f", {info['memory_gib']:g} GiB"
    parts[0] += ")"
    if info.get("gpu"):
        parts.append(f"GPU {info['gpu']}")
    if info.get("device"):
        parts.append(f"device {info['device']}")
    if info.get("torch"):
        parts.append(f"torch {info['torch']}")
    if info.get("torch_threads"):
        parts.append(f"{info['torch_threads']} torch threads")
    if info.get("omp_wait_policy"):
        parts.append(f"OMP_WAIT_POLICY={info['omp_wait_policy']}")
    if info.get("load_avg"):
        parts.append("load avg " + "/".join(f"{x:g}" for x in info["load_avg"]))
    return ", ".join(parts)
