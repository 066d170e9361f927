"""Measured timings of single ops on real chips: the measurement CSV, read and checked.

One row per measured call. Columns (``experiments/data/silicon/README.md``):

    op,dtype,m,k,n,rows,cols,elements,bytes,ranks,measured_s,overhead_s,source

``op`` is one of ``OPS``; each op needs its own dimensions (``DIMS``) as positive whole
numbers and ignores the others. ``measured_s`` is seconds per call, the per-call overhead
included; ``overhead_s`` (optional) the part of it the source measured as overhead, kept for
information only. ``op``, ``dtype`` and ``measured_s`` are required columns; the others are
optional, and a column outside this list is an error (a misspelt column would otherwise be
silently ignored). Every problem is reported, one line each, naming the file, the line (1-based,
the header being line 1) and the column.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

from archsim.dtypes import DType
from archsim.errors import ConfigError

# The CSV's op names -> the archsim op kind each is costed as (archsim.ir.ops: an op class's kind).
OPS = {
    "gemm": "gemm", "softmax": "softmax", "layernorm": "layernorm", "rmsnorm": "rmsnorm",
    "gelu": "activation", "silu": "activation", "add": "elementwise", "all_reduce": "all_reduce",
}
# The dimensions each op needs.
DIMS = {
    "gemm": ("m", "k", "n"),
    "softmax": ("rows", "cols"), "layernorm": ("rows", "cols"), "rmsnorm": ("rows", "cols"),
    "gelu": ("elements",), "silu": ("elements",), "add": ("elements",),
    "all_reduce": ("bytes", "ranks"),
}
DTYPES = ("bf16", "fp16", "fp32", "int8")
DIM_COLUMNS = ("m", "k", "n", "rows", "cols", "elements", "bytes", "ranks")
REQUIRED = ("op", "dtype", "measured_s")
COLUMNS = ("op", "dtype", *DIM_COLUMNS, "measured_s", "overhead_s", "source")

MAX_BYTES = 16 * 2**20  # a documented limit: 16 MiB of CSV
MAX_DIM = 2**50  # as a tensor's elements (archsim.workloads.base.MAX_TENSOR_ELEMENTS)
MAX_ERROR_LINES = 20  # problems listed; the rest are counted

_WHOLE = re.compile(r"[0-9]+")
_REAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


@dataclass(frozen=True)
class Measurement:
    """One measured call: ``line`` is its 1-based line in the file (the header is line 1).
    Dimensions the op does not use are None."""

    line: int
    op: str
    dtype: DType
    measured_s: float
    overhead_s: float | None = None
    source: str = ""
    m: int | None = None
    k: int | None = None
    n: int | None = None
    rows: int | None = None
    cols: int | None = None
    elements: int | None = None
    bytes: int | None = None
    ranks: int | None = None

    @property
    def kind(self) -> str:
        """The archsim op kind this op is costed as (gelu and silu: activation)."""
        return OPS[self.op]

    @property
    def dims(self) -> dict[str, int]:
        return {d: getattr(self, d) for d in DIMS[self.op]}

    @property
    def signature(self) -> tuple:
        """What decides the op's predicted time: the op, its dtype and its dimensions."""
        return (self.op, self.dtype, *self.dims.values())

    def describe(self) -> str:
        return f"{self.op} {self.dtype} " + " ".join(f"{d}={v}" for d, v in self.dims.items())


def load_measurements(path: str | Path) -> list[Measurement]:
    """Read and check a measurement CSV; raises ``ConfigError`` listing every problem."""
    path = Path(path)
    text = _read(path)
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise ConfigError("empty file; expected a header line (" + ",".join(COLUMNS) + ") and a row per measurement",
                          file=str(path))
    reader = csv.reader(lines)
    header = [h.strip() for h in next(reader)]
    _check_header(path, header)
    problems: list[str] = []
    rows = []
    for number, values in enumerate(reader, start=2):
        if not any(v.strip() for v in values):
            continue  # a blank line
        if len(values) != len(header):
            problems.append(_where(path, number, None, f"{len(values)} values for {len(header)} columns"))
            continue
        row, row_problems = _row(path, number, dict(zip(header, (v.strip() for v in values))))
        problems += row_problems
        if row is not None:
            rows.append(row)
    if problems:
        shown = problems[:MAX_ERROR_LINES]
        if len(problems) > MAX_ERROR_LINES:
            shown.append(f"{path}: ... and {len(problems) - MAX_ERROR_LINES} more problems")
        raise ConfigError("\n".join(shown))
    if not rows:
        raise ConfigError("no measurement rows after the header", file=str(path))
    return rows


