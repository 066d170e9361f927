"""JSON Schemas of archsim's files, generated from the pydantic models that validate them, for
editors (completion, hover text, errors as one types) and other tools.

- ``chip``: a hardware config (``hw_configs/``), of kind ``tpu`` (the default) or ``gpu``; a
  system file is one too (a chip file it ``extends:`` and a ``system:`` section);
- ``system``: a config's ``system:`` section (chips, topology, parallel mapping);
- ``sweep``: a config's ``sweep:`` section (the design space around it);
- ``workload``: a workload file (``workloads/``), of any registered ``kind``.

A file with ``extends:`` gives only the keys it changes, so it is checked against the same
sections with no key required. A quantity is a string with its unit ('614 GB/s'): the schema
checks its form (a number and a unit), and archsim checks its dimension when it loads the
file, as it checks the rules between keys (``archsim validate``).

``archsim schema NAME`` prints one; ``python -m archsim.config.reference`` writes them all to
``schemas/`` with the reference page.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Callable, Iterator

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from archsim import units
from archsim.config.fields import QUANTITY_PATTERN

SCHEMA_NAMES = ("chip", "system", "sweep", "explore", "workload")
DRAFT = "https://json-schema.org/draft/2020-12/schema"
EXTENDS_DESCRIPTION = ("path of the YAML file this one extends, relative to this file: this file's keys are "
                       "merged over that file's (a section of another kind replaces the inherited one)")

# Where a schema holds schemas: single ones, lists of them, and maps of names to them.
_ONE = ("items", "additionalProperties", "propertyNames", "if", "then", "else", "not", "contains")
_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_MAPS = ("properties", "patternProperties", "$defs")
PARTIAL = "Partial"  # prefix of the definitions for files with extends:


def schema(name: str) -> dict[str, Any]:
    """The JSON Schema called ``name`` (one of ``SCHEMA_NAMES``)."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown schema {name!r}; expected one of: {', '.join(SCHEMA_NAMES)}")
    return _BUILDERS[name]()


def schema_text(name: str) -> str:
    """The schema as written to ``schemas/NAME.schema.json``: indented JSON, one final newline."""
    return json.dumps(schema(name), indent=2, ensure_ascii=False) + "\n"


def subschemas(node: Any) -> Iterator[dict[str, Any]]:
    """Every schema in ``node`` (itself first), not the data in it (defaults, examples)."""
    if not isinstance(node, dict):
        return
    yield node
    for key in _ONE:
        yield from subschemas(node.get(key))
    for key in _LISTS:
        for item in node.get(key, ()):
            yield from subschemas(item)
    for key in _MAPS:
        for item in node.get(key, {}).values():
            yield from subschemas(item)


def resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """``node``, or the definition its ``$ref`` names."""
    while "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[1]]
    return node


def is_quantity(node: dict[str, Any]) -> bool:
    return node.get("type") == "string" and node.get("pattern") == QUANTITY_PATTERN


def quantity_dim(node: dict[str, Any]) -> units.Dim:
    """The dimension of a quantity's schema, read from its example ('614 GB/s')."""
    return units.parse_quantity_exact(node["examples"][0])[1]


def options(node: dict[str, Any], defs: dict[str, Any]) -> list[dict[str, Any]]:
    """The schemas a value may match: a union's members (resolved, nested unions flattened)."""
    node = resolve(node, defs)
    members = node.get("anyOf") or node.get("oneOf")
    if not members:
        return [node]
    return [leaf for member in members for leaf in options(member, defs)]


def _definitions(models: list[type[BaseModel]]) -> tuple[dict[str, Any], list[str]]:
    """The models' schemas as one set of definitions (shared sections once), each with its
    defaults as a file writes them, and the definition name of each model."""
    refs, top = models_json_schema([(m, "validation") for m in models], ref_template="#/$defs/{model}")
    defs = top.get("$defs", {})
    for node in subschemas({"$defs": defs}):
        if "patternProperties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False  # a key of another form fails archsim's key type too
        for prop in node.get("properties", {}).values():
            if "default" in prop:
                prop["default"] = _as_written(prop["default"], prop, defs)
    return defs, [refs[(m, "validation")]["$ref"].rsplit("/", 1)[1] for m in models]


def _as_written(value: Any, node: dict[str, Any], defs: dict[str, Any]) -> Any:
    """A default (pydantic gives quantities in SI floats) as a file writes it: '0 s', not 0.0."""
    found = options(node, defs)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        quantity = next((o for o in found if is_quantity(o)), None)
        if quantity is None:
            return value
        text = repr(float(value)).removesuffix(".0")
        return f"{text} {units.si_unit(quantity_dim(quantity))}"
    if isinstance(value, list):
        items = next((o["items"] for o in found if isinstance(o.get("items"), dict)), None)
        return [v if items is None else _as_written(v, items, defs) for v in value]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            sub = next((o["properties"][key] for o in found if key in o.get("properties", {})), None)
            sub = sub or next((o["additionalProperties"] for o in found if isinstance(o.get("additionalProperties"), dict)), None)
            sub = sub or next((s for o in found for s in o.get("patternProperties", {}).values()), None)
            out[key] = item if sub is None else _as_written(item, sub, defs)
        return out
    return value


