"""What a notebook shows: the panel during and after real moves, reprs, the manifest summary.

Issue 12's widget defects, each checked against real moves on the demo PACS (the browser
test, tests/test_browser.py, checks the same in Chromium): totals and ETA (2), the final
static summary (3), cancel state and never-started requests (4), "not found" (5), row
labels (6), worker numbers, units and ms timestamps (7), column order (8), reprs and the
manifest after an uncaught Ctrl-C (9).
"""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import dicommove
from dicommove import MoveCancelled, MoveIncomplete, Query, Session
from dicommove.engine.request import ellipsize, label_of
from dicommove.progress import MoveStats, ProgressSnapshot, WidgetReporter
from dicommove.progress import events as events_module
from dicommove.progress import widget as widget_module
from dicommove.summary import ManifestSummary, summary
from dicommove.testing import DemoPACS

DEMO_COHORT = {"patients": 6, "studies": 2, "series": 1, "instances": 3}


@pytest.fixture(autouse=True)
def _no_faults(demo_pacs: DemoPACS) -> Iterator[None]:
    yield
    demo_pacs.faults.clear()


@pytest.fixture
def displayed(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """IPython's display, recording what was shown and what replaced it."""
    pytest.importorskip("ipywidgets")
    import IPython.display

    shown: list[object] = []

    class Handle:
        def update(self, obj: object) -> None:
            shown.append(("update", obj))

    def display(*objs: object, display_id: bool = False, **_kw: object) -> Handle | None:
        shown.extend(objs)
        return Handle() if display_id else None

    monkeypatch.setattr(IPython.display, "display", display)
    monkeypatch.setattr(widget_module, "_shell_running", lambda: True)  # as in a notebook
    return shown


def cohort_of(demo_cohort: pd.DataFrame) -> pd.DataFrame:
    """One row per study, labelled case-1, case-2, ... as a researcher's cohort is."""
    studies = demo_cohort.drop_duplicates("StudyInstanceUID")[["StudyInstanceUID"]]
    labelled: pd.DataFrame = studies.reset_index(drop=True).rename(index=lambda n: f"case-{n + 1}")
    return labelled


def final_html(shown: list[object]) -> str:
    updates = [obj for obj in shown if isinstance(obj, tuple) and obj[0] == "update"]
    assert len(updates) == 1, "the panel is replaced once, at the end"
    html: str = updates[0][1]._repr_html_()
    return html


# -- the panel during real moves -------------------------------------------------------
def test_a_cancelled_job_says_what_was_cancelled_and_never_started(
    demo_pacs: DemoPACS,
    demo_cohort: pd.DataFrame,
    store_port: int,
    tmp_path: Path,
    displayed: list[object],
) -> None:
    cohort = cohort_of(demo_cohort)  # 12 studies
    demo_pacs.faults.delay_per_store = 0.05
    seen: list[ProgressSnapshot] = []
    with Session(demo_pacs.node, out=tmp_path, port=store_port, workers=2) as session:
        job = session.start(cohort, progress="widget", errors="ignore")
        reporter = job._reporter
        assert isinstance(reporter, WidgetReporter)
        stats = reporter.stats
        for _ in range(1000):  # until the first instances arrived (bounded)
            snap = stats.snapshot()
            if snap.instances >= 2 and snap.total is not None:
                break
            threading.Event().wait(0.01)
        seen.append(stats.snapshot())
        assert "MoveJob running" in repr(job)
        assert "job.cancel()" in job._repr_html_()
        reporter.cancel_button.click()
        with pytest.raises(MoveCancelled):
            job.result(timeout=60)
    running = seen[0]
    # defect 6: the cohort's own labels, UIDs shortened in the middle
    assert running.active and all(label.startswith("case-") for label in running.active)
    assert all("\u2026" in label for label in running.active)
    # defect 7: workers counted from 1
    assert set(running.workers) <= {1, 2}
    # defect 2: the bar's total covers the requests not started yet
    assert running.expected is not None and running.total is not None
    assert running.expected > running.total and running.instances / running.expected < 0.5
    final = stats.snapshot()
    # defect 4: cancelled requests are not "failed"; never-started ones are counted
    assert set(final.request_problems) <= {"cancelled"}
    assert final.problems.get("cancelled", 0) >= 1
    assert final.requests_waiting >= 1
    text = reporter.text()
    assert text.splitlines()[0].endswith(": cancelled")
    assert "requests never started" in text and "resume=True" in text
    assert "[ Cancelled ] (disabled)" in text
    # defect 3: the live panel is replaced by the same panel as static HTML
    html = final_html(displayed)
    assert "data-state='cancelled'" in html and "never started" in html
    panel: Any = reporter.panel
    assert panel.comm is None  # the widgets were closed
    assert "ended with MoveCancelled" in repr(job)
    # defect 9: the manifest is reachable afterwards
    last = dicommove.last_manifest()
    assert last is not None and len(last) == len(job.manifest)
    assert (last["status"] == "cancelled").sum() == final.problems["cancelled"]


def test_a_study_not_found_says_not_found(
    demo_pacs: DemoPACS,
    demo_cohort: pd.DataFrame,
    store_port: int,
    tmp_path: Path,
    displayed: list[object],
) -> None:
    wanted = [demo_cohort["StudyInstanceUID"].iloc[0], "2.25.1234567890"]
    with Session(demo_pacs.node, out=tmp_path, port=store_port) as session:
        job = session.start(wanted, progress="widget")
        with pytest.raises(MoveIncomplete):
            job.result(timeout=60)
    reporter = job._reporter
    assert isinstance(reporter, WidgetReporter)
    final = reporter.stats.snapshot()
    assert dict(final.request_problems) == {"not_found": 1}
    assert dict(final.problems) == {"not_found": 1}
    assert job.progress.instances == 3  # the counts, without building a DataFrame
    text = reporter.text()
    assert "check their keys" in text and "resume=True" not in text
    assert "manifest: 1 not found" in text  # defect 5, not "failed 0 · missing 0"
    assert "failed" not in text.splitlines()[2] and "missing" not in text.splitlines()[2]
    assert "data-state='incomplete'" in final_html(displayed)


def test_a_complete_move_ends_in_a_green_static_summary(
    demo_pacs: DemoPACS,
    demo_cohort: pd.DataFrame,
    store_port: int,
    tmp_path: Path,
    displayed: list[object],
) -> None:
    cohort = cohort_of(demo_cohort).iloc[:2]
    df = dicommove.move(demo_pacs.node, cohort, out=tmp_path, port=store_port, progress="widget")
    html = final_html(displayed)
    assert "data-state='complete'" in html and "6 / 6 instances" in html
    assert "width:100.0%" in html and "resume" not in html
    # defect 8: request, status and reason first; defect 7: no nanoseconds
    assert list(df.columns[:3]) == ["request", "status", "reason"]
    stamps = df["received_at"].dropna()
    assert len(stamps) == 6 and (stamps.dt.nanosecond == 0).all()
    assert (stamps.dt.microsecond % 1000 == 0).all()


# -- the manifest's summary ----------------------------------------------------------------
def test_manifest_summary_counts_bytes_time_and_reasons(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    cohort = cohort_of(demo_cohort).iloc[:2]
    wanted = pd.concat([cohort, pd.DataFrame({"StudyInstanceUID": ["2.25.99"]}, index=["x"])])
    df = dicommove.move(
        demo_pacs.node, wanted, out=tmp_path, port=store_port, progress=False, errors="ignore"
    )
    s = df.dicommove.summary()
    assert isinstance(s, ManifestSummary) and s == summary(df)
    assert dict(s.counts) == {"received": 6, "not_found": 1}
    assert (s.instances, s.requests) == (6, 3)
    assert s.nbytes == int(df.loc[df["status"] == "received", "size"].sum())
    assert not s.complete
    assert [(st, n) for st, _reason, n in s.reasons] == [("not_found", 1)]
    html = s._repr_html_()
    assert "data-state='incomplete'" in html and "matched no instance" in html
    assert str(s).splitlines()[1] == "received: 6, not_found: 1"
    problems = df.dicommove.problems()
    assert list(problems.columns[:3]) == ["request", "status", "reason"]
    assert list(problems["request"]) == ["x"]
    per = df.dicommove.by_request()
    assert per.loc["case-1", "instances"] == 3 and per.loc["x", "not_found"] == 1
    assert cohort.join(per)["instances"].tolist() == [3, 3]


def test_the_accessor_refuses_a_frame_that_is_no_manifest() -> None:
    with pytest.raises(AttributeError, match="needs a dicommove manifest"):
        pd.DataFrame({"a": [1]}).dicommove.summary()


# -- reprs -------------------------------------------------------------------------------
def test_query_shows_what_it_will_send() -> None:
    q = Query.series("1.2.3", "1.2.3.4")
    assert repr(q) == "<Query SERIES StudyInstanceUID=1.2.3 SeriesInstanceUID=1.2.3.4 (Study Root)>"
    html = q._repr_html_()
    assert "(0020,000E)" in html and "SeriesInstanceUID" in html and "valid" in html
    bad = Query.from_keys({"QueryRetrieveLevel": "SERIES", "SeriesInstanceUID": "1.2"})
    assert "invalid" in bad._repr_html_() and "StudyInstanceUID is missing" in bad._repr_html_()


def test_session_shows_what_a_move_sends(tmp_path: Path) -> None:
    with Session("PACS@127.0.0.1:104", out=tmp_path, port=11112) as s:
        html = s._repr_html_()
        assert "C-MOVE (Study Root) as STORE-SCP to PACS@127.0.0.1:104" in html
        assert "port 11112" in html and "the PACS must know STORE-SCP" in html
    with Session("PACS@127.0.0.1:104", out=tmp_path, method="get") as s:
        assert "C-GET (Study Root)" in s._repr_html_() and "(closed)" not in s._repr_html_()


def test_labels_are_the_cohort_row_and_a_short_uid() -> None:
    uid = "1.2.826.0.1.3680043.8.498.12345678901234567890"
    label = label_of(Query.study(uid), "case-17")
    assert label == "case-17 \u00b7 STUDY 1.2.826.0.1\u2026901234567890"
    assert len(ellipsize(uid)) == 24 and ellipsize("1.2.3") == "1.2.3"
    assert label_of(Query.study("1.2.3", "1.2.4")) == "STUDY 1.2.3 +1"


# -- widget events while a cell waits ------------------------------------------------------
def _reporter_with_cancel() -> WidgetReporter:
    pytest.importorskip("ipywidgets")
    return WidgetReporter(MoveStats(), on_cancel=lambda: None)


def test_widget_events_are_polled_while_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    polls: list[int] = []

    class Poll:
        def __enter__(self) -> Any:
            return polls.append

        def __exit__(self, *exc: object) -> None:
            polls.append(-1)

    fake = types.ModuleType("jupyter_ui_poll")
    fake.ui_events = Poll  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "jupyter_ui_poll", fake)
    monkeypatch.setattr(events_module, "_in_kernel_main_thread", lambda: True)
    kernel6 = types.SimpleNamespace(do_one_iteration=lambda: None)  # what jupyter-ui-poll needs
    monkeypatch.setattr(events_module, "_kernel", lambda: kernel6)
    reporter = _reporter_with_cancel()
    assert not reporter.routed  # no kernel with subshells here
    assert events_module.can_cancel_while_waiting()
    with events_module.widget_events(reporter) as poll:
        assert poll is not None
        poll()
        poll()
    assert polls == [10, 10, -1]
    # no Cancel button, or not in a kernel's cell: nothing to poll
    with events_module.widget_events(WidgetReporter(MoveStats())) as poll:
        assert poll is None
    monkeypatch.setattr(events_module, "_in_kernel_main_thread", lambda: False)
    assert not events_module.can_cancel_while_waiting()
    with events_module.widget_events(reporter) as poll:
        assert poll is None


def test_with_no_way_through_the_panel_says_how_to_cancel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "jupyter_ui_poll", None)  # import fails
    monkeypatch.setattr(events_module, "_in_kernel_main_thread", lambda: True)
    reporter = _reporter_with_cancel()
    assert not events_module.can_cancel_while_waiting()
    with events_module.widget_events(reporter) as poll:
        assert poll is None
        assert "interrupt the kernel" in reporter._note.value
    assert reporter._note.value == ""


