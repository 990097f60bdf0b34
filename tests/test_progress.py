"""MoveStats counters and the reporters that draw them (no network, no sleeps)."""

from __future__ import annotations

import contextvars
import io
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dicommove import InputError
from dicommove import progress as progress_module
from dicommove.progress import (
    CallbackReporter,
    MoveStats,
    NullReporter,
    ProgressSnapshot,
    Reporter,
    TqdmReporter,
    WidgetReporter,
    make_reporter,
)
from dicommove.progress import widget as widget_module


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def reporter_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "dicommove-progress"]


@pytest.fixture(autouse=True)
def _no_thread_left() -> Iterator[None]:
    yield
    assert reporter_threads() == [], "a reporter thread outlived its test"


def rendered_once(monkeypatch: pytest.MonkeyPatch, reporter: Reporter) -> threading.Event:
    """An event set after the reporter thread has drawn its first snapshot."""
    event = threading.Event()
    render = reporter.render

    def spy(snapshot: ProgressSnapshot) -> None:
        render(snapshot)
        event.set()

    monkeypatch.setattr(reporter, "render", spy)
    return event


# -- MoveStats ----------------------------------------------------------------
def test_counts_are_exact_from_many_threads() -> None:
    stats = MoveStats()
    threads, calls = 8, 10_000
    barrier = threading.Barrier(threads)

    def store(n: int) -> None:
        barrier.wait()
        for i in range(calls):
            stats.instance(3, ok=(n != 0 or i % 10 != 0))

    workers = [threading.Thread(target=store, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    snap = stats.snapshot()
    assert snap.failed == calls // 10
    assert snap.instances == threads * calls - calls // 10
    assert snap.nbytes == 3 * threads * calls


def test_snapshot_fields() -> None:
    clock = FakeClock()
    stats = MoveStats(requests_total=3, clock=clock)
    first = stats.snapshot()
    assert first == ProgressSnapshot(requests_total=3)  # the defaults are "nothing yet"
    assert first.total is None and first.complete is None and not first.finished

    stats.request_started("a", "STUDY 1.2.3 0/?")
    stats.request_started("b", "STUDY 1.2.4 0/?")
    stats.request_progress("a", "STUDY 1.2.3 2/5")
    stats.set_total(5)
    stats.instance(1_000_000)
    stats.instance(500_000)
    stats.instance(0, ok=False)
    stats.worker(2, "idle")
    stats.worker(1, "moving")
    clock.now += 2.5
    snap = stats.snapshot()
    assert isinstance(snap, ProgressSnapshot)
    assert (snap.total, snap.instances, snap.nbytes, snap.failed) == (5, 2, 1_500_000, 1)
    assert snap.elapsed == 2.5
    assert snap.active == ("STUDY 1.2.3 2/5", "STUDY 1.2.4 0/?")  # oldest first
    assert dict(snap.workers) == {1: "moving", 2: "idle"}
    assert list(snap.workers) == [1, 2]
    with pytest.raises(TypeError):
        snap.workers[3] = "x"  # type: ignore[index]
    assert (snap.requests_total, snap.requests_done, snap.requests_failed) == (3, 0, 0)
    assert not snap.finished and snap.complete is None and not snap.cancelled

    stats.request_finished("a", ok=True)
    stats.missing(2)
    stats.request_finished("b", ok=False)
    stats.request_progress("b", "ignored: b has finished")
    # more requests than announced: the total follows
    for key in "cde":
        stats.request_started(key, key)
    snap = stats.snapshot()
    assert snap.active == ("c", "d", "e")
    assert (snap.requests_total, snap.requests_done, snap.requests_failed) == (5, 2, 1)
    assert snap.missing == 2

    # an instance may arrive before the pending response that counts it
    for _ in range(6):
        stats.instance(10)
    assert stats.snapshot().total == stats.snapshot().instances == 8

    clock.now += 1.5
    stats.finish(complete=False, cancelled=True)
    clock.now += 100
    final = stats.snapshot()
    assert final.finished and final.complete is False and final.cancelled
    assert final.elapsed == 4.0  # frozen at finish
    assert final.mb_per_s == pytest.approx(1_500_060 / 4.0 / 1e6)  # the whole move's average


def test_throughput_is_recent() -> None:
    clock = FakeClock()
    stats = MoveStats(clock=clock)
    for _ in range(20):  # 1 MB every 0.5 s, sampled as a reporter would
        clock.now += 0.5
        stats.instance(1_000_000)
        rate = stats.snapshot().mb_per_s
    assert rate == pytest.approx(2.0)
    for _ in range(8):  # then nothing for 4 s
        clock.now += 0.5
        rate = stats.snapshot().mb_per_s
    assert rate == 0.0
    clock.now += 0.5
    stats.instance(3_000_000)
    assert stats.snapshot().mb_per_s == pytest.approx(1.0)  # 3 MB over the last 3 s


def test_no_spike_in_the_first_second() -> None:
    clock = FakeClock()
    stats = MoveStats(clock=clock)
    clock.now += 0.001
    stats.instance(5_000_000)
    assert stats.snapshot().mb_per_s == pytest.approx(5.0)  # over 1 s, not 1 ms


# -- the callable reporter ----------------------------------------------------
def test_callable_gets_typed_snapshots_from_its_thread_and_a_final_one() -> None:
    stats = MoveStats(requests_total=1)
    seen: list[ProgressSnapshot] = []
    threads: set[str] = set()
    first = threading.Event()

    def callback(snapshot: ProgressSnapshot) -> None:
        seen.append(snapshot)
        threads.add(threading.current_thread().name)
        first.set()

    reporter = make_reporter(callback, stats, interval=0.01)
    assert isinstance(reporter, CallbackReporter)
    reporter.start()
    assert first.wait(10)
    stats.request_started(1, "STUDY 1")
    stats.set_total(2)
    stats.instance(10)
    stats.instance(20)
    stats.request_finished(1, ok=True)
    stats.finish(complete=True)
    reporter.stop()
    count = len(seen)
    reporter.stop()  # idempotent: no second final call
    assert len(seen) == count >= 2
    assert all(isinstance(s, ProgressSnapshot) for s in seen)
    assert threads == {"dicommove-progress"}
    assert not seen[0].finished
    last = seen[-1]
    assert last.finished and last.complete is True
    assert (last.instances, last.nbytes, last.total, last.requests_done) == (2, 30, 2, 1)


def test_stop_before_finish_reports_an_incomplete_end() -> None:
    seen: list[ProgressSnapshot] = []
    reporter = make_reporter(seen.append, MoveStats(), interval=60)
    reporter.start()
    reporter.stop()
    assert seen[-1].finished and seen[-1].complete is False


def test_a_raising_callback_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[ProgressSnapshot] = []

    def broken(snapshot: ProgressSnapshot) -> None:
        calls.append(snapshot)
        raise RuntimeError("the callback broke")

    stats = MoveStats()
    reporter = make_reporter(broken, stats, interval=0.01)
    with caplog.at_level(logging.DEBUG, logger="dicommove"):
        reporter.start()
        stats.instance(1)  # the engine goes on counting
        stats.finish(complete=True)
        reporter.stop()
    assert len(calls) >= 2 and calls[-1].finished
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once, with the traceback; later failures at DEBUG
    assert warnings[0].name == "dicommove"
    assert warnings[0].exc_info is not None
    assert "the callback broke" in str(warnings[0].exc_info[1])


def test_callback_runs_in_the_creators_context() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("cell 7")
    seen: list[str] = []
    reporter = make_reporter(lambda _s: seen.append(var.get()), MoveStats())
    reporter.start()
    reporter.stop()
    assert seen and set(seen) == {"cell 7"}


# -- thread lifecycle ---------------------------------------------------------
@pytest.mark.parametrize("interval", [0.01, 3600.0])
def test_stop_right_after_start_does_not_hang(interval: float) -> None:
    reporter = make_reporter(lambda _s: None, MoveStats(), interval=interval)
    t0 = time.monotonic()
    reporter.start()
    assert len(reporter_threads()) == 1
    reporter.stop()
    reporter.stop()
    assert time.monotonic() - t0 < 5
    assert reporter_threads() == []
    reporter.start()  # a stopped reporter does not start again
    assert reporter_threads() == []


def test_stop_without_start() -> None:
    seen: list[ProgressSnapshot] = []
    reporter = make_reporter(seen.append, MoveStats())
    reporter.stop()
    reporter.start()
    assert seen == [] and reporter_threads() == []


@pytest.mark.parametrize("mode", [False, None])
def test_off_means_no_reporter_thread(mode: bool | None) -> None:
    reporter = make_reporter(mode, MoveStats())
    assert isinstance(reporter, NullReporter)
    reporter.start()
    assert reporter_threads() == []
    reporter.stop()


# -- modes --------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["bar", "TQDM", "", 1, 0, 2.5, ["tqdm"]])
def test_invalid_mode(mode: Any) -> None:
    with pytest.raises(InputError, match=r"'auto'.*'tqdm'.*'widget'.*False.*callable"):
        make_reporter(mode, MoveStats())


def test_invalid_interval() -> None:
    with pytest.raises(InputError, match="interval"):
        make_reporter("tqdm", MoveStats(), interval=0)


@pytest.mark.parametrize("mode", ["auto", True])
def test_auto_outside_jupyter_is_tqdm(monkeypatch: pytest.MonkeyPatch, mode: Any) -> None:
    monkeypatch.setattr(progress_module, "_in_jupyter_kernel", lambda: False)
    assert isinstance(make_reporter(mode, MoveStats()), TqdmReporter)


def test_auto_in_jupyter(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ipywidgets", reason="ipywidgets is not installed")
    monkeypatch.setattr(progress_module, "_in_jupyter_kernel", lambda: True)
    assert isinstance(make_reporter("auto", MoveStats()), WidgetReporter)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # as if not installed
    assert isinstance(make_reporter(True, MoveStats()), TqdmReporter)


def test_widget_without_ipywidgets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    with pytest.raises(InputError, match="pip install ipywidgets"):
        make_reporter("widget", MoveStats())


def test_importing_the_module_imports_no_ui_or_pandas() -> None:
    code = (
        "import sys\n"
        "import dicommove.progress as p\n"
        "stats = p.MoveStats()\n"
        "for mode in (False, None, print):\n"
        "    r = p.make_reporter(mode, stats)\n"
        "r.start(); r.stop()\n"
        "heavy = ('tqdm', 'ipywidgets', 'pandas', 'IPython')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines()[-1] == "[]"


def test_importing_the_package_and_its_modules_imports_no_ui_or_pandas() -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        "import dicommove.progress as p\n"
        "names = [m.name for m in pkgutil.iter_modules(p.__path__, p.__name__ + '.')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "heavy = ('tqdm', 'ipywidgets', 'pandas', 'IPython')\n"
        "print(sorted(names))\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[-2] == repr(
        [
            f"dicommove.progress.{m}"
            for m in ("base", "events", "panel", "stats", "terminal", "widget")
        ]
    )
    assert out[-1] == "[]"


def test_the_package_exports_what_the_module_did() -> None:
    assert sorted(progress_module.__all__) == [
        "CallbackReporter",
        "MoveStats",
        "NullReporter",
        "ProgressMode",
        "ProgressSnapshot",
        "Reporter",
        "TqdmReporter",
        "WidgetReporter",
        "make_reporter",
    ]
    for name in progress_module.__all__:
        assert getattr(progress_module, name) is not None


# -- tqdm ---------------------------------------------------------------------
def busy_stats() -> MoveStats:
    stats = MoveStats(requests_total=3)
    stats.request_started(1, "STUDY 1.2.3 4/10")
    stats.set_total(10)
    for _ in range(4):
        stats.instance(250_000)
    stats.instance(0, ok=False)
    stats.worker(1, "moving")
    stats.worker(2, "moving")
    stats.worker(3, "idle")
    return stats


@pytest.mark.parametrize(
    ("complete", "state", "ansi"),
    [(True, "complete", "\x1b[32m"), (False, "incomplete", "\x1b[31m")],
)
def test_tqdm_bar_shows_total_and_postfix(
    monkeypatch: pytest.MonkeyPatch, complete: bool, state: str, ansi: str
) -> None:
    stats = busy_stats()
    out = io.StringIO()
    reporter = make_reporter("tqdm", stats, desc="C-MOVE from PACS", file=out, interval=3600)
    assert isinstance(reporter, TqdmReporter)
    drawn = rendered_once(monkeypatch, reporter)
    reporter.start()
    assert drawn.wait(10)
    running = out.getvalue()
    assert "C-MOVE from PACS:" in running
    assert "4/30" in running  # 10 announced by one request of three: 30 expected
    assert "req 0/3, 1 failed, w: 2 moving, 1 idle" in running
    assert "MB/s" in running
    for _ in range(6 if complete else 2):
        stats.instance(250_000)
    stats.request_finished(1, ok=complete)
    stats.finish(complete=complete)
    reporter.stop()
    final = out.getvalue()[len(running) :]
    assert f"C-MOVE from PACS ({state}):" in final
    assert ("10/10" if complete else "6/10") in final
    assert "req 1/3" in final
    assert ansi in final  # tqdm's colour=
    assert final.endswith("\n")  # closed, left on screen


def test_tqdm_postfix_is_compact() -> None:
    snap = ProgressSnapshot(
        mb_per_s=12.34, requests_total=10, requests_done=3, failed=2, missing=5,
        workers={1: "moving", 2: "retry in 2s", 3: "moving"},
    )  # fmt: skip
    assert TqdmReporter.postfix(snap) == (
        "12.3 MB/s, req 3/10, 2 failed, 5 missing, w: 2 moving, 1 retry in 2s"
    )
    assert TqdmReporter.postfix(ProgressSnapshot()) == "0.0 MB/s, req 0/0"


# -- the ipywidgets panel -----------------------------------------------------
class FakeHandle:
    """IPython's DisplayHandle, recording what the display was replaced with."""

    def __init__(self) -> None:
        self.updates: list[object] = []

    def update(self, obj: object) -> None:
        self.updates.append(obj)


@pytest.fixture
def displayed(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    pytest.importorskip("ipywidgets", reason="ipywidgets is not installed")
    import IPython.display

    shown: list[object] = []

    def display(*objs: object, display_id: bool = False, **_kw: object) -> FakeHandle | None:
        shown.extend(objs)
        if display_id:
            handle = FakeHandle()
            shown.append(handle)
            return handle
        return None

    monkeypatch.setattr(IPython.display, "display", display)
    monkeypatch.setattr(widget_module, "_shell_running", lambda: True)  # as in a notebook
    return shown


def widget(
    stats: MoveStats, on_cancel: Callable[[], None] | None = None, **kw: Any
) -> WidgetReporter:
    reporter = make_reporter("widget", stats, desc="C-MOVE from PACS", on_cancel=on_cancel, **kw)
    assert isinstance(reporter, WidgetReporter)
    return reporter


def test_widget_panel_draws_and_cancels_once(
    displayed: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    stats = busy_stats()
    cancels: list[int] = []
    reporter = widget(stats, on_cancel=lambda: cancels.append(1), interval=3600)
    bar = reporter._bar
    drawn = rendered_once(monkeypatch, reporter)
    reporter.start()
    assert displayed[0] is reporter.panel and len(displayed) == 2  # displayed once, at start
    panel: Any = reporter.panel
    assert "dicommove-panel" in panel._dom_classes
    assert drawn.wait(10)
    # one request of three started and announced 10: the other two are estimated alike
    assert (bar.value, bar.max, bar.bar_style) == (4, 30, "info")
    assert "4 / ~30 instances \u00b7 0 of 3 requests done" in reporter.text()

    button = reporter.cancel_button
    assert not button.disabled and button.layout.display != "none"
    button.click()
    button.click()
    assert cancels == [1]
    assert button.disabled and button.description == "Cancelling\u2026"

    # the thread is asleep for an hour: drawing by hand is safe here
    for _ in range(16):
        stats.instance(1_000_000)
    stats.set_total(30)
    stats.request_started(2, "STUDY 1.2.4")
    stats.request_started(3, "STUDY 1.2.5")
    reporter.render(stats.snapshot())
    assert (bar.value, bar.max, bar.bar_style) == (20, 30, "warning")
    assert reporter.text().splitlines()[0] == "C-MOVE from PACS: cancelling"

    stats.request_finished(1, ok=False, problem="cancelled")
    stats.finish(complete=False, cancelled=True, problems={"cancelled": 7})
    reporter.stop()
    handle = displayed[1]
    assert isinstance(handle, FakeHandle) and len(handle.updates) == 1
    assert (bar.value, bar.max, bar.bar_style) == (20, 30, "danger")
    text = reporter.text()
    assert text.splitlines()[0] == "C-MOVE from PACS: cancelled"
    assert "20 / 30 instances \u00b7 1 of 3 requests done" in text
    assert "manifest: 7 cancelled" in text and "resume=True" in text
    assert "[ Cancelled ] (disabled)" in text
    button.click()
    assert cancels == [1]
    # the live widgets were replaced by the same panel as static HTML, and closed
    final = handle.updates[0]
    html_text = final._repr_html_()  # type: ignore[attr-defined]
    assert "class='dicommove-summary' data-state='cancelled'" in html_text
    assert "manifest: 7 cancelled" in html_text and "resume=True" in html_text
    assert repr(final).splitlines()[0] == "C-MOVE from PACS: cancelled"
    assert panel.comm is None and bar.comm is None


def test_widget_bar_follows_an_estimate_and_shows_an_eta(displayed: list[object]) -> None:
    clock = FakeClock()
    stats = MoveStats(requests_total=200, clock=clock)
    reporter = widget(stats)
    for key in range(18):
        stats.request_started(key, f"STUDY {key}")
        if key < 16:
            stats.request_finished(key, ok=True)
    stats.set_total(36)  # 2 instances a request so far
    stats.snapshot()  # a throughput sample at t=0
    clock.now += 4.0
    for _ in range(20):
        stats.instance(1000)
    snap = stats.snapshot()
    assert snap.expected == 36 + round(36 * 182 / 18) == 400
    assert snap.per_s == pytest.approx(5.0)
    assert snap.eta == pytest.approx((400 - 20) / 5.0)
    reporter.render(snap)
    assert (reporter._bar.value, reporter._bar.max) == (20, 400)
    assert "20 / ~400 instances \u00b7 16 of 200 requests done \u00b7 ETA 1:16" in reporter.text()


def test_widget_says_not_found_and_never_started(displayed: list[object]) -> None:
    stats = MoveStats(requests_total=3)
    reporter = widget(stats)
    stats.request_started("a", "case-1 \u00b7 STUDY 1.2.3")
    stats.set_total(2)
    stats.instance(2500)
    stats.instance(2500)
    stats.request_finished("a", ok=True)
    stats.request_started("b", "case-2 \u00b7 STUDY 2.25.1")
    stats.request_finished("b", ok=False, problem="not_found")
    reporter.render(stats.snapshot())
    running = reporter.text()
    assert "requests 1 not found" in running and "failed" not in running
    assert "received 2 (5.0 kB)" in running  # the manifest's units: kB, MB, GB
    stats.finish(complete=False, problems={"not_found": 1, "cancelled": 1})
    reporter.render(stats.snapshot())
    text = reporter.text()
    assert "manifest: 1 not found, 1 cancelled" in text
    assert "1 requests never started" in text
    assert "failed 0" not in text and "missing 0" not in text


@pytest.mark.parametrize(("complete", "style"), [(True, "success"), (False, "danger")])
def test_widget_ends_green_or_red(displayed: list[object], complete: bool, style: str) -> None:
    stats = MoveStats(requests_total=1)
    cancels: list[int] = []
    reporter = widget(stats, on_cancel=lambda: cancels.append(1), interval=0.01)
    reporter.start()
    stats.request_started(0, "STUDY 1.2.3")
    stats.set_total(3)
    stats.instance(100)
    stats.instance(100)
    if complete:
        stats.instance(100)
    else:
        stats.missing(1)
    stats.request_finished(0, ok=complete, problem="missing")
    stats.finish(complete=complete, problems={} if complete else {"missing": 1})
    reporter.stop()
    assert reporter._bar.bar_style == style
    assert reporter._bar.value == (3 if complete else 2)
    assert reporter.cancel_button.disabled  # after the end
    reporter.cancel_button.click()
    assert cancels == []
    text = reporter.text()
    state = "complete" if complete else "incomplete"
    assert text.splitlines()[0] == f"C-MOVE from PACS: {state}"
    assert f"({style})" in text
    assert ("manifest: 1 missing" in text) is not complete
    assert ("resume=True" in text) is not complete
    handle = displayed[1]
    assert isinstance(handle, FakeHandle)
    assert f"data-state='{state}'" in handle.updates[0]._repr_html_()  # type: ignore[attr-defined]


def test_widget_without_on_cancel_has_no_button(displayed: list[object]) -> None:
    reporter = widget(MoveStats())
    assert reporter.cancel_button.disabled
    assert reporter.cancel_button.layout.display == "none"
    assert "Cancel" not in reporter.text()


def test_widget_lists_at_most_rows_active_requests(displayed: list[object]) -> None:
    stats = MoveStats()
    for i in range(11):
        stats.request_started(i, f"STUDY 1.2.{i} <&>")
    stats.worker(1, "moving")
    stats.worker(2, "retry in 2s")
    stats.worker(3, "moving")
    reporter = WidgetReporter(stats, desc="C-MOVE from PACS", rows=8)
    reporter.render(stats.snapshot())
    text = reporter.text()
    assert "STUDY 1.2.7 <&>" in text and "STUDY 1.2.8" not in text
    assert "  +3 more" in text
    assert "workers: 2 moving (#1 #3) \u00b7 1 retry in 2s (#2)" in text  # from 1, as logged
    table = reporter._table.value
    assert table.count("<tr>") == 1 + 8 + 1  # header, 8 rows, "+3 more"
    assert "&lt;&amp;&gt;" in table and "<&>" not in table


def test_a_widget_outside_ipython_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ipywidgets", reason="ipywidgets is not installed")
    stats = MoveStats(requests_total=1)
    reporter = widget(stats, interval=0.01)
    reporter.start()
    stats.instance(10)
    stats.finish(complete=True)
    reporter.stop()
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""  # IPython's display would have printed the panel
    assert reporter.text().splitlines()[0] == "C-MOVE from PACS: complete"
