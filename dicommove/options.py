"""Typed options of a session: timeouts, retries and the embedded store SCP.

Each is a frozen dataclass that checks its values when made, so that a bad value
is an :class:`~dicommove.InputError` before anything is sent::

    from dicommove import Session, Timeouts, RetryPolicy, StoreOptions

    Session(
        "PACS@10.0.0.5:104",
        timeouts=Timeouts(inactivity=120, deadline=3600),
        retry=RetryPolicy(retries=5, backoff=2.0),
        store=StoreOptions(durability="instance", allowed_hosts=["10.0.0.5"]),
    )

Every field has the default a session uses when the object is not given.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Literal

from ._defaults import DEFAULT_MAX_PDU
from .errors import InputError
from .node import validate_ae_title
from .store import DURABILITIES, Durability

__all__ = ["MAX_WORKERS", "RetryPolicy", "StoreOptions", "Timeouts", "check_session_options"]

#: The most parallel associations a session opens (the store SCP takes 16 at once).
MAX_WORKERS = 16


def _seconds(name: str, value: float | None, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or value < 0 or math.isnan(value):  # type: ignore[operator,arg-type]
        raise InputError(f"{name}={value!r}: use a number of seconds >= 0")


@dataclass(frozen=True)
class Timeouts:
    """How long each wait may take, in seconds.

    Parameters
    ----------
    connect : float
        The TCP connection to the PACS.
    acse : float
        The PACS's reply to our association request; also how long a connection to
        our store SCP has to complete its own association request.
    dimse : float
        A C-ECHO or C-FIND response.
    network : float
        Silence after which a store association is aborted.
    inactivity : float
        How long a C-MOVE may go without any sign of life before it is cancelled:
        every pending response and every instance received for it counts, so a slow
        PACS that sends no pending responses is not cut off while its instances keep
        arriving. Its rows then read ``timeout``.
    request : float, optional
        Longest time one C-MOVE may take, from its request to its final response
        (default: no limit). Its rows then read ``timeout``.
    deadline : float, optional
        Longest time a whole move may take (default: no limit). When it passes, the
        active moves are cancelled and :class:`~dicommove.MoveTimeout` is raised.
    cancel_grace : float
        After a C-CANCEL, how long to wait for the PACS's final response before
        aborting the association.
    """

    connect: float = 10.0
    acse: float = 30.0
    dimse: float = 600.0
    network: float = 60.0
    inactivity: float = 600.0
    request: float | None = None
    deadline: float | None = None
    cancel_grace: float = 5.0

    def __post_init__(self) -> None:
        for name in ("connect", "acse", "dimse", "network", "inactivity", "cancel_grace"):
            _seconds(f"Timeouts.{name}", getattr(self, name))
        _seconds("Timeouts.request", self.request, optional=True)
        _seconds("Timeouts.deadline", self.deadline, optional=True)


@dataclass(frozen=True)
class RetryPolicy:
    """How a request is tried again after a transient failure.

    Transient: connection refused or reset, association aborted, association
    rejected as transient (busy), status 0xA702 (out of resources). A retry asks
    only for what has not arrived.

    Parameters
    ----------
    retries : int
        Tries after the first (default 3).
    backoff : float
        Seconds before the first retry, doubled each time, with a random jitter of
        +-50 % so that workers do not retry in step.
    """

    retries: int = 3
    backoff: float = 1.0

    def __post_init__(self) -> None:
        if not (isinstance(self.retries, int) and not isinstance(self.retries, bool)):
            raise InputError(f"retries={self.retries!r}: use an integer >= 0")
        if self.retries < 0:
            raise InputError(f"retries={self.retries!r}: use an integer >= 0")
        _seconds("RetryPolicy.backoff", self.backoff)


@dataclass(frozen=True)
class StoreOptions:
    """The embedded store SCP: who may send, how much, and when files reach the disk.

    Parameters
    ----------
    bind : str, optional
        The address it listens on. By default ``127.0.0.1`` when the PACS is on
        loopback, else all interfaces (the PACS must be able to connect back).
    max_pdu : int
        The largest PDU we receive, announced on every association (default 262144);
        0 announces no limit.
    allowed_aes : collection of str, or "ANY"
        Calling AE titles accepted besides the PACS's own. When the PACS's address
        names no AE title (``host:port``), only these are accepted. ``"ANY"`` (alone or
        in the list) accepts any calling AE title: an explicit opt-in, since AE titles
        are not authentication.
    allowed_hosts : collection of str, optional
        IP addresses accepted (default: any).
    unrequested : {"keep", "refuse"}
        An instance that arrives during a move but matches no request: keep it
        (status ``unrequested``) or refuse the C-STORE.
    accept_unknown_sop_classes : bool
        Also accept private or unknown SOP classes (default: standard Storage only).
    durability : {"request", "instance", "none"}
        When files reach stable storage. ``"request"`` (default): once per request,
        in one pass off the hot path, before the journal records it complete and
        before ``move()`` returns. ``"instance"``: each file before its C-STORE is
        answered (slower on many small files). ``"none"``: left to the OS.
    max_associations : int
        Store associations at once; more are rejected as transient.
    max_pending_per_ip : int
        Connections from one IP address that have not associated yet (default 4); a new
        one drops that address's oldest, so a flood from one address never takes
        another's place.
    min_rate : int
        Bytes per second a message in progress must arrive at (default 1024), measured
        over ``rate_window`` seconds; slower associations are aborted. 0: no check.
    rate_window : float
        Seconds over which ``min_rate`` is measured (default 15).
    """

    bind: str | None = None
    max_pdu: int = DEFAULT_MAX_PDU
    allowed_aes: Collection[str] | Literal["ANY"] = ()
    allowed_hosts: Collection[str] | None = None
    unrequested: Literal["keep", "refuse"] = "keep"
    accept_unknown_sop_classes: bool = False
    durability: Durability = "request"
    max_associations: int = 16
    max_pending_per_ip: int = 4
    min_rate: int = 1024
    rate_window: float = 15.0
    _aes: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)
    _any: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (isinstance(self.max_pdu, int) and 0 <= self.max_pdu < 1 << 32):
            raise InputError(f"max_pdu={self.max_pdu!r}: use 0 (no limit) or a number of bytes")
        if self.unrequested not in ("keep", "refuse"):
            raise InputError(f"unrequested={self.unrequested!r}: use 'keep' or 'refuse'")
        if self.durability not in DURABILITIES:
            raise InputError(f"durability={self.durability!r}: use 'request', 'instance' or 'none'")
        if self.allowed_aes == "ANY":
            object.__setattr__(self, "allowed_aes", ("ANY",))
        if isinstance(self.allowed_aes, str) or isinstance(self.allowed_hosts, str):
            raise InputError(
                "allowed_aes and allowed_hosts take a list of strings, not a string "
                "(or allowed_aes='ANY')"
            )
        for name in ("max_associations", "max_pending_per_ip"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise InputError(f"{name}={value!r}: use an integer >= 1")
        if not (isinstance(self.min_rate, int) and self.min_rate >= 0):
            raise InputError(f"min_rate={self.min_rate!r}: use bytes per second >= 0 (0: no check)")
        _seconds("StoreOptions.rate_window", self.rate_window)
        aes = frozenset(validate_ae_title(a) for a in self.allowed_aes)
        object.__setattr__(self, "_aes", aes - {"ANY"})
        object.__setattr__(self, "_any", "ANY" in aes)

    @property
    def calling_aes(self) -> frozenset[str]:
        """The extra calling AE titles, validated (without ``"ANY"``)."""
        return self._aes

    @property
    def any_calling_ae(self) -> bool:
        """Whether any calling AE title is accepted (``allowed_aes`` has ``"ANY"``)."""
        return self._any


def check_session_options(
    *,
    verify: object,
    relational: object,
    method: object,
    ae_title: str,
    move_destination: str | None,
    model: object,
    port: object,
    workers: object,
    split: object,
    objects: tuple[tuple[str, object, type], ...],
) -> None:
    """Refuse session options of the wrong kind or range (:class:`InputError`)."""
    for name, flag in (("verify", verify), ("relational", relational)):
        if not isinstance(flag, bool):
            raise InputError(f"{name}={flag!r}: use True or False")
    if verify and move_destination not in (None, ae_title):
        raise InputError(
            "verify=True checks what arrives here: it needs our own store SCP (or C-GET), "
            f"not move_destination={move_destination!r}"
        )
    if method not in ("move", "get", "auto"):
        raise InputError(
            f"method={method!r}: use 'move' (C-MOVE), 'get' (C-GET) or 'auto' (C-MOVE, "
            "and C-GET when the PACS cannot send to us)"
        )
    if method != "move" and move_destination not in (None, ae_title):
        raise InputError(
            f"method={method!r} retrieves over our own association when C-GET is used: it "
            f"takes no other move destination (got move_destination={move_destination!r})"
        )
    if model not in ("study", "patient", "composite"):
        raise InputError(f"unknown model {model!r}: use 'study', 'patient' or 'composite'")
    if not (isinstance(port, int) and not isinstance(port, bool) and 0 <= port < 65536):
        raise InputError(f"invalid store port {port!r}: use 0 to 65535")
    if not (isinstance(workers, int) and not isinstance(workers, bool) and 1 <= workers <= 16):
        raise InputError(
            f"workers={workers!r}: use an integer from 1 to {MAX_WORKERS} (the store SCP "
            "takes 16 associations at once)"
        )
    if split not in ("auto", True, False):
        raise InputError(f"split={split!r}: use 'auto', True or False")
    for name, value, kind in objects:
        if value is not None and not isinstance(value, kind):
            raise InputError(f"{name}={value!r}: pass a {kind.__name__}(...)")
        if name == "store_tls" and getattr(value, "protocol", None) == ssl.PROTOCOL_TLS_CLIENT:
            raise InputError(
                "store_tls takes a server context: dicommove.tls.server_context(cert, key, ca)"
            )
