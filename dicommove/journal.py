"""The run journal: the one record of what landed, appended as it lands.

Every move into our own Store SCP appends JSON lines to
``OUT/.dicommove/journal.jsonl``:

* ``{"event": "run", "pid": ...}`` when a run starts;
* ``{"event": "instance", "key": K, "sop": ..., "path": ..., "size": ..., "status": ...}``
  for every C-STORE outcome, once its file has its final name (``path`` relative to
  ``OUT``; ``key`` is ``null`` for an instance that matched no request);
* ``{"event": "request", "key": K, "complete": true, "instances": n}`` when a request
  ended, written only after its files were made durable (group commit): a crash
  loses nothing that the journal claims.

Lines are buffered and written a few times a second, at the end of each request and
when the run ends; a torn last line after a crash is ignored when reading. The
manifest of a run is built from its lines by :mod:`dicommove.rows` (pure code), so
nothing per instance needs to stay in memory while a move runs.

``K`` is the request's identifier in a canonical form (:func:`request_key`), so the
same cohort maps to the same keys whatever its index labels and, with ``batch=1``,
whatever its row order (a batched C-MOVE's key lists its UIDs: resume with the same
``batch`` and order). ``move(..., resume=True)`` skips each request whose last
``request`` record says complete *and* whose files all exist with their recorded
sizes, copying their lines into the new run; everything else is asked for again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .rows import EARLIER_RUN, Arrival

if TYPE_CHECKING:
    from .query import Query
    from .store import Received

__all__ = ["JOURNAL_DIR", "JOURNAL_NAME", "Journal", "JournalEntry", "file_ok", "request_key"]

logger = logging.getLogger("dicommove")

#: Our metadata directory under the output root.
JOURNAL_DIR = ".dicommove"
JOURNAL_NAME = "journal.jsonl"
#: Buffered bytes that trigger a write.
_FLUSH_AT = 1 << 16
#: A run's instance records kept in memory at most (a few MB): beyond, read back.
KEPT = 10_000


def request_key(query: Query) -> str:
    """Return a canonical string for a request's identifier (its model and elements)."""
    elements = [
        [f"{tag:08X}", list(value) if isinstance(value, list) else value]
        for tag, value in query.elements
    ]
    return json.dumps([query.information_model, elements], separators=(",", ":"), default=str)


@dataclass
class JournalEntry:
    """What earlier runs recorded for one request key (see :meth:`Journal.scan`)."""

    complete: bool = False
    instances: dict[str, dict[str, Any]] = field(default_factory=dict)  # SOP UID -> record

    def on_disk(self, root: Path) -> bool:
        """Whether every recorded instance file exists under ``root`` with its size."""
        return all(file_ok(root, rec) for rec in self.instances.values())


def file_ok(root: Path, rec: dict[str, Any]) -> bool:
    """Whether the file of an instance record is under ``root`` with its recorded size."""
    try:
        return bool((root / rec["path"]).stat().st_size == rec["size"])
    except (OSError, KeyError, TypeError):
        return False


