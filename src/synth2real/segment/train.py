"""Train a segmentation model on one or more labelled datasets, mixed by weight.

``train([translated, real], TrainConfig(iterations=2000), "runs/m", weights=[0.5, 0.5])``
draws each training crop from ``translated`` or ``real`` with those probabilities, trains
the registered model ``cfg.model`` and writes ``runs/m/model.safetensors`` (weights plus
their configuration, see :mod:`synth2real.segment.checkpoint`) and ``runs/m/model.json``
(the same metadata, for people). Every ``cfg.save_every`` iterations and on Ctrl-C the
full training state goes to ``runs/m/last.safetensors``; calling :func:`train` again with
the same data and config continues from there and ends with the same weights and losses
as an uninterrupted run (same device). A finished run is returned without training.

Budget knobs: ``iterations`` x ``batch_size`` crops of ``crop`` pixels, at images whose
shorter side is capped to ``max_size``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from synth2real.data.dataset import Dataset
from synth2real.data.io import atomic_write_text
from synth2real.errors import ConfigError, OutputExistsError
from synth2real.guard import guarded
from synth2real.progress import progress_bar
from synth2real.segment.checkpoint import (
    MODEL_FILE,
    STATE_FILE,
    load_optimizer_state,
    read_meta,
    read_tensors,
    save_checkpoint,
)
from synth2real.segment.config import LEGACY_VALUES, RUNTIME_FIELDS, TrainConfig
from synth2real.segment.device import native_cpu_bf16, resolve_device, torch_threads
from synth2real.segment.losses import class_weights_from_frequencies, segmentation_loss
from synth2real.segment.models import create_model
from synth2real.segment.recipes import (
    Batch,
    BatchSampler,
    SelfTrainer,
    bar_fields,
    check_recipe,
    learning_rate,
)
from synth2real.segment.sampling import SampleLoader, dataset_fingerprint, mixing_weights


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        checkpoint: the final ``model.safetensors``.
        seconds: wall time of training, summed over resumed sessions.
        iterations: iterations done (``cfg.iterations``).
        losses: the training loss of every iteration.
        resumed_from: iteration this call started at (0: fresh; ``iterations``: the run
            was already finished and nothing was trained).
        mix_losses: self-training: the ClassMix loss ``L_mix`` of every iteration
            (``losses`` holds ``L_sup + st_mix_weight * L_mix``); else empty.
        precision: what the forward passes computed in under autocast: ``"float32"``,
            ``"bfloat16"`` or ``"float16"``; ``None`` for a finished run stored before
            this was recorded.
    """

    checkpoint: Path
    seconds: float
    iterations: int
    losses: list[float]
    resumed_from: int = 0
    mix_losses: list[float] = field(default_factory=list)
    precision: str | None = "float32"


def _check_datasets(datasets: Sequence[Dataset]) -> None:
    if not datasets:
        raise ConfigError("train needs at least one dataset")
    first = datasets[0].classes
    for d in datasets:
        if len(d) == 0:
            raise ConfigError(f"dataset {d.root} is empty")
        if not d.has_labels:
            unl = [s.name for s in d.samples if s.label_path is None][:5]
            raise ConfigError(
                f"dataset {d.root} has unlabelled images (e.g. {unl}); training needs labels"
            )
        if d.classes.names != first.names or d.classes.ignore_index != first.ignore_index:
            raise ConfigError(
                f"datasets disagree on classes: {datasets[0].root} has {list(first.names)} "
                f"(ignore {first.ignore_index}), {d.root} has {list(d.classes.names)} "
                f"(ignore {d.classes.ignore_index}); map them onto one class spec (--class-map)"
            )


def _check_batch_shape(model: torch.nn.Module, cfg: TrainConfig) -> None:
    """One batch of crops through ``model`` on the meta device (no memory, no maths): a
    BatchNorm layer that would see one value per channel is a clear error, now."""
    ch, cw = cfg.crop_hw
    meta = {
        k: torch.empty_like(v, device="meta")
        for k, v in [*model.named_parameters(), *model.named_buffers()]
    }
    x = torch.empty(cfg.batch_size, 3, ch, cw, device="meta")
    try:
        torch.func.functional_call(model, meta, (x,))
    except ValueError as e:
        if "more than 1 value per channel" not in str(e):
            return
        s = model.stride
        raise ConfigError(
            f"batch size {cfg.batch_size} with crop {ch}x{cw}: {cfg.model}'s coarsest "
            f"BatchNorm layer (stride {s}) would see one value per channel; use batch size "
            f">= 2, or a crop of at least {2 * s} on one side (e.g. --crop {2 * s})"
        ) from None
    except Exception:  # the meta device cannot run this model: training will tell
        return


