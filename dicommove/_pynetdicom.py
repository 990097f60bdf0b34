"""Workarounds for pynetdicom 3.0 behaviour that dicommove relies on not happening.

Kept in one place, tied to the pinned pynetdicom range, so each can be dropped
when pynetdicom fixes it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["reactor_reads_nothing"]


def reactor_reads_nothing(assoc: Any) -> None:
    """Leave every incoming DIMSE message of a requestor association to ``send_*()``.

    pynetdicom's reactor thread polls ``dimse.get_msg(block=False)`` between
    requests and is paused by ``send_c_*()`` through a checkpoint that races:
    right after one request the reactor can wake, still look paused, and take
    the next response off the queue ("Received unexpected ... service message");
    the request then waits for the DIMSE timeout and fails. The ``send_*()``
    methods read with ``block=True``, and nothing else should arrive on an
    association we requested, so the reactor's non-blocking reads can safely
    see nothing.
    """
    get_msg = assoc.dimse.get_msg

    def blocking_reads_only(block: bool = False) -> Any:
        return get_msg(block=True) if block else (None, None)

    setattr(assoc.dimse, "get_msg", blocking_reads_only)  # noqa: B010 - instance override