def _partial(defs: dict[str, Any], roots: list[str]) -> dict[str, Any]:
    """Copies of the definitions for a file with ``extends:``: no key required (the extended
    file may give it), a kind-selected section matching any of its kinds (its ``kind`` may be
    inherited too), and ``extends`` allowed at the top."""
    out = {}
    for name, definition in defs.items():
        if PARTIAL + name in defs:
            raise ValueError(f"a model named {PARTIAL + name} clashes with the partial copy of {name}")
        definition = copy.deepcopy(definition)
        for node in list(subschemas(definition)):
            for key in ("required", "minProperties", "discriminator"):
                node.pop(key, None)
            if "oneOf" in node:
                node["anyOf"] = node.pop("oneOf")
            if "$ref" in node:
                node["$ref"] = "#/$defs/" + PARTIAL + node["$ref"].rsplit("/", 1)[1]
        if name in roots:
            definition["properties"] = {"extends": {"type": "string", "description": EXTENDS_DESCRIPTION},
                                        **definition["properties"]}
            definition["description"] = (definition.get("description", "") + "\n\nA file with extends: gives only "
                                         "the keys it changes.").strip()
        out[PARTIAL + name] = definition
    return out


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/$defs/{name}"}


def _has(key: str, value: str) -> dict[str, Any]:
    return {"properties": {key: {"const": value}}, "required": [key]}


def _chip() -> dict[str, Any]:
    from archsim.config.chips import CHIP_KINDS, DEFAULT_KIND, chip_config_class

    kinds = list(CHIP_KINDS)
    defs, names = _definitions([chip_config_class(k) for k in kinds])
    by_kind = dict(zip(kinds, names))
    full: dict[str, Any] = _ref(by_kind[DEFAULT_KIND])  # no kind: the default
    for kind in reversed([k for k in kinds if k != DEFAULT_KIND]):
        full = {"if": _has("kind", kind), "then": _ref(by_kind[kind]), "else": full}
    return {
        "$schema": DRAFT,
        "title": "archsim hardware config",
        "description": "A chip and the system of such chips, by kind: " + ", ".join(kinds) + f" ({DEFAULT_KIND} "
                       "when kind is left out). A file with extends: gives only the keys it changes. Values with "
                       "units are strings such as '614 GB/s'. Generated by archsim schema chip.",
        "type": "object",
        "if": {"required": ["extends"]},
        "then": {"anyOf": [_ref(PARTIAL + n) for n in names]},
        "else": full,
        "$defs": {**defs, **_partial(defs, names)},
    }


def _section(model: type[BaseModel], title: str, description: str) -> dict[str, Any]:
    defs, (name,) = _definitions([model])
    return {"$schema": DRAFT, "title": title, "description": description, "allOf": [_ref(name)], "$defs": defs}


def _system() -> dict[str, Any]:
    from archsim.config.system import SystemConfig

    return _section(SystemConfig, "archsim system section", "The system: section of a hardware config: how many "
                    "chips, how they are wired and how a workload is mapped onto them. Generated by archsim "
                    "schema system.")


def _sweep() -> dict[str, Any]:
    from archsim.config.sweep import SweepSpec

    return _section(SweepSpec, "archsim sweep section", "The sweep: section of a hardware config: the design "
                    "space around it, its workloads, baseline and objectives. Generated by archsim schema sweep.")


def _explore() -> dict[str, Any]:
    from archsim.config.explore import ExploreSpec

    return _section(ExploreSpec, "archsim explore section", "The explore: section of a hardware config: a design "
                    "space too big for a grid, searched by archsim explore (its axes, workloads, objectives, "
                    "constraints and budget). Generated by archsim schema explore.")


def _workload() -> dict[str, Any]:
    from archsim.workloads.base import spec_classes

    classes = spec_classes()
    kinds = list(classes)
    defs, names = _definitions(list(classes.values()))
    return {
        "$schema": DRAFT,
        "title": "archsim workload",
        "description": "A workload file, by kind: " + ", ".join(kinds) + ". A file with extends: gives only the "
                       "keys it changes. Generated by archsim schema workload.",
        "type": "object",
        "if": {"required": ["extends"]},
        "then": {"anyOf": [_ref(PARTIAL + n) for n in names]},
        "else": {
            "required": ["kind"],
            "properties": {"kind": {"enum": kinds, "description": "the workload's kind: which keys it has"}},
            "allOf": [{"if": _has("kind", kind), "then": _ref(name)} for kind, name in zip(kinds, names)],
        },
        "$defs": {**defs, **_partial(defs, names)},
    }


_BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    "chip": _chip, "system": _system, "sweep": _sweep, "explore": _explore, "workload": _workload,
}
