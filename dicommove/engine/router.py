"""Routing arrivals: the running C-MOVE each received instance came from.

Each part's C-MOVE gets a Message ID unique within the session, so an instance
that carries MoveOriginatorMessageID (and our AE title as the originator, or none)
is routed to it in one dictionary lookup. When a PACS leaves the originator out,
the unique keys of the running parts decide, if exactly one matches. A C-MOVE that
ended on our side (aborted, timed out) may still have instances on their way, or a
PACS that never saw our A-ABORT may go on sending them: its Message ID keeps routing
to it until that ID is used again, and its keys count when no running part matches.
Either way the instance must match its request's keys, or it is ``unrequested``.
"""

from __future__ import annotations

from typing import Any

from ..query import Query
from ..store import Received
from .request import Part

__all__ = ["Router", "keys_of", "matches"]

#: How many ended C-MOVEs still route their late instances.
_ENDED = 1024

_CHECKS = (
    ("PatientID", "patient_id"),
    ("StudyInstanceUID", "study_instance_uid"),
    ("SeriesInstanceUID", "series_instance_uid"),
    ("SOPInstanceUID", "sop_instance_uid"),
)


def _values(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        return [str(value)]
    return [str(v) for v in value]


def keys_of(query: Query) -> tuple[tuple[str, frozenset[str]], ...]:
    """Return the (Received attribute, allowed values) pairs a query's unique keys impose."""
    found = []
    for keyword, attr in _CHECKS:
        wanted = _values(query.get(keyword))
        if wanted:
            found.append((attr, frozenset(wanted)))
    return tuple(found)


def matches(query: Query, rec: Received) -> bool:
    """Whether a received instance falls under a query's unique keys."""
    return _fits(keys_of(query), rec)


def _fits(keys: tuple[tuple[str, frozenset[str]], ...], rec: Received) -> bool:
    return all(getattr(rec, attr) in wanted for attr, wanted in keys)


class Router:
    """The running parts by Message ID, and the route each arrival took.

    Parameters
    ----------
    ae_title : str
        Our AE title: a MoveOriginatorApplicationEntityTitle naming another AE is
        not trusted for its Message ID.
    """

    def __init__(self, ae_title: str) -> None:
        self.ae_title = ae_title
        self.active: dict[int, Part] = {}
        self.ended: dict[int, Part] = {}  # the last _ENDED parts that stopped, by Message ID
        self._routes: dict[int, Part | None] = {}  # id(Received) -> its part, between calls

    def activate(self, part: Part) -> None:
        """Route instances carrying ``part.message_id`` to ``part``."""
        self.ended.pop(part.message_id, None)
        self.active[part.message_id] = part

    def deactivate(self, part: Part) -> None:
        """Stop routing to ``part`` (its C-MOVE ended)."""
        if self.active.get(part.message_id) is part:
            del self.active[part.message_id]
            self.ended[part.message_id] = part
            if len(self.ended) > _ENDED:
                del self.ended[next(iter(self.ended))]

    def route(self, rec: Received) -> Part | None:
        """Return the part a received instance belongs to, or ``None``."""
        part = None
        if rec.originator_message_id is not None and (
            not rec.originator_ae or rec.originator_ae == self.ae_title
        ):
            message_id = rec.originator_message_id
            part = self.active.get(message_id) or self.ended.get(message_id)
        if part is None:
            candidates = [p for p in self.active.values() if _fits(p.request.keys, rec)]
            if not candidates:  # none running: a late arrival of one that ended?
                late = {p.request: p for p in self.ended.values() if _fits(p.request.keys, rec)}
                candidates = list(late.values())
            part = candidates[0] if len(candidates) == 1 else None
        if part is not None and rec.study_instance_uid and not _fits(part.request.keys, rec):
            part = None
        return part

    def decide(self, rec: Received) -> Part | None:
        """Route an instance before its file is named, and remember the route."""
        part = self.route(rec)
        self._routes[id(rec)] = part
        return part

    def routed(self, rec: Received) -> Part | None:
        """Return the route :meth:`decide` took for ``rec``, or a fresh one (refused early)."""
        if id(rec) in self._routes:
            return self._routes.pop(id(rec))
        return self.route(rec)
