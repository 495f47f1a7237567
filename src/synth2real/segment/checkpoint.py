"""Checkpoints: safetensors files that carry their own configuration.

A checkpoint holds the model's tensors under ``model.*`` and, in the safetensors
metadata, one JSON document (key ``synth2real``) with everything needed to rebuild and
use the model without the training data: registry name, architecture arguments, class
names / colours / ignore index, the train config and iteration. Training-state files
(``last.safetensors``) also hold the optimizer state under ``optim.*`` (and the
optimizer's hyper-parameters in the JSON) and, for self-training, the teacher under
``teacher.*``, so a stopped run resumes exactly.

Files are written atomically (temporary file + rename).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

from synth2real.data.classes import ClassSpec
from synth2real.data.io import atomic_write_bytes
from synth2real.errors import DataError
from synth2real.segment.models import SegmentationModel, create_model

FORMAT_VERSION = 1
META_KEY = "synth2real"
#: what ``train`` writes into its output folder: the finished model, the running state
MODEL_FILE = "model.safetensors"
STATE_FILE = "last.safetensors"


def resolve_checkpoint(path: str | Path) -> Path:
    """``path`` itself, or the ``model.safetensors`` inside a ``train`` output folder.

    Raises:
        DataError: nothing there, or a folder without a finished model (with the hint to
            resume when only the running state ``last.safetensors`` is in it).
    """
    path = Path(path)
    if path.is_dir():
        if (path / MODEL_FILE).is_file():
            return path / MODEL_FILE
        if (path / STATE_FILE).is_file():
            raise DataError(
                path,
                f"holds {STATE_FILE} but no {MODEL_FILE}: training has not finished; "
                "rerun the same train command to resume it",
            )
        raise DataError(path, f"a folder without {MODEL_FILE} (the output of synth2real train)")
    if not path.is_file():
        raise DataError(path, "checkpoint not found")
    return path


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in state["state"].items():
        for k, v in pstate.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[k] = v
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], info: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    for pid, d in info.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(d)
    return {"state": state, "param_groups": info["param_groups"]}


def save_checkpoint(
    path: str | Path,
    model: SegmentationModel,
    meta: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    extra: dict[str, torch.nn.Module] | None = None,
) -> Path:
    """Write ``model`` (and ``optimizer``) with ``meta`` to ``path`` atomically.

    ``meta`` is completed with ``model``, ``model_kwargs`` and ``num_classes`` from the
    model; it must be JSON-serialisable. ``extra`` modules are stored whole (parameters
    and buffers) under their key: ``{"teacher": t}`` -> ``teacher.*`` (read them back
    with ``read_tensors(path, "teacher.")``).
    """
    path = Path(path)
    meta = {
        "format_version": FORMAT_VERSION,
        **meta,
        "model": model.name,
        "model_kwargs": model.init_kwargs,
        "num_classes": model.num_classes,
    }
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for prefix, module in (extra or {}).items():
        tensors.update(
            {f"{prefix}.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
        )
    if optimizer is not None:
        opt_tensors, opt_info = _flatten_optimizer(optimizer.state_dict())
        tensors.update(opt_tensors)
        meta["optimizer"] = opt_info
    data = st_save(tensors, metadata={"format": "pt", META_KEY: json.dumps(meta)})
    atomic_write_bytes(path, data)
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    """The JSON metadata of a checkpoint (no tensors are read); ``path`` may be its folder.

    Raises:
        DataError: missing file, not a safetensors file, or not a synth2real checkpoint.
    """
    path = resolve_checkpoint(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            md = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types
        raise DataError(path, f"not a readable safetensors checkpoint ({e})") from None
    if META_KEY not in md:
        raise DataError(path, "not a synth2real checkpoint (no synth2real metadata)")
    try:
        return json.loads(md[META_KEY])
    except json.JSONDecodeError as e:
        raise DataError(path, f"corrupt checkpoint metadata ({e})") from None


def read_tensors(path: str | Path, prefix: str = "model.") -> dict[str, torch.Tensor]:
    """The tensors of ``path`` whose key starts with ``prefix`` (prefix removed)."""
    out = {}
    with safe_open(str(path), framework="pt") as f:
        for k in f.keys():  # noqa: SIM118 - safe_open is not a dict
            if k.startswith(prefix):
                out[k[len(prefix) :]] = f.get_tensor(k)
    return out


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[SegmentationModel, dict[str, Any]]:
    """Rebuild the model stored in ``path`` (in eval mode, on ``device``) and its metadata.

    ``path`` is a checkpoint file or the output folder of ``train`` (its ``model.safetensors``).

    No download happens: the architecture is rebuilt from the stored arguments.

    Returns:
        ``(model, meta)``; ``meta["classes"]`` is a :class:`ClassSpec` dict
        (``ClassSpec.from_dict``), ``meta["iteration"]`` the training iteration.

    Raises:
        DataError: unreadable file or tensors that do not fit the stored architecture.
    """
    path = resolve_checkpoint(path)
    meta = read_meta(path)
    try:
        model = create_model(
            meta["model"], meta["num_classes"], pretrained=False, **meta.get("model_kwargs", {})
        )
    except KeyError as e:
        raise DataError(path, f"checkpoint metadata lacks {e}") from None
    state = read_tensors(path, "model.")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise DataError(
            path, f"weights do not fit the stored architecture ({str(e)[:300]})"
        ) from None
    model.to(device).eval()
    return model, meta


def load_optimizer_state(path: str | Path) -> dict | None:
    """The optimizer ``state_dict`` stored in a training-state checkpoint, or ``None``."""
    path = Path(path)
    meta = read_meta(path)
    if "optimizer" not in meta:
        return None
    return _unflatten_optimizer(read_tensors(path, "optim."), meta["optimizer"])


def checkpoint_classes(meta: dict[str, Any]) -> ClassSpec:
    """The :class:`ClassSpec` stored in checkpoint metadata."""
    return ClassSpec.from_dict(meta["classes"])
