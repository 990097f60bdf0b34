"""The command line against the demo PACS: parity options, manifest file, exit codes."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from peers import Orthanc, free_port
from pydicom.dataset import Dataset
from pynetdicom import AE, evt

import dicommove._api
from dicommove import MoveCancelled, MoveTimeout, Node, Query, cli
from dicommove._defaults import DEFAULT_MAX_PDU
from dicommove.manifest import read_csv
from dicommove.testing import DemoPACS

DEMO_COHORT = dict(patients=1, studies=2, series=2, instances=2)

VERIFICATION = "1.2.840.10008.1.1"


def run(*args: str) -> int:
    return cli.main(list(args))


# -- the dicom-movescu README examples, verbatim ------------------------------------------------

#: The command lines of the DICOM-rs ``dicom-movescu`` README (movescu/README.md), copied as
#: they are written there.
SEED_QUERY_OBJECT = "dicom-movescu PACS@pacs.example.com:1045 --study query.dcm"
SEED_QUERY_FILE = "dicom-movescu PACS@pacs.example.com:1045 -S --query-file query.txt"
SEED_STUDY = "dicom-movescu PACS@pacs.example.com:1045 -q QueryRetrieveLevel=STUDY -q StudyInstanceUID=1.3.46.670589.5.2.10.2156913941.892665384.993397 --move-destination=STORE-SCP"  # noqa: E501
SEED_SERIES = "dicom-movescu PACS@pacs.example.com:1045 -q QueryRetrieveLevel=SERIES -q StudyInstanceUID=1.3.46.670589.5.2.10.2156913941.892665384.993397 -q SeriesInstanceUID=1.3.46.670589.5.2.10.2156913941.892665384.993397 --move-destination=STORE-SCP"  # noqa: E501
SEED_STORAGE = "dicom-movescu PACS@pacs.example.com:1045 -q QueryRetrieveLevel=STUDY -q StudyInstanceUID=1.3.46.670589.5.2.10.2156913941.892665384.993397 --move-destination=STORAGE"  # noqa: E501
#: The README's query.txt.
SEED_QUERY_TXT = """\
# comments are supported
QueryRetrieveLevel=SERIES
StudyInstanceUID=1.3.46.670589.5.2.10.2156913941.892665384.993397
SeriesInstanceUID=1.3.46.670589.5.2.10.2156913941.892665339.718742
"""
SEED_ADDR = "PACS@pacs.example.com:1045"
SEED_STUDY_UID = "1.3.46.670589.5.2.10.2156913941.892665384.993397"


def seed_argv(line: str, **replace: str) -> list[str]:
    """``dicom-movescu ARGS`` as ``dicommove move ARGS``, with words replaced as asked."""
    program, *words = shlex.split(line)
    assert program == "dicom-movescu"
    return ["move", *(replace.get(word, word) for word in words)]


def _study_query_file(directory: Path, study: str) -> None:
    """Write ``directory/query.dcm``: a STUDY-level query object for ``study``."""
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study
    query.save_as(directory / "query.dcm", implicit_vr=True, little_endian=True)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(
            SEED_QUERY_OBJECT,
            dict(file="query.dcm", model="study", query_file=None, queries=[], destination=None),
            id="query-object",
        ),
        pytest.param(
            SEED_QUERY_FILE,
            dict(file=None, model="study", query_file="query.txt", queries=[], destination=None),
            id="query-file",
        ),
        pytest.param(
            SEED_STUDY,
            dict(
                file=None,
                model=None,
                query_file=None,
                queries=["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={SEED_STUDY_UID}"],
                destination="STORE-SCP",
            ),
            id="study",
        ),
        pytest.param(
            SEED_SERIES,
            dict(
                file=None,
                model=None,
                query_file=None,
                queries=[
                    "QueryRetrieveLevel=SERIES",
                    f"StudyInstanceUID={SEED_STUDY_UID}",
                    f"SeriesInstanceUID={SEED_STUDY_UID}",  # the README repeats the study UID
                ],
                destination="STORE-SCP",
            ),
            id="series",
        ),
        pytest.param(
            SEED_STORAGE,
            dict(
                file=None,
                model=None,
                query_file=None,
                queries=["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={SEED_STUDY_UID}"],
                destination="STORAGE",
            ),
            id="storage",
        ),
    ],
)
def test_seed_examples_parse_as_the_readme_means(line: str, expected: dict[str, Any]) -> None:
    args = cli._parse_args(seed_argv(line))
    assert args.command == "move"
    assert args.addr == SEED_ADDR
    assert args.file == expected["file"]
    assert args.model == expected["model"]
    assert args.query_file == expected["query_file"]
    assert args.queries == expected["queries"]
    assert args.move_destination == expected["destination"]
    assert args.cohort is None


@pytest.mark.parametrize(
    "words",
    [
        [SEED_ADDR, "--study", "query.dcm"],
        ["--study", SEED_ADDR, "query.dcm"],
        [SEED_ADDR, "query.dcm", "--study"],
        ["-o", "out", SEED_ADDR, "-q", "PatientID=7", "query.dcm", "-S", "-p", "104"],
    ],
    ids=["addr-option-file", "option-addr-file", "addr-file-option", "interleaved"],
)
def test_options_and_positionals_in_any_order(words: list[str]) -> None:
    args = cli._parse_args(["move", *words])
    assert (args.addr, args.file, args.model) == (SEED_ADDR, "query.dcm", "study")


def test_query_file_before_the_address() -> None:
    args = cli._parse_args(["move", "--query-file", "query.txt", "-S", SEED_ADDR])
    assert (args.addr, args.file, args.query_file) == (SEED_ADDR, None, "query.txt")


def test_a_third_positional_is_still_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run("move", SEED_ADDR, "--study", "query.dcm", "extra.dcm")
    assert info.value.code == cli.EXIT_USAGE
    assert "unrecognized arguments: extra.dcm" in capsys.readouterr().err


@dataclass
class FakeMove:
    """Stands in for ``dicommove._api.move_rows``: records its arguments, returns no rows."""

    calls: list[tuple[Any, Any, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, pacs: Any, what: Any, **kwargs: Any) -> list[dict[str, Any]]:
        self.calls.append((pacs, what, kwargs))
        return []


@pytest.fixture
def fake_move(monkeypatch: pytest.MonkeyPatch) -> FakeMove:
    """Replace the library's move(): the CLI runs up to the network and no further."""
    fake = FakeMove()
    monkeypatch.setattr(dicommove._api, "move_rows", fake)
    return fake


