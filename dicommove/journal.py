"""The run journal: what landed on disk, appended as it lands, for ``resume=True``.

Every move into our own Store SCP appends JSON lines to
``OUT/.dicommove/journal.jsonl``:

* ``{"event": "instance", "key": K, "sop": ..., "path": ..., "size": ...}`` when
  an instance got its final name (written from the store thread, before the
  C-STORE is answered: a crash after that loses nothing the journal claims);
* ``{"event": "request", "key": K, "complete": true, "instances": n}`` when a
  request ended with every instance accounted for and none of them a problem.

``K`` is the request's identifier in a canonical form (:func:`request_key`), so
the same cohort maps to the same keys whatever its index labels, and, with
``batch=1``, whatever its row order (a batched C-MOVE's key lists its UIDs: resume
with the same ``batch`` and order). A
later ``move(..., resume=True)`` skips each request whose last ``request``
record says complete *and* whose files all exist with their recorded sizes;
everything else is asked for again. Lines are written with one ``write`` each
(``O_APPEND``); a torn last line after a crash is ignored when reading.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .query import Query

__all__ = ["JOURNAL_DIR", "Journal", "JournalEntry", "request_key"]

logger = logging.getLogger("dicommove")

#: Our metadata directory under the output root.
JOURNAL_DIR = ".dicommove"
JOURNAL_NAME = "journal.jsonl"


def request_key(query: Query) -> str:
    """Return a canonical string for a request's identifier (its model and elements)."""
    elements = [
        [f"{tag:08X}", list(value) if isinstance(value, list) else value]
        for tag, value in query.elements
    ]
    return json.dumps([query.information_model, elements], separators=(",", ":"), default=str)


@dataclass
class JournalEntry:
    """What the journal knows about one request key."""

    complete: bool = False
    instances: dict[str, dict[str, Any]] = field(default_factory=dict)  # SOP UID -> record

    def on_disk(self, root: Path) -> bool:
        """Whether every recorded instance file exists under ``root`` with its size."""
        for rec in self.instances.values():
            path = root / rec["path"]
            try:
                if path.stat().st_size != rec["size"]:
                    return False
            except OSError:
                return False
        return True


class Journal:
    """An append-only journal under ``root/.dicommove/`` (thread-safe).

    Parameters
    ----------
    root : path-like
        The output directory of the move.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()
        self.path = self.root / JOURNAL_DIR / JOURNAL_NAME
        self._fd: int | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        """Open the journal for appending (creating it), and note the run's start."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._append({"event": "run", "pid": os.getpid()})

    def close(self) -> None:
        """Flush the journal to stable storage and close it."""
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.fsync(fd)
            except OSError as exc:  # the files are there; only the journal's durability suffers
                logger.warning("cannot fsync the journal %s: %s", self.path, exc)
            os.close(fd)

    def _append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self._fd is None:
                return
            try:
                os.write(self._fd, line)
            except OSError as exc:  # a full disk must not break the receive path
                logger.warning("cannot append to the journal %s: %s", self.path, exc)

    def instance(self, key: str, fields: dict[str, Any]) -> None:
        """Record an instance that got its final name.

        ``fields`` holds at least ``sop`` (SOPInstanceUID), ``path`` (absolute, or
        relative to the root) and ``size``; more manifest fields may follow.
        """
        record = {"event": "instance", "key": key, **fields}
        with contextlib.suppress(ValueError):  # another drive (Windows): keep it absolute
            record["path"] = os.path.relpath(fields["path"], self.root)
        self._append(record)

    def request(self, key: str, *, complete: bool, instances: int) -> None:
        """Record how a request ended."""
        self._append({"event": "request", "key": key, "complete": complete, "instances": instances})

    def load(self) -> dict[str, JournalEntry]:
        """Read the journal of earlier runs: request key -> what it recorded.

        A request's instances accumulate over runs; its completeness is the last
        ``request`` record's. Unreadable lines (a torn write) are skipped.
        """
        entries: dict[str, JournalEntry] = {}
        try:
            lines = self.path.read_bytes().splitlines()
        except FileNotFoundError:
            return entries
        for raw in lines:
            try:
                rec = json.loads(raw)
                event, key = rec["event"], rec.get("key")
            except (ValueError, KeyError, TypeError):
                continue
            if event == "instance":
                entry = entries.setdefault(key, JournalEntry())
                entry.instances[rec["sop"]] = rec
            elif event == "request":
                entries.setdefault(key, JournalEntry()).complete = bool(rec.get("complete"))
        return entries
