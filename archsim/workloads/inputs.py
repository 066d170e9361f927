"""Reading the data files a workload names (model configs, L2C masks): regular files only, of
bounded size, with one-line errors naming the file.

The same rules as ``archsim.config.yamlio`` applies to YAML files: a FIFO would block the read
forever and ``/dev/zero`` never ends, so only regular files are opened; the size is checked
before reading, and the read itself is bounded in case the file grows meanwhile.
"""

from __future__ import annotations

import stat
from pathlib import Path

from archsim.errors import ConfigError


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
