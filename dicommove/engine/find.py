"""C-FIND on the pool: one query (:meth:`Finder.ask`), many in parallel, and what a move asks.

The engine asks a PACS three things with C-FIND, each on the asking worker's own
association: whether a request's keys match anything (to tell "not found" from
"unknown destination"), which series a study or patient has (to split a request
over the workers, or one too big to count), and which instances of a series exist
(so that a retry asks only for the ones that have not arrived). A C-FIND that
fails answers ``None``, and the caller falls back to asking for the whole.

A user's find (:func:`dicommove.find`, in :mod:`~dicommove.engine.search`) runs its
C-FINDs with :meth:`Finder.ask_all`, one association per worker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .. import _sop, _ul
from .. import _status as st
from .. import _tags as tg
from .._header import read_elements
from ..errors import AssociationAborted, DicomMoveError, FindError
from ..query import Query, Value, encode_identifier
from .association import Aborted
from .pool import Pool

__all__ = ["Answer", "Finder"]

logger = logging.getLogger("dicommove")

_READ = frozenset(
    {
        tg.SOP_CLASS_UID,
        tg.PATIENT_ID,
        tg.STUDY_INSTANCE_UID,
        tg.SERIES_INSTANCE_UID,
        tg.SOP_INSTANCE_UID,
        tg.NUMBER_OF_SERIES_RELATED_INSTANCES,
        tg.SOP_CLASSES_IN_STUDY,
    }
)


def _values(text: str) -> list[str]:
    return [v.strip() for v in text.split("\\") if v.strip()] if text else []


def _where(query: Query) -> tuple[str, str]:
    """Return the (Study, Series InstanceUID) of a series- or image-level query."""
    return str(query.get("StudyInstanceUID") or ""), str(query.get("SeriesInstanceUID") or "")


def _series_queries(query: Query) -> list[Query] | None:
    """Return a SERIES-level query as one query per series; ``None`` without one study."""
    study = _values(str(query.get("StudyInstanceUID") or ""))
    if len(study) != 1:
        return None
    model = query.information_model
    keys: list[tuple[int, Value]] = [
        (tg.QUERY_RETRIEVE_LEVEL, "SERIES"),
        (tg.STUDY_INSTANCE_UID, study[0]),
    ]
    if model == "patient":
        keys.append((tg.PATIENT_ID, query.get("PatientID")))
    return [Query((*keys, (tg.SERIES_INSTANCE_UID, uid)), model) for uid in query.retrieve_uids()]


def _images_of(series: Query) -> Query:
    """Return the IMAGE-level C-FIND that lists a series' instances."""
    return series.set(tg.QUERY_RETRIEVE_LEVEL, "IMAGE").set(tg.SOP_INSTANCE_UID, "")


def _count(text: str | None) -> int | None:
    """Read an IS value as a count; ``None`` when absent or not a count."""
    try:
        n = int(text or "")
    except ValueError:
        return None
    return n if n >= 0 else None


@dataclass
class Answer:
    """What one C-FIND returned: each match's identifier, and how it ended."""

    matches: list[bytes]
    syntax: str  # the transfer syntax the identifiers are encoded in
    status: int | None  # the final status
    comment: str = ""  # its ErrorComment, if any


