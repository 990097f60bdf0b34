"""The one table of DIMSE status codes: what each means and which kind it is.

C-MOVE, C-GET and C-FIND statuses after PS3.4 C.4, the general statuses of
PS3.7 C, and the C-STORE statuses our store SCP answers (PS3.4 B.2.3). A test
checks the kinds against pynetdicom's status tables.
"""

from __future__ import annotations

import enum

__all__ = ["STATUS_TEXT", "Kind", "describe", "is_failure", "kind_of"]


class Kind(enum.Enum):
    """The class of a status code (PS3.7 C)."""

    SUCCESS = "success"
    PENDING = "pending"
    WARNING = "warning"
    CANCEL = "cancel"
    FAILURE = "failure"


SUCCESS = 0x0000
PENDING = 0xFF00
PENDING_WARNING = 0xFF01  # C-FIND: optional keys not supported
WARNING = 0xB000  # sub-operations complete, one or more failures or warnings
CANCEL = 0xFE00
OUT_OF_RESOURCES_MATCHES = 0xA701
OUT_OF_RESOURCES_SUBOPERATIONS = 0xA702  # transient: retried
MOVE_DESTINATION_UNKNOWN = 0xA801
IDENTIFIER_MISMATCH = 0xA900
UNABLE_TO_PROCESS = 0xC000
# C-STORE statuses our store SCP answers
STORE_OUT_OF_RESOURCES = 0xA700
STORE_DATASET_MISMATCH = 0xA900
STORE_CANNOT_UNDERSTAND = 0xC000
NOT_AUTHORIZED = 0x0124
SOP_CLASS_NOT_SUPPORTED = 0x0122
DUPLICATE_INVOCATION = 0x0210
UNRECOGNIZED_OPERATION = 0x0211

#: Status code -> (kind, meaning).
STATUS_TEXT: dict[int, tuple[Kind, str]] = {
    SUCCESS: (Kind.SUCCESS, "success"),
    WARNING: (Kind.WARNING, "warning: sub-operations complete, one or more failures or warnings"),
    CANCEL: (Kind.CANCEL, "cancelled: sub-operations terminated by a C-CANCEL"),
    PENDING: (Kind.PENDING, "pending: sub-operations are continuing"),
    PENDING_WARNING: (
        Kind.PENDING,
        "pending: sub-operations are continuing (optional keys not supported)",
    ),
    OUT_OF_RESOURCES_MATCHES: (
        Kind.FAILURE,
        "refused: out of resources, unable to calculate the number of matches",
    ),
    OUT_OF_RESOURCES_SUBOPERATIONS: (
        Kind.FAILURE,
        "refused: out of resources, unable to perform sub-operations",
    ),
    STORE_OUT_OF_RESOURCES: (Kind.FAILURE, "refused: out of resources"),
    MOVE_DESTINATION_UNKNOWN: (Kind.FAILURE, "refused: move destination unknown"),
    IDENTIFIER_MISMATCH: (Kind.FAILURE, "failed: identifier does not match the SOP class"),
    SOP_CLASS_NOT_SUPPORTED: (Kind.FAILURE, "refused: SOP class not supported"),
    NOT_AUTHORIZED: (Kind.FAILURE, "refused: not authorized"),
    DUPLICATE_INVOCATION: (
        Kind.FAILURE,
        "failed: duplicate invocation (Message ID already in use)",
    ),
    UNRECOGNIZED_OPERATION: (Kind.FAILURE, "failed: unrecognized operation"),
}


#: The warnings outside 0xBxxx (PS3.7 C): 0x0001 (a requested optional attribute is not
#: supported), 0x0107 (attribute list error), 0x0116 (attribute value out of range).
#: 0x0110-0x0115 between them are failures (processing failure, no such instance...).
_WARNINGS = frozenset({0x0001, 0x0107, 0x0116})


def kind_of(code: int | None) -> Kind:
    """Return the kind of a status code; ``None`` (no status at all) is a failure."""
    if code is None:
        return Kind.FAILURE
    known = STATUS_TEXT.get(code)
    if known is not None:
        return known[0]
    if 0xB000 <= code <= 0xBFFF or code in _WARNINGS:
        return Kind.WARNING
    return Kind.FAILURE


def describe(code: int | None) -> str:
    """Return a human description of a status code (``None``: no final response)."""
    if code is None:
        return "no final response: the association was aborted or timed out"
    known = STATUS_TEXT.get(code)
    if known is not None:
        return f"0x{code:04X} {known[1]}"
    if 0xC000 <= code <= 0xCFFF:
        return f"0x{code:04X} failed: unable to process"
    return f"0x{code:04X} unknown status"


#: Statuses that are not a failure of a C-MOVE, C-GET or C-FIND.
_NOT_FAILURES = frozenset({PENDING, PENDING_WARNING, SUCCESS, WARNING, CANCEL})


def is_failure(code: int | None) -> bool:
    """Return whether a final status is a failure.

    No status at all, and any code but success, pending, 0xB000 and cancel, are failures
    (a C-MOVE has a single warning code, 0xB000).
    """
    return code is None or code not in _NOT_FAILURES