def _read(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ConfigError(f"larger than {MAX_BYTES // 2**20} MiB; archsim's limit for a measurement CSV",
                              file=str(path))
        return path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise ConfigError("not found", file=str(path)) from None
    except IsADirectoryError:
        raise ConfigError("is a folder, not a CSV file", file=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", file=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None


def _check_header(path: Path, header: list[str]) -> None:
    problems = []
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        problems.append(f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        problems.append(f"unknown column{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(repr(c) for c in unknown)}; expected: {','.join(COLUMNS)}")
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        problems.append(f"column{'s' if len(repeated) > 1 else ''} {', '.join(repeated)} given more than once")
    if problems:
        raise ConfigError("\n".join(_where(path, 1, None, p) for p in problems))


def _where(path: Path, line: int, column: str | None, message: str) -> str:
    return str(ConfigError(message, file=f"{path}: line {line}", key=f"column {column}" if column else None))


def _row(path: Path, line: int, values: dict[str, str]) -> tuple[Measurement | None, list[str]]:
    problems: list[str] = []

    def bad(column: str, message: str) -> None:
        problems.append(_where(path, line, column, message))

    op = values.get("op", "")
    if op not in OPS:
        bad("op", f"unknown op {op!r}; expected one of: {', '.join(OPS)}" if op else "missing; expected one of: "
            + ", ".join(OPS))
    dtype = values.get("dtype", "")
    if dtype not in DTYPES:
        bad("dtype", f"unknown dtype {dtype!r}; expected one of: {', '.join(DTYPES)}" if dtype else
            "missing; expected one of: " + ", ".join(DTYPES))
    dims: dict[str, int] = {}
    for dim in DIMS.get(op, ()):
        text = values.get(dim)
        if text is None:
            bad(dim, f"a {op} row needs {dim}, and the header has no {dim} column")
        elif not text:
            bad(dim, f"missing; a {op} row needs {', '.join(DIMS[op])}")
        elif not _WHOLE.fullmatch(text) or int(text) <= 0:
            bad(dim, f"expected a positive whole number (got {text!r})")
        elif int(text) > MAX_DIM:
            bad(dim, f"{text} exceeds archsim's limit of 2^50")
        else:
            dims[dim] = int(text)
    if op == "all_reduce" and dims.get("ranks") == 1:
        bad("ranks", "an all-reduce needs at least 2 ranks (got 1)")
    if op == "all_reduce" and dtype in DTYPES and "bytes" in dims and dims["bytes"] % DType(dtype).bytes:
        bad("bytes", f"{dims['bytes']} bytes is not a whole number of {dtype} elements")
    measured = _real(values.get("measured_s", ""), "measured_s", bad, required=True)
    overhead = _real(values.get("overhead_s", ""), "overhead_s", bad, required=False)
    if problems:
        return None, problems
    row = Measurement(line=line, op=op, dtype=DType(dtype), measured_s=measured, overhead_s=overhead,
                      source=values.get("source", ""), **dims)
    return row, []


def _real(text: str, column: str, bad, required: bool) -> float | None:
    """A positive finite number of seconds (``required``), or empty for an optional column."""
    if not text:
        if required:
            bad(column, "missing; expected seconds per call, e.g. 1.5e-4")
        return None
    value = float(text) if _REAL.fullmatch(text) else math.nan
    too_small = value <= 0 if required else value < 0
    if not math.isfinite(value) or too_small:
        bad(column, f"expected a {'positive' if required else 'non-negative'} finite number of seconds "
            f"(got {text!r})")
        return None
    return value
