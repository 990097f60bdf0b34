"""What the Jupyter panel shows, as plain data: :class:`Panel`, drawn as widgets, HTML or text.

:meth:`Panel.of` turns a :class:`~dicommove.progress.stats.ProgressSnapshot` into the
panel's words and numbers; :meth:`Panel.html` draws it as static HTML (the summary that
replaces the live widgets when a move ends, and ``MoveJob._repr_html_``) and
:meth:`Panel.text` as plain text. Standard library only.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass

from ..manifest import _human_bytes
from .base import _state
from .stats import ProgressSnapshot

__all__ = ["Panel"]

#: Bar colour of each state (the ipywidgets bar_style, and the static HTML colour).
STYLES = {"running": "info", "cancelling": "warning", "complete": "success"}
COLOURS = {"info": "#1f77b4", "warning": "#ff7f0e", "success": "#2ca02c", "danger": "#d62728"}

#: How the manifest statuses read in a sentence.
_WORDS = {"not_found": "not found"}


def duration(seconds: float) -> str:
    """``"1:02"``, or ``"1:02:03"`` past an hour."""
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


def counts(problems: Mapping[str, int]) -> list[str]:
    """``["1 not found", "2 cancelled"]``: non-zero counts of manifest statuses."""
    return [f"{n:,} {_WORDS.get(status, status)}" for status, n in problems.items() if n]


@dataclass(frozen=True)
class Panel:
    """The panel's contents at one moment, as plain data.

    Attributes
    ----------
    title, state : str
        The panel's title, and ``"running"``, ``"cancelling"``, ``"complete"``,
        ``"incomplete"`` or ``"cancelled"``.
    value, maximum : int
        The bar: instances received, out of those expected (an estimate while
        requests wait to start).
    style : str
        The ipywidgets bar style: ``"info"``, ``"warning"``, ``"success"`` or ``"danger"``.
    count : str
        ``"376 / ~4,000 instances · 18 of 200 requests · ETA 1:23"``.
    line : str
        Throughput, bytes, problems and time.
    active : tuple of str
        The running requests shown, oldest first; ``more`` others are not shown.
    more : int
        Running requests not listed.
    workers : str
        ``"workers: 3 moving (#1 #2 #3) · 1 idle (#4)"``, or empty.
    hint : str
        What to do next, once the move has ended short; else empty.
    """

    title: str
    state: str
    value: int
    maximum: int
    style: str
    count: str
    line: str
    active: tuple[str, ...]
    more: int
    workers: str
    hint: str

    @classmethod
    def of(
        cls, snapshot: ProgressSnapshot, desc: str, rows: int, *, cancelling: bool = False
    ) -> Panel:
        """Return the panel for ``snapshot``, listing at most ``rows`` active requests."""
        s = snapshot
        state = _state(s)
        if state == "running" and cancelling:
            state = "cancelling"
        expected = s.expected if s.expected is not None else s.total
        maximum = max(expected or 0, s.instances, 1)
        value = maximum if state == "complete" else s.instances
        estimated = expected is not None and expected != s.total
        shown = "?" if expected is None else f"{'~' if estimated else ''}{expected:,}"
        if state == "complete":  # all there (some may have been on disk already)
            shown = f"{s.instances:,}"
        count = [f"{s.instances:,} / {shown} instances"]
        if s.requests_total > 1:
            count.append(f"{s.requests_done:,} of {s.requests_total:,} requests done")
        if s.eta is not None:
            count.append(f"ETA {duration(s.eta)}")
        line = [
            f"{_human_bytes(round(s.mb_per_s * 1e6))}/s",
            f"received {s.instances:,} ({_human_bytes(s.nbytes)})",
        ]
        if s.finished and s.problems:
            line.append("manifest: " + ", ".join(counts(s.problems)))
        else:
            line += [
                f"{n:,} {what}" for what, n in (("failed", s.failed), ("missing", s.missing)) if n
            ]
            if s.request_problems:
                line.append("requests " + ", ".join(counts(s.request_problems)))
        waiting = s.requests_waiting
        if waiting and (s.finished or state == "cancelling"):
            line.append(f"{waiting:,} requests never started")
        line.append(f"{duration(s.elapsed)} elapsed")
        groups: dict[str, list[int]] = {}
        for number, what in s.workers.items():
            groups.setdefault(what, []).append(number)
        workers = " \u00b7 ".join(
            f"{len(numbers)} {what} ({' '.join(f'#{n}' for n in numbers)})"
            for what, numbers in groups.items()
        )
        hint = _hint(s) if s.finished and state != "complete" else ""
        return cls(
            title=desc,
            state=state,
            value=value,
            maximum=maximum,
            style=STYLES.get(state, "danger"),
            count=" \u00b7 ".join(count),
            line=" \u00b7 ".join(line),
            active=s.active[:rows] if not s.finished else (),
            more=max(len(s.active) - rows, 0) if not s.finished else 0,
            workers=f"workers: {workers}" if workers and not s.finished else "",
            hint=hint,
        )

    def active_table(self) -> str:
        """Return the active requests as an HTML table (empty when none runs)."""
        cell = "<tr><td style='padding:0 8px;white-space:nowrap'>{}</td></tr>"
        rows = "".join(cell.format(html.escape(label)) for label in self.active)
        if self.more:
            rows += cell.format(f"<i>+{self.more} more</i>")
        if not rows:
            return ""
        return (
            "<table class='dicommove-active' style='font-family:monospace;font-size:90%'>"
            f"<tr><th style='text-align:left;padding:0 8px'>active requests</th></tr>{rows}</table>"
        )

    def title_html(self) -> str:
        """Return the title line: the title in bold, then the state in its colour."""
        colour = COLOURS[self.style]
        return (
            f"<b>{html.escape(self.title)}</b> "
            f"<span class='dicommove-state' style='color:{colour}'>{self.state}</span>"
        )

    def html(self) -> str:
        """Return the panel as static HTML, with no widget (a saved notebook shows it)."""
        percent = 100 * self.value / self.maximum if self.maximum else 0.0
        colour = COLOURS[self.style]
        parts = [
            f"<div class='dicommove-summary' data-state='{self.state}' "
            "style='font-family:var(--jp-ui-font-family,sans-serif);line-height:1.5'>",
            f"<div>{self.title_html()}</div>",
            "<div style='display:flex;align-items:center;gap:8px'>"
            "<div style='width:50%;height:12px;background:#8884;border-radius:2px'>"
            f"<div class='dicommove-bar' style='width:{percent:.1f}%;height:100%;"
            f"background:{colour};border-radius:2px'></div></div>"
            f"<span class='dicommove-count'>{html.escape(self.count)}</span></div>",
            f"<div class='dicommove-line'>{html.escape(self.line)}</div>",
            self.active_table(),
        ]
        if self.workers:
            parts.append(f"<div>{html.escape(self.workers)}</div>")
        if self.hint:
            parts.append(f"<div class='dicommove-hint'><i>{html.escape(self.hint)}</i></div>")
        parts.append("</div>")
        return "".join(parts)

    def text(self, *, button: str = "") -> str:
        """Return the panel as plain text; ``button`` is the Cancel button's line, if any."""
        width = 30
        filled = round(width * self.value / self.maximum) if self.maximum else 0
        lines = [
            f"{self.title}: {self.state}",
            f"[{'#' * filled}{'.' * (width - filled)}] {self.count}  ({self.style})",
            self.line,
        ]
        if self.active:
            lines.append("active requests:")
            lines.extend(f"  {label}" for label in self.active)
            if self.more:
                lines.append(f"  +{self.more} more")
        if self.workers:
            lines.append(self.workers)
        if self.hint:
            lines.append(self.hint)
        if button:
            lines.append(button)
        return "\n".join(lines)


def _hint(s: ProgressSnapshot) -> str:
    """Return what to do after a move that fell short."""
    problems = set(s.problems or s.request_problems)
    if problems == {"not_found"}:
        return (
            "The PACS matched nothing for some requests: check their keys "
            "(df.dicommove.problems()); running again will not find them."
        )
    return (
        "Run the same move again with resume=True to fetch the rest. "
        "The manifest's status and reason columns say what is missing and why."
    )


class StaticPanel:
    """A finished panel for IPython's display: HTML in a notebook, text elsewhere."""

    def __init__(self, panel: Panel) -> None:
        self.panel = panel

    def _repr_html_(self) -> str:
        return self.panel.html()

    def __repr__(self) -> str:
        return self.panel.text()
