"""Query sources on disk: a text file of assignments and a DICOM query object file.

:func:`read_query_file` needs no pydicom for the keys of the built-in table;
:func:`read_query_dataset` imports pydicom to read the file.
"""

from __future__ import annotations

import codecs
import logging
import os
import re
from typing import TYPE_CHECKING

from ..errors import QueryError
from ._model import Value
from .selectors import _coerce, _shown, _tag_info, _tag_name, parse_assignment

if TYPE_CHECKING:
    from pydicom.dataelem import DataElement

__all__ = ["read_query_dataset", "read_query_file"]

logger = logging.getLogger("dicommove")

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def _path_text(path: str | os.PathLike[str], what: str) -> str:
    """Return ``path`` as text, or raise :class:`QueryError` for what is not a path."""
    try:
        return os.fsdecode(path)
    except TypeError:
        raise QueryError(f"expected the path of a {what}, got {_shown(path)}") from None


def _text_lines(name: str, data: bytes) -> list[str]:
    r"""Decode a query file as UTF-8 (a BOM is allowed) and split it at \n, \r\n or \r."""
    if data.startswith(_UTF16_BOMS):
        raise QueryError(
            f"{name}:1: the file is not UTF-8 but UTF-16 text (it starts with a UTF-16 "
            "byte order mark): save it as UTF-8"
        )
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        number = len(_LINE_BREAK.split(data[: exc.start].decode("utf-8")))
        hint = (
            "it holds NUL bytes: is it UTF-16?"
            if b"\x00" in data
            else "a Latin-1 or Windows-1252 file needs converting"
        )
        raise QueryError(
            f"{name}:{number}: not UTF-8 text (byte 0x{data[exc.start]:02X}: {exc.reason}): "
            f"save the file as UTF-8 ({hint})"
        ) from None
    return _LINE_BREAK.split(text)


def read_query_file(path: str | os.PathLike[str]) -> list[tuple[int, Value]]:
    r"""Read a query text file of ``selector=value`` lines.

    Blank lines and lines starting with ``#`` are skipped; every other line is
    read by :func:`parse_assignment`. The file is UTF-8 (a byte order mark is
    allowed); lines end with ``\n``, ``\r\n`` or ``\r``.

    Parameters
    ----------
    path : str or os.PathLike
        The query file.

    Returns
    -------
    list of (int, Value)
        The assignments in file order (a later one for the same tag wins when
        they are applied).

    Raises
    ------
    QueryError
        If the file cannot be read, or a line is invalid or not UTF-8; the
        message starts with ``file:line:``.
    """
    name = _path_text(path, "query file")
    try:
        with open(name, "rb") as stream:
            data = stream.read()
    except OSError as exc:
        raise QueryError(f"cannot read query file {name}: {exc.strerror or exc}") from None
    except ValueError as exc:  # a NUL in the path
        raise QueryError(f"cannot read query file {name!r}: {exc}") from None
    result: list[tuple[int, Value]] = []
    for number, line in enumerate(_text_lines(name, data), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            result.append(parse_assignment(stripped))
        except QueryError as exc:
            hint = ""
            if "\x00" in line:
                hint = " (the line holds NUL bytes: is the file UTF-16? save it as UTF-8)"
            raise QueryError(f"{name}:{number}: {exc}{hint}") from None
    logger.debug("read %d query assignments from %s", len(result), name)
    return result


def _dataset_value(element: DataElement) -> object:
    """Return a pydicom element value as plain Python: str, int, float, list or None."""
    from pydicom.multival import MultiValue

    value = element.value
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        raise QueryError(f"{_tag_name(element.tag)} holds undecoded bytes")
    if isinstance(value, (list, MultiValue)):
        return [_plain(item) for item in value]
    return _plain(value)


def _plain(item: object) -> object:
    if isinstance(item, (str, int, float)):
        return item
    return str(item)  # PersonName and other value representations


def read_query_dataset(path: str | os.PathLike[str]) -> list[tuple[int, Value]]:
    """Read the elements of a DICOM query object file.

    The file is read with :func:`pydicom.dcmread` and ``force=True``, so it may
    lack the preamble and file meta information. Group length elements are
    skipped.

    Parameters
    ----------
    path : str or os.PathLike
        The DICOM dataset file.

    Returns
    -------
    list of (int, Value)
        The elements, typed as :func:`parse_assignment` types them.

    Raises
    ------
    QueryError
        If the file cannot be read, or holds an element that cannot be a query
        key (a sequence, binary or private element).
    """
    from pydicom import dcmread

    name = _path_text(path, "DICOM query file")
    try:
        dataset = dcmread(name, force=True)
    except OSError as exc:
        raise QueryError(f"cannot read DICOM query file {name}: {exc.strerror or exc}") from None
    except Exception as exc:  # pydicom raises many kinds on malformed input
        raise QueryError(f"cannot read DICOM query file {name}: {exc}") from None
    result: list[tuple[int, Value]] = []
    try:
        for element in dataset:
            tag = int(element.tag)
            if tag & 0xFFFF == 0 and tag >> 16 not in (0x0000, 0x0002):
                continue  # group length: an encoding detail
            _tag_info(tag)
            result.append((tag, _coerce(tag, _dataset_value(element))))
    except QueryError as exc:
        # Garbage read with force=True fails on its first element.
        hint = (
            ""
            if result
            else " (is it a DICOM dataset file? a text file of 'selector=value' lines "
            "is a query file)"
        )
        raise QueryError(f"{name}: {exc}{hint}") from None
    except Exception as exc:  # a value pydicom cannot convert
        raise QueryError(f"cannot read DICOM query file {name}: {exc}") from None
    if not result:
        raise QueryError(f"{name}: no data elements found: is it a DICOM dataset file?")
    logger.debug("read %d query elements from %s", len(result), name)
    return result
