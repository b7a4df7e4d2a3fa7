"""A lock file per running app session that the operating system releases when the process ends.

Crash recovery used to ask "is the PID that wrote this autosave still running?", which a zombie
(killed, not yet reaped) or a reused PID answers wrongly. An advisory lock (``flock`` on POSIX,
``msvcrt.locking`` on Windows) is held by an open file, and a dead process holds no open files.
Qt-free.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(f: IO[bytes]) -> bool:
        try:
            f.seek(0)
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(f: IO[bytes]) -> None:
        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _try_lock(f: IO[bytes]) -> bool:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def _unlock(f: IO[bytes]) -> None:
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)


class SessionLock:
    """Holds ``path`` locked until :meth:`release` or the end of the process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] | None = open(path, "a+b")  # noqa: SIM115 - held open for the session
        if not _try_lock(self._file):
            self._file.close()
            self._file = None
            raise OSError(f"{path} is locked by another process")
        self._file.truncate(0)
        self._file.write(str(os.getpid()).encode())
        self._file.flush()

    def release(self) -> None:
        """Unlock and delete the lock file."""
        if self._file is None:
            return
        self.path.unlink(missing_ok=True)
        _unlock(self._file)
        self._file.close()
        self._file = None


def is_locked(path: Path) -> bool:
    """True while a live process (this one included) holds ``path`` through a :class:`SessionLock`."""
    try:
        f = open(path, "rb+")  # noqa: SIM115
    except OSError:
        return False
    with f:
        if not _try_lock(f):
            return True
        _unlock(f)
        return False
