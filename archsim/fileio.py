"""Files written whole or not at all, and never through a link.

Every file archsim writes goes through here. ``atomic_write`` writes a new temporary beside
the target and renames it over the target's name: a killed run leaves the old file or the new
one, never half of one; and a symbolic link planted at the target's name (pointing outside a
results folder, say) is replaced by the new file, never followed, since a rename replaces the
name itself. ``open_regular`` does the same for the one file archsim opens in place (a lock).
"""

from __future__ import annotations

import errno
import os
import re
import stat
import uuid
from collections.abc import Callable
from pathlib import Path

TMP_PREFIX = ".tmp-"
# what atomic_write names its temporaries: only these are ever removed as leftovers
_TMP_NAME = re.compile(r"\.tmp-[0-9a-f]{32}(\.[A-Za-z0-9]+)?")
# a new file of ours: created here and now (not a file or link already at that name), in any
# case no link followed
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write`` on a hidden temporary file beside ``path``, flush it to disk, then rename
    it over ``path``. The temporary (``.tmp-*``) is removed after an error or Ctrl-C; a process
    killed meanwhile leaves it behind (``remove_leftovers`` deletes it), never a partial ``path``.
    An ``OSError`` (a full disk, say) names ``path``, not the temporary."""
    path = Path(path)
    tmp = path.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}{path.suffix}"
    try:
        os.close(os.open(tmp, _NEW, 0o666))  # ours: ``write`` opens this very file by its name
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)  # replaces whatever has the name (a symlink too), never follows it
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


def open_regular(path: Path, attempts: int = 8) -> int:
    """A read-write descriptor of the regular file at ``path``, created empty if missing, for a
    file used in place (a lock). Never opened through a link: anything else with that name (a
    symlink planted to make us create or lock a file elsewhere, a FIFO, a hard link to another
    file) is first replaced by a new empty file. Raises ``OSError`` if that cannot be done
    (a folder with that name)."""
    path = Path(path)
    for _ in range(attempts):  # another process may be replacing it too
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.EISDIR, errno.ENXIO):  # ENXIO: a socket
                raise
        else:
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
                return fd
            os.close(fd)
        atomic_write(path, lambda tmp: None)  # an empty file in its place
    raise OSError(errno.EAGAIN, "cannot create a regular file there", str(path))


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