def _class_frequencies(
    loaders: list[SampleLoader], probs: np.ndarray, k: int, seed: int
) -> np.ndarray:
    """Pixel shares per class, each dataset weighted by its sampling probability (at most
    256 images per dataset are read)."""
    total = np.zeros(k)
    rng = np.random.default_rng([seed, 7919])
    for loader, p in zip(loaders, probs, strict=True):
        if p <= 0:
            continue
        idx = rng.permutation(len(loader))[:256]
        counts = np.zeros(k)
        for i in idx:
            counts += np.bincount(loader.load(int(i))[1].ravel(), minlength=256)[:k]
        if counts.sum() > 0:
            total += p * counts / counts.sum()
    return total


def _make_batch(sampler: BatchSampler, it: int) -> Batch:
    """The crops of iteration ``it`` (a module-level function so that tests can watch it)."""
    return sampler.draw(it)


class _DeferredInterrupt:
    """Turn the first Ctrl-C into a flag checked between iterations (main thread only)."""

    def __init__(self) -> None:
        self.hit = False
        self._old = None

    def __enter__(self) -> _DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.getsignal(signal.SIGINT)

            def handler(signum, frame):
                if self.hit:  # second Ctrl-C: stop now
                    raise KeyboardInterrupt
                self.hit = True

            signal.signal(signal.SIGINT, handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _same_run(meta: dict, run: dict) -> list[str]:
    """Keys of ``run`` whose stored value differs (empty: the same run)."""
    stored_cfg = {k: v for k, v in meta.get("train_config", {}).items() if k not in RUNTIME_FIELDS}
    if stored_cfg:  # keys added since the run was stored had their (then) default there
        stored_cfg = {**TrainConfig().result_dict(), **LEGACY_VALUES, **stored_cfg}
    diff = [
        f"train_config.{k}"
        for k in run["train_config"]
        if stored_cfg.get(k) != run["train_config"][k]
    ]

    def norm(k: str, v: object) -> object:
        v = json.loads(json.dumps(v))
        if k == "data" and isinstance(v, list):  # where the data lies does not matter
            v = [{kk: vv for kk, vv in d.items() if kk != "root"} for d in v]
        if k == "unlabeled" and isinstance(v, dict):
            v = {kk: vv for kk, vv in v.items() if kk != "root"}
        return v

    for k in ("data", "weights", "classes", "unlabeled"):
        if norm(k, meta.get(k)) != norm(k, run[k]):
            diff.append(k)
    return diff


@guarded(
    "out_dir", "train", lambda a: {"--data": a["datasets"], "--unlabeled": a["unlabeled"]}
)  # checked, then locked
def train(
    datasets: Sequence[Dataset] | Dataset,
    cfg: TrainConfig | None = None,
    out_dir: str | Path = "runs/train",
    *,
    weights: Sequence[float] | None = None,
    unlabeled: Dataset | None = None,
    resume: bool = True,
    progress: bool = True,
) -> TrainResult:
    """Train ``cfg.model`` on crops drawn from ``datasets``; write the checkpoint in ``out_dir``.

    Args:
        datasets: labelled datasets sharing one class spec (a single dataset is accepted).
        cfg: the training configuration (default ``TrainConfig()``).
        out_dir: output folder: ``model.safetensors`` + ``model.json`` when done,
            ``last.safetensors`` while running.
        weights: probability of drawing each dataset (normalised); default
            ``cfg.real_fraction`` for the last dataset, else proportional to size. With
            ``recipe="finetune"``, the weights of phase 1 (phase 2 draws the last dataset).
        unlabeled: unlabelled real images (:func:`~synth2real.data.unlabeled.open_unlabeled`)
            for ``recipe="selftrain"`` (required there, refused by the other recipes).
        resume: continue a stopped run found in ``out_dir`` (and return a finished one
            as it is); ``False`` starts afresh and replaces whatever checkpoint is there.
        progress: show a progress bar with the loss and iterations per second.

    Returns:
        :class:`TrainResult`.

    Raises:
        ConfigError: bad config, weights, or datasets (empty, unlabelled, different
            classes); a recipe without what it needs (see :class:`TrainConfig`).
        OutputExistsError: ``out_dir`` holds a run with other data or config and
            ``resume`` is True.
        DataError: an unreadable image or label.
    """
    cfg = cfg if cfg is not None else TrainConfig()
    cfg.validate()
    device = resolve_device(cfg.device)
    if cfg.cpu_amp == "auto":  # resolved here: what this machine computes in is the run's
        cfg = dataclasses.replace(cfg, cpu_amp=device.type == "cpu" and native_cpu_bf16())
    if isinstance(datasets, Dataset):
        datasets = [datasets]
    datasets = list(datasets)
    _check_datasets(datasets)
    check_recipe(cfg, datasets, unlabeled)
    classes = datasets[0].classes
    k, ignore = classes.num_classes, classes.ignore_index
    probs = mixing_weights([len(d) for d in datasets], weights, cfg.real_fraction)
    out_dir = Path(out_dir)
    final_path, state_path = out_dir / MODEL_FILE, out_dir / STATE_FILE
    run = {
        "train_config": cfg.result_dict(),
        "data": [
            {
                "root": str(d.root),
                "format": d.format,
                "samples": len(d),
                "fingerprint": dataset_fingerprint(d),
            }
            for d in datasets
        ],
        "weights": [float(p) for p in probs],
        "classes": classes.to_dict(),
        "unlabeled": None
        if unlabeled is None
        else {
            "root": str(unlabeled.root),
            "samples": len(unlabeled),
            "fingerprint": dataset_fingerprint(unlabeled),
        },
    }

    if not resume:
        final_path.unlink(missing_ok=True)
        state_path.unlink(missing_ok=True)
    elif final_path.exists():
        meta = read_meta(final_path)
        diff = _same_run(meta, run)
        if diff:
            raise OutputExistsError(
                f"{out_dir} holds a finished run with other {', '.join(diff[:5])}; "
                "use another output folder or resume=False (--no-resume) to replace it"
            )
        return TrainResult(
            final_path,
            float(meta["seconds"]),
            int(meta["iteration"]),
            list(meta["losses"]),
            int(meta["iteration"]),
            list(meta.get("mix_losses", [])),
            meta.get("precision"),
        )

    with torch_threads(cfg.num_threads):
        torch.manual_seed(cfg.seed)
        resuming = resume and state_path.exists()
        if resuming:  # rebuild the stored architecture; its weights come from the state
            stored = read_meta(state_path)
            model = create_model(
                stored.get("model", cfg.model),
                k,
                pretrained=False,
                **stored.get("model_kwargs", {}),
            )
        else:
            model = create_model(cfg.model, k, pretrained=cfg.pretrained, **cfg.model_kwargs)
        ch, cw = cfg.crop_hw
        if ch % model.stride or cw % model.stride:
            st = model.stride
            near = "x".join(str(max(st, round(v / st) * st)) for v in (ch, cw))
            raise ConfigError(
                f"crop {cfg.crop} must be a multiple of {cfg.model}'s stride {st} "
                f"in height and width, e.g. crop {near}"
            )
        _check_batch_shape(model, cfg)
        model.to(device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        decay = [p for p in model.parameters() if p.ndim > 1]
        no_decay = [p for p in model.parameters() if p.ndim <= 1]
        opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": cfg.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=cfg.effective_lr,
        )
        cache_bytes = int(cfg.cache_max_gb * (1 << 30))
        loaders = [SampleLoader(d, cfg.max_size, cfg.cache, cache_bytes) for d in datasets]
        unl = None if unlabeled is None else SampleLoader(
            unlabeled, cfg.max_size, cfg.cache, cache_bytes, labels=False
        )  # fmt: skip

        start, losses, mix_losses, seconds_before = 0, [], [], 0.0
        teacher_state = None
        class_weights: list[float] | None = None
        if resuming:
            meta = read_meta(state_path)
            diff = _same_run(meta, run)
            if diff:
                raise OutputExistsError(
                    f"{out_dir} holds a stopped run with other {', '.join(diff[:5])}; "
                    "use another output folder or resume=False (--no-resume) to start afresh"
                )
            model.load_state_dict(read_tensors(state_path, "model."))
            opt_state = load_optimizer_state(state_path)
            if opt_state is not None:
                opt.load_state_dict(opt_state)
            start = int(meta["iteration"])
            losses = [float(v) for v in meta["losses"]]
            mix_losses = [float(v) for v in meta.get("mix_losses", [])]
            if cfg.recipe == "selftrain":
                teacher_state = read_tensors(state_path, "teacher.")
            seconds_before = float(meta["seconds"])
            class_weights = meta.get("class_weights")
        elif cfg.class_weighting == "frequency":
            freq = _class_frequencies(loaders, probs, k, cfg.seed)
            class_weights = class_weights_from_frequencies(freq, cfg.max_class_weight).tolist()
        cw_tensor = (
            torch.tensor(class_weights, device=device) if class_weights is not None else None
        )
        sampler = BatchSampler(loaders, probs, cfg, k, ignore, unl)
        st = SelfTrainer(model, cfg, ignore, teacher_state) if cfg.recipe == "selftrain" else None
        extra = {"teacher": st.teacher} if st is not None else None

        use_amp = cfg.amp and device.type == "cuda" or cfg.cpu_amp and device.type == "cpu"
        amp_dtype = (
            torch.bfloat16
            if device.type == "cpu" or use_amp and torch.cuda.is_bf16_supported()
            else torch.float16
        )
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype is torch.float16)
        precision = str(amp_dtype).removeprefix("torch.") if use_amp else "float32"

        def meta_now(done: int, seconds: float) -> dict:
            return {
                **run,
                "train_config": cfg.to_dict(),
                # what autocast computed in (cpu_amp="auto" resolves per machine)
                "precision": precision,
                "ignore_index": ignore,
                "iteration": done,
                "losses": losses,
                **({"mix_losses": mix_losses} if st is not None else {}),
                "seconds": seconds,
                "class_weights": class_weights,
                "device": str(device),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "synth2real_version": _version(),
            }

        model.train()
        t0 = time.perf_counter()
        done = start
        with (
            _DeferredInterrupt() as interrupt,
            progress_bar(
                cfg.iterations,
                f"training {cfg.model}" + (f" ({cfg.recipe})" if cfg.recipe != "mix" else ""),
                enabled=progress,
                completed=start,
            ) as bar,
            contextlib.ExitStack() as stack,
        ):
            pool = ThreadPoolExecutor(1, thread_name_prefix="s2r-batch") if cfg.prefetch else None
            stack.callback(lambda: pool and pool.shutdown(wait=True, cancel_futures=True))
            pending = None
            for it in range(start, cfg.iterations):
                torch.manual_seed(cfg.seed * 1_000_003 + it)
                lr = learning_rate(it, cfg)
                for g in opt.param_groups:
                    g["lr"] = lr
                batch = pending.result() if pending is not None else _make_batch(sampler, it)
                pending = None
                if pool is not None and it + 1 < cfg.iterations:
                    # decode + augment the next batch while this one trains
                    pending = pool.submit(_make_batch, sampler, it + 1)
                x = _to_input(batch.images, device, cfg.channels_last)
                y = torch.from_numpy(batch.labels).to(device, non_blocking=True).long()
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    logits = model(x)
                loss = segmentation_loss(
                    logits,
                    y,
                    ignore_index=ignore,
                    loss=cfg.loss,
                    class_weights=cw_tensor,
                    dice_weight=cfg.dice_weight,
                )
                if st is not None:
                    l_mix = st.mixed_loss(
                        model, x, y,
                        _to_input(batch.target, device, cfg.channels_last),
                        torch.from_numpy(batch.target_valid).to(device),
                        it,
                        lambda: torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp),
                        loss=cfg.loss, class_weights=cw_tensor, dice_weight=cfg.dice_weight,
                    )  # fmt: skip
                    mix_losses.append(float(l_mix.detach()))
                    loss = loss + cfg.st_mix_weight * l_mix
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                if st is not None:
                    st.update(model, it)
                losses.append(float(loss.detach()))
                done = it + 1
                elapsed = time.perf_counter() - t0
                bar.advance(
                    **bar_fields(cfg, it, losses, mix_losses),
                    it_s=f"{(done - start) / max(elapsed, 1e-9):.2f}",
                )
                if interrupt.hit or (done % cfg.save_every == 0 and done < cfg.iterations):
                    meta = meta_now(done, seconds_before + elapsed)
                    save_checkpoint(state_path, model, meta, opt, extra)
                if interrupt.hit:
                    raise KeyboardInterrupt

        seconds = seconds_before + time.perf_counter() - t0
        model.eval()
        meta = meta_now(done, seconds)
        save_checkpoint(final_path, model, meta)
        sidecar = {k2: v for k2, v in meta.items() if k2 != "losses"}
        sidecar["loss_first_last"] = [losses[0], losses[-1]] if losses else []
        atomic_write_text(out_dir / "model.json", json.dumps(sidecar, indent=1) + "\n")
        state_path.unlink(missing_ok=True)
    return TrainResult(final_path, seconds, done, list(losses), start, list(mix_losses), precision)


def _to_input(images: np.ndarray, device: torch.device, channels_last: bool) -> torch.Tensor:
    """``BxHxWx3 uint8`` -> the model's ``Bx3xHxW float`` in ``[0, 1]`` on ``device``."""
    x = torch.from_numpy(images).to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
    return x if channels_last else x.contiguous()


def _version() -> str:
    from synth2real import __version__

    return __version__
