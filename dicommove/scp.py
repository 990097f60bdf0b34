"""The embedded Store SCP, network side: a DICOM upper-layer acceptor on asyncio.

One event loop serves every store association, with no thread per connection.
Each connection is an :class:`asyncio.BufferedProtocol` that parses PDU and PDV
headers as bytes arrive, checks each PDU type against a cap at its header before
its body is read, and hands dataset fragments straight to an
:class:`~dicommove.store.Incoming` (memory stays flat whatever the instance
size). A C-STORE is answered only after its file has its final name.

Who may connect and for how long:

* a connection that has not completed its A-ASSOCIATE-RQ holds no association
  slot; at most ``max_pending`` such connections are kept, and at most
  ``max_pending_per_ip`` from one address (the oldest is dropped for a new one, so
  a flood from one address never evicts another's), each for at most
  ``acse_timeout`` seconds (with TLS, the handshake has that long too);
* the called AE title must be ours, the calling AE title and the peer's address
  must be allowed; only then does the association take one of
  ``max_associations`` slots;
* an established association that is silent for ``network_timeout`` seconds is
  aborted, and so is one whose message trickles in below ``min_rate`` bytes per
  second over ``rate_window`` seconds.

With an :class:`ssl.SSLContext` (``ssl=``) it speaks DICOM TLS (PS3.15 B.1), see
:mod:`dicommove.tls`.

:class:`StoreSCP` runs on the caller's event loop (``await scp.astart()``) or,
through ``start()``/``stop()``, on dicommove's own loop thread.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections import Counter, deque
from collections.abc import Callable, Collection

from . import _sop, _ul
from ._acceptor import MAX_ASSOCIATE_RQ, Connection, Refusal
from ._defaults import DEFAULT_MAX_PDU
from ._loop import loop_thread
from .errors import LocalSetupError
from .store import (
    CONFLICT_DIR_NAME,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    TEMP_DIR_NAME,
    AcceptCallback,
    Incoming,
    InstanceStore,
    Received,
    is_valid_uid,
)

__all__ = [
    "BUSY",
    "CONFLICT_DIR_NAME",
    "DEFAULT_MAX_PDU",
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "MAX_ASSOCIATE_RQ",
    "TEMP_DIR_NAME",
    "Incoming",
    "InstanceStore",
    "Received",
    "Refusal",
    "StoreSCP",
    "is_valid_uid",
]

logger = logging.getLogger("dicommove")

#: The largest P-DATA PDU we read when our maximum is "unlimited" (0).
MAX_UNLIMITED_PDU = 1 << 24
#: The reason of a transient reject (all association slots taken): the PACS retries.
BUSY = "too many store associations at once"
#: How often idle and slow connections are looked at (seconds).
_TICK = 0.5

InstanceCallback = Callable[[Received], None]


class StoreSCP:
    """Our DICOM Storage SCP: negotiates, streams C-STOREs to disk, answers after rename.

    Parameters
    ----------
    store : InstanceStore
        Where instances are written.
    ae_title : str
        Our AE title; associations calling another title are rejected.
    host, port : str, int
        The address to listen on (``""`` = all interfaces, port 0 = any free one).
    on_instance : callable
        Called with each :class:`Received` record, in the event loop, right after the
        C-STORE response is sent (the record's status is final by then). It must not
        block.
    allowed_calling_aes : collection of str, optional
        Calling AE titles accepted; ``None`` accepts any.
    allowed_hosts : collection of str, optional
        Peer IP addresses accepted; ``None`` accepts any.
    accept : callable, optional
        Called with a record before its file gets its final name; ``False``
        refuses it (status 0x0124) and nothing is written.
    max_pdu : int
        The largest P-DATA PDU we accept (and announce); 0 announces no limit
        (we still read at most 16 MiB per PDU).
    network_timeout : float
        Seconds of silence after which a store association is aborted.
    acse_timeout : float
        Seconds a peer has, from connecting, to complete its A-ASSOCIATE-RQ.
    accept_unknown_sop_classes : bool
        Also accept SOP classes that are not standard Storage classes.
    max_associations : int
        Concurrent store associations; more are rejected as transient.
    max_pending : int
        Connections kept that have not associated yet; a new one drops the oldest.
    max_pending_per_ip : int
        The same, from one IP address.
    min_rate : int
        Bytes per second a message in progress must arrive at, measured over
        ``rate_window`` seconds; 0 turns the check off.
    rate_window : float
        Seconds over which ``min_rate`` is measured.
    ssl : ssl.SSLContext, optional
        Speak TLS with this server context (see :func:`dicommove.tls.server_context`).

    Attributes
    ----------
    refusals : collections.deque of Refusal
        The last 100 associations rejected (calling AE, called AE, address, why).
    """

    def __init__(
        self,
        store: InstanceStore,
        *,
        ae_title: str,
        host: str,
        port: int,
        on_instance: InstanceCallback,
        allowed_calling_aes: Collection[str] | None = None,
        allowed_hosts: Collection[str] | None = None,
        accept: AcceptCallback | None = None,
        max_pdu: int = DEFAULT_MAX_PDU,
        network_timeout: float = 60.0,
        acse_timeout: float = 10.0,
        accept_unknown_sop_classes: bool = False,
        max_associations: int = 16,
        max_pending: int = 32,
        max_pending_per_ip: int = 4,
        min_rate: int = 1024,
        rate_window: float = 15.0,
        ssl: ssl.SSLContext | None = None,
    ) -> None:
        self.store = store
        self.ae_title = ae_title
        self.host = host
        self.port = port
        self.on_instance = on_instance
        self.allowed_calling_aes = (
            frozenset(allowed_calling_aes) if allowed_calling_aes is not None else None
        )
        self.allowed_hosts = frozenset(allowed_hosts) if allowed_hosts is not None else None
        self.accept = accept
        self.max_pdu = max_pdu
        self.read_limit = max_pdu or MAX_UNLIMITED_PDU
        self.network_timeout = network_timeout
        self.acse_timeout = acse_timeout
        self.accept_unknown_sop_classes = accept_unknown_sop_classes
        self.max_associations = max_associations
        self.max_pending = max_pending
        self.max_pending_per_ip = max_pending_per_ip
        self.min_rate = min_rate
        self.rate_window = rate_window
        self.ssl = ssl
        self.refusals: deque[Refusal] = deque(maxlen=100)
        self._dropped: Counter[str] = Counter()  # pending connections dropped, by address
        self.fsync_each = store.durability == "instance"
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._pending: dict[Connection, None] = {}  # not associated yet, oldest first
        self._associations: set[Connection] = set()

    @property
    def running(self) -> bool:
        """Whether the listener is up."""
        return self._server is not None

    # -- life cycle ----------------------------------------------------------
    async def astart(self) -> None:
        """Start listening on the running event loop.

        Raises
        ------
        LocalSetupError
            If the port cannot be bound (in use, or not permitted).
        """
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(
                lambda: Connection(self),
                host=self.host or None,
                port=self.port,
                family=socket.AF_INET,
                reuse_address=True,
                backlog=128,
                ssl=self.ssl,
                ssl_handshake_timeout=self.acse_timeout if self.ssl is not None else None,
            )
        except OSError as exc:
            hint = (
                "another program (or another dicommove session) is using it: "
                "stop it or choose another port (port=... or -p PORT)"
                if exc.errno == errno.EADDRINUSE
                else "choose another port or bind address"
            )
            raise LocalSetupError(
                f"cannot listen on {self.host or '*'}:{self.port} for the store SCP: "
                f"{exc.strerror or exc}; {hint}"
            ) from exc
        self._server, self._loop = server, loop
        self.port = int(server.sockets[0].getsockname()[1])
        self._ticker = loop.call_later(_TICK, self._tick)
        logger.debug("store SCP %s listening on %s:%s", self.ae_title, self.host, self.port)

    async def astop(self) -> None:
        """Stop listening and abort the store associations still open."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        if self._ticker is not None:
            self._ticker.cancel()
        for conn in [*self._pending, *self._associations]:
            conn.close("the store SCP stopped")
        await server.wait_closed()
        logger.debug("store SCP %s stopped", self.ae_title)

    def start(self) -> None:
        """Start listening on dicommove's own event loop thread (see :meth:`astart`)."""
        loop_thread().run(self.astart())

    def stop(self) -> None:
        """Stop listening (see :meth:`astop`), from any thread but the loop's own."""
        if self._server is not None:
            loop_thread().run(self.astop())

    def _tick(self) -> None:
        """Drop connections that are too slow to associate, silent, or trickling."""
        assert self._loop is not None
        now = self._loop.time()
        for conn in list(self._pending):
            if now - conn.connected_at > self.acse_timeout:
                conn.close(f"association set-up took more than {self.acse_timeout:g} s", log=True)
        for conn in list(self._associations):
            if now - conn.last_activity > self.network_timeout:
                conn.abort(f"network timeout: no data for {self.network_timeout:g} s")
            elif self.min_rate:
                self._check_rate(conn, now)
        for ip, n in self._dropped.items():
            logger.warning(
                "store SCP dropped %d connections from %s that had not associated "
                "(more than %d waiting from one address)",
                n,
                ip,
                self.max_pending_per_ip,
            )
        self._dropped.clear()
        if self._server is not None:
            self._ticker = self._loop.call_later(_TICK, self._tick)

    def _check_rate(self, conn: Connection, now: float) -> None:
        """Abort an association whose message in progress arrives too slowly."""
        if not conn.mid_message:
            conn.rate_mark = None
            return
        if conn.rate_mark is None:
            conn.rate_mark = (now, conn.received)
            return
        since, before = conn.rate_mark
        if now - since < self.rate_window:
            return
        got = conn.received - before
        if got < self.min_rate * (now - since):
            conn.abort(
                f"too slow: {got} bytes of a message in {now - since:.1f} s, below the "
                f"minimum of {self.min_rate} bytes/s (min_rate)"
            )
        else:
            conn.rate_mark = (now, conn.received)

    def _connected(self, conn: Connection) -> None:
        same = [c for c in self._pending if c.ip == conn.ip]
        if len(same) >= self.max_pending_per_ip:
            self._drop(same[0])
            self._dropped[conn.ip] += 1
        elif len(self._pending) >= self.max_pending:
            self._drop(next(iter(self._pending)))
            logger.warning(
                "store SCP: too many connections waiting to associate: dropped the oldest"
            )
        self._pending[conn] = None

    def _drop(self, conn: Connection) -> None:
        self._pending.pop(conn, None)
        conn.close("too many connections waiting to associate: dropped the oldest")

    def _gone(self, conn: Connection) -> None:
        self._pending.pop(conn, None)
        self._associations.discard(conn)

    def _admit(
        self, conn: Connection, rq: _ul.AssociateRequest
    ) -> tuple[int, int, int, str] | None:
        """Decide on an A-ASSOCIATE-RQ; return the reject (result, source, reason, why)."""
        if rq.application_context != _ul.APPLICATION_CONTEXT:
            return 1, 1, 2, f"application context {rq.application_context!r} not supported"
        if rq.called_ae != self.ae_title:
            return 1, 1, 7, f"called AE {rq.called_ae!r} is not ours ({self.ae_title!r})"
        if self.allowed_calling_aes is not None and rq.calling_ae not in self.allowed_calling_aes:
            return 1, 1, 3, f"calling AE {rq.calling_ae!r} is not allowed"
        if self.allowed_hosts is not None and conn.ip not in self.allowed_hosts:
            return 1, 1, 1, f"address {conn.ip} is not allowed"
        if len(self._associations) >= self.max_associations:
            return 2, 3, 2, BUSY
        self._pending.pop(conn, None)
        self._associations.add(conn)
        return None

    def negotiate(self, cx: _ul.PresentationContext) -> None:
        """Set the result and transfer syntax of one proposed presentation context."""
        if cx.abstract_syntax == _sop.VERIFICATION:
            ours: Collection[str] = (_sop.IMPLICIT_VR_LE, _sop.EXPLICIT_VR_LE)
        elif cx.abstract_syntax in _sop.STORAGE_CLASSES or (
            self.accept_unknown_sop_classes and is_valid_uid(cx.abstract_syntax)
        ):
            ours = _sop.TRANSFER_SYNTAXES
        else:
            cx.result = _ul.ABSTRACT_SYNTAX_NOT_SUPPORTED
            return
        usable = [ts for ts in cx.transfer_syntaxes if ts in ours]
        if not usable:
            cx.result = _ul.TRANSFER_SYNTAXES_NOT_SUPPORTED
            return
        # Uncompressed explicit VR when offered, else the sender's first choice.
        cx.transfer_syntax = _sop.EXPLICIT_VR_LE if _sop.EXPLICIT_VR_LE in usable else usable[0]
        cx.result = _ul.ACCEPTED
