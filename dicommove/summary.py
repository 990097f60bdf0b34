"""A manifest's summary, shown as HTML in Jupyter: :func:`summary` and ``df.dicommove``.

Importing this module registers the pandas accessor ``dicommove`` on every DataFrame
(dicommove's :func:`~dicommove.manifest.build` and :func:`~dicommove.manifest.read_csv`
import it), so that a manifest answers::

    df.dicommove.summary()      # counts by status, bytes, time, and the reasons
    df.dicommove.problems()     # the rows that fell short: request, status, reason
    df.dicommove.by_request()   # one row per request: instances, bytes, statuses

The manifest itself stays a plain DataFrame. In IPython, a manifest (marked by
``df.attrs["dicommove"] == "manifest"``, which pandas carries through ``head()``, masks and
the like) renders as pandas renders it, with its cells kept on one line: a long ``reason``
no longer wraps word by word beside the wide UID columns.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import pandas as pd

from .manifest import OK_STATUSES, PROBLEM_STATUSES, STATUSES, _human_bytes, received_text
from .progress.base import _shell
from .progress.panel import duration

__all__ = ["ManifestAccessor", "ManifestSummary", "summary"]

_COLOURS = {"ok": "#2ca02c", "problem": "#d62728", "other": "#7f7f7f"}


@dataclass(frozen=True)
class ManifestSummary:
    """What a manifest holds, at a glance; shown as HTML in Jupyter, as text elsewhere.

    Attributes
    ----------
    counts : Mapping[str, int]
        Rows by status, in :data:`~dicommove.STATUSES` order (statuses present only).
    requests : int
        Distinct requests (cohort rows) named by the manifest.
    instances : int
        Instances received (``received`` rows).
    nbytes : int
        Bytes of the files received.
    seconds : float or None
        From the first file received to the last (``None`` with fewer than two).
    reasons : list of (str, str, int)
        ``(status, reason, rows)`` of every problem, most frequent first.
    """

    counts: Mapping[str, int]
    requests: int
    instances: int
    nbytes: int
    seconds: float | None
    reasons: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Whether no row has a problem status."""
        return not any(self.counts.get(s, 0) for s in PROBLEM_STATUSES)

    def headline(self) -> str:
        """Return one line: instances, bytes, requests, time and rate."""
        text = received_text(self.instances, self.nbytes, self.requests)
        if self.seconds:
            rate = _human_bytes(round(self.nbytes / self.seconds))
            text += f" in {duration(self.seconds)} ({rate}/s)"
        return text

    def __str__(self) -> str:
        lines = [self.headline()]
        lines.append(", ".join(f"{status}: {n:,}" for status, n in self.counts.items()))
        for status, reason, n in self.reasons:
            lines.append(f"  {n:,} {status}: {reason}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        def kind(status: str) -> str:
            if status in OK_STATUSES:
                return "ok"
            return "problem" if status in PROBLEM_STATUSES else "other"

        cells = "".join(
            f"<td style='padding:2px 10px;text-align:right'>"
            f"<span style='color:{_COLOURS[kind(s)]}'>\u25cf</span> {html.escape(s)}"
            f"<br><b>{n:,}</b></td>"
            for s, n in self.counts.items()
        )
        state = "complete" if self.complete else "incomplete"
        parts = [
            f"<div class='dicommove-manifest-summary' data-state='{state}'>",
            f"<div>{html.escape(self.headline())}</div>",
            f"<table><tr>{cells}</tr></table>",
        ]
        if self.reasons:
            rows = "".join(
                f"<tr><td style='text-align:right'>{n:,}</td><td>{html.escape(status)}</td>"
                f"<td style='text-align:left;white-space:normal'>{html.escape(reason)}</td></tr>"
                for status, reason, n in self.reasons
            )
            parts.append(
                "<details open><summary>problems, by reason</summary><table>"
                "<tr><th>rows</th><th>status</th><th style='text-align:left'>reason</th></tr>"
                f"{rows}</table></details>"
            )
        parts.append("</div>")
        return "".join(parts)


def summary(df: pd.DataFrame) -> ManifestSummary:
    """Summarize a manifest: counts by status, bytes, time, and problems by reason.

    Parameters
    ----------
    df : pandas.DataFrame
        A manifest (from :func:`dicommove.move`, a job, or
        :func:`~dicommove.manifest.read_csv`).

    Returns
    -------
    ManifestSummary
        Shown as HTML in Jupyter; ``str()`` gives the same as text.
    """
    status = df["status"].astype("object")
    present = status.value_counts()
    counts = {s: int(present[s]) for s in STATUSES if s in present.index}
    received = df[status == "received"]
    stamps = received["received_at"].dropna()
    seconds = None
    if len(stamps) > 1:
        seconds = (stamps.max() - stamps.min()).total_seconds()
    problems = df[status.isin(sorted(PROBLEM_STATUSES))]
    reasons: list[tuple[str, str, int]] = []
    if len(problems):
        grouped = (
            problems.assign(
                status=problems["status"].astype("object"),
                reason=problems["reason"].astype("object").fillna(""),
            )
            .groupby(["status", "reason"], sort=False)
            .size()
            .sort_values(ascending=False, kind="stable")
        )
        reasons = [(str(s), str(r), int(n)) for (s, r), n in grouped.items()]
    return ManifestSummary(
        counts=counts,
        requests=int(df["request"].dropna().nunique()),
        instances=len(received),
        nbytes=int(received["size"].fillna(0).sum()),
        seconds=seconds,
        reasons=reasons,
    )


@pd.api.extensions.register_dataframe_accessor("dicommove")
class ManifestAccessor:
    """``df.dicommove``: a manifest's summary, its problem rows, and its per-request view.

    Parameters
    ----------
    df : pandas.DataFrame
        A manifest: it needs at least the ``request``, ``status``, ``reason``, ``size``
        and ``received_at`` columns.

    Raises
    ------
    AttributeError
        When the DataFrame is not a manifest (a column is missing).
    """

    _NEEDS = ("request", "status", "reason", "size", "received_at")

    def __init__(self, df: pd.DataFrame) -> None:
        missing = [c for c in self._NEEDS if c not in df.columns]
        if missing:
            raise AttributeError(
                f"df.dicommove needs a dicommove manifest; this DataFrame has no {missing} "
                "column (read a saved manifest with dicommove.manifest.read_csv)"
            )
        self._df = df

    def summary(self) -> ManifestSummary:
        """Return :func:`summary` of the manifest (HTML in Jupyter)."""
        return summary(self._df)

    def problems(self) -> pd.DataFrame:
        """Return the rows with a problem status, ``request``, ``status``, ``reason`` first."""
        df = self._df
        rows: pd.DataFrame = df[df["status"].isin(sorted(PROBLEM_STATUSES))]
        kept: pd.DataFrame = rows.dropna(axis="columns", how="all")
        return kept

    def by_request(self) -> pd.DataFrame:
        """Return one row per request: instances and bytes received, rows by status.

        Indexed by ``request`` (your cohort's labels), so that it joins back to the
        cohort with ``cohort.join(df.dicommove.by_request())``.
        """
        df = self._df
        received = df["status"] == "received"
        keyed = df[df["request"].notna()]
        base = (
            keyed.assign(
                instances=received[keyed.index].astype(int),
                bytes=keyed["size"].where(received[keyed.index], 0).fillna(0).astype("int64"),
            )
            .groupby("request", sort=False)[["instances", "bytes"]]
            .sum()
        )
        statuses = pd.crosstab(keyed["request"], keyed["status"].astype("object"))
        order = [s for s in STATUSES if s in statuses.columns]
        out: pd.DataFrame = base.join(statuses[order]).fillna(0)
        out.columns.name = None
        return out


#: The ``DataFrame.attrs`` mark of a manifest: ``df.attrs["dicommove"] == MANIFEST``.
MANIFEST = "manifest"

_NOWRAP = "<style>.dicommove-manifest td, .dicommove-manifest th {white-space: nowrap}</style>"


def manifest_html(df: pd.DataFrame, fallback: Callable[[pd.DataFrame], str | None]) -> str | None:
    """Return ``fallback(df)``, wrapped so that a manifest's cells stay on one line."""
    body = fallback(df)
    if body is None or df.attrs.get("dicommove") != MANIFEST:
        return body
    return f"<div class='dicommove-manifest'>{_NOWRAP}{body}</div>"


def _pandas_html(df: pd.DataFrame) -> str | None:
    html_text: str | None = cast(Any, df)._repr_html_()  # not in pandas-stubs
    return html_text


def register_html() -> bool:
    """Have the running IPython show manifests with :func:`manifest_html`; once.

    Other DataFrames are shown as before (by the printer registered before ours, or
    pandas' own). Returns whether a shell was found.
    """
    shell = _shell()
    if shell is None:
        return False
    formatter = shell.display_formatter.formatters.get("text/html")
    if formatter is None:
        return False
    previous = formatter.type_printers.get(pd.DataFrame)
    if getattr(previous, "dicommove", False):
        return True  # registered already
    fallback = previous if previous is not None else _pandas_html

    def printer(df: pd.DataFrame) -> str | None:
        return manifest_html(df, fallback)

    printer.dicommove = True  # type: ignore[attr-defined]
    formatter.for_type(pd.DataFrame, printer)
    return True
