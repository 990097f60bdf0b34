"""DICOM application entity addresses: ``AE@host:port``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import AddressError

__all__ = ["DEFAULT_CALLED_AE", "Node", "validate_ae_title"]

#: The called AE title used when the address names none (as in dicom-movescu).
DEFAULT_CALLED_AE = "ANY-SCP"

_AE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5 AE: no backslash, no controls


def validate_ae_title(title: str, *, what: str = "AE title") -> str:
    """Return ``title`` stripped, or raise :class:`AddressError` if it is not a valid AE title.

    Parameters
    ----------
    title : str
        The AE title: 1 to 16 printable ASCII characters, no backslash.
    what : str
        How to name it in the error message.

    Returns
    -------
    str
        The title without surrounding spaces.
    """
    stripped = title.strip()
    if not stripped or not _AE_RE.match(stripped):
        raise AddressError(
            f"invalid {what} {title!r}: use 1 to 16 printable ASCII characters, "
            "no backslash and not only spaces"
        )
    return stripped


@dataclass(frozen=True)
class Node:
    """A DICOM application entity reachable over TCP.

    Parameters
    ----------
    ae_title : str
        Its AE title.
    host : str
        Host name or IP address.
    port : int
        TCP port, 1 to 65535.

    Examples
    --------
    >>> Node.parse("ORTHANC@127.0.0.1:4242")
    Node(ae_title='ORTHANC', host='127.0.0.1', port=4242)
    >>> str(Node.parse("127.0.0.1:4242"))
    'ANY-SCP@127.0.0.1:4242'
    """

    ae_title: str
    host: str
    port: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "ae_title", validate_ae_title(self.ae_title))
        if not self.host:
            raise AddressError("empty host: write the address as AE@host:port")
        if (
            isinstance(self.port, bool)
            or not isinstance(self.port, int)
            or not (0 < self.port < 65536)
        ):
            raise AddressError(f"invalid port {self.port!r}: use a number from 1 to 65535")

    @classmethod
    def parse(cls, address: str | Node, *, default_ae: str = DEFAULT_CALLED_AE) -> Node:
        """Parse ``AE@host:port`` or ``host:port`` (IPv6 as ``AE@[::1]:port``).

        Parameters
        ----------
        address : str or Node
            The address; a :class:`Node` is returned unchanged.
        default_ae : str
            The AE title when the address names none.

        Returns
        -------
        Node

        Raises
        ------
        AddressError
            If the address cannot be parsed.
        """
        if isinstance(address, Node):
            return address
        if not isinstance(address, str):
            raise AddressError(f"expected an address string 'AE@host:port', got {address!r}")
        text = address.strip()
        ae, sep, hostport = text.rpartition("@")
        if not sep:
            ae = default_ae
        host, colon, port_text = hostport.rpartition(":")
        if not colon or not host:
            raise AddressError(
                f"invalid address {address!r}: write it as AE@host:port, "
                "for example ORTHANC@127.0.0.1:4242"
            )
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        try:
            port = int(port_text)
        except ValueError:
            raise AddressError(
                f"invalid port {port_text!r} in address {address!r}: use a number from 1 to 65535"
            ) from None
        return cls(ae, host, port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.ae_title}@{host}:{self.port}"
