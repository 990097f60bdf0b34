"""Raw-socket attacks on a store SCP: forged PS3.8 bytes, and how the SCP answered.

Each :class:`Attack` is the bytes a hostile or broken peer sends: some before any
association, some after a valid A-ASSOCIATE-RQ (then the SCP must have accepted it).
:func:`run_attack` sends one over a fresh TCP connection, optionally from another
loopback address, keeps streaming filler behind it (as a peer announcing 2 GiB would),
and reports the answer (an A-ABORT, a reject, a close) and how long it took::

    from dicommove.testing.hostile import ATTACKS, run_attack

    for attack in ATTACKS:
        print(run_attack("127.0.0.1", 11112, attack, called_ae="DICOMMOVE"))

``python -m dicommove.testing.hostile`` runs every attack against a store SCP in a
child process and prints the table of bytes sent, time to the answer and the SCP's
memory growth (``benchmarks/attacks.py`` does the same).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .. import _sop, _ul

__all__ = ["ATTACKS", "Attack", "AttackError", "Outcome", "associate_rq", "run_attack"]

#: The contexts a hostile association proposes: CT Image Storage and Verification.
CT_CONTEXT = 1
ECHO_CONTEXT = 3
_CT = "1.2.840.10008.5.1.4.1.1.2"
_GIB2 = 0x7FFFFFFF


class AttackError(RuntimeError):
    """The attack could not be set up (e.g. the SCP rejected the valid association)."""


@dataclass(frozen=True)
class Attack:
    """Bytes a hostile peer sends.

    Parameters
    ----------
    name : str
        Short identifier.
    what : str
        What the bytes are, in words.
    payload : callable
        Returns the forged bytes.
    associate : bool
        Send a valid A-ASSOCIATE-RQ first (and wait for the A-ASSOCIATE-AC).
    follow : int
        Filler bytes streamed after the payload (what the announced length promised).
    """

    name: str
    what: str
    payload: Callable[[], bytes]
    associate: bool = True
    follow: int = 0


@dataclass(frozen=True)
class Outcome:
    """How the SCP answered an attack.

    ``answer`` is ``"abort"`` (an A-ABORT PDU), ``"reject"`` (A-ASSOCIATE-RJ),
    ``"close"`` (the connection closed without either) or ``"none"`` (still open at the
    timeout). ``seconds`` runs from the last payload byte sent to the answer.
    """

    attack: str
    sent: int
    answer: str
    seconds: float


def _pdu(pdu_type: int, body: bytes, length: int | None = None) -> bytes:
    return struct.pack(">BBI", pdu_type, 0, len(body) if length is None else length) + body


def _pdv(context_id: int, control: int, data: bytes, length: int | None = None) -> bytes:
    return (
        struct.pack(">IBB", len(data) + 2 if length is None else length, context_id, control) + data
    )


def associate_rq(called_ae: str, calling_ae: str = "HOSTILE") -> bytes:
    """Return a valid A-ASSOCIATE-RQ for CT Image Storage (1) and Verification (3)."""
    return _ul.encode_associate_rq(
        called_ae=called_ae,
        calling_ae=calling_ae,
        contexts=[
            _ul.PresentationContext(CT_CONTEXT, _CT, [_sop.EXPLICIT_VR_LE]),
            _ul.PresentationContext(ECHO_CONTEXT, _sop.VERIFICATION, [_sop.IMPLICIT_VR_LE]),
        ],
        max_pdu=16384,
        implementation_class_uid="1.2.3.4",
        implementation_version_name="HOSTILE",
    )


def _echo_command() -> bytes:
    return _ul.encode_request(_ul.C_ECHO_RQ, 7, sop_class=_sop.VERIFICATION)


def _store_command() -> bytes:
    return _ul.encode_request(_ul.C_STORE_RQ, 9, sop_class=_CT, has_dataset=True)


def _inconsistent_rq() -> bytes:
    body = bytearray(associate_rq("X")[6:])
    body[68 + 2 : 68 + 4] = struct.pack(">H", 0xFFF0)  # the first item overruns the PDU
    return _pdu(_ul.PDU_ASSOCIATE_RQ, bytes(body))


ATTACKS: tuple[Attack, ...] = (
    # -- before any association ------------------------------------------------------------
    Attack(
        "associate-rq-2gib",
        "A-ASSOCIATE-RQ announcing 2 GiB, then 4 MiB of it",
        lambda: _pdu(_ul.PDU_ASSOCIATE_RQ, b"", _GIB2),
        associate=False,
        follow=4 << 20,
    ),
    Attack(
        "associate-rq-short",
        "A-ASSOCIATE-RQ of 10 bytes (its fixed fields need 68)",
        lambda: _pdu(_ul.PDU_ASSOCIATE_RQ, bytes(10)),
        associate=False,
    ),
    Attack(
        "associate-rq-inconsistent",
        "A-ASSOCIATE-RQ whose first item's length runs past the PDU",
        _inconsistent_rq,
        associate=False,
    ),
    Attack(
        "unknown-pdu-first",
        "PDU type 0x09 as the first PDU",
        lambda: _pdu(0x09, bytes(10)),
        associate=False,
    ),
    Attack(
        "p-data-before-associate",
        "a C-ECHO in P-DATA before any A-ASSOCIATE-RQ",
        lambda: _ul.encode_command_pdata(ECHO_CONTEXT, _echo_command()),
        associate=False,
    ),
    # -- on an established association -----------------------------------------------------
    Attack(
        "p-data-2gib",
        "P-DATA announcing 2 GiB, then 4 MiB of it",
        lambda: _pdu(_ul.PDU_P_DATA, b"", _GIB2),
        follow=4 << 20,
    ),
    Attack(
        "p-data-over-max",
        "P-DATA of 16 MiB + 1 byte (over any maximum we announce)",
        lambda: _pdu(_ul.PDU_P_DATA, b"", (16 << 20) + 1),
        follow=1 << 20,
    ),
    Attack(
        "release-rq-2gib",
        "A-RELEASE-RQ announcing 2 GiB (4 bytes expected)",
        lambda: _pdu(_ul.PDU_RELEASE_RQ, b"", _GIB2),
        follow=1 << 20,
    ),
    Attack(
        "release-rq-short",
        "A-RELEASE-RQ of 2 bytes (4 expected)",
        lambda: _pdu(_ul.PDU_RELEASE_RQ, bytes(2)),
    ),
    Attack(
        "abort-long",
        "A-ABORT of 100 bytes (4 expected)",
        lambda: _pdu(_ul.PDU_ABORT, bytes(100)),
    ),
    Attack(
        "unknown-pdu",
        "PDU type 0x09 on the association",
        lambda: _pdu(0x09, bytes(10)),
    ),
    Attack(
        "second-associate-rq",
        "a second A-ASSOCIATE-RQ on the association",
        lambda: associate_rq("X"),
    ),
    Attack(
        "p-data-too-short",
        "P-DATA of 3 bytes (a PDV item header needs 6)",
        lambda: _pdu(_ul.PDU_P_DATA, bytes(3)),
    ),
    Attack(
        "pdv-too-short",
        "a PDV item of length 1 (2 at least)",
        lambda: _pdu(_ul.PDU_P_DATA, _pdv(ECHO_CONTEXT, 0x03, b"", length=1)),
    ),
    Attack(
        "pdv-longer-than-pdu",
        "a PDV item of 100 bytes in a P-DATA of 20",
        lambda: _pdu(_ul.PDU_P_DATA, _pdv(ECHO_CONTEXT, 0x03, bytes(14), length=100)),
    ),
    Attack(
        "unknown-context-id",
        "a C-ECHO on presentation context 99, never negotiated",
        lambda: _ul.encode_command_pdata(99, _echo_command()),
    ),
    Attack(
        "command-undecodable",
        "a last command fragment of random bytes",
        lambda: _ul.encode_command_pdata(ECHO_CONTEXT, b"\x00\x00\x00\x00\xff\xff\xff\xff" * 4),
    ),
    Attack(
        "command-too-long",
        "command fragments adding up to 1 MiB",
        lambda: b"".join(
            _pdu(_ul.PDU_P_DATA, _pdv(ECHO_CONTEXT, 0x01, bytes(16000))) for _ in range(66)
        ),
    ),
    Attack(
        "dataset-after-command-only",
        "a C-ECHO (no dataset), then a dataset fragment",
        lambda: (
            _ul.encode_command_pdata(ECHO_CONTEXT, _echo_command())
            + _pdu(_ul.PDU_P_DATA, _pdv(ECHO_CONTEXT, 0x02, bytes(64)))
        ),
    ),
    Attack(
        "store-dataset-mismatch",
        "a C-STORE command, then a command where its dataset should be",
        lambda: (
            _ul.encode_command_pdata(CT_CONTEXT, _store_command())
            + _ul.encode_command_pdata(CT_CONTEXT, _echo_command())
        ),
    ),
)


def _read_answer(sock: socket.socket, deadline: float) -> str:
    """Read PDUs until an A-ABORT, a reject, a close, or ``deadline``."""
    buf = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return "none"
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return "none"
        except OSError:  # reset
            return "close"
        if not chunk:
            return "close"
        buf += chunk
        while len(buf) >= 6:
            pdu_type, _, length = struct.unpack_from(">BBI", buf)
            if pdu_type == _ul.PDU_ABORT:
                return "abort"
            if pdu_type == _ul.PDU_ASSOCIATE_RJ:
                return "reject"
            if len(buf) < 6 + length:
                break
            buf = buf[6 + length :]  # e.g. the C-ECHO-RSP before an abort


def _stream(sock: socket.socket, data: bytes, follow: int, sent: list[int]) -> None:
    filler = bytes(64 * 1024)
    try:
        sock.sendall(data)
        sent[0] += len(data)
        while sent[1] < follow:
            n = sock.send(filler[: follow - sent[1]])
            sent[1] += n
    except OSError:
        pass  # the SCP closed on us: expected


def run_attack(
    host: str,
    port: int,
    attack: Attack,
    *,
    called_ae: str,
    calling_ae: str = "HOSTILE",
    source: str | None = None,
    timeout: float = 5.0,
) -> Outcome:
    """Send one attack on a new connection and report the SCP's answer.

    Parameters
    ----------
    host, port : str, int
        The store SCP.
    attack : Attack
        What to send.
    called_ae, calling_ae : str
        The AE titles of the valid A-ASSOCIATE-RQ sent first (``attack.associate``);
        the calling AE must be one the SCP accepts.
    source : str, optional
        A local address to connect from (e.g. ``127.0.0.2``).
    timeout : float
        How long to wait for an answer.

    Raises
    ------
    AttackError
        If the SCP does not accept the valid association sent first.
    """
    sock = socket.create_connection(
        (host, port), timeout=timeout, source_address=(source, 0) if source else None
    )
    with sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sent = [0, 0]  # payload and association bytes, filler bytes
        if attack.associate:
            rq = associate_rq(called_ae, calling_ae)
            sock.sendall(rq)
            sent[0] += len(rq)
            header = sock.recv(6)
            if len(header) < 6 or header[0] != _ul.PDU_ASSOCIATE_AC:
                raise AttackError(f"the valid A-ASSOCIATE-RQ was not accepted: {header!r}")
            length = struct.unpack(">I", header[2:6])[0]
            while length:
                length -= len(sock.recv(length))
        payload = attack.payload()
        writer = threading.Thread(target=_stream, args=(sock, payload, attack.follow, sent))
        started = time.monotonic()
        writer.start()
        answer = _read_answer(sock, started + timeout)
        seconds = time.monotonic() - started
        sock.close()
        writer.join(timeout)
    return Outcome(attack.name, sent[0] + sent[1], answer, seconds)
