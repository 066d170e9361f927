"""Files written whole or not at all: results a long run computed are never left half-written."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path

TMP_PREFIX = ".tmp-"
# what atomic_write names its temporaries: only these are ever removed as leftovers
_TMP_NAME = re.compile(r"\.tmp-[0-9a-f]{32}(\.[A-Za-z0-9]+)?")


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write`` on a hidden temporary file beside ``path``, flush it to disk, then rename
    it over ``path``. The temporary (``.tmp-*``) is removed after an error or Ctrl-C; a process
    killed meanwhile leaves it behind (``remove_leftovers`` deletes it), never a partial ``path``.
    An ``OSError`` (a full disk, say) names ``path``, not the temporary."""
    path = Path(path)
    tmp = path.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}{path.suffix}"
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename in (None, str(tmp), tmp):
            exc.filename = str(path)
        raise
    finally:
        try:
            tmp.unlink(missing_ok=True)  # after os.replace it is gone
        except OSError:
            pass  # never hide the error that brought us here
    _fsync_dir(path.parent)  # the rename itself survives a power cut
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def remove_leftovers(folder: Path) -> list[Path]:
    """Delete the temporaries that killed writers left in ``folder`` (names ``atomic_write``
    makes, nothing else); the caller must be the only writer there."""
    removed = []
    for stale in Path(folder).glob(TMP_PREFIX + "*"):
        if _TMP_NAME.fullmatch(stale.name) and not stale.is_dir():
            stale.unlink(missing_ok=True)
            removed.append(stale)
    return removed


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. a platform that cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the rename is done either way
    finally:
        os.close(fd)
