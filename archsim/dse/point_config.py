"""A design point's validated hardware config, its sections validated once per axis value.

A sweep's points are its file's config with a few values set (``Point.overrides``), and each
section a point changes takes one of an axis's few values (an ``hbm:`` with one of the swept
bandwidths). So a section is kept by what was set in it, and a point whose every changed
section has been seen before is assembled from the kept sections and validated at the top level
only (the chip's cross-section checks, its own scalars): no copy of the file's mapping, no text
of a section to look it up by. The sections are the objects a point validated in full gave, and
a section validates on its own (``config.loader.SectionReuse``), so the config is the one
validating the point afresh gives. Any other point (a new axis value, a value set at the top
level that replaces a section or the chip's kind, a point that fails) is validated in full,
whose errors name the sources of the keys. How a point's set values group by section depends on
their key paths alone, so it is found once per sequence of paths (``_Recipe``), with the file's
sections that no path reaches: a point then looks up only the sections it sets values in.
"""

from __future__ import annotations

from typing import Any, Callable

from pydantic import BaseModel, ValidationError

from archsim.config.chips import chip_class
from archsim.config.loader import Layered, Override, SectionReuse, validate_hardware
from archsim.dse.spec import design
from archsim.memo import BoundedMemo

SetValues = tuple[tuple[tuple[str, ...], str], ...]  # (key path within the section, repr of the value)


class PointConfigs:
    """Points' configs: a file's design (its ``sweep:`` dropped) with the command line's
    ``--set`` values, and the point's axis values."""

    def __init__(self, size: int = 4096):
        self.sections: BoundedMemo[BaseModel] = BoundedMemo(size)  # (base id, section, set values) -> section
        self.reuse = SectionReuse(size)  # for the points validated in full
        # base id -> (held design, its mapping, its points' ``_Recipe`` by the key paths they set)
        self._bases: BoundedMemo[tuple[Layered, dict, dict]] = BoundedMemo(64)

    def validate(self, base_id: tuple, base: Callable[[], Layered], sets: tuple[tuple[tuple[str, ...], Any], ...],
                 overrides: Callable[[], list[Override]], source: str) -> Any:
        """The point's config: ``base_id`` names the design ``base()`` makes (the file's stamp
        and the ``--set`` texts), ``sets`` the axis values in order (key path, value), and
        ``overrides()`` makes them as overrides for a validation in full, whose errors name
        ``source`` and the overrides' labels."""
        held = self._bases.get(base_id)
        if held is None:
            made = base()
            held = self._bases.put(base_id, (made, made.data, {}))
        data = held[1]
        paths = tuple(path for path, _ in sets)
        recipe = held[2].get(paths, _UNKNOWN)
        if recipe is _UNKNOWN:
            if len(held[2]) >= _RECIPES_HELD:
                held[2].clear()
            recipe = held[2][paths] = _Recipe.of(data, paths)
        if recipe is not None:
            mixed = self._assembled(base_id, data, recipe, sets)
            model = chip_class(data.get("kind")) if mixed is not None else None
            try:
                if model is not None:
                    return model.model_validate(mixed)
            except ValidationError:
                pass  # validated in full below: its errors name the keys' sources
        groups = _by_section(data, sets)
        validated = validate_hardware(design(held[0], overrides()), source, self.reuse)
        if groups is not None:  # the file's sections, and those the point sets values in
            names = [name for name, value in data.items() if isinstance(value, dict)]
            names += [name for name, (_, scalar) in groups.items() if scalar is _SECTION and name not in names]
            for name in names:
                values = groups[name][0] if name in groups else ()
                section = getattr(validated, name, None)
                self.sections.put((base_id, name, values), section if isinstance(section, BaseModel) else _RAW)
        return validated

    def _assembled(self, base_id: tuple, data: dict, recipe: "_Recipe", sets) -> dict | None:
        """The point's top-level mapping with every section it sets, and every section of the
        file it does not, the validated ones kept (None: one is not, or a value set at the top
        level is a mapping: the point is validated in full)."""
        mixed = dict(data)
        for name, i in recipe.scalars:
            value = sets[i][1]
            if isinstance(value, dict):  # replaces a section: validated in full
                return None
            mixed[name] = value
        for name, picks in recipe.sections:
            section = self.sections.get((base_id, name, tuple((rest, repr(sets[i][1])) for i, rest in picks)))
            if section is None or section is _RAW:  # unknown, or no model to stand for it
                return None
            mixed[name] = section
        if recipe.untouched is None:  # the file's sections no value is set in: found once, then kept
            untouched = []
            for name, value in data.items():
                if isinstance(value, dict) and name not in recipe.names:
                    section = self.sections.get((base_id, name, ()))
                    if section is None:
                        return None
                    if section is not _RAW:  # else its mapping, as written, validates anew
                        untouched.append((name, section))
            recipe.untouched = tuple(untouched)
        mixed.update(recipe.untouched)
        return mixed


