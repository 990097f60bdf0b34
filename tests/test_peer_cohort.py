"""Cohort moves end to end: four workers against a real Orthanc, and resume after SIGKILL.

* ``test_four_workers_move_200_studies_from_orthanc_each_instance_once``: a private Orthanc
  holding 200 studies (400 small instances), moved with ``workers=4``; every instance is
  accounted for once, on disk, labelled with its cohort row, and journaled.
* ``test_resume_after_sigkill_loses_nothing_and_requests_no_complete_study_again``: the
  CLI is killed with SIGKILL while two studies are half received; an in-process re-run with
  ``resume=True`` fetches only what the journal does not show complete. It uses the
  in-process demo PACS (its request log tells what was asked), so it is not a peer test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from peers import LOOPBACK, Orthanc, PeerError, dataset_bytes, ensure_peers_or_skip, free_port

import dicommove
from dicommove.journal import JOURNAL_DIR, JOURNAL_NAME, request_key
from dicommove.manifest import COLUMNS
from dicommove.progress import ProgressSnapshot
from dicommove.query import to_requests
from dicommove.scp import CONFLICT_DIR_NAME, TEMP_DIR_NAME
from dicommove.testing import DemoPACS, make_cohort

#: Our AE title in the Orthanc test (registered on that Orthanc only).
COHORT_AE = "COHORT-SCP"


# -- helpers -------------------------------------------------------------------------------


def journal_records(out: Path) -> list[dict[str, Any]]:
    """Every record of ``out``'s run journal, in order."""
    text = (out / JOURNAL_DIR / JOURNAL_NAME).read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def study_keys(frame: pd.DataFrame) -> dict[str, str]:
    """The journal key of each study request of ``frame``: key -> StudyInstanceUID."""
    return {request_key(r.query): str(r.query.get("StudyInstanceUID")) for r in to_requests(frame)}


def files_under(out: Path) -> dict[Path, os.stat_result]:
    """The instance files under ``out`` (not our metadata directories) and their stat."""
    return {
        p: p.stat()
        for p in out.rglob("*")
        if p.is_file() and not any(part.startswith(".dicommove") for part in p.parts)
    }


def poll(condition: Callable[[], bool], timeout: float, *, alive: Callable[[], bool]) -> bool:
    """Check ``condition`` every 10 ms for ``timeout`` s, while ``alive()``; return whether met."""
    tick = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if condition():
            return True
        if not alive():
            return condition()
        tick.wait(0.01)
    return condition()


# -- four workers against Orthanc -------------------------------------------------------------


@dataclass(frozen=True)
class LoadedOrthanc:
    """A private Orthanc holding ``cohort``, knowing ``COHORT_AE`` at 127.0.0.1:``port``."""

    pacs: Orthanc
    cohort: pd.DataFrame
    port: int


@pytest.fixture(scope="module")
def cohort_orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoadedOrthanc]:
    """A private Orthanc loaded with 200 studies of 2 instances (a few seconds)."""
    ensure_peers_or_skip("Orthanc", "echoscu", "storescu")
    source = tmp_path_factory.mktemp("cohort200")
    # 20 patients x 10 studies x 1 series x 2 instances of 16 x 16 pixels: 200 studies
    cohort = make_cohort(source, patients=20, studies=10, series=1, instances=2, rows=16, cols=16)
    port = free_port()
    workdir = tmp_path_factory.mktemp("orthanc200")
    with Orthanc(workdir, modalities={COHORT_AE: (LOOPBACK, port)}) as pacs:
        pacs.load([source])
        if pacs.count() != len(cohort):
            raise PeerError(f"Orthanc holds {pacs.count()} instances, expected {len(cohort)}")
        yield LoadedOrthanc(pacs, cohort, port)


