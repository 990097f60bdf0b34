"""The command line against the demo PACS: parity options, manifest file, exit codes."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
from peers import free_port
from pydicom.dataset import Dataset

from dicommove import cli
from dicommove.manifest import read_csv
from dicommove.testing import DemoPACS

DEMO_COHORT = dict(patients=1, studies=2, series=2, instances=2)


def run(*args: str) -> int:
    return cli.main(list(args))


def test_seed_example_study(
    demo_pacs: DemoPACS,
    demo_cohort: pd.DataFrame,
    store_port: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    study = demo_cohort["StudyInstanceUID"].iloc[0]
    code = run(
        "move",
        str(demo_pacs.node),
        "-q",
        "QueryRetrieveLevel=STUDY",
        "-q",
        f"StudyInstanceUID={study}",
        "--move-destination=STORE-SCP",
        "-p",
        str(store_port),
        "-o",
        str(tmp_path),
        "--no-progress",
    )
    assert code == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "4 instances received" in out
    df = read_csv(tmp_path / cli.MANIFEST_NAME)
    assert (df["status"] == "received").sum() == 4
    assert all(Path(p).exists() for p in df["path"])


def test_seed_example_series_and_called_ae_default(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    row = demo_cohort.iloc[0]
    # host:store_port without AE: the called AE is ANY-SCP, and --called-ae-title overrides it
    addr = f"{demo_pacs.node.host}:{demo_pacs.node.port}"
    code = run(
        "move",
        addr,
        "--called-ae-title",
        demo_pacs.node.ae_title,
        "-q",
        "QueryRetrieveLevel=SERIES",
        "-q",
        f"StudyInstanceUID={row.StudyInstanceUID}",
        "-q",
        f"SeriesInstanceUID={row.SeriesInstanceUID}",
        "--move-destination=STORE-SCP",
        "-p",
        str(store_port),
        "-o",
        str(tmp_path),
        "--no-progress",
    )
    assert code == cli.EXIT_OK
    df = read_csv(tmp_path / cli.MANIFEST_NAME)
    assert set(df["SeriesInstanceUID"]) == {row.SeriesInstanceUID}


def test_image_level_with_query_file_and_dataset_file(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    row = demo_cohort.iloc[1]
    base = Dataset()
    base.QueryRetrieveLevel = "SERIES"  # overridden by the query file
    base.StudyInstanceUID = row.StudyInstanceUID
    query_dcm = tmp_path / "query.dcm"
    base.save_as(query_dcm, implicit_vr=True, little_endian=True)
    query_txt = tmp_path / "query.txt"
    query_txt.write_text(
        f"# image level\nQueryRetrieveLevel=IMAGE\n\n(0020,000E)={row.SeriesInstanceUID}\n"
    )
    manifest = tmp_path / "m.csv"
    code = run(
        "move",
        str(demo_pacs.node),
        str(query_dcm),
        "--query-file",
        str(query_txt),
        "-q",
        f"00080018={row.SOPInstanceUID}",
        "-p",
        str(store_port),
        "-o",
        str(tmp_path / "out"),
        "--manifest",
        str(manifest),
        "--no-progress",
        "--flat",
    )
    assert code == cli.EXIT_OK
    df = read_csv(manifest)
    assert df["SOPInstanceUID"].tolist() == [row.SOPInstanceUID]
    assert Path(df["path"][0]) == (tmp_path / "out" / f"{row.SOPInstanceUID}.dcm").absolute()


def test_patient_root(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    code = run(
        "move",
        str(demo_pacs.node),
        "-P",
        "-q",
        f"PatientID={demo_cohort['PatientID'].iloc[0]}",
        "-p",
        str(store_port),
        "-o",
        str(tmp_path),
        "--no-progress",
    )
    assert code == cli.EXIT_OK
    assert len(read_csv(tmp_path / cli.MANIFEST_NAME)) == len(demo_cohort)


def test_not_found_exit_code_and_report(
    demo_pacs: DemoPACS, store_port: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(
        "move",
        str(demo_pacs.node),
        "-q",
        "StudyInstanceUID=1.2.3.4",
        "-p",
        str(store_port),
        "-o",
        str(tmp_path),
        "--no-progress",
    )
    assert code == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert "not_found: 1.2.3.4" in err
    assert read_csv(tmp_path / cli.MANIFEST_NAME)["status"].tolist() == ["not_found"]


def test_partial_exit_code(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    study = demo_cohort["StudyInstanceUID"].iloc[0]
    victim = demo_cohort[demo_cohort["StudyInstanceUID"] == study]["SOPInstanceUID"].iloc[0]
    demo_pacs.faults.fail_instances = {victim}
    try:
        code = run(
            "move",
            str(demo_pacs.node),
            "-q",
            f"StudyInstanceUID={study}",
            "-p",
            str(store_port),
            "-o",
            str(tmp_path),
            "--no-progress",
        )
    finally:
        demo_pacs.faults.clear()
    assert code == cli.EXIT_PARTIAL


def test_unknown_destination_exit_code(
    demo_pacs: DemoPACS,
    demo_cohort: pd.DataFrame,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = run(
        "move",
        str(demo_pacs.node),
        "-q",
        f"StudyInstanceUID={demo_cohort['StudyInstanceUID'].iloc[0]}",
        "--calling-ae-title",
        "NOBODY",
        "-p",
        "0",
        "-o",
        str(tmp_path),
        "--no-progress",
    )
    assert code == cli.EXIT_FAILED
    assert "Register AE NOBODY" in capsys.readouterr().err


def test_connection_refused_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(
        "move",
        f"PACS@127.0.0.1:{free_port()}",
        "-q",
        "StudyInstanceUID=1.2.3",
        "-p",
        "0",
        "-o",
        str(tmp_path),
        "--no-progress",
        "--retries",
        "0",
    )
    assert code == cli.EXIT_NETWORK
    assert "Connection refused" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        ["move", "PACS@127.0.0.1:104", "-q", "AccessionNumber=1"],
        ["move", "PACS@127.0.0.1:104", "-q", "StudyInstanceUId=1.2.3"],
        ["move", "PACS@127.0.0.1:104"],
        ["move", "no-store_port", "-q", "StudyInstanceUID=1.2"],
        ["move", "PACS@127.0.0.1:104", "-q", "StudyInstanceUID=1.2", "--max-pdu-length", "10"],
        ["echo", "PACS@127.0.0.1:0"],
    ],
)
def test_bad_input_exit_code(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(*args, *(["-p", "0", "-o", str(tmp_path)] if args[0] == "move" else []))
    assert code == cli.EXIT_USAGE
    assert "dicommove: error:" in capsys.readouterr().err


def test_did_you_mean(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run("move", "PACS@127.0.0.1:104", "-q", "StudyInstanceUId=1.2.3", "-o", str(tmp_path))
    assert "StudyInstanceUID" in capsys.readouterr().err


def test_no_strict_sends_with_a_warning(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    study = demo_cohort["StudyInstanceUID"].iloc[0]
    before = len(demo_pacs.move_requests)
    with pytest.warns(UserWarning, match="AccessionNumber"):
        code = run(
            "move",
            str(demo_pacs.node),
            "-q",
            f"StudyInstanceUID={study}",
            "-q",
            "AccessionNumber=A1",
            "--no-strict",
            "-p",
            str(store_port),
            "-o",
            str(tmp_path),
            "--no-progress",
        )
    assert code == cli.EXIT_OK
    assert "AccessionNumber" in demo_pacs.move_requests[before]


def test_echo(demo_pacs: DemoPACS, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("echo", str(demo_pacs.node)) == cli.EXIT_OK
    assert "success" in capsys.readouterr().out


def test_help_and_exit_codes_documented(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run("move", "--help")
    assert info.value.code == 0
    out = capsys.readouterr().out
    for option in (
        "--query-file",
        "-q",
        "--move-destination",
        "--calling-ae-title",
        "--called-ae-title",
        "--max-pdu-length",
        "-S",
        "-P",
        "-p",
        "-o",
    ):
        assert option in out
    assert "exit codes" in out


def test_help_does_not_import_heavy_modules() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from dicommove import cli\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    cli.main(['--help'])\n"
        "heavy = [m for m in ('pandas', 'pydicom', 'pynetdicom', 'ipywidgets') "
        "if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_demo_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(
        "demo",
        "-o",
        str(tmp_path),
        "--patients",
        "1",
        "--studies",
        "1",
        "--series",
        "1",
        "--instances",
        "3",
        "--no-progress",
    )
    assert code == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "3 instances received" in out
    df = read_csv(tmp_path / "received" / cli.MANIFEST_NAME)
    assert (df["status"] == "received").sum() == 3


def test_python_dash_m(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dicommove", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    assert done.stdout.startswith("dicommove ")


def test_layout_template_and_bad_template(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    row = demo_cohort.iloc[0]
    code = run(
        "move",
        str(demo_pacs.node),
        "-q",
        f"StudyInstanceUID={row.StudyInstanceUID}",
        "-q",
        f"SeriesInstanceUID={row.SeriesInstanceUID}",
        "--layout",
        "{SeriesInstanceUID}/{SOPInstanceUID}.dcm",
        "-p",
        str(store_port),
        "-o",
        str(tmp_path),
        "--no-progress",
    )
    assert code == cli.EXIT_OK
    assert sorted(p.parent.name for p in tmp_path.rglob("*.dcm")) == [row.SeriesInstanceUID] * 2
    code = run(
        "move",
        str(demo_pacs.node),
        "-q",
        f"StudyInstanceUID={row.StudyInstanceUID}",
        "--layout",
        "../{SOPInstanceUID}.dcm",
        "-p",
        str(store_port),
        "-o",
        str(tmp_path),
    )
    assert code == cli.EXIT_USAGE


def test_allow_host_excludes_the_pacs(
    demo_pacs: DemoPACS,
    demo_cohort: pd.DataFrame,
    store_port: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The demo PACS connects from 127.0.0.1: allowing only 127.0.0.9 refuses its stores."""
    code = run(
        "move",
        str(demo_pacs.node),
        "-q",
        f"StudyInstanceUID={demo_cohort['StudyInstanceUID'].iloc[0]}",
        "--allow-host",
        "127.0.0.9",
        "-p",
        str(store_port),
        "-o",
        str(tmp_path),
        "--no-progress",
    )
    assert code != cli.EXIT_OK
    assert not list(tmp_path.rglob("*.dcm"))


