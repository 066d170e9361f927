"""Reading the data files a workload names (model configs, L2C masks): regular files only, of
bounded size, JSON without repeated keys, with one-line errors naming the file.

The same rules as ``archsim.config.yamlio`` applies to YAML files: a FIFO would block the read
forever and ``/dev/zero`` never ends, so only regular files are opened; the size is checked
before reading, and the read itself is bounded in case the file grows meanwhile.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

from archsim.errors import ConfigError
from archsim.units import shorten


def regular_file_size(path: Path, expected: str) -> int:
    """The size of ``path`` in bytes; an error unless it is an existing regular file."""
    try:
        mode = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"file not found, expected {expected}", file=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", file=str(path)) from None
    if stat.S_ISDIR(mode.st_mode):
        raise ConfigError(f"is a directory, expected {expected}", file=str(path))
    if not stat.S_ISREG(mode.st_mode):
        raise ConfigError(f"is not a regular file, expected {expected}", file=str(path))
    return mode.st_size


def read_text(path: Path, expected: str, kind: str, max_bytes: int, shown: str) -> str:
    """The UTF-8 text of a regular file of at most ``max_bytes`` bytes. For the errors:
    ``expected`` is what the file should be ("a CSV mask"), ``kind`` such files in the plural
    ("L2C masks"), ``shown`` the limit in words ("16 MiB")."""
    size = regular_file_size(path, expected)
    too_big = f"archsim reads {kind} of at most {max_bytes:,} bytes ({shown})"
    if size > max_bytes:
        raise ConfigError(f"file is {size:,} bytes; {too_big}", file=str(path))
    try:
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", file=str(path)) from None
    if len(data) > max_bytes:  # it grew after the check
        raise ConfigError(f"file is over {max_bytes:,} bytes; {too_big}", file=str(path))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not a UTF-8 text file (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})",
                          file=str(path)) from None


class _Object(dict):
    """A JSON object as read, with the keys it repeats (json keeps the last value silently)."""

    repeated: list[str]


def _object(pairs: list[tuple[str, object]]) -> _Object:
    obj = _Object(pairs)
    obj.repeated = []
    if len(obj) < len(pairs):
        keys: set[str] = set()
        for key, _ in pairs:
            if key in keys:
                obj.repeated.append(key)
            keys.add(key)
    return obj


def _first_repeated(value: object) -> tuple[str, ...] | None:
    """The key path of the first key a JSON object repeats, depth first in file order
    (iterative: a file nested as deep as json allows must not exhaust the stack here)."""
    stack: list[tuple[tuple[str, ...], object]] = [((), value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, _Object):
            if node.repeated:
                return path + (node.repeated[0],)
            children = [(path + (str(k),), v) for k, v in node.items()]
        elif isinstance(node, list):
            children = [(path + (str(i),), v) for i, v in enumerate(node)]
        else:
            continue
        stack.extend(reversed(children))
    return None


def read_json_object(path: Path, expected: str, kind: str, max_bytes: int, shown: str) -> dict:
    """A JSON file's top-level object (arguments as for ``read_text``, ``expected`` naming a
    JSON object); a key given twice is an error, as in YAML files."""
    text = read_text(path, expected, kind, max_bytes, shown)
    try:
        data = json.loads(text, object_pairs_hook=_object)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"JSON syntax error: {exc.msg}", file=f"{path}:{exc.lineno}:{exc.colno}") from None
    except RecursionError:
        raise ConfigError("cannot read JSON: nested too deeply", file=str(path)) from None
    except ValueError as exc:  # e.g. a number too long to convert
        raise ConfigError(f"cannot read JSON: {shorten(str(exc), 120)}", file=str(path)) from None
    repeated = _first_repeated(data)
    if repeated:
        raise ConfigError("duplicate key: a key may appear once in a JSON object (JSON readers would keep "
                          "only the last value)", file=str(path), key=".".join(repeated))
    if not isinstance(data, dict):
        raise ConfigError(f"expected {expected}", file=str(path))
    return data


def whole_number(text: str) -> int | None:
    """A CSV cell's whole number, written in ASCII digits only, or None. (``int`` would also
    read full-width or other scripts' digits, signs, spaces and underscores: ``'１２'``, ``'1_0'``.)"""
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else None

