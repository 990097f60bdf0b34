"""What is on disk for a part, read back from the journal: for retries and ``verify=True``.

The scheduler asks, before an attempt, whether some of a part's instances are here
already (then only the rest is asked for), and after it, with ``verify=True``, how
many of the instances the PACS listed did not arrive (then it asks again for those).
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from ..rows import ARRIVED
from .router import matches

if TYPE_CHECKING:
    from .request import Part
    from .run import Run

__all__ = ["arrived", "needs_remaining", "unverified"]


def arrived(run: Run, part: Part) -> dict[str, set[str]]:
    """SeriesInstanceUID -> SOP Instance UIDs on disk for ``part`` (read from the journal)."""
    from .run import _received

    found: dict[str, set[str]] = defaultdict(set)
    if run.journal is None:
        return found
    key = part.request.key
    for rec_key, a in run.journal.arrivals():
        if rec_key == key and a.status in ARRIVED and matches(part.query, _received(a)):
            found[a.series].add(a.sop)
    return found


def unverified(run: Run, part: Part) -> int:
    """``verify=True``: how many listed instances of ``part`` are not on disk.

    Instances the PACS reported failed are not counted (asking again fails again).
    """
    expected = part.request.expected
    if not expected:
        return 0
    query = part.query
    level = query.level or ""
    scope = set(query.retrieve_uids()) if level in ("STUDY", "SERIES", "IMAGE") else None
    here = {sop for sops in arrived(run, part).values() for sop in sops}
    failed = {uid for p in part.request.parts for uid in p.failed_uids}

    def in_scope(sop: str, study: str, series: str) -> bool:
        if scope is None:
            return True
        return {"STUDY": study, "SERIES": series}.get(level, sop) in scope

    return sum(
        1
        for sop, (study, series) in expected.items()
        if sop not in here and sop not in failed and in_scope(sop, study, series)
    )


def needs_remaining(part: Part) -> bool:
    """Whether some of ``part``'s instances are here already (ask only for the rest)."""
    tally = part.request.tally
    if not tally.n_ok or part.query.level == "IMAGE":
        return False
    seen = {"PATIENT": tally.patients, "STUDY": tally.studies, "SERIES": tally.series}
    where = seen.get(part.query.level or "", set())
    return any(uid in where for uid in part.query.retrieve_uids())
