"""How a :class:`Session` and a :class:`MoveJob` show in Jupyter: what they hold and will send.

Pure string building from their public attributes; each object's ``_repr_html_`` calls
the function here.
"""

from __future__ import annotations

import html
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .job import MoveJob
    from .session import AsyncSession

__all__ = ["job_html", "session_html"]


def _table(rows: list[tuple[str, str]]) -> str:
    cells = "".join(
        f"<tr><th style='text-align:left;padding-right:12px'>{html.escape(k)}</th>"
        f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
        for k, v in rows
    )
    return f"<table>{cells}</table>"


def sends(s: AsyncSession) -> str:
    """Return one sentence: what a move of this session sends, and where the instances go."""
    from ..query._model import _MODEL_NAMES

    model = _MODEL_NAMES[s.model]
    if s.method == "get":
        return (
            f"C-GET ({model}) to {s.pacs}: the instances come back on our association "
            "(nothing to register on the PACS)"
        )
    where = (
        f"our store SCP, port {s.port} (the PACS must know {s.move_destination} at this "
        "machine's address and that port)"
        if s.local_destination
        else f"{s.move_destination}, another node (a third-party move: not received here)"
    )
    text = (
        f"C-MOVE ({model}) as {s.ae_title} to {s.pacs}, destination {s.move_destination}: {where}"
    )
    if s.method == "auto":
        text += "; C-GET if the PACS does not know the destination"
    return text


def session_html(s: AsyncSession, state: str) -> str:
    """Return the session as an HTML table: the PACS, us, the options, what a move sends."""
    t = s.timeouts
    rows = [
        ("PACS", str(s.pacs)),
        ("we are", f"{s.ae_title} (store SCP port {s.port})"),
        ("sends", sends(s)),
        ("files into", os.fspath(s.out)),
        ("workers", str(s.workers)),
        (
            "timeouts",
            f"connect {t.connect:g} s, DIMSE {t.dimse:g} s, inactivity {t.inactivity:g} s"
            + (f", deadline {t.deadline:g} s" if t.deadline else ""),
        ),
        ("retries", str(s.retry.retries)),
        ("TLS", "yes" if s.tls is not None else "no"),
    ]
    return (
        f"<div class='dicommove-session'><b>Session</b> ({html.escape(state)}){_table(rows)}</div>"
    )


def job_html(job: MoveJob, state: str) -> str:
    """Return the job as HTML: its state, its panel or final summary, what to call next."""
    from ..progress import Reporter
    from ..progress.panel import Panel

    parts = [
        f"<div class='dicommove-job'><b>MoveJob</b> {html.escape(state)}: "
        f"{html.escape(sends(job.session._async))}</div>"
    ]
    reporter = job._reporter
    if isinstance(reporter, Reporter):
        desc = str(getattr(reporter, "desc", "move"))
        parts.append(Panel.of(reporter.stats.snapshot(), desc, rows=8).html())
    if job.done():
        from ..summary import summary

        try:
            parts.append(summary(job.manifest)._repr_html_())
        except Exception as exc:  # a failure before the move ran: no manifest
            parts.append(f"<div>{html.escape(str(exc))}</div>")
        parts.append("<div><i>job.result() returns the manifest (or raises).</i></div>")
    else:
        parts.append(
            "<div><i>job.manifest shows the rows so far; job.cancel() stops the move; "
            "job.result() waits for the manifest.</i></div>"
        )
    return "".join(parts)
