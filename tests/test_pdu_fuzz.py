"""A time-bounded mutation fuzzer of the store SCP, over recorded valid PDU streams.

The streams are what a real sender sends our store SCP, recorded by a pass-through
:class:`~dicommove.testing.faults.FaultProxy` in front of it: an association storing a
small instance, one storing an instance larger than the SCP keeps in memory (so a temp
file is written), and a C-ECHO; each ends with an A-RELEASE-RQ. Hypothesis mutates them
(bit flips, byte replacement, insertion, deletion, truncation, length fields, splicing
and PDU reordering) and sends each mutant to one running :class:`StoreSCP`. Properties:

* the SCP never raises out of its protocol callbacks (the loop's exception handler and
  the ``dicommove`` logger's ERROR records with a traceback stay empty);
* every connection ends soon after the last byte: at once after our half close, and
  within its ACSE or network timeout when we just go silent;
* no temp file is left once the connection ended, nothing is written outside the output
  root, and every file with a final name holds valid UIDs that match its name;
* after each mutant, a clean C-STORE still succeeds.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.filereader import read_partial
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from senders import RawAssociation, encode, make_dataset, new_uid

from dicommove import _ul
from dicommove._loop import loop_thread
from dicommove._sop import VERIFICATION
from dicommove.scp import CONFLICT_DIR_NAME, TEMP_DIR_NAME, InstanceStore, Received, StoreSCP
from dicommove.testing.faults import UP, FaultProxy, pdu_offsets
from dicommove.testing.peers import wait_for

AE_TITLE = "FUZZ"
MAX_PDU = 16384  # the SCP's: a large dataset comes in several P-DATA PDUs
TIMEOUT = 0.5  # the SCP's ACSE and network timeouts
#: How long a connection may stay open after our half close (seconds).
END_AFTER_EOF = 2.0
#: Wall-clock budget of the main fuzzer; examples after it are skipped (seconds).
BUDGET = 15.0
UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
UID_TAGS = (0x00080016, 0x00080018, 0x0020000D, 0x0020000E)
Order = Literal["big", "little"]
CLEAN_STUDY, CLEAN_SERIES = new_uid(), new_uid()  # where the clean C-STOREs go
LONG_VRS = frozenset(
    (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV")
)


# -- the store SCP under test -----------------------------------------------------------------


@dataclass
class Target:
    """The running SCP, its output root, and what went wrong inside it."""

    scp: StoreSCP
    root: Path  # the output root's parent: nothing but ``out`` may appear in it
    out: Path
    records: list[Received] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)  # loop exceptions, logged tracebacks
    examples: int = 0
    started: float = 0.0
    failed: bool = False

    @property
    def port(self) -> int:
        return int(self.scp.port)

    def final_files(self) -> set[Path]:
        return {p for p in self.out.rglob("*") if p.is_file() and TEMP_DIR_NAME not in p.parts}


class _Tracebacks(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.sink.append(self.format(record))


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    root = tmp_path_factory.mktemp("fuzz")
    store = InstanceStore(root / "out", durability="none")
    store.prepare()
    store.begin()
    records: list[Received] = []
    scp = StoreSCP(
        store,
        ae_title=AE_TITLE,
        host="127.0.0.1",
        port=0,
        on_instance=records.append,
        max_pdu=MAX_PDU,
        network_timeout=TIMEOUT,
        acse_timeout=TIMEOUT,
    )
    t = Target(scp, root, store.root, records)
    loop = loop_thread().loop
    previous = loop.get_exception_handler()

    def on_exception(lp: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        t.crashes.append(f"{context.get('message')}: {context.get('exception')!r}")
        lp.default_exception_handler(context)

    loop.set_exception_handler(on_exception)
    logger = logging.getLogger("dicommove")
    handler, level = _Tracebacks(t.crashes), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.ERROR)  # thousands of aborts are logged as warnings
    scp.start()
    try:
        yield t
    finally:
        scp.stop()
        logger.removeHandler(handler)
        logger.setLevel(level)
        loop.set_exception_handler(previous)


# -- recorded streams -------------------------------------------------------------------------


def _echo(raw: RawAssociation) -> None:
    command = _ul.encode_request(_ul.C_ECHO_RQ, 7, sop_class=VERIFICATION)
    raw.send_pdv(1, command, command=True, last=True)
    pdu_type, _ = raw.read_pdu()
    assert pdu_type == _ul.PDU_P_DATA


def _store(size: int) -> Callable[[RawAssociation], None]:
    def store(raw: RawAssociation) -> None:
        ds = make_dataset(pixel_bytes=size)
        assert raw.store(encode(ds), sop_instance=ds.SOPInstanceUID) == 0x0000

    return store


SESSIONS: dict[str, tuple[tuple[int, str, tuple[str, ...]], Callable[[RawAssociation], None]]] = {
    "store": ((1, "1.2.840.10008.5.1.4.1.1.2", (ExplicitVRLittleEndian,)), _store(0)),
    "large": ((1, "1.2.840.10008.5.1.4.1.1.2", (ExplicitVRLittleEndian,)), _store(80 * 1024)),
    "echo": ((1, VERIFICATION, (ImplicitVRLittleEndian, ExplicitVRLittleEndian)), _echo),
}


@pytest.fixture(scope="module")
def streams(target: Target) -> dict[str, bytes]:
    """Each session of :data:`SESSIONS` as the bytes the sender sent (client to server)."""
    return {name: record(target.port, *how) for name, how in SESSIONS.items()}


def record(
    port: int, context: tuple[int, str, tuple[str, ...]], session: Callable[[RawAssociation], None]
) -> bytes:
    with FaultProxy(("127.0.0.1", port), record=True) as proxy:
        with RawAssociation(proxy.port, called=AE_TITLE, contexts=[context]) as raw:
            session(raw)
            raw.release()
        wait_for(lambda: proxy.open_connections == 0, 5, what="the recording closed")
        return bytes(proxy.links[0].sent[UP])


# -- mutations --------------------------------------------------------------------------------


def length_fields(stream: bytes | bytearray) -> list[tuple[int, int, Order]]:
    """(offset, width, byte order) of the length fields found walking ``stream``: PDUs,
    A-ASSOCIATE-RQ items and sub-items, PDV items, and the elements of command sets and of
    the start of datasets."""
    found: list[tuple[int, int, Order]] = []
    after_command = False  # a dataset's first fragment follows its command
    for at, pdu_type, length in pdu_offsets(stream):
        found.append((at + 2, 4, "big"))
        end = min(at + 6 + length, len(stream))
        if pdu_type == _ul.PDU_ASSOCIATE_RQ:
            pos = at + 6 + 68
            while pos + 4 <= end:
                found.append((pos + 2, 2, "big"))
                kind, size = stream[pos], int.from_bytes(stream[pos + 2 : pos + 4], "big")
                sub = pos + 8 if kind == 0x20 else pos + 4
                while kind in (0x20, 0x50) and sub + 4 <= min(pos + 4 + size, end):
                    found.append((sub + 2, 2, "big"))
                    sub += 4 + int.from_bytes(stream[sub + 2 : sub + 4], "big")
                pos += 4 + size
        elif pdu_type == _ul.PDU_P_DATA:
            pos = at + 6
            while pos + 6 <= end:
                found.append((pos, 4, "big"))
                size, command = int.from_bytes(stream[pos : pos + 4], "big"), stream[pos + 5] & 1
                if command or after_command:
                    stop = min(pos + 4 + size, end)
                    found += element_lengths(stream, pos + 6, stop, explicit=not command)
                after_command = bool(command)
                pos += 4 + size
    return found


def element_lengths(
    stream: bytes | bytearray, pos: int, stop: int, *, explicit: bool
) -> list[tuple[int, int, Order]]:
    """The length fields of (at most 64) elements from ``pos``: Little Endian, implicit VR
    (a command set) or explicit VR (a dataset)."""
    found: list[tuple[int, int, Order]] = []
    while pos + 8 <= stop and len(found) < 64:
        if not explicit:
            at, width, value = pos + 4, 4, pos + 8
        elif bytes(stream[pos + 4 : pos + 6]) in LONG_VRS:
            at, width, value = pos + 8, 4, pos + 12
        else:
            at, width, value = pos + 6, 2, pos + 8
        found.append((at, width, "little"))
        size = int.from_bytes(stream[at : at + width], "little")
        if size == 0xFFFFFFFF:
            break  # an undefined length: not walked
        pos = value + size
    return found


def hot_spots(stream: bytes | bytearray) -> list[int]:
    """Offsets worth mutating more often than the rest: headers and length fields."""
    spots = {at + i for at, _, _ in pdu_offsets(stream) for i in range(12)}
    spots |= {at + i for at, width, _ in length_fields(stream) for i in range(width)}
    return sorted(s for s in spots if s < len(stream))


INTERESTING = (0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x10, 0x20, 0x7F, 0x80, 0xFE, 0xFF)
DELTAS = (-1, 1, -2, 2, -4, 4, -6, 6, -256, 256, -65536, 65536)
OPS = ("flip", "byte", "insert", "delete", "truncate", "length", "splice", "pdu")


def mutate(data: st.DataObject, streams: dict[str, bytes]) -> tuple[str, bytes, list[str]]:
    """Draw a recorded stream and one to four mutations of it; return them and a log."""
    name = data.draw(st.sampled_from(sorted(streams)), label="stream")
    buf = bytearray(streams[name])
    log: list[str] = []
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        if not buf:
            break
        op = data.draw(st.sampled_from(OPS), label="op")
        hot = hot_spots(buf)
        anywhere = st.integers(0, len(buf) - 1)
        pos = data.draw(st.sampled_from(hot) | anywhere if hot else anywhere, label="at")
        if op == "flip":
            bit = data.draw(st.integers(0, 7))
            buf[pos] ^= 1 << bit
        elif op == "byte":
            buf[pos] = data.draw(st.sampled_from(INTERESTING) | st.integers(0, 255))
        elif op == "insert":
            buf[pos:pos] = data.draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del buf[pos : pos + data.draw(st.integers(1, 64))]
        elif op == "truncate":
            del buf[pos:]
        elif op == "length" and (fields := length_fields(buf)):
            at, width, order = data.draw(st.sampled_from(fields))
            old, top = int.from_bytes(buf[at : at + width], order), 1 << 8 * width
            extremes = st.sampled_from([0, 1, top - 1, top // 2])
            near = data.draw(st.booleans())
            new = old + data.draw(st.sampled_from(DELTAS)) if near else data.draw(extremes)
            buf[at : at + width] = (new % top).to_bytes(width, order)
            pos = at
        elif op == "splice":
            other = streams[data.draw(st.sampled_from(sorted(streams)))]
            a = data.draw(st.integers(0, len(other) - 1))
            piece = other[a : a + data.draw(st.integers(1, 256))]
            if data.draw(st.booleans()):
                buf[pos:pos] = piece
            else:
                buf[pos : pos + len(piece)] = piece
        elif op == "pdu" and (pdus := [bytes(buf[a : a + 6 + n]) for a, _, n in pdu_offsets(buf)]):
            # drop, repeat or swap whole PDUs
            i, j = (data.draw(st.integers(0, len(pdus) - 1)) for _ in range(2))
            how = data.draw(st.sampled_from(["drop", "repeat", "swap"]))
            if how == "drop":
                del pdus[i]
            elif how == "repeat":
                pdus.insert(j, pdus[i])
            else:
                pdus[i], pdus[j] = pdus[j], pdus[i]
            buf = bytearray(b"".join(pdus))
        log.append(f"{op}@{pos}")
    return name, bytes(buf), log


# -- one exchange -----------------------------------------------------------------------------


def send(port: int, stream: bytes, *, eof: bool) -> float:
    """Send ``stream`` (then half close, with ``eof``) and read until the SCP closes.

    Returns the seconds from our last byte to the end of the connection.
    """
    limit = END_AFTER_EOF if eof else TIMEOUT + 2.0
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(stream)
            if eof:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # aborted while we were sending: it ended
        last = time.monotonic()
        try:
            while time.monotonic() - last < limit:
                sock.settimeout(max(limit - (time.monotonic() - last), 0.01))
                if not sock.recv(1 << 16):
                    break
            else:
                raise AssertionError(f"the SCP kept the connection open {limit:g} s after")
        except TimeoutError:
            raise AssertionError(f"the SCP kept the connection open {limit:g} s after") from None
        except OSError:
            pass  # reset: it ended
        return time.monotonic() - last


def check_files(t: Target, new: set[Path]) -> None:
    """Nothing outside the output root; every new file with a final name has valid UIDs
    that match its name, as pydicom reads them."""
    assert {p.name for p in t.root.iterdir()} == {"out"}
    for path in new:
        assert path.is_relative_to(t.out)
        try:
            with path.open("rb") as fp, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "Expected explicit VR, but found implicit VR"
                ds = read_partial(fp, stop_when=lambda tag, _vr, _length: tag > 0x0020000E)
            raw = {tag: ds.get_item(tag) for tag in UID_TAGS}  # the bytes, whatever the VR
            uids = {tag: _text(elem.value) if elem else "" for tag, elem in raw.items()}
        except Exception as exc:
            raise AssertionError(f"{path} was stored but pydicom cannot read it: {exc}") from exc
        sop, study, series = uids[0x00080018], uids[0x0020000D], uids[0x0020000E]
        if CONFLICT_DIR_NAME in path.parts:
            named = path.name.startswith(f"{sop}.")
        else:
            named = path == t.out / study / series / f"{sop}.dcm"
        assert named and all(UID.match(uid) for uid in uids.values()), (path, uids)


def _text(value: object) -> str:
    return value.decode("latin-1").strip("\x00 ") if isinstance(value, bytes) else str(value)


def clean_store(t: Target) -> None:
    """A C-STORE of a fresh instance succeeds; its file is removed (the tree stays small)."""
    ds = make_dataset(study=CLEAN_STUDY, series=CLEAN_SERIES)
    with RawAssociation(t.port, called=AE_TITLE, timeout=5) as raw:
        assert raw.store(encode(ds), sop_instance=ds.SOPInstanceUID) == 0x0000
        raw.release()
    (t.out / CLEAN_STUDY / CLEAN_SERIES / f"{ds.SOPInstanceUID}.dcm").unlink()


def exchange(t: Target, stream: bytes, *, eof: bool, log: list[str]) -> None:
    before = t.final_files()
    took = send(t.port, stream, eof=eof)
    temp = t.out / TEMP_DIR_NAME
    wait_for(lambda: not any(temp.iterdir()), 2.0, what=f"no temp file left ({log})")
    assert not t.crashes, t.crashes
    check_files(t, t.final_files() - before)
    clean_store(t)
    assert took < (END_AFTER_EOF if eof else TIMEOUT + 2.0)


# -- tests ------------------------------------------------------------------------------------


def test_recorded_streams_are_valid(target: Target, streams: dict[str, bytes]) -> None:
    """Replayed as they are, the streams associate, store or echo, and release."""
    for name, stream in streams.items():
        kinds = [kind for _, kind, _ in pdu_offsets(stream)]
        assert kinds[0] == _ul.PDU_ASSOCIATE_RQ and kinds[-1] == _ul.PDU_RELEASE_RQ, name
        assert sum(offset + 6 + n for offset, _, n in pdu_offsets(stream)[-1:]) == len(stream)
        with socket.create_connection(("127.0.0.1", target.port), timeout=5) as sock:
            sock.sendall(stream)
            answer = b""
            while chunk := sock.recv(1 << 16):
                answer += chunk
        kinds = [kind for _, kind, _ in pdu_offsets(answer)]
        assert kinds[0] == _ul.PDU_ASSOCIATE_AC and kinds[-1] == _ul.PDU_RELEASE_RP, name
    assert len(pdu_offsets(streams["large"])) > 5  # the large dataset in several PDUs
    assert not target.crashes


@settings(
    max_examples=1500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_mutated_streams_never_crash_the_scp(
    target: Target, streams: dict[str, bytes], data: st.DataObject
) -> None:
    if not target.started:
        target.started = time.monotonic()
    name, stream, log = mutate(data, streams)  # always drawn: Hypothesis replays draws
    if time.monotonic() - target.started > BUDGET and not target.failed:
        return  # the budget is spent (not while Hypothesis is shrinking a failure)
    log.insert(0, name)
    target.examples += 1
    try:
        exchange(target, stream, eof=True, log=log)
    except BaseException:
        target.failed = True
        raise


@settings(max_examples=6, deadline=None, database=None)
@given(data=st.data())
def test_a_silent_sender_is_cut_off_by_the_scp_timeouts(
    target: Target, streams: dict[str, bytes], data: st.DataObject
) -> None:
    """Truncated and mutated streams, then silence (no half close): the ACSE or network
    timeout ends the connection."""
    name = data.draw(st.sampled_from(sorted(streams)), label="stream")
    stream = streams[name]
    cut = data.draw(st.integers(1, len(stream) - 1), label="cut")
    exchange(target, stream[:cut], eof=False, log=[f"{name}[:{cut}]"])


def test_a_header_uid_with_an_unknown_vr_is_refused(target: Target) -> None:
    """Fuzzer finding: one bit flipped in the dataset turned SOPClassUID's VR "UI" into
    "TI", which does not exist. The SCP read the value by its 2-byte length as if the VR
    were known, answered Success and named the file, which pydicom then could not read
    (NotImplementedError: Unknown Value Representation 'TI'). It is refused now (0xC000),
    and so is a VR in the wrong case ("cS"), which pydicom would read as implicit VR."""
    for bad in ((0x00080016, "TI"), (0x00080060, "cS")):
        ds = make_dataset()
        tag, vr = bad
        value = str(ds.SOPClassUID).encode() if tag == 0x00080016 else b"CT"
        data = encode(ds, raw={tag: (vr, value)})
        with RawAssociation(target.port, called=AE_TITLE, timeout=5) as raw:
            status = raw.store(data, sop_instance=ds.SOPInstanceUID)
            raw.release()
        assert status == 0xC000, (bad, status)
        assert not list(target.out.rglob(f"{ds.SOPInstanceUID}*"))
