"""Filesystem helpers of the store: temp files in flight, and one sync per filesystem."""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["IN_FLIGHT", "rename_noreplace", "syncfs", "writer_alive"]

#: Temp files being written by this process, across all stores (set operations are atomic).
IN_FLIGHT: set[str] = set()


def writer_alive(part: Path) -> bool:
    """Whether the process that named this temp file (``<pid>-<n>.part``) still writes it."""
    pid_text = part.name.partition("-")[0]
    if not pid_text.isdigit():
        return False
    if int(pid_text) == os.getpid():
        return str(part) in IN_FLIGHT  # else left by an earlier, interrupted move of ours
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_libc_syncfs: Callable[[int], int] | None = None


def _os_sync(_fd: int) -> int:
    os.sync()
    return 0


def syncfs(fd: int) -> None:
    """Flush the filesystem holding ``fd`` (Linux ``syncfs``); elsewhere ``os.sync``."""
    global _libc_syncfs
    if _libc_syncfs is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            _libc_syncfs = libc.syncfs
        except (OSError, AttributeError):
            _libc_syncfs = _os_sync
    if _libc_syncfs(fd) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100
_renameat2: Callable[..., int] | bool | None = None


def rename_noreplace(src: str, dst: str) -> None:
    """Rename ``src`` to ``dst`` unless ``dst`` exists (one atomic system call on Linux).

    Raises
    ------
    FileExistsError
        If ``dst`` exists; nothing was renamed.
    OSError
        As :func:`os.rename` does otherwise.
    """
    global _renameat2
    if _renameat2 is None:
        try:
            _renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
        except (OSError, AttributeError):
            _renameat2 = False
    if _renameat2 is not False:
        assert callable(_renameat2)
        if _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), 1) == 0:
            return
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            raise FileExistsError(code, os.strerror(code), dst)
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):  # else: unsupported here
            raise OSError(code, os.strerror(code), dst)
    if os.path.exists(dst):  # the portable way: check, then rename (not atomic)
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)
    os.rename(src, dst)
