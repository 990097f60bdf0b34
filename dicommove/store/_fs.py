"""Filesystem helpers of the store: temp files in flight, and one sync per filesystem."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["IN_FLIGHT", "syncfs", "writer_alive"]

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
