"""Files written whole or not at all: results a long run computed are never left half-written."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write`` on a hidden temporary file beside ``path``, flush it to disk, then rename
    it over ``path``. The temporary (``.tmp-*``) is removed after an error or Ctrl-C."""
    tmp = path.parent / f".tmp-{uuid.uuid4().hex}{path.suffix}"
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # after os.replace it is gone
    return path
