"""Tests of dicommove.testing: the synthetic cohort and the demo PACS."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydicom import config, dcmread
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, StoragePresentationContexts, build_role, evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event
from pynetdicom.transport import ThreadedAssociationServer

from dicommove.errors import AddressError, InputError, LocalSetupError
from dicommove.node import Node
from dicommove.testing import COHORT_COLUMNS, DemoPACS, PacsFaults, cohort_uid, make_cohort

HOST = "127.0.0.1"
VERIFICATION = "1.2.840.10008.1.1"
PATIENT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_GET = "1.2.840.10008.5.1.4.1.2.2.3"
MODELS = {"patient": PATIENT_MOVE, "study": STUDY_MOVE}
UNIQUE = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}
PENDING = 0xFF00


# -- fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pacs")


@pytest.fixture(scope="module")
def cohort(cohort_dir: Path) -> pd.DataFrame:
    # 2 patients x 2 studies x 2 series x 3 instances = 24 instances.
    return make_cohort(cohort_dir, patients=2, studies=2, series=2, instances=3)


@dataclass
class Received:
    """One C-STORE request received by the test Storage SCP."""

    sop_instance_uid: str
    originator_aet: str | None
    originator_id: int | None
    calling_aet: str
    called_aet: str
    encoded: bytes
    transfer_syntax: str


@dataclass
class Recorder:
    """Records C-STORE requests (thread-safe)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    received: list[Received] = field(default_factory=list)
    associations: set[int] = field(default_factory=set)

    def handle(self, event: Event) -> int:
        request = event.request
        assert isinstance(request, C_STORE)
        item = Received(
            sop_instance_uid=str(event.dataset.SOPInstanceUID),
            originator_aet=request.MoveOriginatorApplicationEntityTitle,
            originator_id=request.MoveOriginatorMessageID,
            calling_aet=event.assoc.requestor.ae_title,
            called_aet=_called_aet(event.assoc),
            encoded=event.encoded_dataset(include_meta=False),
            transfer_syntax=str(event.context.transfer_syntax),
        )
        with self.lock:
            self.received.append(item)
            self.associations.add(id(event.assoc))
        return 0x0000

    def clear(self) -> None:
        with self.lock:
            self.received.clear()
            self.associations.clear()

    @property
    def uids(self) -> list[str]:
        with self.lock:
            return [r.sop_instance_uid for r in self.received]


def _called_aet(assoc: Association) -> str:
    """The Called AE title the peer asked for (acceptor.ae_title is our own title)."""
    primitive = assoc.requestor.primitive
    assert primitive is not None
    return str(primitive.called_ae_title)


@dataclass
class StoreSCP:
    recorder: Recorder
    port: int


def _start_store_scp(syntaxes: list[str]) -> tuple[ThreadedAssociationServer, Recorder]:
    """A Storage SCP; pynetdicom accepts the first of `syntaxes` the peer proposes."""
    recorder = Recorder()
    ae = AE("TESTSTORE")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    for cx in StoragePresentationContexts:
        ae.add_supported_context(str(cx.abstract_syntax), syntaxes)
    server = ae.start_server(
        (HOST, 0), block=False, evt_handlers=[(evt.EVT_C_STORE, recorder.handle)]
    )
    assert server is not None
    return server, recorder


