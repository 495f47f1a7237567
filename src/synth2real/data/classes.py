"""Class specifications: which classes a label map holds, in which order.

Inside synth2real every decoded label map is an ``HxW uint8`` array of *class indices*
``0 .. num_classes-1``, plus ``ignore_index`` (255 by default) for pixels that belong to
no class. Readers translate raw ids or colours into these indices (see ``classmap.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

Color = tuple[int, int, int]


@dataclass(frozen=True)
class ClassSpec:
    """Ordered class names, optional display/label colours and the ignore index.

    Args:
        names: class names; the position is the class index in decoded label maps.
        colors: one RGB colour per class (used to decode colour label PNGs and to draw
            overlays), or ``None``.
        ignore_index: label value of pixels that belong to no class (never a class index).
    """

    names: tuple[str, ...]
    colors: tuple[Color, ...] | None = None
    ignore_index: int = 255
    extra: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.names)
        object.__setattr__(self, "names", names)
        if not names:
            raise ValueError("a class spec needs at least one class")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate class names in {names}")
        if not 0 <= self.ignore_index <= 255:
            raise ValueError(f"ignore_index must be in 0..255, got {self.ignore_index}")
        if self.ignore_index < len(names):
            raise ValueError(
                f"ignore_index {self.ignore_index} collides with a class index "
                f"(there are {len(names)} classes)"
            )
        if self.colors is not None:
            colors = tuple(tuple(int(v) for v in c) for c in self.colors)
            if len(colors) != len(names):
                raise ValueError(f"{len(colors)} colours given for {len(names)} classes")
            object.__setattr__(self, "colors", colors)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"unknown class {name!r}; classes are {list(self.names)}") from None

    def palette(self) -> list[Color]:
        """Colours for drawing: the spec's own, or a fixed distinct palette."""
        if self.colors is not None:
            return list(self.colors)
        return [default_color(i) for i in range(self.num_classes)]

    def to_dict(self) -> dict:
        d: dict = {"names": list(self.names), "ignore_index": self.ignore_index}
        if self.colors is not None:
            d["colors"] = [list(c) for c in self.colors]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ClassSpec:
        colors = d.get("colors")
        return cls(
            names=tuple(d["names"]),
            colors=tuple(tuple(c) for c in colors) if colors else None,
            ignore_index=int(d.get("ignore_index", 255)),
        )


def default_color(i: int) -> Color:
    """A deterministic, well-separated colour for class ``i`` (background black)."""
    if i == 0:
        return (0, 0, 0)
    # golden-ratio hue walk, full saturation
    import colorsys

    h = (i * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 1.0)
    return (int(r * 255), int(g * 255), int(b * 255))


# -- colours -------------------------------------------------------------------------------
def parse_color(value, where: str = "colour") -> Color:
    """``[r, g, b]``, ``(r, g, b)`` or ``"#rrggbb"`` -> ``(r, g, b)`` ints in 0..255.

    Raises:
        ValueError: naming ``where`` when the value is not a colour.
    """
    if isinstance(value, str):
        s = value.strip()
        if s.startswith("#") and len(s) == 7:
            try:
                return (int(s[1:3], 16), int(s[3:5], 16), int(s[5:7], 16))
            except ValueError:
                pass
        raise ValueError(f"{where}: {value!r} is not a colour ('#rrggbb' or [r, g, b])")
    if isinstance(value, (list, tuple)) and len(value) == 3:
        try:
            rgb = tuple(int(v) for v in value)
        except (TypeError, ValueError):
            rgb = ()
        if len(rgb) == 3 and all(
            0 <= v <= 255 and float(v) == float(w) for v, w in zip(rgb, value, strict=True)
        ):
            return rgb  # type: ignore[return-value]
    raise ValueError(f"{where}: {value!r} is not a colour ('#rrggbb' or [r, g, b] in 0..255)")


# -- YAML files ----------------------------------------------------------------------------
def class_spec_from_yaml_data(data, source: str = "class spec") -> ClassSpec:
    """Build a :class:`ClassSpec` from parsed YAML (a mapping or a list of names).

    Accepted forms::

        names: [background, plate, scratch]      # required
        colors: [[0, 0, 0], "#ff0000", [0, 255, 0]]   # optional, one per class
        ignore_index: 255                        # optional (default 255)

    or a plain list of names, or ``classes: [{name: road, color: [128, 64, 128]}, ...]``.

    Raises:
        ValueError: describing what is wrong (the caller adds the file name).
    """
    if isinstance(data, list):
        data = {"names": data}
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a mapping with 'names', got {type(data).__name__}")
    if "classes" in data and "names" not in data:
        entries = data["classes"]
        if not isinstance(entries, list) or not all(
            isinstance(e, dict) and "name" in e for e in entries
        ):
            raise ValueError(
                f"{source}: 'classes' must be a list of {{name: ..., color: ...}} entries"
            )
        names = [e["name"] for e in entries]
        with_color = [e for e in entries if "color" in e]
        if with_color and len(with_color) != len(entries):
            raise ValueError(f"{source}: either every class has a 'color' or none does")
        colors = [e["color"] for e in entries] if with_color else None
    else:
        if "names" not in data:
            raise ValueError(f"{source}: missing 'names' (the ordered list of class names)")
        names, colors = data["names"], data.get("colors")
    if not isinstance(names, list) or not names:
        raise ValueError(f"{source}: 'names' must be a non-empty list")
    if any(not isinstance(n, (str, int)) or str(n) == "" for n in names):
        raise ValueError(f"{source}: every class name must be a non-empty string")
    parsed_colors = None
    if colors is not None:
        if not isinstance(colors, list) or len(colors) != len(names):
            raise ValueError(
                f"{source}: 'colors' must list one colour per class ({len(names)} names)"
            )
        parsed_colors = tuple(
            parse_color(c, f"{source}: colour of class {names[i]!r}") for i, c in enumerate(colors)
        )
        seen: dict[Color, str] = {}
        for n, c in zip(names, parsed_colors, strict=True):
            if c in seen:
                raise ValueError(
                    f"{source}: classes {seen[c]!r} and {n!r} share the colour {list(c)}; "
                    "colour label maps could not be decoded"
                )
            seen[c] = str(n)
    ignore = data.get("ignore_index", 255)
    if isinstance(ignore, bool) or not isinstance(ignore, int):
        raise ValueError(f"{source}: ignore_index must be an integer in 0..255, got {ignore!r}")
    return ClassSpec(names=tuple(str(n) for n in names), colors=parsed_colors, ignore_index=ignore)


