"""The move engine: one event loop, small rooms.

The flow, one direction::

    move()/Session.move()/AsyncSession.move()
      -> plan                (dicommove.query: validated requests; pure)
      -> Run                 (run.py: one move; journal, store SCP, group commit)
          -> Scheduler       (scheduler.py: workers, retries with backoff, splits)
              -> move_once   (exchange.py: one C-MOVE; responses, C-CANCEL, timeouts)
                  -> Pool    (pool.py: one association per worker, one for C-ECHO)
                  -> Finder  (find.py: C-FIND for splits, retries, "not found")
          <- Router          (router.py: each arrival to its C-MOVE by Message ID)
      -> store               (dicommove.store: temp file, final name; scp.py: the network)
      -> journal             (dicommove.journal: the one record of what landed)
      -> rows                (dicommove.rows: journal + outcomes -> manifest rows; pure)
      -> manifest            (dicommove.manifest: a typed DataFrame, or CSV)

:class:`AsyncSession` (session.py) runs on the caller's event loop; :class:`Session`
(sync.py) runs it on dicommove's own loop thread, and :class:`MoveJob` (job.py) is a
move running in the background. Per request, :mod:`~dicommove.engine.request` holds
the state machine (enums) and folds its C-MOVEs into one outcome.
"""

from __future__ import annotations

from .. import _status
from .._defaults import DEFAULT_AE_TITLE, DEFAULT_PORT, DEFAULT_WORKERS
from .job import MoveJob
from .session import AsyncSession, Progress, SessionOptions
from .sync import Session

__all__ = [
    "DEFAULT_AE_TITLE",
    "DEFAULT_PORT",
    "DEFAULT_WORKERS",
    "STATUS_TEXT",
    "AsyncSession",
    "MoveJob",
    "Progress",
    "Session",
    "SessionOptions",
    "describe_status",
]

#: C-MOVE status codes (PS3.4 C.4.2.1.5) and what they mean.
STATUS_TEXT: dict[int, str] = {code: text for code, (_, text) in _status.STATUS_TEXT.items()}
#: Describe a C-MOVE status code (``None``: no response).
describe_status = _status.describe