@pytest.mark.peers
def test_four_workers_move_200_studies_from_orthanc_each_instance_once(
    cohort_orthanc: LoadedOrthanc, tmp_path: Path
) -> None:
    """200 studies, one C-MOVE each, on 4 parallel associations into one Store SCP.

    Every SOPInstanceUID arrives exactly once as ``received``, byte-identical to its source,
    in a file of the manifest's size; each row's ``request`` is the cohort row of its study;
    nothing else is on disk; the journal holds one complete ``request`` record per study
    (2 instances each) and one ``instance`` record per instance, under its study's key.
    """
    cohort = cohort_orthanc.cohort
    studies = cohort.drop_duplicates("StudyInstanceUID")
    assert len(studies) == 200
    frame = pd.DataFrame(
        {"StudyInstanceUID": studies["StudyInstanceUID"].to_numpy(), "arm": "x"},
        index=pd.Index([f"case-{i:03d}" for i in range(len(studies))], name="case"),
    )
    out = tmp_path / "out"
    seen: list[ProgressSnapshot] = []
    df = dicommove.move(
        cohort_orthanc.pacs.address,
        frame,
        out=out,
        port=cohort_orthanc.port,
        ae_title=COHORT_AE,
        workers=4,
        progress=seen.append,
        errors="ignore",
    )

    # every instance once, received, from a successful C-MOVE
    assert list(df.columns) == list(COLUMNS)
    problems = df[df["status"] != "received"]
    assert problems.empty, problems[["request", "StudyInstanceUID", "status", "reason"]]
    assert len(df) == len(cohort) == 400
    assert df["SOPInstanceUID"].is_unique
    assert set(df["SOPInstanceUID"]) == set(cohort["SOPInstanceUID"])
    assert set(df["move_status"]) == {0x0000}

    # each instance labelled with the row of its study
    label_of_study = pd.Series(frame.index, index=frame["StudyInstanceUID"])
    source = cohort.set_index("SOPInstanceUID")
    expected = source["StudyInstanceUID"].map(label_of_study)
    got = df.set_index("SOPInstanceUID")["request"]
    assert got.sort_index().to_dict() == expected.sort_index().to_dict()
    assert df.groupby("request").size().to_dict() == dict.fromkeys(frame.index, 2)

    # the files: where the manifest says, of its size, the source's dataset; nothing else
    for row in df.itertuples():
        path = Path(str(row.path))
        assert path.is_absolute() and path.is_relative_to(out.absolute())
        assert path.stat().st_size == row.size
        assert row.StudyInstanceUID == source.at[row.SOPInstanceUID, "StudyInstanceUID"]
        assert dataset_bytes(path) == dataset_bytes(source.at[row.SOPInstanceUID, "path"])
    assert set(files_under(out)) == {Path(str(p)) for p in df["path"]}
    assert list((out / TEMP_DIR_NAME).iterdir()) == []
    assert not (out / CONFLICT_DIR_NAME).exists()

    # the journal: one run, one complete request record per study, one record per instance
    records = journal_records(out)
    keys = study_keys(frame)
    assert len(keys) == 200
    assert [r["event"] for r in records].count("run") == 1
    requests = [r for r in records if r["event"] == "request"]
    assert sorted(r["key"] for r in requests) == sorted(keys)
    assert all(r["complete"] is True and r["instances"] == 2 for r in requests), requests
    instances = [r for r in records if r["event"] == "instance"]
    assert sorted(r["sop"] for r in instances) == sorted(cohort["SOPInstanceUID"])
    for rec in instances:
        assert keys[rec["key"]] == source.at[rec["sop"], "StudyInstanceUID"]
        assert out / rec["path"] == Path(str(df.set_index("SOPInstanceUID").at[rec["sop"], "path"]))

    # the four workers ran, and the last progress report agrees
    last = seen[-1]
    assert last.finished and last.complete is True and not last.cancelled
    assert dict(last.workers) == dict.fromkeys(range(1, 5), "done")  # numbered from 1
    assert last.requests_done == last.requests_total == 200
    assert last.instances == 400 and last.requests_failed == 0


# -- resume after SIGKILL ------------------------------------------------------------------


@dataclass(frozen=True)
class ResumeSetup:
    """The demo PACS of the resume test and its cohort.

    ``small``: studies of 2 instances, which never reach the stall; ``large``: studies of 4
    instances, on which the PACS goes silent after 2 (``faults.stall_after = 2``).
    """

    pacs: DemoPACS
    small: pd.DataFrame
    large: pd.DataFrame
    port: int