class Finder:
    """C-FIND on a pool's associations."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def ask(self, worker: int, query: Query) -> Answer:
        """Run one C-FIND on ``worker``'s association and return every answer.

        Raises
        ------
        ConnectError, AssociationRejected, AssociationAborted
            When no association could be made, or it broke during the C-FIND.
        FindError
            When the PACS did not accept the query's information model.
        """
        pool = self.pool
        if query.information_model not in _sop.FIND:
            raise FindError(
                "Composite Instance Root has no C-FIND: find in Study Root or Patient Root "
                "(model='study' or 'patient')"
            )
        assoc = await pool.get(worker)
        sop_class = _sop.FIND[query.information_model]
        if sop_class not in assoc.contexts:
            raise FindError(
                f"{pool.pacs} does not offer C-FIND in the {query.information_model} root "
                "information model: try model='study' or model='patient'"
            )
        cx_id, syntax = assoc.contexts[sop_class]
        command = _ul.encode_request(
            _ul.C_FIND_RQ, pool.next_message_id(), sop_class=sop_class, has_dataset=True
        )
        identifier = encode_identifier(query, implicit=syntax == _sop.IMPLICIT_VR_LE)
        matches: list[bytes] = []
        try:
            assoc.send(cx_id, command, identifier)
            while True:
                rsp = await assoc.receive(timeout=pool.timeouts.dimse)
                code = rsp.status
                if st.kind_of(code) is st.Kind.PENDING:
                    matches.append(rsp.dataset or b"")
                    continue
                comment = rsp.text(tg.ERROR_COMMENT)
                break
        except Aborted as exc:
            pool.drop(worker)
            raise AssociationAborted(f"C-FIND on {pool.pacs} failed: {exc}") from None
        logger.debug("C-FIND %s: %d matches, status 0x%04X", query, len(matches), code or 0)
        return Answer(matches, syntax, code, comment)

    async def ask_all(
        self, keys: Sequence[int], queries: Sequence[Query]
    ) -> list[Answer | DicomMoveError | None]:
        """Run C-FINDs in parallel, one association per key, each taking the next query.

        After the first error no further query is sent; those not sent stay ``None``.
        """
        results: list[Answer | DicomMoveError | None] = [None] * len(queries)
        todo = iter(range(len(queries)))
        failed = False

        async def work(key: int) -> None:
            nonlocal failed
            for i in todo:
                if failed:
                    return
                try:
                    results[i] = await self.ask(key, queries[i])
                except DicomMoveError as exc:
                    results[i], failed = exc, True

        await asyncio.gather(*(work(key) for key in keys[: max(len(queries), 1)]))
        return results

    async def find(self, worker: int, query: Query) -> list[dict[int, str]] | None:
        """Run a C-FIND; return the matches (tag -> text), ``None`` if it failed."""
        try:
            answer = await self.ask(worker, query)
        except DicomMoveError:
            return None
        if st.kind_of(answer.status) is not st.Kind.SUCCESS:
            return None
        return [read_elements(m, answer.syntax, _READ) or {} for m in answer.matches]

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

    async def classes_of(self, worker: int, query: Query, uids: list[str]) -> dict[str, str]:
        """Return the SOPClassUID of instances of ``query``'s study or series, where told.

        For a C-GET's failed instances: a class we did not propose is named in its row.
        Empty when the C-FIND fails or the PACS does not return SOPClassUID (dcmqrscp).
        """
        keys: list[tuple[int, Value]] = [(tg.QUERY_RETRIEVE_LEVEL, "IMAGE")]
        for tag, name in (
            (tg.PATIENT_ID, "PatientID"),
            (tg.STUDY_INSTANCE_UID, "StudyInstanceUID"),
            (tg.SERIES_INSTANCE_UID, "SeriesInstanceUID"),
        ):
            values = _values(str(query.get(name) or ""))
            if len(values) == 1 and (tag != tg.PATIENT_ID or query.information_model == "patient"):
                keys.append((tag, values[0]))
        keys += [(tg.SOP_INSTANCE_UID, uids if len(uids) > 1 else uids[0]), (tg.SOP_CLASS_UID, "")]
        found = await self.find(worker, Query(tuple(keys), query.information_model))
        return {
            ds[tg.SOP_INSTANCE_UID]: ds[tg.SOP_CLASS_UID]
            for ds in found or []
            if ds.get(tg.SOP_INSTANCE_UID) in uids and ds.get(tg.SOP_CLASS_UID)
        }

    async def classes_in(self, worker: int, studies: list[str], model: str) -> set[str] | None:
        """Return the SOPClassesInStudy of ``studies`` (one C-FIND), ``None`` if not told."""
        keys: list[tuple[int, Value]] = [
            (tg.QUERY_RETRIEVE_LEVEL, "STUDY"),
            (tg.STUDY_INSTANCE_UID, studies if len(studies) > 1 else studies[0]),
            (tg.SOP_CLASSES_IN_STUDY, ""),
        ]
        found = await self.find(
            worker, Query(tuple(keys), "patient" if model == "patient" else "study")
        )
        if not found:
            return None
        classes = {c for ds in found for c in _values(ds.get(tg.SOP_CLASSES_IN_STUDY, ""))}
        return classes or None

    async def instances(self, worker: int, query: Query) -> dict[str, tuple[str, str]] | None:
        """List a request's instances (``verify=True``): SOP -> (Study, Series InstanceUID).

        IMAGE requests list their own UIDs; the others are listed series by series with
        IMAGE-level C-FINDs (which a hierarchical PACS such as dcmqrscp needs). ``None``
        when a C-FIND fails.
        """
        level = query.level
        if level == "IMAGE":
            return dict.fromkeys(query.retrieve_uids(), _where(query))
        if level == "SERIES":
            one_each = _series_queries(query)
            if one_each is None:
                return None
            parts = one_each
        else:
            found_series = await self.series_of(worker, query)
            if found_series is None:
                return None
            parts = found_series
        listed: dict[str, tuple[str, str]] = {}
        for part in parts:
            found = await self.find(worker, _images_of(part))
            if found is None:
                return None
            where = _where(part)
            listed.update(
                (ds[tg.SOP_INSTANCE_UID], where) for ds in found if ds.get(tg.SOP_INSTANCE_UID)
            )
        return listed

    async def remaining(
        self,
        worker: int,
        query: Query,
        arrived: Mapping[str, set[str]],
        *,
        whole: bool = False,
        skip: frozenset[str] = frozenset(),
    ) -> list[Query] | None:
        """Return the C-MOVEs that ask only for what has not arrived; ``None``: ask again whole.

        IMAGE queries list their instances: the missing ones are asked for. For
        PATIENT, STUDY and SERIES queries the series are listed (C-FIND); a series of
        which nothing arrived is asked for whole, one of which some instances arrived
        has its instances listed and only the missing ones are asked for.
        ``whole=True`` (too big to count) always splits into series. ``skip`` are
        instances not to ask for again (a C-GET that failed them: the PACS cannot send
        them to us); every series is then listed, to leave them out.

        Parameters
        ----------
        arrived : mapping
            SeriesInstanceUID -> SOPInstanceUIDs on disk for this request.
        """
        level = query.level
        done = {sop for sops in arrived.values() for sop in sops} | skip
        if level == "IMAGE":
            wanted = [u for u in query.retrieve_uids() if u not in done]
            return [query.where(SOPInstanceUID=wanted)] if wanted else []
        if level == "SERIES":
            one_each = _series_queries(query)
            if one_each is None:
                return None
            series = one_each
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
            got = arrived.get(str(part.get("SeriesInstanceUID")), set()) | skip
            if not got:
                parts.append(part)
                continue
            images = _images_of(part)
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
