"""The exceptions raised by dicommove.

Every exception derives from :class:`DicomMoveError`, and its message says what
went wrong and what to do about it::

    DicomMoveError
    ├── InputError (also ValueError)       bad input: fix the call and try again
    │   ├── AddressError                   "AE@host:port" could not be parsed
    │   └── QueryError                     a selector, value or identifier is invalid
    ├── LocalSetupError                    our side cannot start: output dir, store port
    │   └── DiskFullError                  the output disk filled up during a move
    ├── NetworkError                       talking to the PACS failed
    │   ├── ConnectError                   TCP connect refused, unreachable or timed out
    │   ├── AssociationRejected            the PACS rejected the association
    │   └── AssociationAborted             the association was aborted or timed out
    ├── FindError                          a C-FIND failed or was cut short by the PACS
    └── MoveError                          the PACS answered, but not with everything
        ├── MoveDestinationUnknown         0xA801: our AE is not registered on the PACS
        ├── MoveIncomplete                 some requests failed or arrived incomplete
        ├── MoveTimeout                    the run's deadline passed; the moves were cancelled
        └── MoveCancelled                  cancelled by job.cancel() or a Cancel button
            └── MoveInterrupted            Ctrl-C; also a KeyboardInterrupt

    QueryWarning (UserWarning)             a non-strict query was sent as given

Exceptions raised after a move started carry the partial manifest as
``.manifest`` (a :class:`pandas.DataFrame`, or ``None`` before any row exists),
so nothing already received is lost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

Rows = Sequence[Mapping[str, Any]]

__all__ = [
    "AddressError",
    "AssociationAborted",
    "AssociationRejected",
    "ConnectError",
    "DicomMoveError",
    "DiskFullError",
    "FindError",
    "InputError",
    "LocalSetupError",
    "MoveCancelled",
    "MoveDestinationUnknown",
    "MoveError",
    "MoveIncomplete",
    "MoveInterrupted",
    "MoveTimeout",
    "NetworkError",
    "QueryError",
    "QueryWarning",
    "StoreAssociationRefused",
]


class DicomMoveError(Exception):
    """Base class of every error raised by dicommove.

    Attributes
    ----------
    manifest : pandas.DataFrame or None
        The manifest as far as it got, when the error happened during a move (built
        from :attr:`rows` when first read).
    rows : list of dict or None
        The same manifest as plain rows (no pandas needed).
    """

    def __init__(
        self,
        message: str,
        *,
        manifest: pd.DataFrame | None = None,
        rows: Rows | None = None,
    ) -> None:
        super().__init__(message)
        self._manifest = manifest
        self._rows = rows

    @property
    def rows(self) -> Rows | None:
        """The manifest as plain rows, or ``None``."""
        return self._rows

    @rows.setter
    def rows(self, value: Rows | None) -> None:
        self._rows = value
        self._manifest = None  # built again from the new rows when read

    @property
    def manifest(self) -> pd.DataFrame | None:
        """The manifest as far as it got (a DataFrame), or ``None``."""
        if self._manifest is None and self._rows is not None:
            from .manifest import build

            self._manifest = build(self._rows)
        return self._manifest

    @manifest.setter
    def manifest(self, value: pd.DataFrame | None) -> None:
        self._manifest = value


class InputError(DicomMoveError, ValueError):
    """The caller passed something invalid; nothing was sent."""


class AddressError(InputError):
    """An ``AE@host:port`` address could not be parsed."""


class QueryError(InputError):
    """A query selector, value or identifier is invalid for the chosen model."""


class LocalSetupError(DicomMoveError):
    """Our side cannot run: the output directory or the store port is unusable.

    Raised before any C-MOVE is sent.
    """


class DiskFullError(LocalSetupError):
    """The output filesystem filled up during a move; the move was cancelled.

    ``.manifest`` holds what arrived (kept on disk) and what did not.
    """


class NetworkError(DicomMoveError):
    """Talking to the PACS failed at the network or association level."""


class ConnectError(NetworkError):
    """The TCP connection to the PACS could not be made."""


class AssociationRejected(NetworkError):
    """The PACS rejected our association request.

    Attributes
    ----------
    result, source, reason : int
        The A-ASSOCIATE-RJ fields (PS3.8 9.3.4).
    """

    def __init__(
        self,
        message: str,
        *,
        result: int = 0,
        source: int = 0,
        reason: int = 0,
        manifest: pd.DataFrame | None = None,
        rows: Rows | None = None,
    ) -> None:
        super().__init__(message, manifest=manifest, rows=rows)
        self.result = result
        self.source = source
        self.reason = reason


class AssociationAborted(NetworkError):
    """The association was aborted, or a reply did not come in time."""


class FindError(DicomMoveError):
    """A C-FIND failed, or the PACS ended it before it returned every match.

    Attributes
    ----------
    status : int or None
        The final C-FIND status code, if one was received (0xFE00: the PACS cut the
        matches short, as a PACS that caps its results does).
    error_comment : str
        The ErrorComment the PACS sent, if any.
    found : pandas.DataFrame or None
        The matches received before the failure, from every query of the call.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_comment: str = "",
        found: pd.DataFrame | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_comment = error_comment
        self.found = found


class MoveError(DicomMoveError):
    """The PACS answered a C-MOVE with a failure.

    Attributes
    ----------
    status : int or None
        The final C-MOVE status code, if one was received.
    error_comment : str
        The ErrorComment the PACS sent, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_comment: str = "",
        manifest: pd.DataFrame | None = None,
        rows: Rows | None = None,
    ) -> None:
        super().__init__(message, manifest=manifest, rows=rows)
        self.status = status
        self.error_comment = error_comment


class MoveDestinationUnknown(MoveError):
    """The PACS does not know the move destination AE title (0xA801)."""


class StoreAssociationRefused(MoveError):
    """Our store SCP refused the PACS's association (AE title or address not allowed).

    The message names the calling AE title and address it saw and the option to
    change (``allowed_aes``, ``allowed_hosts``, or the PACS's AE title in its address).
    """


class MoveIncomplete(MoveError):
    """At least one request did not arrive complete.

    ``.manifest`` holds every row; filter it on ``status`` to see which.
    """


class MoveTimeout(MoveError):
    """The run's deadline (``deadline=``) passed: the active moves were cancelled.

    ``.manifest`` holds what arrived; the rest reads ``timeout`` or ``cancelled``.
    """


class MoveCancelled(MoveError):
    """The move was cancelled (``job.cancel()`` or a Cancel button) before it finished.

    ``.manifest`` holds what arrived; requests that did not finish read
    ``cancelled``. Run the same move again with ``resume=True`` to fetch the rest.
    """


class MoveInterrupted(MoveCancelled, KeyboardInterrupt):
    """Ctrl-C (or "interrupt kernel") cancelled the move; also a ``KeyboardInterrupt``.

    The active C-MOVEs were cancelled and released before this was raised, so
    the store port is free again. ``.manifest`` is the partial manifest.
    """


class QueryWarning(UserWarning):
    """A query that fails validation is being sent anyway (``strict=False``)."""