@pytest.mark.parametrize(
    ("line", "level", "keys", "destination"),
    [
        (SEED_QUERY_OBJECT, "STUDY", {"StudyInstanceUID": SEED_STUDY_UID}, None),
        (
            SEED_QUERY_FILE,
            "SERIES",
            {
                "StudyInstanceUID": SEED_STUDY_UID,
                "SeriesInstanceUID": "1.3.46.670589.5.2.10.2156913941.892665339.718742",
            },
            None,
        ),
        (SEED_STUDY, "STUDY", {"StudyInstanceUID": SEED_STUDY_UID}, "STORE-SCP"),
        (
            SEED_SERIES,
            "SERIES",
            {"StudyInstanceUID": SEED_STUDY_UID, "SeriesInstanceUID": SEED_STUDY_UID},
            "STORE-SCP",
        ),
        (SEED_STORAGE, "STUDY", {"StudyInstanceUID": SEED_STUDY_UID}, "STORAGE"),
    ],
    ids=["query-object", "query-file", "study", "series", "storage"],
)
def test_seed_examples_reach_the_library_as_the_readme_means(
    line: str,
    level: str,
    keys: dict[str, str],
    destination: str | None,
    fake_move: FakeMove,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each README command line, verbatim, builds the query and options it describes."""
    monkeypatch.chdir(tmp_path)
    _study_query_file(tmp_path, SEED_STUDY_UID)
    (tmp_path / "query.txt").write_text(SEED_QUERY_TXT)
    assert cli.main(seed_argv(line)) == cli.EXIT_OK, capsys.readouterr().err
    ((pacs, what, kwargs),) = fake_move.calls
    assert Node.parse(pacs) == Node("PACS", "pacs.example.com", 1045)
    assert isinstance(what, Query)
    assert (what.level, what.keys) == (level, keys)
    assert kwargs["move_destination"] == destination
    assert kwargs["model"] == "study"
    assert (kwargs["ae_title"], kwargs["port"], Path(kwargs["out"])) == (
        "STORE-SCP",
        11111,
        Path("."),
    )
    assert kwargs["store"].max_pdu == DEFAULT_MAX_PDU
    assert (tmp_path / cli.MANIFEST_NAME).exists()


def test_seed_query_object_example_end_to_end(
    demo_pacs: DemoPACS,
    demo_cohort: pd.DataFrame,
    store_port: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``dicom-movescu ADDR --study query.dcm`` against the demo PACS, into the current dir."""
    study = demo_cohort["StudyInstanceUID"].iloc[0]
    monkeypatch.chdir(tmp_path)
    _study_query_file(tmp_path, study)
    argv = seed_argv(SEED_QUERY_OBJECT, **{SEED_ADDR: str(demo_pacs.node)})
    code = cli.main([*argv, "-p", str(store_port), "--no-progress"])
    assert code == cli.EXIT_OK, capsys.readouterr().err
    df = read_csv(tmp_path / cli.MANIFEST_NAME)
    expected = demo_cohort[demo_cohort["StudyInstanceUID"] == study]
    assert sorted(df["SOPInstanceUID"]) == sorted(expected["SOPInstanceUID"])
    assert (df["status"] == "received").all()
    assert all(Path(p).is_relative_to(tmp_path / study) for p in df["path"])


def test_seed_query_object_example_against_orthanc(
    orthanc: Orthanc,
    peer_cohort: pd.DataFrame,
    peer_ports: dict[str, int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The same README line against a real PACS (Orthanc knows STORE-SCP at its port)."""
    study = peer_cohort["StudyInstanceUID"].iloc[0]
    monkeypatch.chdir(tmp_path)
    _study_query_file(tmp_path, study)
    argv = seed_argv(SEED_QUERY_OBJECT, **{SEED_ADDR: orthanc.address})
    code = cli.main([*argv, "-p", str(peer_ports["STORE-SCP"]), "--no-progress"])
    assert code == cli.EXIT_OK, capsys.readouterr().err
    df = read_csv(tmp_path / cli.MANIFEST_NAME)
    expected = peer_cohort[peer_cohort["StudyInstanceUID"] == study]
    assert sorted(df["SOPInstanceUID"]) == sorted(expected["SOPInstanceUID"])
    assert (df["status"] == "received").all()


# -- --max-pdu-length ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        0,  # no maximum
        4096,  # dicom-movescu's least
        16384,  # dicom-movescu's default
        131072,  # dicom-movescu's greatest
        131073,
        DEFAULT_MAX_PDU,
        2**32 - 1,  # the greatest a PS3.8 Maximum Length item holds
    ],
)
def test_max_pdu_length_accepted(value: int, fake_move: FakeMove, tmp_path: Path) -> None:
    query = ["-q", f"StudyInstanceUID={SEED_STUDY_UID}"]
    code = run("move", SEED_ADDR, *query, "--max-pdu-length", str(value), "-o", str(tmp_path))
    assert code == cli.EXIT_OK
    ((_pacs, _what, kwargs),) = fake_move.calls
    assert kwargs["store"].max_pdu == value


@pytest.mark.parametrize("value", [-1, 1, 4095, 2**32])
def test_max_pdu_length_out_of_range_is_a_usage_error(
    value: int, fake_move: FakeMove, capsys: pytest.CaptureFixture[str]
) -> None:
    query = ["-q", f"StudyInstanceUID={SEED_STUDY_UID}"]
    code = run("move", SEED_ADDR, *query, "--max-pdu-length", str(value))
    assert code == cli.EXIT_USAGE
    assert f"--max-pdu-length {value}: use 4096..4294967295, or 0" in capsys.readouterr().err
    assert fake_move.calls == []


def test_max_pdu_length_not_a_number(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run(
            "move", SEED_ADDR, "-q", f"StudyInstanceUID={SEED_STUDY_UID}", "--max-pdu-length", "16k"
        )
    assert info.value.code == cli.EXIT_USAGE
    assert "--max-pdu-length: invalid int value: '16k'" in capsys.readouterr().err


def test_max_pdu_length_default_is_the_librarys(fake_move: FakeMove, tmp_path: Path) -> None:
    code = run("move", SEED_ADDR, "-q", f"StudyInstanceUID={SEED_STUDY_UID}", "-o", str(tmp_path))
    assert code == cli.EXIT_OK
    ((_pacs, _what, kwargs),) = fake_move.calls
    assert kwargs["store"].max_pdu == DEFAULT_MAX_PDU == 262144


@pytest.fixture
def echo_scp() -> Iterator[tuple[str, list[int]]]:
    """A pynetdicom Verification SCP ``ECHOSCP``; yields its address and, per C-ECHO, the
    maximum PDU length the requestor announced."""
    announced: list[int] = []

    def on_echo(event: Any) -> int:
        announced.append(int(event.assoc.requestor.maximum_length))
        return 0x0000

    ae = AE(ae_title="ECHOSCP")
    ae.add_supported_context(VERIFICATION)
    server: Any = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_ECHO, on_echo)]
    )
    try:
        yield f"ECHOSCP@127.0.0.1:{server.server_address[1]}", announced
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ([], DEFAULT_MAX_PDU),
        (["--max-pdu-length", "4096"], 4096),
        (["--max-pdu-length", str(2**32 - 1)], 2**32 - 1),
        (["--max-pdu-length", "0"], 0),
    ],
    ids=["default", "least", "greatest", "unlimited"],
)
def test_max_pdu_length_is_announced_on_the_wire(
    echo_scp: tuple[str, list[int]], option: list[str], expected: int
) -> None:
    address, announced = echo_scp
    assert run("echo", address, *option) == cli.EXIT_OK
    assert announced == [expected]


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
    epilog = " ".join(out[out.index("exit codes") :].split())
    for code, meaning in (
        (cli.EXIT_OK, "complete"),
        (cli.EXIT_USAGE, "bad input"),
        (cli.EXIT_PARTIAL, "partial"),
        (cli.EXIT_FAILED, "failed or refused by the PACS"),
        (cli.EXIT_NETWORK, "network/association error"),
        (cli.EXIT_LOCAL, "local setup error"),
        (cli.EXIT_DEADLINE, "the run's deadline passed (--deadline)"),
        (cli.EXIT_INTERRUPTED, "interrupted or cancelled"),
    ):
        assert f"{code} {meaning}" in epilog
    assert "4096..4294967295 or 0 for unlimited (default: 262144)" in " ".join(out.split())


def test_exit_codes_are_distinct() -> None:
    codes = {name: getattr(cli, name) for name in cli.__all__ if name.startswith("EXIT_")}
    assert codes == {
        "EXIT_OK": 0,
        "EXIT_USAGE": 2,
        "EXIT_PARTIAL": 3,
        "EXIT_FAILED": 4,
        "EXIT_NETWORK": 5,
        "EXIT_LOCAL": 6,
        "EXIT_DEADLINE": 7,
        "EXIT_INTERRUPTED": 130,
    }


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


def test_run_is_main_then_a_frozen_heap(capsys: pytest.CaptureFixture[str]) -> None:
    """The script's entry returns main's code and freezes the heap (no final collection)."""
    import gc

    assert gc.get_freeze_count() == 0
    try:
        # nothing listens on port 1 of loopback: connection refused, as main says
        assert cli.run(["echo", "PACS@127.0.0.1:1"]) == cli.EXIT_NETWORK
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    assert "dicommove: error:" in capsys.readouterr().err


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
    # the demo PACS cannot open its store association: 0xA801, nothing arrived
    assert code == cli.EXIT_FAILED, capsys.readouterr().err
    assert not list(tmp_path.rglob("*.dcm"))
    assert read_csv(tmp_path / cli.MANIFEST_NAME)["status"].tolist() == ["failed"]


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


def test_deadline_has_its_own_exit_code_and_resume_finishes(
    demo_pacs: DemoPACS,
    demo_cohort: pd.DataFrame,
    store_port: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--deadline passed: exit 7 (not 4), the manifest of what arrived; --resume gets the rest."""
    cohort = tmp_path / "cohort.csv"
    demo_cohort[["StudyInstanceUID"]].drop_duplicates().to_csv(cohort, index=False)
    out = tmp_path / "out"
    args = ["move", str(demo_pacs.node), "--cohort", str(cohort), "-p", str(store_port)]
    # one worker, 0.8 s per study: the second study has not started when the deadline passes
    demo_pacs.faults.delay_per_store = 0.2
    try:
        code = run(*args, "-o", str(out), "--workers", "1", "--deadline", "0.3", "--no-progress")
    finally:
        demo_pacs.faults.clear()
    err = capsys.readouterr().err
    assert code == cli.EXIT_DEADLINE, err
    assert "deadline" in err
    df = read_csv(out / cli.MANIFEST_NAME)
    assert set(df["status"]) <= {"received", "timeout"} and "timeout" in set(df["status"])
    assert set(df["request"].astype(int)) == {0, 1}  # every request accounted for
    demo_pacs.reset_counters()
    assert run(*args, "-o", str(out), "--resume", "--no-progress") == cli.EXIT_OK
    df = read_csv(out / cli.MANIFEST_NAME)
    assert sorted(df["SOPInstanceUID"]) == sorted(demo_cohort["SOPInstanceUID"])


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (MoveCancelled("cancelled: run again with --resume"), cli.EXIT_INTERRUPTED),
        (MoveTimeout("the deadline of 5 s passed"), cli.EXIT_DEADLINE),
    ],
    ids=["cancelled", "deadline"],
)
def test_cancelled_and_deadline_exit_codes_keep_the_manifest(
    error: MoveCancelled | MoveTimeout,
    code: int,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A cancelled move exits 130 like Ctrl-C; both write the partial manifest first."""
    error.rows = [
        {"request": 0, "SOPInstanceUID": "1.2.3.1", "status": "received"},
        {"request": 0, "status": "cancelled", "reason": "cancelled"},
    ]

    def fail(*_args: Any, **_kwargs: Any) -> list[dict[str, Any]]:
        raise error

    monkeypatch.setattr(dicommove._api, "move_rows", fail)
    got = run("move", SEED_ADDR, "-q", f"StudyInstanceUID={SEED_STUDY_UID}", "-o", str(tmp_path))
    assert got == code
    assert f"dicommove: error: {error}" in capsys.readouterr().err
    df = read_csv(tmp_path / cli.MANIFEST_NAME)
    assert df["status"].tolist() == ["received", "cancelled"]


def test_a_selector_move_imports_neither_pandas_nor_pydicom(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    """A ``-q`` move is the command-line path: it writes its manifest with the csv module."""
    study = demo_cohort["StudyInstanceUID"].iloc[0]
    argv = [
        "move",
        str(demo_pacs.node),
        "-q",
        "QueryRetrieveLevel=STUDY",
        "-q",
        f"StudyInstanceUID={study}",
        "-o",
        str(tmp_path / "out"),
        "-p",
        str(store_port),
        "--no-progress",
    ]
    script = (
        "import json, sys\n"
        "from dicommove import cli\n"
        f"code = cli.main({argv!r})\n"
        "heavy = [m for m in ('pandas', 'pydicom', 'pynetdicom') if m in sys.modules]\n"
        "print(json.dumps([code, heavy]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    code, heavy = json.loads(done.stdout.strip().splitlines()[-1])
    assert code == cli.EXIT_OK, done.stderr
    assert heavy == []
    df = read_csv(tmp_path / "out" / cli.MANIFEST_NAME)
    expected = demo_cohort[demo_cohort["StudyInstanceUID"] == study]
    assert sorted(df["SOPInstanceUID"]) == sorted(expected["SOPInstanceUID"])
    assert (df["status"] == "received").all()