@pytest.fixture
def resume_pacs(tmp_path: Path) -> Iterator[ResumeSetup]:
    """A demo PACS serving 4 studies of 2 instances and 4 of 4, knowing STORE-SCP at ``port``."""
    root = tmp_path / "pacs"
    small = make_cohort(root / "small", patients=2, studies=2, series=1, instances=2, seed=11)
    large = make_cohort(root / "large", patients=2, studies=2, series=1, instances=4, seed=12)
    port = free_port()
    with DemoPACS(root, destinations={"STORE-SCP": (LOOPBACK, port)}) as pacs:
        yield ResumeSetup(pacs, small, large, port)


def test_resume_after_sigkill_loses_nothing_and_requests_no_complete_study_again(
    resume_pacs: ResumeSetup, tmp_path: Path
) -> None:
    """SIGKILL mid-run, then ``resume=True``: nothing lost, no complete request asked again.

    The cohort lists 4 studies of 2 instances, then 4 of 4. The demo PACS goes silent after
    the 2nd instance of any C-MOVE (``stall_after=2``), so the CLI child (``--workers 2``)
    completes the 4 small studies and then stalls on 2 large ones, 2 of 4 instances each on
    disk; that state holds still while it is killed with SIGKILL. The journal then says: the
    4 small studies complete, 2 large studies with 2 instances each and no complete record,
    2 large studies never started.

    The kill lands between C-STOREs, so the test then leaves a ``.part`` temp file named
    after the dead child, as a kill mid-write would (the receiver-level kill mid-write is
    test_scp's case 18).

    The in-process re-run with ``resume=True`` must lose nothing (every instance of the
    cohort ``received`` once, its file present with the manifest's size, the dead child's
    ``.part`` removed) and fetch nothing twice, in this sense:

    * the C-MOVEs of the re-run name exactly the 4 large studies: no request the journal
      shows complete (the small studies) is asked for again, and not one of their
      instances is sent again (the PACS's own log of C-STOREs); every instance that was
      not on disk is sent;
    * a half-received study may be asked for whole (the engine re-requests a STUDY-level
      request in full) or only for its missing instances (an engine that lists them with
      C-FIND); either way no file already on disk is written again: each of its instances
      stays ``received`` with ``path`` the existing file, and every file of the killed run
      keeps its inode and mtime. Whether its instances cross the network again is not
      asserted.
    """
    setup = resume_pacs
    pacs = setup.pacs
    small_studies = setup.small["StudyInstanceUID"].unique().tolist()
    large_studies = setup.large["StudyInstanceUID"].unique().tolist()
    cohort = pd.concat([setup.small, setup.large], ignore_index=True)
    frame = pd.DataFrame(
        {"StudyInstanceUID": small_studies + large_studies},
        index=[f"s{i}" for i in range(len(small_studies))]
        + [f"L{i}" for i in range(len(large_studies))],
    )
    csv = tmp_path / "cohort.csv"
    frame.to_csv(csv, index=False)
    keys = study_keys(frame)
    out = tmp_path / "out"
    journal = out / JOURNAL_DIR / JOURNAL_NAME

    def journal_state() -> tuple[set[str], dict[str, set[str]]]:
        """Studies with a complete request record; study -> SOPInstanceUIDs journaled."""
        if not journal.is_file():
            return set(), {}
        complete: set[str] = set()
        landed: dict[str, set[str]] = {}
        for rec in journal_records(out):
            if rec["event"] == "request" and rec["complete"]:
                complete.add(keys[rec["key"]])
            elif rec["event"] == "instance":
                landed.setdefault(keys[rec["key"]], set()).add(rec["sop"])
        return complete, landed

    def stalled() -> bool:
        """The 4 small studies complete and 2 large ones with 2 instances each, on disk."""
        complete, landed = journal_state()
        partial = {uid: sops for uid, sops in landed.items() if uid not in complete}
        on_disk = {p.stem for p in files_under(out)} if out.exists() else set()
        return (
            complete == set(small_studies)
            and len(partial) == 2
            and all(len(sops) == 2 and sops <= on_disk for sops in partial.values())
        )

    pacs.faults.stall_after = 2
    pacs.faults.stall_seconds = 30.0  # ends at once when the child's association goes
    argv = [
        sys.executable,
        "-m",
        "dicommove",
        "move",
        str(pacs.node),
        "--cohort",
        str(csv),
        "-p",
        str(setup.port),
        "-o",
        str(out),
        "--workers",
        "2",
        "--no-progress",
    ]
    log = tmp_path / "child.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
        try:
            reached = poll(stalled, 20.0, alive=lambda: proc.poll() is None)
            assert reached and proc.poll() is None, (
                f"the child did not stall as planned (exit code {proc.poll()}): "
                f"{journal_state()}\n{log.read_text(errors='replace')}"
            )
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=10) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            pacs.faults.clear()

    # what the killed run left: its journal and files
    complete_before, landed_before = journal_state()
    assert complete_before == set(small_studies)
    partial_before = {u: s for u, s in landed_before.items() if u not in complete_before}
    assert len(partial_before) == 2 and set(partial_before) <= set(large_studies)
    assert all(len(sops) == 2 for sops in partial_before.values())
    files_before = files_under(out)
    sops_before = {p.stem: p for p in files_before}
    assert set(sops_before) == set().union(*landed_before.values())
    assert len(files_before) == 4 * 2 + 2 * 2
    # The kill landed between C-STOREs, so no temp file was open; leave the one a kill
    # mid-write would leave (named like the store's: <pid of the dead writer>-<hex>.part).
    temp_dir = out / TEMP_DIR_NAME
    assert list(temp_dir.glob("*.part")) == []
    (temp_dir / f"{proc.pid}-00112233deadbeef.part").write_bytes(b"\x00" * 100)

    pacs.reset_counters()
    df = dicommove.move(
        pacs.node,
        frame,
        out=out,
        port=setup.port,
        workers=2,
        progress=False,
        resume=True,
        errors="ignore",
    )

    # nothing lost: every instance received once, its file there with its size
    problems = df[df["status"] != "received"]
    assert problems.empty, problems[["request", "StudyInstanceUID", "status", "reason"]]
    assert df["SOPInstanceUID"].is_unique
    assert set(df["SOPInstanceUID"]) == set(cohort["SOPInstanceUID"])
    for row in df.itertuples():
        assert Path(str(row.path)).stat().st_size == row.size
    study_of_label = frame["StudyInstanceUID"]
    assert (df["request"].map(study_of_label) == df["StudyInstanceUID"]).all()
    assert list(temp_dir.glob("*.part")) == []  # the dead child's temp file was removed
    assert not (out / CONFLICT_DIR_NAME).exists()
    files_after = files_under(out)
    assert set(files_after) == {Path(str(p)) for p in df["path"]}

    # the complete studies were not asked for again, nor any of their instances sent
    asked = [str(ds.StudyInstanceUID) for ds in pacs.move_requests]
    assert set(asked) == set(large_studies)  # every incomplete study, no complete one
    resent = set(pacs.sent_instances)
    small_sops = set(setup.small["SOPInstanceUID"])
    assert resent.isdisjoint(small_sops)
    resumed = df[df["StudyInstanceUID"].isin(small_studies)]
    assert len(resumed) == len(small_sops)
    assert resumed["reason"].str.contains("earlier run").all(), resumed["reason"]

    # what was not on disk was sent; what was on disk, if sent again (a half-received study
    # asked for whole), was recognized as the identical file and not written a second time
    assert set(setup.large["SOPInstanceUID"]) - set(sops_before) <= resent
    partial_sops = set().union(*partial_before.values())
    by_sop = df.set_index("SOPInstanceUID")
    for sop in partial_sops:
        assert by_sop.at[sop, "status"] == "received"
        assert Path(str(by_sop.at[sop, "path"])) == sops_before[sop]
    for path, before in files_before.items():
        after = files_after[path]
        assert (after.st_ino, after.st_mtime_ns, after.st_size) == (
            before.st_ino,
            before.st_mtime_ns,
            before.st_size,
        ), path

    # the journal now shows every study complete
    complete_after, landed_after = journal_state()
    assert complete_after == set(small_studies) | set(large_studies)
    assert set().union(*landed_after.values()) == set(cohort["SOPInstanceUID"])
