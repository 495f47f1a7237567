"""The Hugging Face hub, as synth2real uses it: the local cache unless the user named an id.

Default weights (SegFormer's ``nvidia/mit-b0``, Stable Diffusion 1.5) are read from the
local Hugging Face cache only, through the snapshot folder on disk, so that no request
is sent (not even the client's own metadata or telemetry calls that
``local_files_only=True`` still makes). Weights are downloaded only for a hub id the
user gave, and never while ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` is set.
"""

from __future__ import annotations

import os
from pathlib import Path

_TRUE = ("1", "true", "yes", "on")


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is set."""
    return any(
        os.environ.get(v, "").strip().lower() in _TRUE
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def cached_folder(repo_id: str, probe: str = "config.json") -> Path | None:
    """The snapshot folder of ``repo_id`` in the local cache when it holds ``probe``
    (a file path inside the repository), else ``None``; reads the disk only."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, probe)
    except Exception:  # a malformed id, an unreadable cache: not there
        return None
    if not isinstance(found, str):
        return None
    folder = Path(found)
    for _ in Path(probe).parts:
        folder = folder.parent
    return folder