_SECTION = object()  # a group's marker: the values are set within a section
_RAW = object()  # a mapping that validates to no model (a GPU's kernel table): passed as written


class _Recipe:
    """How points setting values at ``paths`` group them (``_by_section``), found once from the
    paths alone: the sections they set values in, with (index in the point's values, key path
    within), the top-level values they set, with their index, and once a point has found them
    all held, the validated sections of the file they set nothing in."""

    __slots__ = ("sections", "scalars", "names", "untouched")

    def __init__(self, sections: dict[str, list[tuple[int, tuple[str, ...]]]], scalars: dict[str, int]):
        self.sections = tuple((name, tuple(picks)) for name, picks in sections.items())
        self.scalars = tuple(scalars.items())
        self.names = frozenset(sections) | frozenset(scalars)
        self.untouched: tuple[tuple[str, BaseModel], ...] | None = None

    @classmethod
    def of(cls, data: dict, paths: tuple[tuple[str, ...], ...]) -> "_Recipe | None":
        """None where ``_by_section`` gives None whatever the values (a path replacing a
        section, reaching inside a plain value, or setting the chip's kind)."""
        sections: dict[str, list[tuple[int, tuple[str, ...]]]] = {}
        scalars: dict[str, int] = {}
        for i, (head, *rest) in enumerate(paths):
            current = data.get(head)
            if rest:
                if (current is not None and not isinstance(current, dict)) or head in scalars:
                    return None
                sections.setdefault(head, []).append((i, tuple(rest)))
            elif head == "kind" or isinstance(current, dict) or head in sections or head in scalars:
                return None
            else:
                scalars[head] = i
        return cls(sections, scalars)


_UNKNOWN = object()  # no recipe made yet for these paths
_RECIPES_HELD = 64  # per design: a sweep's points set the same paths, a few sweeps' a few


def _by_section(data: dict, sets) -> dict[str, tuple[SetValues, Any]] | None:
    """The set values by the top-level key they fall in: within a section (the file's, or one
    it lacks or sets to null, which setting a value in makes), (key path in it, repr of the
    value) in order; a top-level value (not a section, nor the kind), the value. None if any
    replaces a section, sets a value inside a plain value or sets the chip's kind: such points
    are validated in full."""
    groups: dict[str, tuple[list, Any]] = {}
    for (head, *rest), value in sets:
        current = data.get(head)
        if rest:
            if current is not None and not isinstance(current, dict):
                return None
            values, kind = groups.setdefault(head, ([], _SECTION))
            if kind is not _SECTION:  # a value set inside one this point sets at the top level
                return None
            values.append((tuple(rest), repr(value)))
        elif head == "kind" or isinstance(current, dict) or isinstance(value, dict) or head in groups:
            return None
        else:
            groups[head] = ([], value)
    return {name: (tuple(values), scalar) for name, (values, scalar) in groups.items()}
