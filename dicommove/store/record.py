"""What the store reports for each C-STORE, and the constants every part of the store shares."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from .. import _status as st
from .._version import __version__

__all__ = [
    "CONFLICT_DIR_NAME",
    "DURABILITIES",
    "HEAD_BYTES",
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "TEMP_DIR_NAME",
    "AcceptCallback",
    "Durability",
    "Received",
]

#: Our implementation class UID (a 2.25 UUID-derived root, PS3.5 B.2).
IMPLEMENTATION_CLASS_UID = "2.25.250386193394932478186766406962347125713"
#: Our implementation version name (at most 16 characters).
IMPLEMENTATION_VERSION_NAME = f"DICOMMOVE_{__version__}"[:16]

TEMP_DIR_NAME = ".dicommove-tmp"
CONFLICT_DIR_NAME = ".dicommove-conflicts"
#: How much of each dataset is kept in memory: its header is read from it, and an
#: instance that fits is written to disk in one call.
HEAD_BYTES = 1 << 16

#: When received files reach stable storage: before each C-STORE is answered
#: ("instance"), once per request in one pass ("request", the default), or never.
Durability = Literal["request", "instance", "none"]
DURABILITIES: tuple[str, ...] = ("request", "instance", "none")


@dataclass(slots=True)
class Received:
    """What happened to one C-STORE that reached our Store SCP.

    ``status`` is one of the manifest statuses: ``received``, ``duplicate``,
    ``conflict``, ``refused`` or ``failed`` (the engine may make it ``unrequested``).
    """

    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    status: str
    reason: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    patient_id: str = ""
    path: str = ""
    size: int = 0
    received_at: float = field(default_factory=time.time)  # epoch seconds
    calling_ae: str = ""
    originator_ae: str = ""
    originator_message_id: int | None = None
    dimse_status: int = st.SUCCESS
    errno: int | None = None
    tags: dict[str, str] | None = None  # header elements asked for (``tags=``), by keyword


AcceptCallback = Callable[[Received], bool]
