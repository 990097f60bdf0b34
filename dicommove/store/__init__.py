"""The file store: where received instances land on disk. Files only, no sockets.

Every instance takes the same short path::

    Incoming.write(...)   dataset fragments: kept in memory up to HEAD_BYTES, beyond that
                          streamed into OUT/.dicommove-tmp/<pid>-<n>.part
    Incoming.seal(accept) its header read (no pydicom), UIDs checked, final name built from
                          validated UIDs only, the routing callback asked
    Incoming.persist()    temp file written (file meta prepared once per SOP class and
                          transfer syntax, only the UID patched) and renamed to its final
                          name, or found a duplicate or a conflict

``seal`` runs where the bytes arrive (the event loop); ``persist`` too, unless each
file must reach the disk before it is answered (``durability="instance"``: an fsync
before the rename, run off the loop by the caller). By default
(``durability="request"``) nothing is synced per file: :meth:`InstanceStore.sync`
makes everything written so far durable in one pass (``syncfs``), which the
engine calls before it records a request complete. ``durability="none"`` never syncs.
"""

from __future__ import annotations

from .incoming import Incoming
from .instances import InstanceStore
from .layout import LAYOUTS, Layout, compile_layout, is_valid_uid
from .record import (
    CONFLICT_DIR_NAME,
    DURABILITIES,
    HEAD_BYTES,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    TEMP_DIR_NAME,
    AcceptCallback,
    Durability,
    Received,
)

__all__ = [
    "CONFLICT_DIR_NAME",
    "DURABILITIES",
    "HEAD_BYTES",
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "LAYOUTS",
    "TEMP_DIR_NAME",
    "AcceptCallback",
    "Durability",
    "Incoming",
    "InstanceStore",
    "Layout",
    "Received",
    "compile_layout",
    "is_valid_uid",
]
