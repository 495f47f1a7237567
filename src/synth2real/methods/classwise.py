"""What the global, class-wise and contrast-preserving colour transfers share.

:class:`ColourTransfer` holds the parameters common to Reinhard and histogram matching
(the mode, pooling, fallbacks, thin classes), prepares per-reference statistics once,
and runs the contrast-preserving second stage. Subclasses supply three small pieces:
how to summarise one reference (:meth:`_summarise`), how to turn summaries into targets,
and the transfer itself (pure functions in :mod:`synth2real.methods.functional`).

Modes:

- ``global``: whole-image statistics of the content matched to whole-image statistics of
  the references.
- ``class``: each class's pixels matched to the reference pixels of that class. Classes
  missing from the references (fewer than ``min_pixels`` pixels over all of them) and
  pixels of no class get the global transfer.
- ``class-contrast``: ``class``, then every *thin* class is re-set relative to its
  surroundings: each pixel ``p`` of a thin class ``c`` becomes
  ``ctx_out(p) + T(d_in(p))`` in CIELAB, where ``ctx(p)`` is the mean of the non-``c``
  pixels in the ``(2*ring+1)`` square around ``p`` (``ctx_out`` on the stage-1 output,
  i.e. the already transferred surroundings), ``d_in(p) = x(p) - ctx_in(p)`` is the
  content's local contrast, and ``T`` maps the content's distribution of ``d`` onto the
  references' distribution of the same quantity for class ``c`` (moments for Reinhard,
  quantiles for histogram matching; ``contrast="preserve"`` uses ``T(d) = d``). A crack
  thus stays darker than the road around it by the amount real cracks are, wherever it
  lies, instead of being pulled to a pooled crack colour that can equal its new
  surroundings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from synth2real.errors import ConfigError
from synth2real.methods import functional as F
from synth2real.methods.base import Method, References, inherit_parameters

Mode = Literal["global", "class", "class-contrast"]
MODES = ("global", "class", "class-contrast")


@dataclass
class ContrastStats:
    """The references' local contrast ``d = x - ctx`` (CIELAB) for one thin class.

    Attributes:
        values: ``(N, 3) float32`` contrasts of the class's pixels.
        weights: ``(N,) float64`` pixel weights (``1 / reference area``).
        count: number of pixels (unweighted).
    """

    values: np.ndarray
    weights: np.ndarray
    count: int

    @staticmethod
    def concat(items: list[ContrastStats]) -> ContrastStats | None:
        items = [it for it in items if it.count]
        if not items:
            return None
        return ContrastStats(
            np.concatenate([it.values for it in items]),
            np.concatenate([it.weights for it in items]),
            sum(it.count for it in items),
        )

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Weighted per-channel mean and std (computed once, then cached)."""
        cached = self.__dict__.get("_mean_std")
        if cached is None:
            cached = self.__dict__["_mean_std"] = self._mean_std()
        return cached

    def _mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        w = self.weights / self.weights.sum()
        mean = (self.values * w[:, None]).sum(0)
        var = ((self.values - mean) ** 2 * w[:, None]).sum(0)
        return mean, np.sqrt(var)


@dataclass
class Stage:
    """Result of the first (global or class-wise) stage.

    Attributes:
        out: ``HxWx3 uint8`` RGB output, or ``None`` when only LAB arrays were kept.
        lab_in: ``HxWx3 float32`` CIELAB of the input, when the stage computed it.
        lab_out: ``HxWx3 float32`` CIELAB of the output, when the stage computed it.
    """

    out: np.ndarray | None = None
    lab_in: np.ndarray | None = None
    lab_out: np.ndarray | None = None

    def rgb(self) -> np.ndarray:
        if self.out is None:
            assert self.lab_out is not None
            self.out = F.lab_to_rgb(self.lab_out)
        return self.out


#: a thin class has at least this share of its pixels within ``ring`` of its boundary ...
THIN_NEAR_BOUNDARY = 0.5
#: ... and covers at most this share of the image (the context it is set against must
#: be the bigger part: background strips between dense cracks are not thin)
THIN_MAX_SHARE = 0.2


def is_thin(near: float, total: float, share: float) -> bool:
    """The ``auto`` rule for thin classes (see :data:`THIN_NEAR_BOUNDARY`)."""
    return total > 0 and near >= THIN_NEAR_BOUNDARY * total and share <= THIN_MAX_SHARE


