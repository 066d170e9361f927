"""The config reference page (docs/config_reference.md): every key of archsim's files, with its
type, unit, default and description, read from the JSON Schemas (``archsim.config.json_schema``)
and so from the pydantic models that validate the files.

    python -m archsim.config.reference            # write schemas/*.schema.json and the page
    python -m archsim.config.reference --check    # exit 1 when a committed file is stale
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archsim import units
from archsim.config.json_schema import (
    PARTIAL, SCHEMA_NAMES, is_quantity, options, quantity_dim, resolve, schema, schema_text, subschemas,
)

PAGE = Path("docs") / "config_reference.md"
SCHEMA_DIR = Path("schemas")
REGENERATE = "python -m archsim.config.reference"
_MISSING = object()


@dataclass(frozen=True)
class Row:
    key: str
    type: str
    unit: str
    default: str
    description: str


def outputs() -> dict[Path, str]:
    """Every generated file (relative to the repository's root) and its text."""
    files = {SCHEMA_DIR / f"{name}.schema.json": schema_text(name) for name in SCHEMA_NAMES}
    files[PAGE] = page()
    return files


def page() -> str:
    """The reference page, in Markdown."""
    chip, system, sweep, explore, workload = (schema(name) for name in SCHEMA_NAMES)
    stop = {"SystemConfig": "the [system section](#system-section)", "SweepSpec": "the [sweep section](#sweep-section)",
            "ExploreSpec": "the [explore section](#explore-section)"}
    out = [_INTRO, _EDITORS, _units(chip, workload)]
    out.append("## Hardware configs\n\nSchema `schemas/chip.schema.json`. The top-level `kind` picks the chip's keys: "
               "`tpu` (the default when `kind` is left out) or `gpu`. A system file is a hardware config too: it "
               "`extends:` a chip file and adds its `system:` section.\n")
    for model in _roots(chip):
        out.append(_heading(model))
        out.append(_table(_rows(model, "", chip["$defs"], stop)))
    for title, anchor_schema, key in (("System section", system, "system"), ("Sweep section", sweep, "sweep"),
                                      ("Explore section", explore, "explore")):
        model = resolve(anchor_schema["allOf"][0], anchor_schema["$defs"])
        out.append(f"## {title}\n\nSchema `schemas/{key}.schema.json` (the section alone). {_text(anchor_schema['description'])}\n")
        out.append(_table(_rows(model, key + ".", anchor_schema["$defs"], {})))
    out.append("## Workload files\n\nSchema `schemas/workload.schema.json`. The `kind` key picks the workload's keys. "
               "Paths in a workload file (a model's config.json, a trace) are relative to the file.\n")
    for model in _roots(workload):
        out.append(_heading(model))
        out.append(_table(_rows(model, "", workload["$defs"], {})))
    return "\n".join(out).rstrip() + "\n"


def _heading(model: dict[str, Any]) -> str:
    about = _text(model.get("description", ""))
    return f"### kind: {model['properties']['kind']['const']}\n" + (f"\n{about}\n" if about else "")


def _roots(document: dict[str, Any]) -> list[dict[str, Any]]:
    """A file schema's models, one per kind, in order (those its extends: branch lists)."""
    names = [ref["$ref"].rsplit("/", 1)[1].removeprefix(PARTIAL) for ref in document["then"]["anyOf"]]
    return [document["$defs"][name] for name in names]


_INTRO = f"""# Config reference

Every key of archsim's hardware configs, their `system:` and `sweep:` sections, and workload
files: its type, unit, default (or *required*) and what it means. Generated from the pydantic
models that validate the files, with the JSON Schemas in `schemas/`, by `{REGENERATE}`;
do not edit it by hand (a test compares it with a fresh one).

A key path such as `hbm.bandwidth` is the key `bandwidth` in the section `hbm:`. `<key>` stands for a
key of a mapping you choose (a dtype, an op kind, a node), `[]` for each item of a list, and
*(kind `x`)* marks keys of a section only when its `kind` is `x`. A file with `extends:` gives only
the keys it changes: its other keys come from the file it extends (relative to it), merged section
by section; a section that names another `kind` replaces the inherited one.

`archsim validate FILE` checks what a schema cannot: a quantity's dimension (a bandwidth, not a
frequency) and the rules between keys (pipeline x tensor x data = chips, a tile fits shared memory).
"""

_EDITORS = """## Editors

`schemas/chip.schema.json` (hardware configs, system files included), `schemas/workload.schema.json`
(workload files), `schemas/system.schema.json`, `schemas/sweep.schema.json` and
`schemas/explore.schema.json` (those sections alone) give an editor completion, these descriptions on hover and errors as you type. `archsim schema NAME`
prints one; `archsim schema --out DIR` writes them all.

In VS Code, with the YAML extension (Red Hat), name the schema in a file's first line, by a path
relative to the file:

    # yaml-language-server: $schema=../schemas/chip.schema.json

(from `hw_configs/systems/`: `../../schemas/chip.schema.json`; from `workloads/`:
`../schemas/workload.schema.json`), or map folders to schemas once, in `.vscode/settings.json`:

    {
      "yaml.schemas": {
        "./schemas/chip.schema.json": ["hw_configs/**/*.yaml"],
        "./schemas/workload.schema.json": ["workloads/*.yaml"]
      }
    }

The schemas are JSON Schema 2020-12. An editor that implements draft-07 (as VS Code's YAML
extension does) skips the 2020-12 keyword they use for a tuple's items (`prefixItems`, as in
`mxu.cim.grid: [16, 8]`) and checks only such a list's length.
"""


def _units(*schemas: dict[str, Any]) -> str:
    dims = {quantity_dim(node) for s in schemas for node in subschemas(s) if is_quantity(node)}
    rows = [f"| {name} | `{units.si_unit(dim)}` | `{example}` |" for dim, (name, example) in units.DIM_NAMES.items()
            if dim in dims]
    return ("## Units\n\nA physical value is a string: a number and its unit, such as `614 GB/s` or `16 MiB`; a "
            "number without a unit is an error. Units: `B`, `bit`, `s`, `Hz`, `J`, `W`, `m`, with SI prefixes "
            "(`p`, `n`, `u`, `m`, `k`, `M`, `G`, `T`, ...) or, on bytes and bits, binary ones (`KiB`, `MiB`, "
            "`GiB`, `TiB`), powers (`mm^2`) and quotients (`GB/s`, `pJ/bit`, `W/mm^2`). archsim converts each "
            "to SI exactly.\n\n| quantity | SI unit | example |\n|---|---|---|\n" + "\n".join(rows) + "\n")


def _rows(model: dict[str, Any], prefix: str, defs: dict[str, Any], stop: dict[str, str],
          qualifier: str = "", seen: tuple[int, ...] = ()) -> list[Row]:
    """The rows of a section's keys, and of the sections within them."""
    if id(model) in seen:
        return []
    seen += (id(model),)
    required = set(model.get("required", ()))
    rows = []
    for name, prop in model.get("properties", {}).items():
        path = prefix + name
        sections = [o for o in options(prop, defs) if "properties" in o]
        where = next((stop[n] for n in _ref_names(prop, defs) if n in stop), None)
        description = _text(prop.get("description") or (sections[0].get("description", "") if sections else ""))
        if where:
            description = (description.rstrip(".") + ". " if description else "") + f"Its keys: {where}."
        rows.append(Row(f"`{path}`" + qualifier, _type(prop, defs), _unit(prop, defs), _default(prop, name in required, defs),
                        description or "—"))
        if where:
            continue
        kinds = [(s["properties"]["kind"].get("const"), s) for s in sections if "kind" in s.get("properties", {})]
        if len(sections) > 1 and len(kinds) == len(sections):
            for kind, section in kinds:
                inner = {**section, "properties": {k: v for k, v in section["properties"].items() if k != "kind"}}
                rows += _rows(inner, path + ".", defs, stop, f"{qualifier} (kind `{kind}`)", seen)
        else:
            for section in sections:
                rows += _rows(section, path + ".", defs, stop, qualifier, seen)
        for inner, suffix in _nested(prop, defs):
            rows += _rows(inner, path + suffix, defs, stop, qualifier, seen)
    return rows


def _ref_names(node: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    names = [node["$ref"].rsplit("/", 1)[1]] if "$ref" in node else []
    for member in node.get("anyOf") or node.get("oneOf") or ():
        names += _ref_names(member, defs)
    return names


def _nested(prop: dict[str, Any], defs: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """Sections inside a list (``[].``) or a mapping (``.<key>.``) this key holds."""
    out = []
    for option in options(prop, defs):
        inner = [(option["items"], "[].")] if isinstance(option.get("items"), dict) else []
        values = option.get("additionalProperties")
        inner += [(values, ".<key>.")] if isinstance(values, dict) else []
        inner += [(v, ".<key>.") for v in option.get("patternProperties", {}).values()]
        for node, suffix in inner:
            out += [(o, suffix) for o in options(node, defs) if "properties" in o]
    return out


def _type(node: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in node:
        target = resolve(node, defs)
        return "section" if "properties" in target else _type(target, defs)
    members = node.get("anyOf") or node.get("oneOf")
    if members:
        kinds = [resolve(m, defs).get("properties", {}).get("kind", {}).get("const") for m in members]
        if len(members) > 1 and all(kinds):
            return "section, by kind: " + _either([f"`{k}`" for k in kinds])
        parts = list(dict.fromkeys(_type(m, defs) for m in members if m.get("type") != "null"))
        return " or ".join(parts) + (" or null" if len(parts) < len(members) else "")
    if is_quantity(node):
        return units.DIM_NAMES[quantity_dim(node)][0]
    if "const" in node:
        return f"`{node['const']}`"
    if "enum" in node:
        return _either([f"`{v}`" for v in node["enum"]])
    kind = node.get("type")
    if kind == "array":
        if "prefixItems" in node:
            return "[" + ", ".join(_type(item, defs) for item in node["prefixItems"]) + "]"
        items = f"list of {_type(node['items'], defs)}" if isinstance(node.get("items"), dict) else "list"
        return ("non-empty " if node.get("minItems", 0) > 0 else "") + items
    if kind == "object":
        values = node.get("additionalProperties")
        values = values if isinstance(values, dict) else next(iter(node.get("patternProperties", {}).values()), None)
        if values is None:
            return "mapping"
        return f"mapping of {_keys(node, defs)} to {_type(values, defs)}"
    if kind in ("integer", "number"):
        return " ".join([kind] + _bounds(node))
    return kind or "any"


def _keys(node: dict[str, Any], defs: dict[str, Any]) -> str:
    names = node.get("propertyNames")
    if not names:
        return "name"
    names = resolve(names, defs)
    if "enum" in names:
        return _either([f"`{v}`" for v in names["enum"]])
    if names.get("examples"):
        return f"{units.DIM_NAMES[quantity_dim(names)][0]} (`{names['examples'][0]}`)"
    return "name"


def _bounds(node: dict[str, Any]) -> list[str]:
    marks = [(">", "exclusiveMinimum"), ("≥", "minimum"), ("<", "exclusiveMaximum"), ("≤", "maximum")]
    found = [f"{sign} {_number(node[key])}" for sign, key in marks if key in node and abs(node[key]) < 1e40]
    return [", ".join(found)] if found else []


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else f"{value:g}"


def _either(values: list[str]) -> str:
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " or " + values[-1]


def _unit(node: dict[str, Any], defs: dict[str, Any]) -> str:
    """The SI unit of the quantities a key holds (itself, its list's items, its mapping's values)."""
    pending, found = [node], None
    while pending and found is None:
        current = pending.pop(0)
        for option in options(current, defs):
            if is_quantity(option):
                found = option
                break
            if "properties" in option:
                continue
            pending += [s for s in (option.get("items"), option.get("additionalProperties")) if isinstance(s, dict)]
            pending += list(option.get("patternProperties", {}).values()) + list(option.get("prefixItems", ()))
    if found is None:
        return ""
    return f"{units.si_unit(quantity_dim(found))} (`{found['examples'][0]}`)"


def _default(prop: dict[str, Any], required: bool, defs: dict[str, Any]) -> str:
    if required:
        return "*required*"
    if "default" not in prop:
        return "optional"
    value = prop["default"]
    sections = [o for o in options(prop, defs) if "properties" in o]
    if isinstance(value, dict) and len(sections) == 1:
        own = {k: p["default"] for k, p in sections[0]["properties"].items() if "default" in p}
        differ = {k: v for k, v in value.items() if own.get(k, _MISSING) != v}
        return "its keys' defaults" + (", but " + ", ".join(f"`{k}: {_json(v)}`" for k, v in differ.items())
                                       if differ else "")
    return f"`{_json(value)}`"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False).replace("|", "\\|")


def _text(text: str) -> str:
    """A description on one table line: whitespace collapsed, reST's ``code`` as Markdown's."""
    text = re.sub(r"\s+", " ", text.split("\n\n")[0]).strip()
    return text.replace("``", "`").replace("|", "\\|")


def _table(rows: list[Row]) -> str:
    lines = ["| key | type | unit | default | description |", "|---|---|---|---|---|"]
    lines += [f"| {r.key} | {r.type} | {r.unit} | {r.default} | {r.description} |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m archsim.config.reference", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="the repository's root (default: here)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a file differs")
    args = parser.parse_args(argv)
    if not (args.root / PAGE.parent).is_dir():
        parser.error(f"{args.root / PAGE.parent} is not a folder: run this in the repository's root, or give --root")
    stale = []
    for path, text in outputs().items():
        target = args.root / path
        if target.is_file() and target.read_text(encoding="utf-8") == text:
            continue
        stale.append(str(path))
        if not args.check:
            target.parent.mkdir(exist_ok=True)
            target.write_text(text, encoding="utf-8")
    if args.check and stale:
        print(f"stale: {', '.join(stale)}; regenerate with {REGENERATE}", file=sys.stderr)
        return 1
    print(("up to date" if not stale else ("wrote " + ", ".join(stale))), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
