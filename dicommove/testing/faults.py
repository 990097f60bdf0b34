"""A TCP fault proxy for tests: stall, cut or rewrite a stream after N bytes.

:class:`FaultProxy` listens on 127.0.0.1 and forwards each connection to a target.
Each direction (``up``: client to server, ``down``: server to client) may carry a
:class:`Fault` that acts once ``after`` bytes of that direction went through:
``"stall"`` forwards nothing more, not even the end of the stream (a black hole: what
arrives is read and dropped), while the other direction goes on; ``"cut"`` closes both
sides (FIN), ``"reset"`` with a TCP RST; ``"rewrite"`` replaces the bytes at offset
``after`` by ``patch`` (bytes, or a function of them), then passes through. It runs its
own event loop in a daemon thread, so that synchronous tests can use it (``with
FaultProxy(...) as proxy:``). Each connection is a :class:`Link` in :attr:`FaultProxy.links`:
bytes forwarded, when its fault fired, when it closed and, with ``record=True``, what
each end sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
import time
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from socket import SO_LINGER, SOL_SOCKET
from typing import Literal, TypeAlias

__all__ = ["DOWN", "UP", "Action", "Fault", "FaultProxy", "Link", "pdu_offsets"]

Action = Literal["pass", "stall", "cut", "reset", "rewrite"]
UP, DOWN = 0, 1  #: direction indices: client to server, server to client
_NO_LINGER = struct.pack("ii", 1, 0)
_Reader: TypeAlias = asyncio.StreamReader
_Writer: TypeAlias = asyncio.StreamWriter


@dataclass(frozen=True)
class Fault:
    """What to do to one direction of a connection once ``after`` bytes went through.

    Parameters
    ----------
    action : {"pass", "stall", "cut", "reset", "rewrite"}
        See the module docstring.
    after : int
        Bytes of the direction forwarded untouched before the fault acts.
    patch : bytes or callable
        ``"rewrite"``: what replaces the ``width`` bytes at ``after`` (any length), or a
        function of those bytes returning it.
    width : int
        ``"rewrite"``: bytes replaced (default ``len(patch)``, or 1 for a function).
    connections : container of int, optional
        The connections (0 = the first accepted) it acts on; ``None``: every one.
    """

    action: Action = "pass"
    after: int = 0
    patch: bytes | Callable[[bytes], bytes] = b""
    width: int = 0
    connections: Container[int] | None = None

    def applies(self, index: int) -> bool:
        """Whether this fault acts on connection number ``index``."""
        return self.action != "pass" and (self.connections is None or index in self.connections)


@dataclass
class Link:
    """One proxied connection: what went through it, and what happened to it."""

    index: int
    forwarded: list[int] = field(default_factory=lambda: [0, 0])  # bytes, per direction
    sent: tuple[bytearray, bytearray] = field(default_factory=lambda: (bytearray(), bytearray()))
    fired_at: list[float | None] = field(default_factory=lambda: [None, None])  # monotonic
    ended_at: list[float | None] = field(default_factory=lambda: [None, None])  # EOF or error
    closed_at: float | None = None  # both directions ended
    writers: list[_Writer] = field(default_factory=list, repr=False)

    def close(self, *, reset: bool = False) -> None:
        """Close both sides (flushing what was forwarded), or reset them (RST)."""
        for writer in self.writers:
            if not reset:
                writer.close()
                continue
            with contextlib.suppress(OSError, AttributeError):  # SO_LINGER 0: close sends RST
                writer.get_extra_info("socket").setsockopt(SOL_SOCKET, SO_LINGER, _NO_LINGER)
            writer.transport.abort()


class FaultProxy:
    """A loopback TCP proxy to ``target`` that injects :class:`Fault` s; see the module.

    Parameters
    ----------
    target : (str, int)
        Where connections are forwarded.
    up, down : Fault, optional
        The faults of each direction; a new connection takes those set when it arrives.
    port : int
        The port to listen on (0: a free one, in :attr:`port` once started).
    record : bool
        Keep the bytes each end sent, in :attr:`Link.sent`.
    """

    def __init__(
        self,
        target: tuple[str, int],
        *,
        up: Fault | None = None,
        down: Fault | None = None,
        port: int = 0,
        record: bool = False,
    ) -> None:
        self.target, self.up, self.down, self.port, self.record = target, up, down, port, record
        self.links: list[Link] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        return len(self.links)

    @property
    def open_connections(self) -> int:
        """Connections not closed yet."""
        return sum(1 for link in list(self.links) if link.closed_at is None)

    def forwarded(self, direction: int) -> int:
        """Bytes forwarded so far in ``direction`` (:data:`UP` or :data:`DOWN`)."""
        return sum(link.forwarded[direction] for link in list(self.links))

    def start(self) -> FaultProxy:
        """Start listening on 127.0.0.1 in a thread of its own; return ``self``."""
        if self._loop is not None:
            return self
        loop = self._loop = asyncio.new_event_loop()
        listen = asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self._server = loop.run_until_complete(listen)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._thread = threading.Thread(target=loop.run_forever, name="FaultProxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listener and every connection, then end the thread."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        assert self._thread is not None
        self._thread.join(timeout=10)
        loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in self.links:
            link.close(reset=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _accept(self, reader: _Reader, writer: _Writer) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        link = Link(len(self.links))
        self.links.append(link)
        up, down = (f if f and f.applies(link.index) else None for f in (self.up, self.down))
        link.writers = [writer]
        try:
            far_reader, far_writer = await asyncio.open_connection(*self.target)
            link.writers.append(far_writer)
            await asyncio.gather(
                self._pipe(link, UP, reader, far_writer, up),
                self._pipe(link, DOWN, far_reader, writer, down),
            )
        except (OSError, asyncio.CancelledError):  # the target is down, or we stop
            link.close(reset=True)
        finally:
            link.close()
            link.closed_at = time.monotonic()
            self._tasks.discard(task)

    async def _pipe(self, link: Link, d: int, src: _Reader, dst: _Writer, f: Fault | None) -> None:
        """Forward one direction until EOF, acting on the fault ``f`` at its offset."""
        seen = 0  # bytes read from the source
        held = bytearray()  # "rewrite": the bytes at the offset, until there are enough
        stalled = False
        try:
            while data := await src.read(1 << 16):
                if self.record:
                    link.sent[d].extend(data)
                start, seen = seen, seen + len(data)
                if f is not None and seen > f.after:
                    cut = max(f.after - start, 0)
                    await self._write(link, d, dst, data[:cut])
                    data = data[cut:]
                    if f.action == "rewrite":
                        held += data
                        patch = f.patch
                        width = f.width or (1 if callable(patch) else len(patch))
                        if len(held) < width:
                            continue
                        new = patch(bytes(held[:width])) if callable(patch) else patch
                        data, held = new + held[width:], bytearray()
                    link.fired_at[d] = time.monotonic()
                    if f.action == "stall":
                        stalled = True
                    elif f.action in ("cut", "reset"):
                        link.close(reset=f.action == "reset")
                        return
                    f = None
                if not stalled:
                    await self._write(link, d, dst, data)
            await self._write(link, d, dst, bytes(held))
            if dst.can_write_eof() and not dst.is_closing() and not stalled:
                dst.write_eof()  # a half close, passed on
        except (ConnectionError, OSError):
            link.close(reset=True)  # a reset is passed on as one
        finally:
            link.ended_at[d] = time.monotonic()

    @staticmethod
    async def _write(link: Link, d: int, writer: _Writer, data: bytes) -> None:
        if data and not writer.is_closing():
            writer.write(data)
            link.forwarded[d] += len(data)
            await writer.drain()


def pdu_offsets(stream: bytes | bytearray) -> list[tuple[int, int, int]]:
    """Split a DICOM upper-layer stream into PDUs: ``(offset, type, announced length)``."""
    found, at = [], 0
    while at + 6 <= len(stream):
        pdu_type, length = stream[at], int.from_bytes(stream[at + 2 : at + 6], "big")
        found.append((at, pdu_type, length))
        at += 6 + length
    return found