def parse_thin_classes(value: str | tuple[str, ...] | list[str]) -> str | tuple[str, ...]:
    """``"auto"`` or a tuple of class names (a comma-separated string works too)."""
    if isinstance(value, str):
        v = value.strip()
        if v == "auto":
            return v
        names = tuple(n.strip() for n in v.split(",") if n.strip())
    else:
        names = tuple(str(n) for n in value)
    if not names:
        raise ConfigError("thin_classes: give 'auto' or class names")
    return names


class ColourTransfer(Method):
    """Base of Reinhard and histogram matching (see the module docstring for the modes).

    Args:
        mode: ``global`` (whole images), ``class`` (per class) or ``class-contrast`` (per
            class, then thin classes re-set against their transferred surroundings).
            Default ``global``; the ``-cw`` and ``-cwc`` presets set it.
        pooled: ``True`` pools the statistics of all references; ``False`` uses the
            reference chosen for each image (``--reference-choice``), with the other
            references' pooled statistics for classes it lacks. Default ``True``.
        min_pixels: reference pixels a class needs (over all references) to get its own
            statistics; fewer falls back to the global transfer. Default ``64``.
        ring: half-size in pixels of the square window whose non-class pixels are a thin
            class pixel's surroundings (``class-contrast`` only). Default ``7``.
        thin_classes: classes the contrast stage re-sets: ``auto`` (classes with at least
            half their reference pixels within ``ring`` pixels of their boundary and at
            most 20% of the reference area; decided on the image itself for classes no
            reference holds) or comma-separated class names. Default ``auto``.
        contrast: ``match`` maps the content's class-vs-surroundings contrast (per LAB
            channel) onto the references'; ``preserve`` keeps the content's contrast as it
            is. Default ``match``.
        strength: blend between the input (0) and the full transfer (1). Default ``1.0``.

    Subclasses inherit these parameters and their documentation. One that adds
    parameters takes them keyword-only, ``__init__(self, *, extra=..., **common)``, passes
    ``**common`` on, and documents only its own (or an inherited one it describes more
    precisely) under ``Args:``; :meth:`__init_subclass__` then gives the class the full
    signature and ``Args:`` section (:func:`~synth2real.methods.base.inherit_parameters`),
    which the registry, ``synth2real methods NAME`` and ``help()`` read.
    """

    #: working space of the first stage, "lab" or "rgb"
    color_space: str = "lab"

    def __init__(
        self,
        mode: Mode = "global",
        pooled: bool = True,
        min_pixels: int = 64,
        ring: int = 7,
        thin_classes: str | tuple[str, ...] = "auto",
        contrast: Literal["match", "preserve"] = "match",
        strength: float = 1.0,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
        if contrast not in ("match", "preserve"):
            raise ConfigError(f"contrast must be 'match' or 'preserve', got {contrast!r}")
        if int(min_pixels) < 1:
            raise ConfigError(f"min_pixels must be >= 1, got {min_pixels}")
        if int(ring) < 1:
            raise ConfigError(f"ring must be >= 1 pixel, got {ring}")
        if not 0.0 <= float(strength) <= 1.0:
            raise ConfigError(f"strength must be in [0, 1], got {strength}")
        self.mode = mode
        self.pooled = bool(pooled)
        self.min_pixels = int(min_pixels)
        self.ring = int(ring)
        self.thin_classes = parse_thin_classes(thin_classes)
        self.contrast = contrast
        self.strength = float(strength)
        self.needs_reference_labels = mode != "global"
        self._targets: dict[int, Any] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        inherit_parameters(cls, cls.__mro__[1])

    # -- subclass hooks ------------------------------------------------------------------
    def _summarise(self, image: np.ndarray, label: np.ndarray | None, weight: float) -> Any:
        """Per-label-value summary of one reference (moments or histograms)."""
        raise NotImplementedError

    def _transfer(
        self, image: np.ndarray, label: np.ndarray | None, target: Any, want_lab: bool
    ) -> Stage:
        """Stage one (global or class-wise transfer) of ``image``.

        ``want_lab``: the contrast stage follows; a subclass working in CIELAB may then
        return its LAB input and output instead of the uint8 image (saves conversions).
        """
        raise NotImplementedError

    def _map_contrast(self, d: np.ndarray, ref: ContrastStats) -> np.ndarray:
        """Map the content's contrasts ``d`` (``(N, 3)``) onto ``ref``'s distribution."""
        raise NotImplementedError

    # -- preparation ---------------------------------------------------------------------
    def prepare(self, references: References) -> None:
        super().prepare(references)
        use_labels = self.mode != "global"
        self._summaries = []
        self._raw_counts = []
        for img, lab in zip(references.images, references.labels, strict=True):
            lab = lab if use_labels else None
            n = img.shape[0] * img.shape[1]
            self._summaries.append(self._summarise(img, lab, 1.0 / n))
            raw = np.zeros(F.NUM_SLOTS)
            if lab is None:
                raw[0] = n
            else:
                raw += np.bincount(lab.reshape(-1), minlength=F.NUM_SLOTS)
            self._raw_counts.append(raw)
        self._targets = {}
        self._contrast_targets: dict[tuple[int, int], ContrastStats | None] = {}
        self._thin: set[int] = set()
        self._contrast: list[dict[int, ContrastStats]] = []
        if self.mode == "class-contrast":
            self._prepare_contrast(references)

    def _prepare_contrast(self, references: References) -> None:
        k = references.classes.num_classes
        if self.thin_classes == "auto":
            near = np.zeros(k)
            total = np.zeros(k)
            share = np.zeros(k)
            for lab in references.labels:
                assert lab is not None
                for c in np.unique(lab):
                    if c < k:
                        a, n = F.thin_fraction(lab, int(c), self.ring)
                        near[c] += a
                        total[c] += n
                        share[c] += n / lab.size / len(references)
            self._thin = {
                c
                for c in range(k)
                if total[c] >= self.min_pixels and is_thin(near[c], total[c], share[c])
            }
            self._thin_decided = {c for c in range(k) if total[c] >= self.min_pixels}
        else:
            ids = set()
            for name in self.thin_classes:
                try:
                    ids.add(references.classes.index(name))
                except KeyError as e:
                    raise ConfigError(f"thin_classes: {e.args[0]}") from None
            self._thin = ids
        if self.thin_classes != "auto":
            self._thin_decided = set(range(k))
        for img, lab in zip(references.images, references.labels, strict=True):
            assert lab is not None
            lab_f = F.rgb_to_lab(img)
            w = 1.0 / (img.shape[0] * img.shape[1])
            per: dict[int, ContrastStats] = {}
            for c in sorted(self._thin | (set(range(k)) - self._thin_decided)):
                res = F.class_contrast(lab_f, lab, c, self.ring)
                if res is None:
                    continue
                d = res[0]
                per[c] = ContrastStats(d.astype(np.float32), np.full(len(d), w), len(d))
            self._contrast.append(per)

    # -- targets with fallbacks ----------------------------------------------------------
    def _pick(self, ref: int) -> tuple[Any, np.ndarray, Any]:
        """``(per-slot target summary, valid slots, global target summary)`` for ``ref``.

        Pooled: the sum over all references. Per reference: the chosen reference's
        statistics for every class it holds (>= ``min_pixels``), the other references'
        pooled statistics for the classes it lacks, and the global fallback for classes no
        reference holds.
        """
        if self.pooled:
            key = -1
        else:
            key = ref
        if key in self._targets:
            return self._targets[key]
        sums = self._summaries
        raw = np.stack(self._raw_counts)
        if self.pooled:
            target = _sum(sums)
            valid = raw.sum(0) >= self.min_pixels
            glob = target
        else:
            own_valid = raw[ref] >= self.min_pixels
            others = [s for i, s in enumerate(sums) if i != ref]
            other_raw = raw.sum(0) - raw[ref]
            other_valid = other_raw >= self.min_pixels
            target = _select_rows(sums[ref], _sum(others) if others else sums[ref], own_valid)
            valid = own_valid | other_valid
            glob = sums[ref]
        valid = valid.copy()
        k = self.check_prepared().classes.num_classes
        valid[k:] = False  # label values that are no class: global transfer
        out = (target, valid, glob)
        self._targets[key] = out
        return out

    def _contrast_target(self, ref: int, cls: int) -> ContrastStats | None:
        key = (-1 if self.pooled else ref, cls)
        if key not in self._contrast_targets:
            self._contrast_targets[key] = self._find_contrast_target(ref, cls)
        return self._contrast_targets[key]

    def _find_contrast_target(self, ref: int, cls: int) -> ContrastStats | None:
        if self.pooled:
            return ContrastStats.concat([p[cls] for p in self._contrast if cls in p])
        own = self._contrast[ref].get(cls)
        if own is not None and own.count >= self.min_pixels:
            return own
        others = ContrastStats.concat(
            [p[cls] for i, p in enumerate(self._contrast) if i != ref and cls in p]
        )
        if others is not None and others.count >= self.min_pixels:
            return others
        return None

    def reference_indices(self, ref: int) -> list[int]:
        refs = self.check_prepared()
        return list(range(len(refs))) if self.pooled else [ref]

    # -- application ---------------------------------------------------------------------
    def apply(self, image: np.ndarray, label: np.ndarray | None, ref: int) -> np.ndarray:
        refs = self.check_prepared()
        image = F.check_image(image)
        if self.mode != "global":
            if label is None:
                raise ValueError(
                    f"method {self.name!r} is class-wise and needs the content image's label map"
                )
            label = F.check_label(label, image)
        else:
            label = None
        if not 0 <= ref < len(refs):
            raise IndexError(f"reference index {ref} out of range (0..{len(refs) - 1})")
        target = self._pick(ref)
        contrast = self.mode == "class-contrast"
        stage = self._transfer(image, label, target, want_lab=contrast)
        if contrast:
            assert label is not None
            out = self._restore_contrast(image, label, stage, ref)
        else:
            out = stage.rgb()
        return F.blend(image, out, self.strength)

    def _restore_contrast(
        self, image: np.ndarray, label: np.ndarray, stage: Stage, ref: int
    ) -> np.ndarray:
        k = self.check_prepared().classes.num_classes
        present = [
            int(c) for c in np.flatnonzero(np.bincount(label.reshape(-1), minlength=256)[:k])
        ]
        thin = []
        for c in present:
            if c in self._thin_decided:
                if c in self._thin:
                    thin.append(c)
            else:  # class unseen in the references: decide on this image
                a, n = F.thin_fraction(label, c, self.ring)
                if n and is_thin(a, n, n / label.size):
                    thin.append(c)
        if not thin:
            return stage.rgb()
        # only the pixels within `ring` of a thin class are ever read: convert just those
        lut = np.zeros(256, np.uint8)
        lut[thin] = 1
        near = cv2.dilate(cv2.LUT(label, lut), np.ones((2 * self.ring + 1,) * 2, np.uint8)).astype(
            bool
        )
        lab_in = stage.lab_in if stage.lab_in is not None else F.rgb_to_lab_where(image, near)
        lab_out = (
            stage.lab_out if stage.lab_out is not None else F.rgb_to_lab_where(stage.rgb(), near)
        )
        rows, cols, values = [], [], []
        for c in thin:
            res = F.class_contrast(lab_in, label, c, self.ring)
            if res is None:
                continue
            d_in, _, where = res
            if len(d_in) == 0:
                continue
            ctx_out = F.context_at(lab_out, label, c, self.ring, where)
            stats = self._contrast_target(ref, c) if self.contrast == "match" else None
            d_out = d_in if stats is None else self._map_contrast(d_in, stats)
            rows.append(where[0])
            cols.append(where[1])
            values.append((ctx_out + d_out).astype(np.float32))
        if not values:
            return stage.rgb()
        rr, cc, val = np.concatenate(rows), np.concatenate(cols), np.concatenate(values)
        if stage.out is None:  # LAB pipeline: one full conversion of the final image
            result = lab_out.copy()
            result[rr, cc] = val
            return F.lab_to_rgb(result)
        out = stage.out.copy()  # RGB pipeline: only the re-set pixels change
        out[rr, cc] = F.lab_to_rgb(val.reshape(-1, 1, 3)).reshape(-1, 3)
        return out


def _sum(items: list[Any]) -> Any:
    total = items[0]
    for it in items[1:]:
        total = total + it
    return total


def _select_rows(own: Any, other: Any, use_own: np.ndarray) -> Any:
    """Rows (label values) from ``own`` where ``use_own`` else from ``other``."""
    if isinstance(own, F.Moments):
        m = use_own
        return F.Moments(
            np.where(m, own.weight, other.weight),
            np.where(m[:, None], own.sum1, other.sum1),
            np.where(m[:, None], own.sum2, other.sum2),
        )
    return np.where(use_own.reshape((-1,) + (1,) * (own.ndim - 1)), own, other)
