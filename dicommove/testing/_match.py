"""How the demo PACS matches requests: identifiers, levels, C-FIND matching and responses.

:func:`parse_identifier` decodes a request identifier into :class:`Key` objects without
pydicom's value validation; :func:`query_level` checks its QueryRetrieveLevel against the
information model. C-FIND matching (:func:`matches`, PS3.4 C.2.2.2) is relational at every
level: single value, UID list, universal (empty), ``*``/``?`` wildcards (case-insensitive for
PN) and DA/TM/DT ranges; keys outside the level (:data:`ALLOWED`) are ignored, and
:func:`response` answers with the requested keys. C-MOVE and C-GET select instances by their
unique keys only (:func:`select`). An invalid request raises :class:`Refused`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from .. import _sop, _status
from ._index import CHAIN, COMPUTED_KEYS, LEVEL_KEYS, Entry, Index, keyword_tags

#: The Query/Retrieve information models (SOP classes) served.
PATIENT_ROOT = frozenset({_sop.FIND["patient"], _sop.MOVE["patient"], _sop.GET["patient"]})
STUDY_ROOT = frozenset({_sop.FIND["study"], _sop.MOVE["study"], _sop.GET["study"]})
COMPOSITE_ROOT = frozenset({_sop.MOVE["composite"], _sop.GET["composite"]})

#: Status of a refused identifier: "Identifier does not match SOP Class" (PS3.4 C.4).
IDENTIFIER_MISMATCH = _status.IDENTIFIER_MISMATCH

_AVAILABILITY = keyword_tags("InstanceAvailability")
#: Keys a C-FIND at a level may match on: its own, those of the levels above, computed.
ALLOWED: dict[str, frozenset[int]] = {
    "PATIENT": LEVEL_KEYS["PATIENT"] | COMPUTED_KEYS["PATIENT"] | _AVAILABILITY,
    "STUDY": LEVEL_KEYS["PATIENT"] | LEVEL_KEYS["STUDY"] | COMPUTED_KEYS["STUDY"] | _AVAILABILITY,
    "SERIES": LEVEL_KEYS["PATIENT"]
    | LEVEL_KEYS["STUDY"]
    | LEVEL_KEYS["SERIES"]
    | COMPUTED_KEYS["SERIES"]
    | _AVAILABILITY,
}
_UNIQUE_KEYWORD = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}
_UNIQUE_TAG = {level: int(tag_for_keyword(kw) or 0) for level, kw in _UNIQUE_KEYWORD.items()}
_QUERY_LEVEL = 0x00080052
_RETRIEVE_AE_TITLE = 0x00080054
_CHARSET = 0x00080005
_SET_BY_PACS = frozenset({_QUERY_LEVEL, _RETRIEVE_AE_TITLE, _CHARSET})
_NOT_MATCHED = _SET_BY_PACS | {0x00080056}  # and InstanceAvailability


class Refused(Exception):
    """A request the PACS refuses with a failure status and an ErrorComment."""

    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status = status
        self.comment = error_comment(comment)


def error_comment(text: str) -> str:
    """ErrorComment is LO: 64 characters at most."""
    return text if len(text) <= 64 else text[:61] + "..."


@dataclass(frozen=True)
class Key:
    """One key of a request identifier, decoded without pydicom's value validation.

    Identifiers legitimately hold values that pydicom would warn about (``*`` and
    ``?`` in a CS, ranges in a TM), and a warning raised in a handler thread
    would turn into an exception where warnings are errors.
    """

    tag: int
    vr: str
    values: tuple[str, ...]


_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI"}
    | {"UR", "UT"}
)
_UNSPLIT_VRS = frozenset({"LT", "ST", "UT", "UR"})


def parse_identifier(identifier: Dataset) -> dict[int, Key]:
    """Return the keys of `identifier`, in order, with their non-empty values."""
    charset = identifier.get_item(_CHARSET) if _CHARSET in identifier else None
    charset_text = str(charset.value) if charset is not None else ""
    codec = "utf-8" if "192" in charset_text else "latin-1"
    keys: dict[int, Key] = {}
    for tag in list(identifier.keys()):  # iterating the Dataset would convert the values
        elem = identifier.get_item(tag)
        if isinstance(elem, RawDataElement):
            vr = str(elem.VR or _dictionary_vr(int(tag)))
            raw = elem.value
            values: list[str]
            if vr == "SQ" or not raw:
                values = []
            elif vr in _TEXT_VRS:
                text = raw.decode(codec, errors="replace")
                parts = [text] if vr in _UNSPLIT_VRS else text.split("\\")
                values = [v for v in (part.strip(" \x00") for part in parts) if v]
            else:  # binary numbers: nothing to warn about
                values = _values(identifier[tag])
        else:
            vr, values = str(elem.VR), _values(elem)
        keys[int(tag)] = Key(int(tag), vr.split(" or ")[0], tuple(values))
    return keys


def _dictionary_vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


def _values(elem: DataElement) -> list[str]:
    """Return the non-empty values of `elem` as stripped strings ([]: universal match)."""
    value = elem.value
    if value is None or isinstance(value, bytes | bytearray | Sequence):
        return []
    items = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    texts = (str(item).strip(" \x00") for item in items)
    return [text for text in texts if text]


def _wildcard(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    regex = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    return re.compile(regex, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _match_one(vr: str, wanted: str, have: str) -> bool:
    """Single value, range (DA, TM, DT) and wildcard matching (PS3.4 C.2.2.2)."""
    if vr in ("DA", "TM", "DT") and "-" in wanted:
        low, _, high = wanted.partition("-")
        return (not low or have >= low) and (not high or have[: len(high)] <= high)
    if vr != "UI" and ("*" in wanted or "?" in wanted):
        return _wildcard(wanted, ignore_case=vr == "PN").fullmatch(have) is not None
    if vr == "PN":
        return wanted.casefold() == have.casefold()
    return wanted == have


def matches(record: Dataset, query: Mapping[int, Key], allowed: frozenset[int] | None) -> bool:
    """Return whether `record` matches every key of `query`.

    Keys outside `allowed` (``None``: everything is allowed) are returned empty
    and ignored for matching, like a lenient PACS. Sequences match universally.
    """
    for tag, key in query.items():
        if not key.values or key.vr == "SQ" or tag in _NOT_MATCHED:
            continue
        if tag >> 16 in (0x0000, 0x0002) or (tag >> 16) % 2:
            continue  # command, file meta and private elements
        if allowed is not None and tag not in allowed:
            continue
        if tag not in record:
            return False
        have = _values(record[tag]) or [""]
        if not any(_match_one(key.vr, w, h) for w in key.values for h in have):
            return False
    return True


def response(record: Dataset, query: Mapping[int, Key], level: str, ae_title: str) -> Dataset:
    """Return the requested keys of `record`, QueryRetrieveLevel and RetrieveAETitle."""
    rsp = Dataset()
    if _CHARSET in record:
        rsp.SpecificCharacterSet = record.SpecificCharacterSet
    for tag, key in query.items():
        if tag in _SET_BY_PACS or tag >> 16 in (0x0000, 0x0002):
            continue
        if tag in record:
            rsp.add(record[tag])
        elif key.vr == "SQ":
            rsp.add(DataElement(tag, "SQ", Sequence()))
        else:
            rsp.add(DataElement(tag, key.vr, None))
    rsp.QueryRetrieveLevel = level
    rsp.RetrieveAETitle = ae_title
    return rsp


def query_level(query: Mapping[int, Key], model: str) -> str:
    """Return the QueryRetrieveLevel of `query`, checked against the information `model`."""
    levels: tuple[str, ...]
    if model in PATIENT_ROOT:
        levels, name = CHAIN, "Patient Root"
    elif model in STUDY_ROOT:
        levels, name = CHAIN[1:], "Study Root"
    elif model in COMPOSITE_ROOT:
        levels, name = ("IMAGE",), "Composite Instance Root"
    else:
        raise Refused(IDENTIFIER_MISMATCH, f"unsupported information model {model}")
    key = query.get(_QUERY_LEVEL)
    level = key.values[0] if key is not None and key.values else ""
    if not level:
        raise Refused(IDENTIFIER_MISMATCH, "QueryRetrieveLevel is missing")
    if level not in levels:
        raise Refused(IDENTIFIER_MISMATCH, f"QueryRetrieveLevel {level!r} invalid in {name}")
    return level


def select(index: Index, model: str, query: Mapping[int, Key]) -> list[Entry]:
    """Return the instances a C-MOVE/C-GET identifier asks for (unique keys only)."""
    level = query_level(query, model)
    if model in COMPOSITE_ROOT:  # instances by SOPInstanceUID alone (PS3.4 C.6.3)
        key = query.get(_UNIQUE_TAG["IMAGE"])
        uids = set(key.values) if key is not None else set()
        if not uids:
            raise Refused(IDENTIFIER_MISMATCH, "IMAGE level needs a SOPInstanceUID")
        return [entry for entry in index.entries if entry.key("IMAGE") in uids]
    depth = CHAIN.index(level)
    wanted: dict[str, set[str]] = {}
    for n, lvl in enumerate(CHAIN):
        keyword = _UNIQUE_KEYWORD[lvl]
        key = query.get(_UNIQUE_TAG[lvl])
        values = key.values if key is not None else ()
        if n > depth and values:
            raise Refused(IDENTIFIER_MISMATCH, f"{keyword} is not allowed at {level} level")
        if n == depth and not values:
            raise Refused(IDENTIFIER_MISMATCH, f"{level} level needs a {keyword}")
        if values:
            wanted[lvl] = set(values)
    return [
        entry
        for entry in index.entries
        if all(entry.key(lvl) in values for lvl, values in wanted.items())
    ]
