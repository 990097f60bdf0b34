"""Validation of a C-MOVE identifier (PS3.4 C.4.2.2.1), without pydicom.

The identifier holds the Query/Retrieve Level and the unique keys of the levels
from the top of the information model down to that level, nothing else
(Specific Character Set is also accepted, PS3.4 C.4.2.1.4.1). Each problem is
reported with what to do about it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ._model import (
    _ALLOWED_EXTRA_TAGS,
    _LEVEL_OF_TAG,
    _MODEL_LEVELS,
    _MODEL_NAMES,
    _NO_STRICT_HINT,
    _QR_LEVEL,
    _UNIQUE_TAGS,
    LEVELS,
    UNIQUE_KEYS,
    Level,
    Model,
    Value,
    _infer_level,
    _items,
    _value_text,
)
from .selectors import _tag_info, _tag_text

__all__ = ["identifier_problems", "missing_parent_keys"]

_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def missing_parent_keys(elements: Sequence[tuple[int, Value]], model: Model) -> list[str]:
    """Return the unique keys of the levels above the retrieve level that are absent.

    Such an identifier needs relational-retrieve (empty for Composite Instance Root,
    which has no levels above IMAGE, and when the level is missing or unknown).
    """
    values = dict(elements)
    levels = _MODEL_LEVELS[model]
    level = values.get(_QR_LEVEL)
    if model == "composite" or not isinstance(level, str) or level not in levels:
        return []
    above = levels[: levels.index(level)]
    return [UNIQUE_KEYS[lv] for lv in above if _UNIQUE_TAGS[lv] not in values]


def identifier_problems(
    elements: Sequence[tuple[int, Value]], model: Model, *, relational: bool = False
) -> list[str]:
    """List what makes an identifier invalid for a C-MOVE (PS3.4 C.4.2.2.1).

    Parameters
    ----------
    elements : sequence of (int, Value)
        The identifier's elements, typed and deduplicated (as in :class:`Query`).
    model : {'study', 'patient', 'composite'}
        The information model.
    relational : bool
        Relational-retrieve (PS3.4 C.4.2.2.1, by SOP Class Extended Negotiation): the
        unique keys of the levels above the retrieve level may be left out.

    Returns
    -------
    list of str
        One message per problem, each saying what to do; empty if valid.
    """
    root = _MODEL_NAMES[model]
    levels = _MODEL_LEVELS[model]
    values = dict(elements)
    found: list[str] = []

    level: Level | None = None
    if _QR_LEVEL not in values:
        inferred = _infer_level(values, model) or levels[0]
        found.append(
            f"QueryRetrieveLevel is missing: add QueryRetrieveLevel={inferred} "
            f"(-q QueryRetrieveLevel={inferred}); {root} levels are {', '.join(levels)}"
        )
    else:
        given = values[_QR_LEVEL]
        if isinstance(given, str) and given in levels:
            level = given
        elif given == "PATIENT":
            found.append(
                "QueryRetrieveLevel=PATIENT does not exist in Study Root: use the "
                "Patient Root model (model='patient', -P), or a STUDY, SERIES or IMAGE level"
            )
        else:
            found.append(
                f"QueryRetrieveLevel={_value_text(given)!r} is not a {root} level: "
                f"use one of {', '.join(levels)}"
            )

    for key_level in LEVELS:
        tag = _UNIQUE_TAGS[key_level]
        keyword = UNIQUE_KEYS[key_level]
        present = tag in values
        value = values.get(tag)
        if key_level not in levels:
            if present and model == "composite":
                found.append(
                    f"{keyword} is not a key of {root}: remove it (an instance is named by its "
                    "SOPInstanceUID alone there), or use Study Root (model='study', -S)"
                )
            elif present:
                found.append(
                    f"{keyword} is not a key of {root}: remove it, or use the "
                    "Patient Root model (model='patient', -P)"
                )
            continue
        if level is not None:
            depth = levels.index(key_level) - levels.index(level)
            if depth > 0:
                if present:
                    found.append(
                        f"{keyword} is below the retrieve level {level}: remove it, "
                        f"or set QueryRetrieveLevel={key_level}"
                    )
                continue
            if not present and depth < 0 and relational:
                continue  # relational-retrieve: the PACS finds the levels above
            if not present:
                needed = ", ".join(UNIQUE_KEYS[lv] for lv in levels[: levels.index(level) + 1])
                hint = ""
                if depth < 0 and model != "composite":
                    hint = (
                        "; or find them by C-FIND with resolve=True (--resolve), or leave "
                        "them out with relational=True (--relational) where the PACS "
                        "supports relational retrieve"
                    )
                found.append(
                    f"{keyword} is missing: a {level}-level C-MOVE in {root} needs the "
                    f"unique key of every level down to {level} ({needed}){hint}"
                )
                continue
            if value is None:
                found.append(
                    f"{keyword} is empty: an empty unique key is a universal match and "
                    f"would move every {key_level.lower()} the PACS has; give its value"
                )
                continue
            count = len(_items(value))
            if count > 1 and depth < 0:
                found.append(
                    f"{keyword} has {count} values: each level above the retrieve level "
                    f"takes exactly one (PS3.4 C.4.2.2.1); send one request per "
                    f"{key_level.lower()}"
                )
            elif count > 1 and key_level == "PATIENT":
                found.append(
                    f"PatientID has {count} values: a PATIENT-level C-MOVE takes exactly "
                    "one PatientID; send one request per patient"
                )
        elif present and value is None:
            found.append(
                f"{keyword} is empty: an empty unique key is a universal match and "
                f"would move every {key_level.lower()} the PACS has; give its value"
            )
        found.extend(_value_problems(keyword, value))

    for tag, value in elements:
        if tag == _QR_LEVEL or tag in _LEVEL_OF_TAG or tag in _ALLOWED_EXTRA_TAGS:
            continue
        shown = f"{_tag_info(tag).keyword or _tag_text(tag)}={_value_text(value)}"
        found.append(
            f"{shown} is not a unique key: C-MOVE matches on unique keys only "
            "(PS3.4 C.4.2.2.1), so a PACS ignores it or refuses the request; find the "
            "UIDs with C-FIND first (move(..., resolve=True), CLI --resolve; or "
            f"dicommove.find), or {_NO_STRICT_HINT}"
        )
    return found


def _value_problems(keyword: str, value: Value) -> list[str]:
    found: list[str] = []
    for item in _items(value):
        text = str(item)
        if "*" in text or "?" in text:
            found.append(
                f"{keyword} {text!r} has a wildcard: C-MOVE does no wildcard matching; "
                "give the exact value (find it with C-FIND first: dicommove.find)"
            )
        elif keyword == "PatientID":
            if len(text) > 64:
                found.append(
                    f"PatientID {text!r} is {len(text)} characters long; "
                    "a PatientID (VR LO) has at most 64"
                )
        else:
            found.extend(_uid_problems(keyword, text))
    return found


def _uid_problems(keyword: str, uid: str) -> list[str]:
    if len(uid) > 64:
        return [f"{keyword} {uid!r} is {len(uid)} characters long; a UID has at most 64"]
    if not _UID_RE.match(uid):
        return [
            f"{keyword} {uid!r} is not a valid UID: use digits separated by single dots, "
            "such as 1.2.840.10008.1"
        ]
    if any(len(part) > 1 and part.startswith("0") for part in uid.split(".")):
        return [
            f"{keyword} {uid!r} is not a valid UID: a component other than a lone 0 "
            "cannot start with 0 (PS3.5 9.1)"
        ]
    return []
