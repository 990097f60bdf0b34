"""dicommove: pull imaging cohorts out of a PACS with DICOM C-MOVE.

>>> import dicommove
>>> df = dicommove.move("ORTHANC@127.0.0.1:4242", ["1.2.3"])  # doctest: +SKIP

The public surface is re-exported here; submodules are implementation.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    AddressError,
    AssociationAborted,
    AssociationRejected,
    ConnectError,
    DicomMoveError,
    DiskFullError,
    FindError,
    InputError,
    LocalSetupError,
    MoveCancelled,
    MoveDestinationUnknown,
    MoveError,
    MoveIncomplete,
    MoveInterrupted,
    MoveTimeout,
    NetworkError,
    QueryError,
    QueryWarning,
    StoreAssociationRefused,
)
from .node import Node

if TYPE_CHECKING:
    from ._api import amove, echo, find, last_manifest, move, start
    from .engine import AsyncSession, MoveJob, Session
    from .manifest import STATUSES
    from .options import RetryPolicy, StoreOptions, Timeouts
    from .query import Query, Request

__all__ = [
    "STATUSES",
    "AddressError",
    "AssociationAborted",
    "AssociationRejected",
    "AsyncSession",
    "ConnectError",
    "DicomMoveError",
    "DiskFullError",
    "FindError",
    "InputError",
    "LocalSetupError",
    "MoveCancelled",
    "MoveDestinationUnknown",
    "MoveError",
    "MoveIncomplete",
    "MoveInterrupted",
    "MoveJob",
    "MoveTimeout",
    "NetworkError",
    "Node",
    "Query",
    "QueryError",
    "QueryWarning",
    "Request",
    "RetryPolicy",
    "Session",
    "StoreAssociationRefused",
    "StoreOptions",
    "Timeouts",
    "__version__",
    "amove",
    "echo",
    "find",
    "last_manifest",
    "move",
    "start",
]

# Imported on first use, so that `dicommove --help` does not pay for pydicom and pandas.
_LAZY = {
    "amove": "._api",
    "echo": "._api",
    "find": "._api",
    "last_manifest": "._api",
    "move": "._api",
    "start": "._api",
    "Session": ".engine",
    "AsyncSession": ".engine",
    "MoveJob": ".engine",
    "Timeouts": ".options",
    "RetryPolicy": ".options",
    "StoreOptions": ".options",
    "STATUSES": ".manifest",
    "Query": ".query",
    "Request": ".query",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dicommove' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


logging.getLogger("dicommove").addHandler(logging.NullHandler())