def test_a_routed_button_needs_no_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events_module, "_in_kernel_main_thread", lambda: True)
    reporter = _reporter_with_cancel()
    reporter.routed = True  # a subshell handles its clicks (tests/test_kernel_cancel.py)
    with events_module.widget_events(reporter) as poll:
        assert poll is None
        assert reporter._note.value == ""
    # a comm without ipykernel 7's routing hook, or no kernel: not routed
    assert not events_module.route_to_subshell(types.SimpleNamespace(comm=object()))
    assert not events_module.route_to_subshell(types.SimpleNamespace(comm=None))


# -- the manifest in IPython: one line per row ---------------------------------------------
def test_a_manifest_renders_on_one_line_per_row(monkeypatch: pytest.MonkeyPatch) -> None:
    from IPython.core.formatters import HTMLFormatter

    from dicommove import summary as summary_module
    from dicommove.manifest import build

    formatter = HTMLFormatter()
    shell = types.SimpleNamespace(
        display_formatter=types.SimpleNamespace(formatters={"text/html": formatter})
    )
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: shell  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", fake)
    df = build([{"request": "a", "status": "cancelled", "reason": "not attempted: cancelled"}])
    assert df.attrs["dicommove"] == "manifest"  # build() registered the printer too
    html = formatter(df)
    assert html.startswith("<div class='dicommove-manifest'><style>")
    assert "white-space: nowrap" in html and "not attempted: cancelled" in html
    assert "dicommove-manifest" in formatter(df.head(1))  # pandas carries the mark
    other = pd.DataFrame({"a": [1]})
    assert formatter(other) == other._repr_html_()  # other frames as pandas shows them
    assert summary_module.register_html()  # again: still one printer
    assert formatter(df).count("dicommove-manifest'>") == 1