@pytest.fixture(scope="module")
def module_store() -> Iterator[StoreSCP]:
    server, recorder = _start_store_scp([ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    try:
        yield StoreSCP(recorder, int(server.server_address[1]))
    finally:
        server.shutdown()


@pytest.fixture
def store(module_store: StoreSCP) -> StoreSCP:
    module_store.recorder.clear()
    return module_store


@pytest.fixture(scope="module")
def module_pacs(
    cohort: pd.DataFrame, cohort_dir: Path, module_store: StoreSCP
) -> Iterator[DemoPACS]:
    server = DemoPACS(cohort_dir, destinations={"TESTSTORE": (HOST, module_store.port)})
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def pacs(module_pacs: DemoPACS, store: StoreSCP) -> Iterator[DemoPACS]:
    module_pacs.faults.clear()
    module_pacs.reset_counters()
    module_pacs.require_known_destination = True
    try:
        yield module_pacs
    finally:
        module_pacs.faults.clear()
        module_pacs.require_known_destination = True


def _associate(pacs: DemoPACS, *contexts: str, **kwargs: Any) -> Association:
    ae = AE("TESTSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    for uid in contexts:
        ae.add_requested_context(uid)
    assoc = ae.associate(HOST, pacs.port, ae_title=pacs.ae_title, **kwargs)
    assert assoc.is_established
    # pynetdicom's reactor can steal a response right after a previous request
    # (see dicommove._pynetdicom.reactor_reads_nothing); send_*() read blocking.
    get_msg = assoc.dimse.get_msg
    setattr(  # noqa: B010
        assoc.dimse, "get_msg", lambda block=False: get_msg(block=True) if block else (None, None)
    )
    return assoc


@pytest.fixture
def scu(pacs: DemoPACS) -> Iterator[Association]:
    assoc = _associate(pacs, VERIFICATION, PATIENT_FIND, PATIENT_MOVE, STUDY_FIND, STUDY_MOVE)
    try:
        yield assoc
    finally:
        assoc.release()


def _identifier(level: str, **keys: Any) -> Dataset:
    """An identifier; values are not validated (wildcards in a CS are legal in queries)."""
    ds = Dataset()
    for keyword, value in {"QueryRetrieveLevel": level, **keys}.items():
        tag = tag_for_keyword(keyword)
        assert tag is not None, keyword
        ds.add(DataElement(tag, dictionary_VR(tag), value, validation_mode=config.IGNORE))
    return ds


def _find(assoc: Association, model: str, query: Dataset) -> tuple[Dataset, list[Dataset]]:
    matches: list[Dataset] = []
    final = Dataset()
    for status, identifier in assoc.send_c_find(query, model):
        if status.Status == PENDING:
            assert identifier is not None
            matches.append(identifier)
        else:
            final = status
    return final, matches


def _move(
    assoc: Association,
    identifier: Dataset,
    model: str = STUDY_MOVE,
    dest: str = "TESTSTORE",
    msg_id: int = 7,
) -> tuple[Dataset, list[Dataset], Dataset | None]:
    """Return the final status, the pending statuses and the final identifier."""
    pending: list[Dataset] = []
    final, final_identifier = Dataset(), None
    for status, rsp_identifier in assoc.send_c_move(identifier, dest, model, msg_id=msg_id):
        if status.get("Status") == PENDING:
            pending.append(status)
        else:
            final, final_identifier = status, rsp_identifier
    return final, pending, final_identifier


# -- make_cohort -------------------------------------------------------------------


def test_make_cohort_is_deterministic(tmp_path: Path) -> None:
    first = make_cohort(tmp_path / "a", patients=2, studies=1, series=2, instances=2, seed=3)
    second = make_cohort(tmp_path / "b", patients=2, studies=1, series=2, instances=2, seed=3)
    uid_columns = ["PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"]
    pd.testing.assert_frame_equal(first[uid_columns], second[uid_columns])
    for path_a, path_b in zip(first["path"], second["path"], strict=True):
        rel_a = Path(path_a).relative_to(tmp_path / "a")
        assert rel_a == Path(path_b).relative_to(tmp_path / "b")
        assert Path(path_a).read_bytes() == Path(path_b).read_bytes()
    # Writing again into the same folder gives the same files and index.
    index_before = (tmp_path / "a" / "index.csv").read_bytes()
    again = make_cohort(tmp_path / "a", patients=2, studies=1, series=2, instances=2, seed=3)
    pd.testing.assert_frame_equal(first, again)
    assert (tmp_path / "a" / "index.csv").read_bytes() == index_before
    # Another seed gives other UIDs and other pixels.
    other = make_cohort(tmp_path / "c", patients=2, studies=1, series=2, instances=2, seed=4)
    assert set(other["SOPInstanceUID"]).isdisjoint(first["SOPInstanceUID"])
    assert first["SOPInstanceUID"].iloc[0] == cohort_uid(3, "sop", 1, 1, 1, 1)


def test_make_cohort_counts_and_layout(tmp_path: Path) -> None:
    df = make_cohort(tmp_path, patients=3, studies=2, series=2, instances=4, prefix="X")
    assert list(df.columns) == list(COHORT_COLUMNS)
    assert len(df) == 3 * 2 * 2 * 4
    assert df["PatientID"].nunique() == 3
    assert df["StudyInstanceUID"].nunique() == 3 * 2
    assert df["SeriesInstanceUID"].nunique() == 3 * 2 * 2
    assert df["SOPInstanceUID"].is_unique
    assert (df["SOPClassUID"] == CTImageStorage).all()
    assert df["PatientID"].iloc[0] == "X0100001"
    assert df["size"].dtype == "int64"
    first = Path(df["path"].iloc[0])
    assert first.is_absolute()
    assert first.relative_to(tmp_path.resolve()).as_posix() == "X0100001/st001/se001/00001.dcm"
    for path, size in zip(df["path"], df["size"], strict=True):
        assert Path(path).stat().st_size == size
    index = pd.read_csv(tmp_path / "index.csv")
    assert list(index["SOPInstanceUID"]) == list(df["SOPInstanceUID"])
    assert list(index["size"]) == list(df["size"])


def test_make_cohort_files_are_valid_part10(tmp_path: Path) -> None:
    df = make_cohort(tmp_path, patients=1, studies=1, series=1, instances=3, rows=16, cols=24)
    rows = zip(df["path"], df["SOPInstanceUID"], strict=True)
    for n, (path, uid) in enumerate(rows, start=1):
        raw = Path(path).read_bytes()
        assert raw[:128] == b"\x00" * 128
        assert raw[128:132] == b"DICM"
        ds = dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.file_meta.MediaStorageSOPInstanceUID == uid
        assert ds.SOPInstanceUID == uid
        assert ds.SOPClassUID == CTImageStorage
        assert ds.Modality == "CT"
        assert ds.PatientName == "Synthetic^Patient00001"
        assert ds.AccessionNumber and ds.StudyDate
        assert ds.InstanceNumber == n
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (16, 12, 11)
        pixels = ds.pixel_array
        assert pixels.shape == (16, 24)
        assert pixels.max() < 4096
        # The spliced encoding is exactly what pydicom itself writes.
        rewritten = io.BytesIO()
        ds.save_as(rewritten, enforce_file_format=True)
        assert rewritten.getvalue() == raw


def test_make_cohort_phantom_pixels(tmp_path: Path) -> None:
    kwargs: dict[str, Any] = {"patients": 2, "studies": 1, "series": 2, "instances": 5}
    df = make_cohort(tmp_path / "a", pixels="phantom", rows=32, cols=40, **kwargs)
    again = make_cohort(tmp_path / "b", pixels="phantom", rows=32, cols=40, **kwargs)
    noise = make_cohort(tmp_path / "c", rows=32, cols=40, **kwargs)
    # Deterministic; only the pixel data differ from the noise cohort, not UIDs or sizes.
    for path_a, path_b in zip(df["path"], again["path"], strict=True):
        assert Path(path_a).read_bytes() == Path(path_b).read_bytes()
    assert list(df["SOPInstanceUID"]) == list(noise["SOPInstanceUID"])
    assert list(df["size"]) == list(noise["size"])
    images: dict[tuple[str, int], Any] = {}
    for path in df["path"]:
        ds = dcmread(path)
        pixels = ds.pixel_array
        assert pixels.shape == (32, 40)
        assert set(pixels.flat) <= {24, 224, 1064, 1424}  # air, lung, tissue, lesion
        assert pixels[0, 0] == 24 and pixels[16, 20] == 1064  # air corner, tissue centre
        images[(str(ds.SeriesInstanceUID), int(ds.InstanceNumber))] = pixels
        # The spliced encoding is exactly what pydicom itself writes.
        rewritten = io.BytesIO()
        ds.save_as(rewritten, enforce_file_format=True)
        assert rewritten.getvalue() == Path(path).read_bytes()
    for series in df["SeriesInstanceUID"].unique():
        body = [int((images[(series, i)] != 24).sum()) for i in range(1, 6)]
        # Largest in the middle slice, symmetric, shrinking towards both ends.
        assert body[0] < body[1] < body[2] and body == body[::-1], body
        assert all((images[(series, i)] == 1424).any() for i in range(1, 6))
    # The middle slices of the four series all differ (the lesion).
    assert len({images[(series, 3)].tobytes() for series in df["SeriesInstanceUID"]}) == 4
    with pytest.raises(InputError, match="pixels"):
        make_cohort(tmp_path / "d", pixels="random")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [{"patients": 0}, {"instances": -1}, {"rows": 0}, {"seed": 1000}, {"prefix": "A\\B"}],
)
def test_make_cohort_rejects_bad_arguments(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InputError):
        make_cohort(tmp_path, **kwargs)


# -- DemoPACS: lifecycle and C-ECHO ------------------------------------------------


def test_pacs_lifecycle(cohort: pd.DataFrame, cohort_dir: Path, tmp_path: Path) -> None:
    pacs = DemoPACS(cohort_dir)
    with pytest.raises(RuntimeError):
        _ = pacs.node
    with pacs:
        assert pacs.is_running
        assert pacs.instances == len(cohort)
        assert pacs.node == Node("DEMOPACS", HOST, pacs.port)
        assert pacs.port > 0
        assert pacs.start() is pacs  # starting twice is harmless
    assert not pacs.is_running
    pacs.stop()
    with pytest.raises(AddressError):
        pacs.add_destination("BAD\\AE", HOST, 104)
    with pytest.raises(LocalSetupError):
        DemoPACS(tmp_path / "missing").start()
    with pytest.raises(InputError):
        DemoPACS(cohort_dir, port=70000)


def test_echo(scu: Association) -> None:
    assert scu.send_c_echo().Status == 0x0000


# -- C-FIND -------------------------------------------------------------------------


def test_find_study_root_study_level(
    scu: Association, cohort: pd.DataFrame, pacs: DemoPACS
) -> None:
    query = _identifier(
        "STUDY",
        StudyInstanceUID="",
        PatientID="",
        StudyDate="",
        NumberOfStudyRelatedInstances="",
        ModalitiesInStudy="",
        SeriesDescription="",
    )
    final, matches = _find(scu, STUDY_FIND, query)
    assert final.Status == 0x0000
    assert sorted(m.StudyInstanceUID for m in matches) == sorted(
        cohort["StudyInstanceUID"].unique()
    )
    for match in matches:
        assert match.QueryRetrieveLevel == "STUDY"
        assert match.RetrieveAETitle == "DEMOPACS"
        assert match.NumberOfStudyRelatedInstances == 6
        assert match.ModalitiesInStudy == "CT"
        assert match.PatientID in set(cohort["PatientID"])
        assert match.StudyDate
        assert match.SeriesDescription in ("", None)  # not a study-level key
    assert len(pacs.find_requests) == 1


@pytest.mark.parametrize(
    ("level", "parent", "expected"),
    [("PATIENT", None, 2), ("STUDY", "PatientID", 2), ("SERIES", "StudyInstanceUID", 2),
     ("IMAGE", "SeriesInstanceUID", 3)],
)  # fmt: skip
def test_find_patient_root_levels(
    scu: Association, cohort: pd.DataFrame, level: str, parent: str | None, expected: int
) -> None:
    query = _identifier(level, **{UNIQUE[level]: ""})
    if parent is not None:
        setattr(query, parent, cohort[parent].iloc[0])
    final, matches = _find(scu, PATIENT_FIND, query)
    assert final.Status == 0x0000
    assert len(matches) == expected
    assert all(m.QueryRetrieveLevel == level for m in matches)
    assert all(m.get(UNIQUE[level]) for m in matches)


def test_find_matching(scu: Association, cohort: pd.DataFrame) -> None:
    studies = cohort.drop_duplicates("StudyInstanceUID")
    two = list(studies["StudyInstanceUID"].iloc[[0, 3]])

    _, matches = _find(scu, STUDY_FIND, _identifier("STUDY", StudyInstanceUID=two))
    assert sorted(m.StudyInstanceUID for m in matches) == sorted(two)

    query = _identifier("STUDY", StudyInstanceUID="", PatientName="synthetic^*0002")
    _, matches = _find(scu, STUDY_FIND, query)
    assert len(matches) == 2
    assert {str(m.PatientName) for m in matches} == {"Synthetic^Patient00002"}

    query = _identifier("SERIES", SeriesInstanceUID="", Modality="C?")
    assert len(_find(scu, STUDY_FIND, query)[1]) == 8
    query = _identifier("SERIES", SeriesInstanceUID="", Modality="MR")
    assert _find(scu, STUDY_FIND, query)[1] == []

    query = _identifier("STUDY", StudyInstanceUID="", StudyDate="")
    dates = sorted(str(m.StudyDate) for m in _find(scu, STUDY_FIND, query)[1])
    query = _identifier("STUDY", StudyInstanceUID="", StudyDate=f"{dates[1]}-{dates[2]}")
    in_range = _find(scu, STUDY_FIND, query)[1]
    assert sorted(str(m.StudyDate) for m in in_range) == dates[1:3]

    query = _identifier("IMAGE", SOPInstanceUID="", InstanceNumber="2")
    assert len(_find(scu, STUDY_FIND, query)[1]) == 8


@pytest.mark.parametrize(
    ("model", "level"), [(STUDY_FIND, "PATIENT"), (PATIENT_FIND, "FOO"), (STUDY_FIND, "")]
)
def test_find_invalid_level(scu: Association, model: str, level: str) -> None:
    final, matches = _find(scu, model, _identifier(level, PatientID=""))
    assert final.Status == 0xA900
    assert final.ErrorComment
    assert matches == []


# -- C-MOVE -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "level"),
    [("patient", level) for level in ("PATIENT", "STUDY", "SERIES", "IMAGE")]
    + [("study", level) for level in ("STUDY", "SERIES", "IMAGE")],  # no PATIENT in Study Root
)
def test_move_levels(
    scu: Association,
    pacs: DemoPACS,
    store: StoreSCP,
    cohort: pd.DataFrame,
    model: str,
    level: str,
) -> None:
    first = cohort.iloc[0]
    identifier = _identifier(level)
    for lvl in ("PATIENT", "STUDY", "SERIES", "IMAGE"):
        keyword = UNIQUE[lvl]
        if model == "study" and lvl == "PATIENT":
            continue
        setattr(identifier, keyword, first[keyword])
        if lvl == level:
            break
    expected = cohort.loc[cohort[UNIQUE[level]] == first[UNIQUE[level]], "SOPInstanceUID"]

    final, pending, _ = _move(scu, identifier, MODELS[model])

    assert final.Status == 0x0000
    assert final.NumberOfCompletedSuboperations == len(expected)
    assert final.NumberOfFailedSuboperations == 0
    assert len(pending) == len(expected)
    assert pending[-1].NumberOfRemainingSuboperations == 0
    assert sorted(store.recorder.uids) == sorted(expected)
    for item in store.recorder.received:
        assert item.originator_aet == "TESTSCU"
        assert item.originator_id == 7
        assert (item.calling_aet, item.called_aet) == ("DEMOPACS", "TESTSTORE")
    assert len(store.recorder.associations) == 1
    assert pacs.store_associations == 1
    assert pacs.sent_instances == list(expected)
    assert [str(m.QueryRetrieveLevel) for m in pacs.move_requests] == [level]
    assert pacs.move_message_ids == [7]


def test_move_sends_files_as_stored(
    scu: Association, store: StoreSCP, cohort: pd.DataFrame
) -> None:
    study = cohort["StudyInstanceUID"].iloc[0]
    final, _, _ = _move(scu, _identifier("STUDY", StudyInstanceUID=study))
    assert final.Status == 0x0000
    by_uid = {r.sop_instance_uid: r for r in store.recorder.received}
    rows = cohort[cohort["StudyInstanceUID"] == study]
    for path, uid in zip(rows["path"], rows["SOPInstanceUID"], strict=True):
        raw = Path(path).read_bytes()
        item = by_uid[uid]
        assert item.transfer_syntax == ExplicitVRLittleEndian
        assert raw.endswith(item.encoded)  # the data set after the file meta, unchanged


def test_move_to_implicit_only_destination(cohort: pd.DataFrame, cohort_dir: Path) -> None:
    server, recorder = _start_store_scp([ImplicitVRLittleEndian])
    pacs = DemoPACS(cohort_dir, destinations={"TESTSTORE": (HOST, int(server.server_address[1]))})
    try:
        pacs.start()
        assoc = _associate(pacs, STUDY_MOVE)
        try:
            series = cohort["SeriesInstanceUID"].iloc[0]
            final, _, _ = _move(assoc, _identifier("SERIES", SeriesInstanceUID=series))
        finally:
            assoc.release()
    finally:
        pacs.stop()
        server.shutdown()
    assert final.Status == 0x0000
    assert final.NumberOfCompletedSuboperations == 3
    assert {r.transfer_syntax for r in recorder.received} == {ImplicitVRLittleEndian}


def test_move_uid_list(scu: Association, store: StoreSCP, cohort: pd.DataFrame) -> None:
    studies = list(cohort["StudyInstanceUID"].unique()[[0, 2]])
    final, _, _ = _move(scu, _identifier("STUDY", StudyInstanceUID=studies))
    expected = cohort.loc[cohort["StudyInstanceUID"].isin(studies), "SOPInstanceUID"]
    assert final.Status == 0x0000
    assert final.NumberOfCompletedSuboperations == 12
    assert sorted(store.recorder.uids) == sorted(expected)
    assert len(store.recorder.associations) == 1


def test_move_unknown_destination(scu: Association, store: StoreSCP, cohort: pd.DataFrame) -> None:
    study = cohort["StudyInstanceUID"].iloc[0]
    final, pending, _ = _move(scu, _identifier("STUDY", StudyInstanceUID=study), dest="NOBODY")
    assert final.Status == 0xA801
    assert "NOBODY" in final.ErrorComment
    assert pending == []
    assert store.recorder.uids == []


def test_move_unknown_destination_allowed(
    scu: Association, pacs: DemoPACS, store: StoreSCP, cohort: pd.DataFrame
) -> None:
    pacs.require_known_destination = False
    series = cohort["SeriesInstanceUID"].iloc[0]
    final, _, _ = _move(scu, _identifier("SERIES", SeriesInstanceUID=series), dest="OTHER")
    assert final.Status == 0x0000
    assert {r.called_aet for r in store.recorder.received} == {"OTHER"}


def test_move_destination_down(scu: Association, pacs: DemoPACS, cohort: pd.DataFrame) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind((HOST, 0))
        closed_port = int(sock.getsockname()[1])
    pacs.add_destination("GONE", HOST, closed_port)
    try:
        series = cohort["SeriesInstanceUID"].iloc[0]
        final, _, _ = _move(scu, _identifier("SERIES", SeriesInstanceUID=series), dest="GONE")
    finally:
        pacs.remove_destination("GONE")
    assert final.Status == 0xA801
    assert final.ErrorComment


def test_concurrent_moves(pacs: DemoPACS, store: StoreSCP, cohort: pd.DataFrame) -> None:
    studies = list(cohort["StudyInstanceUID"].unique())
    results: dict[int, Dataset] = {}

    def run(msg_id: int, study: str) -> None:
        assoc = _associate(pacs, STUDY_MOVE)
        try:
            identifier = _identifier("STUDY", StudyInstanceUID=study)
            results[msg_id] = _move(assoc, identifier, msg_id=msg_id)[0]
        finally:
            assoc.release()

    threads = [
        threading.Thread(target=run, args=(100 + n, study)) for n, study in enumerate(studies)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == [100, 101, 102, 103]
    assert all(status.Status == 0x0000 for status in results.values())
    assert sorted(store.recorder.uids) == sorted(cohort["SOPInstanceUID"])
    assert len(store.recorder.associations) == 4
    assert pacs.store_associations == 4
    study_of = dict(zip(cohort["SOPInstanceUID"], cohort["StudyInstanceUID"], strict=True))
    for item in store.recorder.received:
        assert item.originator_id is not None
        assert studies[item.originator_id - 100] == study_of[item.sop_instance_uid]


def test_add_destination_and_rescan(tmp_path: Path, store: StoreSCP) -> None:
    make_cohort(tmp_path, patients=1, studies=1, series=1, instances=2, seed=5)
    with DemoPACS(tmp_path, ae_title="OTHERPACS") as pacs:
        assert pacs.instances == 2
        df = make_cohort(tmp_path, patients=1, studies=1, series=1, instances=2, seed=6)
        assert pacs.rescan() == 4
        pacs.add_destination("LATE", HOST, store.port)
        assert pacs.destinations == {"LATE": (HOST, store.port)}
        assoc = _associate(pacs, STUDY_MOVE)
        try:
            study = df["StudyInstanceUID"].iloc[0]
            final, _, _ = _move(assoc, _identifier("STUDY", StudyInstanceUID=study), dest="LATE")
        finally:
            assoc.release()
    assert final.Status == 0x0000
    assert sorted(store.recorder.uids) == sorted(df["SOPInstanceUID"])
    assert {(r.calling_aet, r.called_aet) for r in store.recorder.received} == {
        ("OTHERPACS", "LATE")
    }


def test_move_zero_match(scu: Association, pacs: DemoPACS, store: StoreSCP) -> None:
    final, pending, _ = _move(scu, _identifier("STUDY", StudyInstanceUID="1.2.3.4"))
    assert final.Status == 0x0000
    assert final.NumberOfCompletedSuboperations == 0
    assert final.NumberOfFailedSuboperations == 0
    assert pending == []
    assert pacs.store_associations == 0
    assert store.recorder.uids == []


@pytest.mark.parametrize(
    "identifier",
    [
        _identifier("STUDY"),  # no StudyInstanceUID
        _identifier("STUDY", StudyInstanceUID="1.2.3", SeriesInstanceUID="1.2.3.4"),
        _identifier("PATIENT", PatientID="PAT0100001"),  # no PATIENT level in Study Root
        _identifier("WRONG", StudyInstanceUID="1.2.3"),
    ],
)
def test_move_invalid_identifier(scu: Association, store: StoreSCP, identifier: Dataset) -> None:
    final, pending, _ = _move(scu, identifier)
    assert final.Status == 0xA900
    assert final.ErrorComment
    assert pending == []
    assert store.recorder.uids == []


# -- C-GET --------------------------------------------------------------------------


def test_get(pacs: DemoPACS, cohort: pd.DataFrame) -> None:
    recorder = Recorder()
    assoc = _associate(
        pacs,
        STUDY_GET,
        CTImageStorage,
        ext_neg=[build_role(CTImageStorage, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, recorder.handle)],
    )
    try:
        study = cohort["StudyInstanceUID"].iloc[1]
        statuses = [
            s for s, _ in assoc.send_c_get(_identifier("STUDY", StudyInstanceUID=study), STUDY_GET)
        ]
    finally:
        assoc.release()
    expected = cohort.loc[cohort["StudyInstanceUID"] == study, "SOPInstanceUID"]
    assert statuses[-1].Status == 0x0000
    assert statuses[-1].NumberOfCompletedSuboperations == len(expected)
    assert sorted(recorder.uids) == sorted(expected)
    assert all(r.originator_id is None for r in recorder.received)
    assert len(pacs.get_requests) == 1


# -- faults -------------------------------------------------------------------------


def _series_move(
    scu: Association, cohort: pd.DataFrame
) -> tuple[Dataset, list[Dataset], Dataset | None]:
    series = cohort["SeriesInstanceUID"].iloc[0]
    return _move(scu, _identifier("SERIES", SeriesInstanceUID=series))


def test_fault_drop_instances(
    scu: Association, pacs: DemoPACS, store: StoreSCP, cohort: pd.DataFrame
) -> None:
    dropped = str(cohort["SOPInstanceUID"].iloc[1])
    pacs.faults.drop_instances.add(dropped)
    final, _, _ = _series_move(scu, cohort)
    assert final.Status == 0x0000
    assert final.NumberOfCompletedSuboperations == 3
    assert len(store.recorder.uids) == 2
    assert dropped not in store.recorder.uids


def test_fault_fail_instances(
    scu: Association, pacs: DemoPACS, store: StoreSCP, cohort: pd.DataFrame
) -> None:
    failed = str(cohort["SOPInstanceUID"].iloc[0])
    pacs.faults.fail_instances.add(failed)
    final, _, identifier = _series_move(scu, cohort)
    assert final.Status == 0xB000
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (2, 1)
    assert identifier is not None
    assert identifier.FailedSOPInstanceUIDList == failed
    assert len(store.recorder.uids) == 2


def test_fault_move_status_and_skip_pending(
    scu: Association, pacs: DemoPACS, store: StoreSCP, cohort: pd.DataFrame
) -> None:
    pacs.faults = PacsFaults(move_status=0xA702, error_comment="disk full", skip_pending=True)
    final, pending, _ = _series_move(scu, cohort)
    assert final.Status == 0xA702
    assert final.ErrorComment == "disk full"
    assert final.NumberOfCompletedSuboperations == 3
    assert pending == []
    assert len(store.recorder.uids) == 3
    pacs.faults.clear()
    final, pending, _ = _series_move(scu, cohort)
    assert final.Status == 0x0000
    assert len(pending) == 3


def test_fault_abort_after(pacs: DemoPACS, store: StoreSCP, cohort: pd.DataFrame) -> None:
    pacs.faults.abort_after = 1
    assoc = _associate(pacs, STUDY_MOVE)
    try:
        final, _, _ = _series_move(assoc, cohort)
    finally:
        assoc.release()
    assert "Status" not in final  # no final response: the association was aborted
    assert assoc.is_aborted
    assert len(store.recorder.uids) == 1


def test_fault_delay_per_store(
    scu: Association, pacs: DemoPACS, store: StoreSCP, cohort: pd.DataFrame
) -> None:
    pacs.faults.delay_per_store = 0.05
    final, _, _ = _series_move(scu, cohort)
    assert final.Status == 0x0000
    assert len(store.recorder.uids) == 3