def load_class_spec(path: str | Path) -> ClassSpec:
    """Read a class spec YAML file (see :func:`class_spec_from_yaml_data` for the format).

    Raises:
        DataError: naming ``path`` when it is missing, not YAML, or not a valid spec.
    """
    import yaml

    from synth2real.errors import DataError

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, "class spec file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot read class spec ({e})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise DataError(path, f"not valid YAML ({e})") from None
    try:
        return class_spec_from_yaml_data(data, "class spec")
    except ValueError as e:
        raise DataError(path, str(e)) from None


def save_class_spec(spec: ClassSpec, path: str | Path) -> None:
    """Write ``spec`` as YAML (``names``, ``colors`` when set, ``ignore_index``), atomically."""
    import yaml

    from synth2real.data.io import atomic_write_text

    text = yaml.safe_dump(
        spec.to_dict(), sort_keys=False, allow_unicode=True, default_flow_style=None
    )
    atomic_write_text(path, text)


# -- well-known class sets -----------------------------------------------------------------
#: (label id, name, train id, colour) of Cityscapes, as in cityscapesScripts ``labels.py``.
CITYSCAPES_LABELS: tuple[tuple[int, str, int, Color], ...] = (
    (0, "unlabeled", 255, (0, 0, 0)),
    (1, "ego vehicle", 255, (0, 0, 0)),
    (2, "rectification border", 255, (0, 0, 0)),
    (3, "out of roi", 255, (0, 0, 0)),
    (4, "static", 255, (0, 0, 0)),
    (5, "dynamic", 255, (111, 74, 0)),
    (6, "ground", 255, (81, 0, 81)),
    (7, "road", 0, (128, 64, 128)),
    (8, "sidewalk", 1, (244, 35, 232)),
    (9, "parking", 255, (250, 170, 160)),
    (10, "rail track", 255, (230, 150, 140)),
    (11, "building", 2, (70, 70, 70)),
    (12, "wall", 3, (102, 102, 156)),
    (13, "fence", 4, (190, 153, 153)),
    (14, "guard rail", 255, (180, 165, 180)),
    (15, "bridge", 255, (150, 100, 100)),
    (16, "tunnel", 255, (150, 120, 90)),
    (17, "pole", 5, (153, 153, 153)),
    (18, "polegroup", 255, (153, 153, 153)),
    (19, "traffic light", 6, (250, 170, 30)),
    (20, "traffic sign", 7, (220, 220, 0)),
    (21, "vegetation", 8, (107, 142, 35)),
    (22, "terrain", 9, (152, 251, 152)),
    (23, "sky", 10, (70, 130, 180)),
    (24, "person", 11, (220, 20, 60)),
    (25, "rider", 12, (255, 0, 0)),
    (26, "car", 13, (0, 0, 142)),
    (27, "truck", 14, (0, 0, 70)),
    (28, "bus", 15, (0, 60, 100)),
    (29, "caravan", 255, (0, 0, 90)),
    (30, "trailer", 255, (0, 0, 110)),
    (31, "train", 16, (0, 80, 100)),
    (32, "motorcycle", 17, (0, 0, 230)),
    (33, "bicycle", 18, (119, 11, 32)),
)

#: The 19 Cityscapes training classes (train ids 0..18), ignore 255.
CITYSCAPES = ClassSpec(
    names=tuple(n for _, n, t, _ in sorted(CITYSCAPES_LABELS, key=lambda r: r[2]) if t != 255),
    colors=tuple(c for _, _, t, c in sorted(CITYSCAPES_LABELS, key=lambda r: r[2]) if t != 255),
)

#: The 11 CamVid classes of the SegNet release (index 11 = void), ignore 255.
CAMVID = ClassSpec(
    names=(
        "sky",
        "building",
        "pole",
        "road",
        "pavement",
        "tree",
        "signsymbol",
        "fence",
        "car",
        "pedestrian",
        "bicyclist",
    ),  # fmt: skip
    colors=(
        (128, 128, 128),
        (128, 0, 0),
        (192, 192, 128),
        (128, 64, 128),
        (60, 40, 222),
        (128, 128, 0),
        (192, 128, 128),
        (64, 64, 128),
        (64, 0, 128),
        (64, 64, 0),
        (0, 128, 192),
    ),  # fmt: skip
)

#: Class sets known by name (``classes: cityscapes`` in a class-map YAML).
PRESETS: dict[str, ClassSpec] = {"cityscapes": CITYSCAPES, "camvid": CAMVID}