class Journal:
    """An append-only journal under ``root/.dicommove/``, written from the event loop.

    Parameters
    ----------
    root : path-like
        The output directory of the move.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()
        self.path = self.root / JOURNAL_DIR / JOURNAL_NAME
        self._root_prefix = os.path.join(self.root, "")
        self._fd: int | None = None
        self._start = 0  # where this run's lines begin
        self._buffer: list[str] = []
        self._buffered = 0
        self._unwritten: list[str] = []  # lines a write error kept from the file
        self._quoted: dict[str, str] = {}  # JSON of strings that repeat (keys, study UIDs...)
        self._parts: dict[tuple[str | None, ...], tuple[str, str]] = {}  # per series
        # this run's records in memory, while there are few (None: read them from the file)
        self._kept: list[tuple[str | None, Arrival]] | None = []

    # -- writing -----------------------------------------------------------------
    def open(self) -> None:
        """Open the journal for appending (creating it), and note the run's start."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._start = os.fstat(self._fd).st_size
        self._append(_dumps({"event": "run", "pid": os.getpid()}))
        self.flush()

    def close(self) -> None:
        """Write what is buffered, flush the journal to stable storage and close it."""
        self.flush()
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.fsync(fd)
            except OSError as exc:  # the files are there; only the journal's durability suffers
                logger.warning("cannot fsync the journal %s: %s", self.path, exc)
            os.close(fd)

    def _q(self, text: str) -> str:
        quoted = self._quoted.get(text)
        if quoted is None:
            quoted = json.dumps(text)
            if len(self._quoted) < 100_000:
                self._quoted[text] = quoted
        return quoted

    def _append(self, line: str) -> None:
        self._buffer.append(line)
        self._buffered += len(line) + 1
        if self._buffered >= _FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        """Write the buffered lines (one ``write``); never raises."""
        if not self._buffer:
            return
        lines, self._buffer, self._buffered = self._buffer, [], 0
        if self._fd is None:
            self._unwritten.extend(lines)
            return
        data = ("\n".join(lines) + "\n").encode()
        try:
            written = os.write(self._fd, data)
            if written != len(data):
                raise OSError(f"short write ({written} of {len(data)} bytes)")
        except OSError as exc:  # a full disk must not break the receive path
            logger.warning("cannot append to the journal %s: %s", self.path, exc)
            self._unwritten.extend(lines)

    def instance(self, key: str | None, rec: Received, arrival: Arrival | None = None) -> None:
        """Record one C-STORE outcome (after its file got its final name, if it did).

        ``arrival``, the same outcome as the manifest reads it, is also kept in memory
        while this run has recorded fewer than :data:`KEPT` (rows are then built without
        reading the file back); past that, nothing per instance stays in memory.
        """
        if arrival is not None:
            self._keep(key, arrival)
        path = rec.path
        if path.startswith(self._root_prefix):
            path = path[len(self._root_prefix) :]
        # what the instances of one series (and request) share, formatted once
        shared = (
            key,
            rec.sop_class_uid,
            rec.transfer_syntax_uid,
            rec.study_instance_uid,
            rec.series_instance_uid,
            rec.patient_id,
        )
        parts = self._parts.get(shared)
        if parts is None:
            q = self._q
            head = f'{{"event":"instance","key":{"null" if key is None else q(key)},"sop":'
            tail = (
                f'"sop_class":{q(rec.sop_class_uid)},"ts":{q(rec.transfer_syntax_uid)},'
                f'"study":{q(rec.study_instance_uid)},"series":{q(rec.series_instance_uid)},'
                f'"patient":{q(rec.patient_id)},"at":'
            )
            parts = (head, tail)
            if len(self._parts) < 10_000:
                self._parts[shared] = parts
        reason = f',"reason":{json.dumps(rec.reason)}' if rec.reason else ""
        if rec.tags:
            reason += f',"tags":{json.dumps(rec.tags, ensure_ascii=False)}'
        self._append(
            f"{parts[0]}{_json_string(rec.sop_instance_uid)},"
            f'"path":{_json_string(path)},"size":{rec.size},"status":"{rec.status}",'
            f"{parts[1]}{rec.received_at!r}{reason}}}"
        )

    def copy(self, key: str, record: dict[str, Any]) -> None:
        """Copy an earlier run's instance record into this run (``resume=True``)."""
        copied = {**record, "event": "instance", "key": key}
        copied.update(status="received", reason=EARLIER_RUN)
        self._append(_dumps(copied))
        self._keep(key, self._arrival(copied))

    def _keep(self, key: str | None, arrival: Arrival) -> None:
        kept = self._kept
        if kept is not None:
            kept.append((key, arrival))
            if len(kept) > KEPT:
                self._kept = None  # too many: read them back from the file when needed

    def request(self, key: str, *, complete: bool, instances: int) -> None:
        """Record how a request ended (after its files were made durable)."""
        self._append(
            f'{{"event":"request","key":{self._q(key)},'
            f'"complete":{"true" if complete else "false"},"instances":{instances}}}'
        )
        self.flush()

    # -- reading -----------------------------------------------------------------
    def _lines(self, start: int) -> Iterator[bytes]:
        try:
            with open(self.path, "rb") as stream:
                stream.seek(start)
                yield from stream
        except FileNotFoundError:
            pass
        for line in self._unwritten:
            yield line.encode()

    def arrivals(self) -> Iterator[tuple[str | None, Arrival]]:
        """Yield this run's instance records as (request key, :class:`Arrival`)."""
        self.flush()
        if self._kept is not None:
            yield from list(self._kept)
            return
        for raw in self._lines(self._start):
            rec = _parse(raw)
            if rec is not None and rec.get("event") == "instance":
                yield rec.get("key"), self._arrival(rec)

    def _arrival(self, rec: dict[str, Any]) -> Arrival:
        path = rec.get("path") or ""
        get = rec.get
        return Arrival(
            sop=get("sop") or "",
            sop_class=get("sop_class") or "",
            transfer_syntax=get("ts") or "",
            status=get("status") or "received",
            reason=get("reason") or "",
            study=get("study") or "",
            series=get("series") or "",
            patient=get("patient") or "",
            path=os.path.join(self._root_prefix, path) if path else "",
            size=int(get("size") or 0),
            at=get("at"),
            tags=_tags(get("tags")),
        )

    def scan(self) -> dict[str, JournalEntry]:
        """Read the journal of earlier runs: request key -> what it recorded.

        A request's instances accumulate over runs (only those that landed on disk);
        its completeness is the last ``request`` record's. Unreadable lines (a torn
        write) are skipped.
        """
        entries: dict[str, JournalEntry] = {}
        for raw in self._lines(0):
            rec = _parse(raw)
            if rec is None or not isinstance(rec.get("key"), str):
                continue
            event, key = rec.get("event"), rec["key"]
            if event == "instance" and rec.get("status", "received") in ("received", "duplicate"):
                if rec.get("path") and "sop" in rec:
                    entry = entries.setdefault(key, JournalEntry())
                    entry.instances[rec["sop"]] = {
                        k: v for k, v in rec.items() if k not in ("event", "key", "reason")
                    }
            elif event == "request":
                entries.setdefault(key, JournalEntry()).complete = bool(rec.get("complete"))
        return entries


def _tags(value: Any) -> dict[str, str] | None:
    if not isinstance(value, dict):
        return None
    return {str(k): str(v) for k, v in value.items() if isinstance(v, str)} or None


def _json_string(text: str) -> str:
    """JSON of a string; a path built from validated UIDs needs no escaping (the fast way)."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return json.dumps(text)


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"))


def _parse(raw: bytes) -> dict[str, Any] | None:
    with contextlib.suppress(ValueError):
        rec = json.loads(raw)
        if isinstance(rec, dict):
            return rec
    return None
