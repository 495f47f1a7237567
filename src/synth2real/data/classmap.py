"""From raw label values to class indices: vocabularies, class maps and label decoders.

A label file stores *raw values*: ids in an index PNG (``uint8`` or ``uint16``), colours
in an RGB PNG, class titles in a Supervisely JSON. Each reader describes what its raw
values mean with a :class:`Vocabulary` (raw id -> source class name, colour -> raw id),
and decodes through a :class:`LabelDecoder` into ``HxW uint8`` class indices of the
dataset's :class:`~synth2real.data.classes.ClassSpec` (plus ``ignore_index``).

A :class:`ClassMap` (read from YAML, see ``docs/DATA.md``) replaces the default decoding:
it maps the raw ids, colours or source class names of one dataset onto the classes of
another and sends everything it does not mention to ``unmapped`` (ignored by default)::

    classes: cityscapes          # target classes: preset name, class-spec file, or inline
    map:                         # target class: source values (ids, names, colours)
      road: [7, roadline]
      sidewalk: 8
      building: ["#464646"]
    unmapped: ignore             # or the name of a target class
    id_channel: red              # optional: RGB label files carry the id in this channel

Built-in maps live in ``synth2real/data/classmaps/`` and are found by name
(``load_class_map("carla_to_cityscapes")``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from synth2real.data.classes import (
    PRESETS,
    ClassSpec,
    Color,
    class_spec_from_yaml_data,
    load_class_spec,
    parse_color,
)
from synth2real.errors import ConfigError, DataError

#: raw ids are at most 16 bits (16-bit label PNGs)
MAX_RAW_ID = 65535
_CHANNELS = {"red": 0, "r": 0, "green": 1, "g": 1, "blue": 2, "b": 2, 0: 0, 1: 1, 2: 2}


def _norm_name(name: str) -> str:
    """Class-name key: case-insensitive, ``_``/``-``/space-insensitive."""
    return " ".join(str(name).replace("_", " ").replace("-", " ").lower().split())


def _pack(colors: np.ndarray) -> np.ndarray:
    """``...x3 uint8`` -> ``... uint32`` packed ``r<<16 | g<<8 | b``."""
    c = colors.astype(np.uint32)
    return (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]


def _fmt_colors(packed: np.ndarray, limit: int = 8) -> str:
    cols = [[int(p >> 16) & 255, int(p >> 8) & 255, int(p) & 255] for p in packed[:limit]]
    more = f" and {len(packed) - limit} more" if len(packed) > limit else ""
    return ", ".join(str(c) for c in cols) + more


def _fmt_ids(ids: np.ndarray, limit: int = 12) -> str:
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(str(int(v)) for v in ids[:limit]) + more


@dataclass(frozen=True)
class Vocabulary:
    """What the raw values of one dataset's label files mean, before any mapping.

    Attributes:
        names: raw id -> source class name (``{7: "road", ...}``); may be partial.
        colors: colour -> raw id, for datasets whose label files are colour-coded.
    """

    names: dict[int, str] = field(default_factory=dict)
    colors: dict[Color, int] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, spec: ClassSpec) -> Vocabulary:
        """Raw id ``i`` is class ``i`` of ``spec``; its colours (if any) map to the ids."""
        names = {i: n for i, n in enumerate(spec.names)}
        colors = {c: i for i, c in enumerate(spec.colors)} if spec.colors else {}
        return cls(names=names, colors=colors)


class LabelDecoder:
    """Turns raw label arrays into ``HxW uint8`` class indices.

    Args:
        id_lut: ``int16`` array of length 65536: raw id -> class index (or ignore index);
            ``-1`` marks ids that are an error. ``None`` when the labels are colour-only.
        colors: colour -> class index (or ignore index) for colour-coded labels, or ``None``.
        unknown_color: class index for colours missing from ``colors`` (a class map's
            ``unmapped``), or ``None`` to raise on them.
        id_channel: for RGB label files that carry the id in one channel (0, 1, 2), or
            ``None``.
        describe: how error messages name the class spec ("the class spec (3 classes,
            ignore 255)").
    """

    def __init__(
        self,
        id_lut: np.ndarray | None,
        colors: dict[Color, int] | None = None,
        unknown_color: int | None = None,
        id_channel: int | None = None,
        describe: str = "the class spec",
    ):
        if id_lut is not None:
            id_lut = np.asarray(id_lut, dtype=np.int16)
            if id_lut.shape != (MAX_RAW_ID + 1,):
                raise ValueError("id_lut must have 65536 entries")
        self.id_lut = id_lut
        self.colors = dict(colors) if colors else None
        if self.colors:
            keys = np.array([(c[0] << 16) | (c[1] << 8) | c[2] for c in self.colors], np.uint32)
            order = np.argsort(keys)
            self._ckeys = keys[order]
            self._cvals = np.array(list(self.colors.values()), np.uint8)[order]
        self.unknown_color = unknown_color
        self.id_channel = id_channel
        self.describe = describe

    # -- public --------------------------------------------------------------------------
    def __call__(
        self, raw: np.ndarray, path: str | Path, palette: np.ndarray | None = None
    ) -> np.ndarray:
        """Decode ``raw`` (``HxW`` ids or ``HxWx3`` colours) read from ``path``.

        ``palette`` is the ``256x3`` palette of a palette-mode PNG (``raw`` then holds its
        indices). Such files are decoded through their colours when every colour they use
        is a class colour, otherwise through their indices (the Pascal VOC convention).

        Raises:
            DataError: naming ``path`` and listing the ids or colours that are not in the
                class spec (and not mapped).
        """
        if raw.ndim == 2 and palette is not None and self.colors and self.id_channel is None:
            used = np.flatnonzero(np.bincount(raw.ravel(), minlength=256))
            used_cols = _pack(palette[used])
            if np.isin(used_cols, self._ckeys).all():
                return self._decode_colors(palette[raw], path)
        if raw.ndim == 3:
            if self.id_channel is not None:
                raw = raw[..., self.id_channel]
            elif self.colors:
                return self._decode_colors(raw, path)
            elif (raw[..., 0] == raw[..., 1]).all() and (raw[..., 1] == raw[..., 2]).all():
                raw = raw[..., 0]  # an index map saved as grey RGB
            else:
                raise DataError(
                    path,
                    f"colour label map, but {self.describe} has no colours: add 'colors' to "
                    "the class spec (one [r, g, b] per class) or use a class map with colours",
                )
        if self.id_lut is None:
            raise DataError(path, f"index label map, but {self.describe} decodes colours only")
        return self._decode_ids(raw, path)

    # -- internals -----------------------------------------------------------------------
    def _decode_ids(self, raw: np.ndarray, path) -> np.ndarray:
        assert self.id_lut is not None
        if raw.dtype == np.uint8:
            out = self.id_lut[:256][raw]
        else:
            if raw.size and (raw.min() < 0 or raw.max() > MAX_RAW_ID):
                raise DataError(path, f"label ids outside 0..{MAX_RAW_ID}")
            out = self.id_lut[raw.astype(np.uint16)]
        bad = out < 0
        if bad.any():
            vals, counts = np.unique(raw[bad], return_counts=True)
            raise DataError(
                path,
                f"label ids {_fmt_ids(vals)} are not in {self.describe} "
                f"({int(counts.sum())} pixels)",
            )
        return out.astype(np.uint8)

    def _decode_colors(self, rgb: np.ndarray, path) -> np.ndarray:
        packed = _pack(rgb)
        idx = np.searchsorted(self._ckeys, packed)
        np.clip(idx, 0, len(self._ckeys) - 1, out=idx)
        hit = self._ckeys[idx] == packed
        out = self._cvals[idx]
        if not hit.all():
            if self.unknown_color is None:
                vals, counts = np.unique(packed[~hit], return_counts=True)
                raise DataError(
                    path,
                    f"label colours {_fmt_colors(vals)} are not in {self.describe} "
                    f"({int(counts.sum())} pixels)",
                )
            out = np.where(hit, out, np.uint8(self.unknown_color))
        return out.astype(np.uint8, copy=False)


def spec_decoder(spec: ClassSpec, describe: str | None = None) -> LabelDecoder:
    """The default decoder of a class spec: id ``i`` (or colour ``i``) is class ``i``,
    ``ignore_index`` is ignored, anything else is an error."""
    lut = np.full(MAX_RAW_ID + 1, -1, np.int16)
    lut[: spec.num_classes] = np.arange(spec.num_classes)
    lut[spec.ignore_index] = spec.ignore_index
    colors = {c: i for i, c in enumerate(spec.colors)} if spec.colors else None
    if describe is None:
        describe = (
            f"the class spec ({spec.num_classes} classes {list(spec.names)[:6]}"
            f"{'...' if spec.num_classes > 6 else ''}, ignore {spec.ignore_index})"
        )
    return LabelDecoder(lut, colors, describe=describe)


# -- class maps ----------------------------------------------------------------------------
SourceValue = int | str | Color


@dataclass(frozen=True)
class ClassMap:
    """Maps raw ids, colours or source class names of one dataset onto target classes.

    Attributes:
        classes: the target class spec (what decoded label maps hold).
        mapping: ``(target class index, source values)`` pairs; a source value is an int
            (raw id), a ``str`` (source class name, matched case-, space- and
            underscore-insensitively) or an ``(r, g, b)`` colour.
        unmapped: target index for every raw value not mentioned (default: ignore).
        id_channel: channel (0, 1, 2) holding the id in RGB label files, or ``None``.
        source: the YAML file it was read from (for messages).
    """

    classes: ClassSpec
    mapping: tuple[tuple[int, tuple[SourceValue, ...]], ...]
    unmapped: int = 255
    id_channel: int | None = None
    source: str = "class map"

    def decoder(self, vocab: Vocabulary) -> tuple[LabelDecoder, list[str]]:
        """A decoder for a dataset described by ``vocab``, plus notices (unmatched names).

        Raises:
            DataError: when none of the map's source class names exists in ``vocab``
                (the map was written for another dataset), or when one raw value is mapped
                onto two target classes.
        """
        lut = np.full(MAX_RAW_ID + 1, self.unmapped, np.int16)
        colors: dict[Color, int] = {}
        by_name: dict[str, list[int]] = {}
        for rid, n in vocab.names.items():
            by_name.setdefault(_norm_name(n), []).append(rid)
        color_of_id: dict[int, list[Color]] = {}
        for c, rid in vocab.colors.items():
            color_of_id.setdefault(rid, []).append(c)
        owner_id: dict[int, int] = {}
        owner_col: dict[Color, int] = {}
        missing_names: list[str] = []
        n_names = 0

        def claim(owner: dict, key: int | Color, target: int, what: str) -> None:
            """Record ``key -> target``; a raw value mapped onto two classes is an error."""
            if key in owner and owner[key] != target:
                raise DataError(
                    self.source,
                    f"{what} is mapped to both {self._tname(owner[key])!r} and "
                    f"{self._tname(target)!r}",
                )
            owner[key] = target

        def put_id(rid: int, target: int, what: str) -> None:
            if not 0 <= rid <= MAX_RAW_ID:
                raise DataError(self.source, f"raw id {rid} outside 0..{MAX_RAW_ID}")
            claim(owner_id, rid, target, what)
            lut[rid] = target
            for c in color_of_id.get(rid, []):
                put_col(c, target, what)

        def put_col(c: Color, target: int, what: str) -> None:
            claim(owner_col, c, target, what)
            colors[c] = target

        for target, values in self.mapping:
            for v in values:
                if isinstance(v, tuple):
                    put_col(v, target, f"colour {list(v)}")
                    rid = vocab.colors.get(v)
                    if rid is not None:
                        put_id(rid, target, f"colour {list(v)}")
                elif isinstance(v, str):
                    n_names += 1
                    ids = by_name.get(_norm_name(v))
                    if ids is None:
                        missing_names.append(v)
                        continue
                    for rid in ids:
                        put_id(rid, target, f"source class {v!r}")
                else:
                    put_id(int(v), target, f"raw id {v}")
        if n_names and len(missing_names) == n_names:
            known = sorted(set(vocab.names.values()))
            raise DataError(
                self.source,
                f"none of its source class names {missing_names[:6]} exists in this dataset "
                f"(its classes: {known[:12]}{' ...' if len(known) > 12 else ''})",
            )
        notices = []
        if missing_names:
            notices.append(
                f"class map {self.source}: source classes not in this dataset, ignored: "
                f"{missing_names}"
            )
        dec = LabelDecoder(
            lut,
            colors or None,
            unknown_color=self.unmapped,
            id_channel=self.id_channel,
            describe=f"the class map {self.source}",
        )
        return dec, notices

    def _tname(self, t: int) -> str:
        return self.classes.names[t] if t < self.classes.num_classes else "ignore"


def builtin_class_maps() -> dict[str, Path]:
    """Names and files of the class maps shipped with synth2real."""
    folder = resources.files("synth2real.data") / "classmaps"
    out = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".yaml"):
            out[entry.name[: -len(".yaml")]] = Path(str(entry))
    return dict(sorted(out.items()))


def _parse_source_value(v, where: str) -> SourceValue:
    if isinstance(v, bool):
        raise ValueError(f"{where}: {v!r} is not an id, a class name or a colour")
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        if v.startswith("#"):
            return parse_color(v, where)
        return v
    if isinstance(v, (list, tuple)):
        return parse_color(v, where)
    raise ValueError(f"{where}: {v!r} is not an id, a class name or a colour")


def class_map_from_data(data, source: str = "class map", base: Path | None = None) -> ClassMap:
    """Build a :class:`ClassMap` from parsed YAML (see the module docstring).

    Raises:
        ValueError: describing the problem (the caller adds the file name).
    """
    if not isinstance(data, dict):
        raise ValueError("expected a mapping with 'classes' and 'map'")
    unknown_keys = set(data) - {"classes", "map", "unmapped", "id_channel", "description"}
    if unknown_keys:
        raise ValueError(
            f"unknown keys {sorted(unknown_keys)} (allowed: classes, map, unmapped, id_channel, description)"
        )
    if "classes" not in data:
        raise ValueError(
            "missing 'classes' (the target classes: a preset name such as "
            f"{sorted(PRESETS)}, a class-spec file, or names/colors inline)"
        )
    tc = data["classes"]
    if isinstance(tc, str):
        if tc.lower() in PRESETS:
            target = PRESETS[tc.lower()]
        else:
            p = Path(tc)
            if not p.is_absolute() and base is not None:
                p = base / p
            if not p.is_file():
                raise ValueError(
                    f"classes: {tc!r} is neither a preset ({sorted(PRESETS)}) nor a file"
                )
            target = load_class_spec(p)
    else:
        target = class_spec_from_yaml_data(tc, "classes")
    raw_map = data.get("map")
    if not isinstance(raw_map, dict) or not raw_map:
        raise ValueError("'map' must be a non-empty mapping 'target class: [source values]'")
    mapping = []
    for tname, values in raw_map.items():
        try:
            t = target.index(str(tname))
        except KeyError:
            raise ValueError(
                f"map: {tname!r} is not a target class (target classes: {list(target.names)})"
            ) from None
        if values is None:
            continue
        if not isinstance(values, list):
            values = [values]  # a single value; a list is always a list of values
        mapping.append((t, tuple(_parse_source_value(v, f"map: {tname}") for v in values)))
    um = data.get("unmapped", "ignore")
    if um is None or str(um).lower() == "ignore":
        unmapped = target.ignore_index
    else:
        try:
            unmapped = target.index(str(um))
        except KeyError:
            raise ValueError(f"unmapped: {um!r} is neither 'ignore' nor a target class") from None
    ch = data.get("id_channel")
    if ch is not None:
        key = ch.lower() if isinstance(ch, str) else ch
        if key not in _CHANNELS:
            raise ValueError(f"id_channel: {ch!r} is not red, green, blue (or 0, 1, 2)")
        ch = _CHANNELS[key]
    return ClassMap(
        classes=target, mapping=tuple(mapping), unmapped=unmapped, id_channel=ch, source=source
    )


def load_class_map(path_or_name: str | Path) -> ClassMap:
    """Read a class-map YAML file, or a built-in map by name (``carla_to_cityscapes``).

    Raises:
        DataError: naming the file when it is missing or invalid.
    """
    import yaml

    p = Path(path_or_name)
    if not p.exists():
        builtins = builtin_class_maps()
        name = str(path_or_name)
        if name in builtins:
            p = builtins[name]
        elif p.suffix.lower() not in (".yaml", ".yml") and len(p.parts) == 1:
            raise ConfigError(
                f"class map {name!r}: no such file, and no built-in map of that name "
                f"(built-in: {sorted(builtins)})"
            )
        else:
            raise DataError(p, "class map file not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(p, f"cannot read class map ({e})") from None
    except yaml.YAMLError as e:
        raise DataError(p, f"not valid YAML ({e})") from None
    try:
        return class_map_from_data(data, source=str(p), base=p.parent)
    except ValueError as e:
        raise DataError(p, str(e)) from None