def test_cohort_csv_with_workers(
    demo_pacs: DemoPACS,
    demo_cohort: pd.DataFrame,
    store_port: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cohort = tmp_path / "cohort.csv"
    studies = demo_cohort[["StudyInstanceUID"]].drop_duplicates()
    studies.assign(note="keep me").to_csv(cohort, index=False)
    out = tmp_path / "out"
    args = ["move", str(demo_pacs.node), "--cohort", str(cohort), "-p", str(store_port)]
    code = run(*args, "-o", str(out), "--workers", "2", "--no-progress")
    assert code == cli.EXIT_OK, capsys.readouterr().err
    df = read_csv(out / cli.MANIFEST_NAME)
    assert sorted(df["SOPInstanceUID"]) == sorted(demo_cohort["SOPInstanceUID"])
    assert set(df["request"].astype(int)) == {0, 1}  # the CSV's row numbers
    demo_pacs.reset_counters()
    assert run(*args, "-o", str(out), "--resume", "--no-progress") == cli.EXIT_OK
    assert demo_pacs.move_requests == []  # nothing fetched twice


def test_cohort_and_query_together_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cohort = tmp_path / "c.csv"
    cohort.write_text("StudyInstanceUID\n1.2.3\n")
    code = run("move", "PACS@127.0.0.1:104", "--cohort", str(cohort), "-q", "PatientID=1")
    assert code == cli.EXIT_USAGE
    assert "either --cohort" in capsys.readouterr().err


def test_sigint_cancels_writes_the_manifest_and_resume_finishes(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    """Ctrl-C to the CLI process: exit 130 with the partial manifest; --resume gets the rest."""
    import signal

    cohort = tmp_path / "cohort.csv"
    demo_cohort[["StudyInstanceUID"]].drop_duplicates().to_csv(cohort, index=False)
    out = tmp_path / "out"
    args = ["move", str(demo_pacs.node), "--cohort", str(cohort), "-p", str(store_port)]
    demo_pacs.faults.delay_per_store = 0.2
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dicommove", *args, "-o", str(out), "--no-progress"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        landed, poll = False, threading.Event()
        for _ in range(1000):  # poll (10 s at most) for the first file under its final name
            if any(p.suffix == ".dcm" for p in out.rglob("*.dcm")):
                landed = True
                break
            if proc.poll() is not None:
                break
            poll.wait(0.01)
        assert landed, proc.communicate(timeout=30)
        proc.send_signal(signal.SIGINT)
        _stdout, stderr = proc.communicate(timeout=30)
    finally:
        demo_pacs.faults.clear()
    assert proc.returncode == cli.EXIT_INTERRUPTED, stderr.decode()
    df = read_csv(out / cli.MANIFEST_NAME)
    assert set(df["status"]) <= {"received", "cancelled"} and "cancelled" in set(df["status"])
    demo_pacs.reset_counters()
    assert run(*args, "-o", str(out), "--resume", "--no-progress") == cli.EXIT_OK
    df = read_csv(out / cli.MANIFEST_NAME)
    assert sorted(df["SOPInstanceUID"]) == sorted(demo_cohort["SOPInstanceUID"])
    assert (df["status"] == "received").all()


def test_the_same_unknown_study_twice_is_a_failure_not_partial(
    demo_pacs: DemoPACS, store_port: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cohort = tmp_path / "c.csv"
    cohort.write_text("StudyInstanceUID\n1.2.3.4.5\n1.2.3.4.5\n")
    code = run(
        "move", str(demo_pacs.node), "--cohort", str(cohort), "-p", str(store_port),
        "-o", str(tmp_path / "out"), "--no-progress",
    )  # fmt: skip
    assert code == cli.EXIT_FAILED  # nothing arrived: the duplicate row is no instance
    df = read_csv(tmp_path / "out" / cli.MANIFEST_NAME)
    assert sorted(df["status"].astype(str)) == ["duplicate", "not_found"]


def test_an_unusable_output_directory_is_a_local_error_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code = run(
        "move", f"PACS@127.0.0.1:{free_port()}", "-q", "StudyInstanceUID=1.2.3",
        "-p", "0", "-o", str(blocker / "out"), "--no-progress",
    )  # fmt: skip
    assert code == cli.EXIT_LOCAL, capsys.readouterr().err
