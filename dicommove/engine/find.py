"""C-FIND where a move needs it: does anything match, which series, what is missing.

The engine asks a PACS three things with C-FIND, each on the asking worker's own
association: whether a request's keys match anything (to tell "not found" from
"unknown destination"), which series a study or patient has (to split a request
over the workers, or one too big to count), and which instances of a series exist
(so that a retry asks only for the ones that have not arrived). A C-FIND that
fails answers ``None``, and the caller falls back to asking for the whole.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from .. import _sop, _ul
from .. import _status as st
from .. import _tags as tg
from .._header import read_elements
from ..errors import DicomMoveError
from ..query import Query, Value, encode_identifier
from .association import Aborted
from .pool import Pool

__all__ = ["Finder"]

logger = logging.getLogger("dicommove")

_READ = frozenset(
    {
        tg.PATIENT_ID,
        tg.STUDY_INSTANCE_UID,
        tg.SERIES_INSTANCE_UID,
        tg.SOP_INSTANCE_UID,
        tg.NUMBER_OF_SERIES_RELATED_INSTANCES,
    }
)


def _values(text: str) -> list[str]:
    return [v.strip() for v in text.split("\\") if v.strip()] if text else []


def _count(text: str | None) -> int | None:
    """Read an IS value as a count; ``None`` when absent or not a count."""
    try:
        n = int(text or "")
    except ValueError:
        return None
    return n if n >= 0 else None


class Finder:
    """C-FIND on a pool's associations."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def find(self, worker: int, query: Query) -> list[dict[int, str]] | None:
        """Run a C-FIND; return the matches (tag -> text), ``None`` if it failed."""
        pool = self.pool
        try:
            assoc = await pool.get(worker)
        except DicomMoveError:
            return None
        sop_class = _sop.FIND[query.information_model]
        if sop_class not in assoc.contexts:
            return None
        cx_id, syntax = assoc.contexts[sop_class]
        command = _ul.encode_request(
            _ul.C_FIND_RQ, pool.next_message_id(), sop_class=sop_class, has_dataset=True
        )
        identifier = encode_identifier(query, implicit=syntax == _sop.IMPLICIT_VR_LE)
        matches: list[dict[int, str]] = []
        try:
            assoc.send(cx_id, command, identifier)
            while True:
                rsp = await assoc.receive(timeout=pool.timeouts.dimse)
                kind = st.kind_of(rsp.status)
                if kind is st.Kind.PENDING:
                    found = read_elements(rsp.dataset or b"", syntax, _READ)
                    matches.append(found or {})
                    continue
                if kind is not st.Kind.SUCCESS:
                    return None
                break
        except Aborted:
            pool.drop(worker)
            return None
        logger.debug("C-FIND %s: %d matches", query, len(matches))
        return matches

    async def count(self, worker: int, query: Query) -> int | None:
        """Count C-FIND matches for a query's keys; ``None`` if C-FIND is not possible."""
        found = await self.find(worker, query)
        return None if found is None else len(found)

    async def series_of(
        self, worker: int, query: Query, sizes: list[int | None] | None = None
    ) -> list[Query] | None:
        """List a PATIENT or STUDY request's series as series-level queries.

        ``sizes``, if given, receives each series' NumberOfSeriesRelatedInstances
        (``None`` where the PACS does not say).
        """
        model = query.information_model
        patients = _values(str(query.get("PatientID") or "")) if model == "patient" else []
        patient = patients[0] if len(patients) == 1 else None
        if query.level == "PATIENT":
            studies: list[tuple[str | None, str]] = []
            for patient_id in query.retrieve_uids():
                keys = ((tg.QUERY_RETRIEVE_LEVEL, "STUDY"), (tg.PATIENT_ID, patient_id))
                found = await self.find(worker, Query((*keys, (tg.STUDY_INSTANCE_UID, "")), model))
                if found is None:
                    return None
                studies += [(patient_id, ds.get(tg.STUDY_INSTANCE_UID, "")) for ds in found]
        else:
            studies = [(patient, uid) for uid in query.retrieve_uids()]
        parts: list[Query] = []
        for pid, study in studies:
            base: list[tuple[int, Value]] = [
                (tg.QUERY_RETRIEVE_LEVEL, "SERIES"),
                (tg.STUDY_INSTANCE_UID, study),
            ]
            if model == "patient":
                base.append((tg.PATIENT_ID, pid))
            wanted: list[tuple[int, Value]] = [*base, (tg.SERIES_INSTANCE_UID, "")]
            if sizes is not None:
                wanted.append((tg.NUMBER_OF_SERIES_RELATED_INSTANCES, ""))
            found = await self.find(worker, Query(tuple(wanted), model))
            if found is None:
                return None
            for ds in found:
                series = ds.get(tg.SERIES_INSTANCE_UID, "")
                if series:
                    parts.append(Query((*base, (tg.SERIES_INSTANCE_UID, series)), model))
                    if sizes is not None:
                        sizes.append(_count(ds.get(tg.NUMBER_OF_SERIES_RELATED_INSTANCES)))
        return parts

    async def remaining(
        self,
        worker: int,
        query: Query,
        arrived: Mapping[str, set[str]],
        *,
        whole: bool = False,
    ) -> list[Query] | None:
        """Return the C-MOVEs that ask only for what has not arrived; ``None``: ask again whole.

        IMAGE queries list their instances: the missing ones are asked for. For
        PATIENT, STUDY and SERIES queries the series are listed (C-FIND); a series of
        which nothing arrived is asked for whole, one of which some instances arrived
        has its instances listed and only the missing ones are asked for.
        ``whole=True`` (too big to count) always splits into series.

        Parameters
        ----------
        arrived : mapping
            SeriesInstanceUID -> SOPInstanceUIDs on disk for this request.
        """
        level = query.level
        model = query.information_model
        done = {sop for sops in arrived.values() for sop in sops}
        if level == "IMAGE":
            wanted = [u for u in query.retrieve_uids() if u not in done]
            return [query.where(SOPInstanceUID=wanted)] if wanted else []
        if level == "SERIES":
            study = _values(str(query.get("StudyInstanceUID") or ""))
            if len(study) != 1:
                return None
            keys: list[tuple[int, Value]] = [
                (tg.QUERY_RETRIEVE_LEVEL, "SERIES"),
                (tg.STUDY_INSTANCE_UID, study[0]),
            ]
            if model == "patient":
                keys.append((tg.PATIENT_ID, query.get("PatientID")))
            series = [
                Query((*keys, (tg.SERIES_INSTANCE_UID, uid)), model)
                for uid in query.retrieve_uids()
            ]
        elif level in ("PATIENT", "STUDY"):
            if not done and not whole:
                return None  # nothing here yet: the request itself is the best ask
            found = await self.series_of(worker, query)
            if found is None:
                return None
            series = found
        else:
            return None
        parts: list[Query] = []
        for part in series:
            got = arrived.get(str(part.get("SeriesInstanceUID")), set())
            if not got:
                parts.append(part)
                continue
            images = part.set(tg.QUERY_RETRIEVE_LEVEL, "IMAGE").set(tg.SOP_INSTANCE_UID, "")
            found_images = await self.find(worker, images)
            if found_images is None:
                parts.append(part)  # ask for the series again: copies are counted once
                continue
            expected = {ds.get(tg.SOP_INSTANCE_UID, "") for ds in found_images}
            missing = sorted(expected - got - {""})
            if missing:
                parts.append(
                    images.set(tg.SOP_INSTANCE_UID, missing if len(missing) > 1 else missing[0])
                )
        logger.info(
            "%s: %d instances already here; asking for the rest in %d C-MOVE(s)",
            query,
            len(done),
            len(parts),
        )
        return parts
