"""dicommove against the real peers: Orthanc and DCMTK dcmqrscp as PACS, DCMTK storescp.

Every test runs against both PACS (the ``pacs`` fixture). Both hold ``peer_cohort``
(2 patients x 2 studies x 2 series x 3 instances) and know our default AE title
``STORE-SCP`` at ``peer_ports["STORE-SCP"]``, and ``STORAGE`` (storescp) at its own port.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import pytest
from peers import LOOPBACK, DcmQrScp, Orthanc, StoreScp, dataset_bytes, free_port
from pydicom import dcmread

import dicommove
from dicommove import MoveDestinationUnknown, MoveIncomplete, Query
from dicommove.cli import (
    EXIT_FAILED,
    EXIT_NETWORK,
    EXIT_OK,
    EXIT_USAGE,
    MANIFEST_NAME,
    main,
)
from dicommove.manifest import COLUMNS, read_csv, summarize
from dicommove.scp import TEMP_DIR_NAME

# Every test here talks to a real peer (some reach it through the `pacs` fixture only).
pytestmark = pytest.mark.peers

#: A well-formed StudyInstanceUID that neither PACS holds.
ABSENT_STUDY = "1.2.826.0.1.3680043.2.1125.424242.1"

#: The final C-MOVE status each PACS answers for an unknown move destination.
UNKNOWN_DESTINATION_STATUS = {"ORTHANC": 0xC000, "DCMQRSCP": 0xA801}

#: The final C-MOVE status each PACS answers when nothing matches.
NOT_FOUND_STATUS = {"ORTHANC": 0xC000, "DCMQRSCP": 0x0000}


@pytest.fixture(params=["orthanc", "dcmqrscp"])
def pacs(request: pytest.FixtureRequest) -> Orthanc | DcmQrScp:
    """Each of the two PACS fixtures in turn."""
    server: Orthanc | DcmQrScp = request.getfixturevalue(request.param)
    return server


@pytest.fixture
def store_port(peer_ports: dict[str, int]) -> int:
    """The port both PACS have for our default AE title STORE-SCP."""
    return peer_ports["STORE-SCP"]


def move(pacs: Orthanc | DcmQrScp, what: Any, out: Path, port: int, **kw: Any) -> pd.DataFrame:
    kw.setdefault("progress", False)
    return dicommove.move(pacs.address, what, out=out, port=port, **kw)


def files_under(root: Path) -> set[Path]:
    """Files under ``root``, except the run journal (``.dicommove/journal.jsonl``)."""
    if not root.exists():
        return set()
    return {p for p in root.rglob("*") if p.is_file() and ".dicommove" not in p.parts}


def assert_received(df: pd.DataFrame, expected: pd.DataFrame, out: Path) -> None:
    """Every instance of ``expected`` arrived once, byte-identical, and nothing else is on disk."""
    assert list(df.columns) == list(COLUMNS)
    assert df["status"].tolist() == ["received"] * len(expected), df[["status", "reason"]]
    assert sorted(df["SOPInstanceUID"]) == sorted(expected["SOPInstanceUID"])
    source = expected.set_index("SOPInstanceUID")
    for row in df.itertuples():
        path = Path(str(row.path))
        assert path.is_absolute() and path.is_relative_to(out.absolute())
        assert dataset_bytes(path) == dataset_bytes(source.at[row.SOPInstanceUID, "path"])
        assert row.size == path.stat().st_size
        assert row.StudyInstanceUID == source.at[row.SOPInstanceUID, "StudyInstanceUID"]
        assert row.SeriesInstanceUID == source.at[row.SOPInstanceUID, "SeriesInstanceUID"]
        assert row.PatientID == source.at[row.SOPInstanceUID, "PatientID"]
    assert set(df["move_status"]) == {0x0000}
    # nothing extra on disk: the manifest's files, the journal and the empty temp directory
    assert files_under(out) == {Path(p) for p in df["path"]}
    assert (out / ".dicommove" / "journal.jsonl").is_file()
    assert list((out / TEMP_DIR_NAME).iterdir()) == []


def first(cohort: pd.DataFrame, column: str) -> str:
    return str(cohort[column].iloc[0])


def rows_where(cohort: pd.DataFrame, column: str, value: str) -> pd.DataFrame:
    rows: pd.DataFrame = cohort.loc[cohort[column] == value]
    return rows


# ------------------------------------------------------------------------------------------
# levels and information models


def test_study_level(
    pacs: Orthanc | DcmQrScp, peer_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    study = first(peer_cohort, "StudyInstanceUID")
    df = move(pacs, study, tmp_path, store_port)
    assert_received(df, rows_where(peer_cohort, "StudyInstanceUID", study), tmp_path)
    assert set(df["request"]) == {0}


def test_series_level(
    pacs: Orthanc | DcmQrScp, peer_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    study, series = first(peer_cohort, "StudyInstanceUID"), first(peer_cohort, "SeriesInstanceUID")
    df = move(pacs, Query.series(study, series), tmp_path, store_port)
    assert_received(df, rows_where(peer_cohort, "SeriesInstanceUID", series), tmp_path)


def test_image_level(
    pacs: Orthanc | DcmQrScp, peer_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    """IMAGE level into our own store SCP, two instances of a series in one identifier."""
    series = first(peer_cohort, "SeriesInstanceUID")
    wanted = rows_where(peer_cohort, "SeriesInstanceUID", series).iloc[[0, 2]]
    query = Query.image(
        first(wanted, "StudyInstanceUID"), series, *map(str, wanted["SOPInstanceUID"])
    )
    df = move(pacs, query, tmp_path, store_port)
    assert_received(df, wanted, tmp_path)


def test_patient_root_patient_level(
    pacs: Orthanc | DcmQrScp, peer_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    patient = first(peer_cohort, "PatientID")
    df = move(pacs, patient, tmp_path, store_port, model="patient")
    expected = rows_where(peer_cohort, "PatientID", patient)
    assert len(expected) == 12
    assert_received(df, expected, tmp_path)


def test_patient_root_study_level(
    pacs: Orthanc | DcmQrScp, peer_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    last = peer_cohort.iloc[-1]
    keys = {"PatientID": str(last["PatientID"]), "StudyInstanceUID": str(last["StudyInstanceUID"])}
    query = Query.from_keys(keys, model="patient")
    assert (query.level, query.information_model) == ("STUDY", "patient")
    df = move(pacs, query, tmp_path, store_port)
    assert_received(
        df, rows_where(peer_cohort, "StudyInstanceUID", keys["StudyInstanceUID"]), tmp_path
    )


@pytest.mark.parametrize("form", ["list", "frame"])
def test_all_studies_arrive_complete_and_byte_identical(
    pacs: Orthanc | DcmQrScp,
    peer_cohort: pd.DataFrame,
    store_port: int,
    tmp_path: Path,
    form: str,
) -> None:
    """The whole cohort, one request per study, as a list of UIDs or as a DataFrame."""
    frame = peer_cohort[["StudyInstanceUID"]].drop_duplicates()
    assert len(frame) == 4
    studies = [str(s) for s in frame["StudyInstanceUID"]]
    df = move(pacs, studies if form == "list" else frame, tmp_path, store_port)
    assert_received(df, peer_cohort, tmp_path)
    assert df["SOPInstanceUID"].is_unique
    if form == "list":
        lookup: dict[Any, str] = dict(enumerate(studies))
    else:
        lookup = dict(zip(frame.index, studies, strict=True))
        assert list(lookup) != list(range(len(frame)))  # labels, not positions: [0, 6, 12, 18]
    assert sorted(df["request"].unique()) == sorted(lookup)
    for row in df.itertuples():
        assert lookup[row.request] == row.StudyInstanceUID
    assert (df.groupby("request").size() == 6).all()


# ------------------------------------------------------------------------------------------
# destinations


def test_foreign_destination(
    pacs: Orthanc | DcmQrScp,
    peer_cohort: pd.DataFrame,
    store_port: int,
    storage_scp: StoreScp,
    tmp_path: Path,
) -> None:
    """move_destination=STORAGE: DCMTK storescp gets the files, the manifest the counts."""
    out = tmp_path / "out"  # storage_scp receives under tmp_path / "storage"
    studies = sorted(peer_cohort["StudyInstanceUID"].unique())[:2]
    df = move(pacs, studies, out, store_port, move_destination="STORAGE")
    assert list(df.columns) == list(COLUMNS)
    assert df["request"].tolist() == [0, 1]
    assert df["StudyInstanceUID"].tolist() == studies
    assert df["status"].tolist() == ["moved", "moved"]
    assert df["completed"].tolist() == [6, 6]
    assert df["failed"].tolist() == [0, 0]
    assert df["warning"].tolist() == [0, 0]
    assert df["move_status"].tolist() == [0x0000, 0x0000]
    assert df["SOPInstanceUID"].isna().all() and df["path"].isna().all()
    arrived = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in storage_scp.files()}
    expected = peer_cohort[peer_cohort["StudyInstanceUID"].isin(studies)]["SOPInstanceUID"]
    assert arrived == set(expected)
    assert len(storage_scp.files()) == 12
    assert files_under(out) == set()


def test_unknown_destination(
    pacs: Orthanc | DcmQrScp, peer_cohort: pd.DataFrame, tmp_path: Path
) -> None:
    """Our AE NOBODY is not registered: dcmqrscp says 0xA801, Orthanc 1.10.1 0xC000."""
    port = free_port()
    study = first(peer_cohort, "StudyInstanceUID")
    hint = re.escape(f"Register AE NOBODY at {LOOPBACK}:{port} on the PACS")
    with pytest.raises(MoveDestinationUnknown, match=hint) as info:
        move(pacs, study, tmp_path, port, ae_title="NOBODY")
    assert info.value.status == UNKNOWN_DESTINATION_STATUS[pacs.ae_title]
    manifest = info.value.manifest
    assert manifest is not None
    assert manifest["status"].tolist() == ["failed"]
    assert manifest["StudyInstanceUID"].tolist() == [study]
    assert files_under(tmp_path) == set()


def test_absent_study_is_not_found(
    pacs: Orthanc | DcmQrScp, store_port: int, tmp_path: Path
) -> None:
    """Orthanc 1.10.1 answers 0xC000 (a C-FIND then finds nothing), dcmqrscp 0x0000, 0 sub-ops."""
    with pytest.raises(MoveIncomplete, match="1 not_found") as info:
        move(pacs, ABSENT_STUDY, tmp_path, store_port)
    ignored = move(pacs, ABSENT_STUDY, tmp_path, store_port, errors="ignore")
    for df in (info.value.manifest, ignored):
        assert df is not None
        assert df["status"].tolist() == ["not_found"]
        assert df["StudyInstanceUID"].tolist() == [ABSENT_STUDY]
        assert df["request"].tolist() == [0]
        assert df["move_status"].tolist() == [NOT_FOUND_STATUS[pacs.ae_title]]
        assert df["SOPInstanceUID"].isna().all()
    assert files_under(tmp_path) == set()


# ------------------------------------------------------------------------------------------
# the command line: the dicom-movescu README examples, and exit codes


class CliRun(NamedTuple):
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[..., CliRun]]:
    """Run ``dicommove.cli.main`` in-process; the logging setup it does is undone afterwards."""
    loggers = [logging.getLogger(name) for name in ("dicommove", "pynetdicom")]
    saved = [(lg, lg.handlers[:], lg.propagate, lg.level) for lg in loggers]

    def run(*argv: str | Path | int) -> CliRun:
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return CliRun(code, captured.out, captured.err)

    yield run
    for lg, handlers, propagate, level in saved:
        lg.handlers[:] = handlers
        lg.propagate = propagate
        lg.setLevel(level)


def assert_one_line_summary(run: CliRun, manifest: Path) -> pd.DataFrame:
    df = read_csv(manifest)
    assert run.out.splitlines() == [f"{summarize(df)}; manifest: {manifest}"]
    return df


def test_cli_example_retrieve_a_study(
    pacs: Orthanc | DcmQrScp,
    peer_cohort: pd.DataFrame,
    store_port: int,
    tmp_path: Path,
    cli: Callable[..., CliRun],
) -> None:
    study = first(peer_cohort, "StudyInstanceUID")
    run = cli(
        "move", pacs.address, "-q", "QueryRetrieveLevel=STUDY",
        "-q", f"StudyInstanceUID={study}", "--move-destination=STORE-SCP",
        "-p", store_port, "-o", tmp_path,
    )  # fmt: skip
    assert run.code == EXIT_OK, run.err
    manifest = tmp_path / MANIFEST_NAME
    df = assert_one_line_summary(run, manifest)
    assert run.out.startswith("6 instances received")
    expected = rows_where(peer_cohort, "StudyInstanceUID", study)
    assert df["status"].tolist() == ["received"] * 6
    assert sorted(df["SOPInstanceUID"]) == sorted(expected["SOPInstanceUID"])
    assert files_under(tmp_path) == {Path(p) for p in df["path"]} | {manifest}


def test_cli_example_retrieve_a_series(
    pacs: Orthanc | DcmQrScp,
    peer_cohort: pd.DataFrame,
    store_port: int,
    tmp_path: Path,
    cli: Callable[..., CliRun],
) -> None:
    study, series = first(peer_cohort, "StudyInstanceUID"), first(peer_cohort, "SeriesInstanceUID")
    run = cli(
        "move", pacs.address, "-q", "QueryRetrieveLevel=SERIES",
        "-q", f"StudyInstanceUID={study}",
        "-q", f"SeriesInstanceUID={series}", "--move-destination=STORE-SCP",
        "-p", store_port, "-o", tmp_path,
    )  # fmt: skip
    assert run.code == EXIT_OK, run.err
    manifest = tmp_path / MANIFEST_NAME
    df = assert_one_line_summary(run, manifest)
    expected = rows_where(peer_cohort, "SeriesInstanceUID", series)
    assert df["status"].tolist() == ["received"] * 3
    assert sorted(df["SOPInstanceUID"]) == sorted(expected["SOPInstanceUID"])
    assert files_under(tmp_path) == {Path(p) for p in df["path"]} | {manifest}


def test_cli_example_transfer_to_another_ae(
    pacs: Orthanc | DcmQrScp,
    peer_cohort: pd.DataFrame,
    store_port: int,
    storage_scp: StoreScp,
    tmp_path: Path,
    cli: Callable[..., CliRun],
) -> None:
    study = first(peer_cohort, "StudyInstanceUID")
    out = tmp_path / "out"
    run = cli(
        "move", pacs.address, "-q", "QueryRetrieveLevel=STUDY",
        "-q", f"StudyInstanceUID={study}", "--move-destination=STORAGE",
        "-p", store_port, "-o", out,
    )  # fmt: skip
    assert run.code == EXIT_OK, run.err
    manifest = out / MANIFEST_NAME
    df = assert_one_line_summary(run, manifest)
    assert df["status"].tolist() == ["moved"]
    assert df["StudyInstanceUID"].tolist() == [study]
    assert (df["completed"].tolist(), df["failed"].tolist(), df["warning"].tolist()) == (
        [6],
        [0],
        [0],
    )
    assert files_under(out) == {manifest}
    arrived = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in storage_scp.files()}
    assert arrived == set(rows_where(peer_cohort, "StudyInstanceUID", study)["SOPInstanceUID"])


def test_cli_unknown_destination_exits_4(
    pacs: Orthanc | DcmQrScp, peer_cohort: pd.DataFrame, tmp_path: Path, cli: Callable[..., CliRun]
) -> None:
    port = free_port()
    run = cli(
        "move", pacs.address, "-q", "QueryRetrieveLevel=STUDY",
        "-q", f"StudyInstanceUID={first(peer_cohort, 'StudyInstanceUID')}",
        "--calling-ae-title", "NOBODY", "-p", port, "-o", tmp_path, "--no-progress",
    )  # fmt: skip
    assert run.code == EXIT_FAILED, run.err
    assert f"Register AE NOBODY at {LOOPBACK}:{port}" in run.err
    # the partial manifest is still written: the request is there, failed
    assert run.out.startswith("0 instances received")
    assert read_csv(tmp_path / MANIFEST_NAME)["status"].tolist() == ["failed"]


def test_cli_not_found_exits_4(
    pacs: Orthanc | DcmQrScp, store_port: int, tmp_path: Path, cli: Callable[..., CliRun]
) -> None:
    run = cli(
        "move", pacs.address, "-q", "QueryRetrieveLevel=STUDY",
        "-q", f"StudyInstanceUID={ABSENT_STUDY}",
        "-p", store_port, "-o", tmp_path, "--no-progress",
    )  # fmt: skip
    assert run.code == EXIT_FAILED, run.err
    df = assert_one_line_summary(run, tmp_path / MANIFEST_NAME)
    assert df["status"].tolist() == ["not_found"]
    assert f"not_found: {ABSENT_STUDY}" in run.err


def test_cli_bad_query_exits_2(
    pacs: Orthanc | DcmQrScp, store_port: int, tmp_path: Path, cli: Callable[..., CliRun]
) -> None:
    run = cli(
        "move", pacs.address, "-q", "AccessionNumber=1",
        "-p", store_port, "-o", tmp_path, "--no-progress",
    )  # fmt: skip
    assert run.code == EXIT_USAGE, run.err
    assert "AccessionNumber" in run.err
    assert run.out == ""
    assert files_under(tmp_path) == set()


def test_cli_connection_refused_exits_5(tmp_path: Path, cli: Callable[..., CliRun]) -> None:
    pacs_port = free_port()  # nothing listens there
    run = cli(
        "move", f"PACS@{LOOPBACK}:{pacs_port}", "-q", "QueryRetrieveLevel=STUDY",
        "-q", f"StudyInstanceUID={ABSENT_STUDY}",
        "-p", free_port(), "-o", tmp_path, "--no-progress",
    )  # fmt: skip
    assert run.code == EXIT_NETWORK, run.err
    assert f"cannot connect to {LOOPBACK}:{pacs_port}" in run.err
    # every requested item is in the manifest, with the reason
    manifest = read_csv(tmp_path / MANIFEST_NAME)
    assert manifest["status"].tolist() == ["failed"]
    assert "not attempted" in str(manifest["reason"][0])
