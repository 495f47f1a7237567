"""Class specifications: which classes a label map holds, in which order.

Inside synth2real every decoded label map is an ``HxW uint8`` array of *class indices*
``0 .. num_classes-1``, plus ``ignore_index`` (255 by default) for pixels that belong to
no class. Readers translate raw ids or colours into these indices (see ``classmap.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
