"""The vocabulary shared by the query modules: levels, models, unique keys, values.

Nothing here imports pydicom: the tags come from :mod:`dicommove._tags`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, TypeAlias

from .. import _tags
from ..errors import QueryError

__all__ = [
    "LEVELS",
    "UNIQUE_KEYS",
    "Level",
    "Model",
    "Value",
]

Level: TypeAlias = Literal["PATIENT", "STUDY", "SERIES", "IMAGE"]
Model: TypeAlias = Literal["study", "patient", "composite"]

#: The Query/Retrieve levels, from the top of the hierarchy down.
LEVELS: tuple[Level, ...] = ("PATIENT", "STUDY", "SERIES", "IMAGE")

#: The unique key of each level, by keyword (PS3.4 C.6.1.1 and C.6.2.1).
UNIQUE_KEYS: dict[Level, str] = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}

#: The value of one element: ``None`` is an empty element (universal match).
Value: TypeAlias = str | int | float | list[str] | list[int] | list[float] | None

_MODELS: tuple[Model, ...] = ("study", "patient", "composite")
_MODEL_LEVELS: dict[Model, tuple[Level, ...]] = {
    "study": ("STUDY", "SERIES", "IMAGE"),
    "patient": LEVELS,
    "composite": ("IMAGE",),
}
_MODEL_NAMES: dict[Model, str] = {
    "study": "Study Root",
    "patient": "Patient Root",
    "composite": "Composite Instance Root",
}

_QR_LEVEL = _tags.QUERY_RETRIEVE_LEVEL
_SPECIFIC_CHARACTER_SET = _tags.SPECIFIC_CHARACTER_SET
_PATIENT_ID = _tags.PATIENT_ID
_UNIQUE_TAGS: dict[Level, int] = {
    "PATIENT": _PATIENT_ID,
    "STUDY": _tags.STUDY_INSTANCE_UID,
    "SERIES": _tags.SERIES_INSTANCE_UID,
    "IMAGE": _tags.SOP_INSTANCE_UID,
}
_LEVEL_OF_TAG: dict[int, Level] = {tag: level for level, tag in _UNIQUE_TAGS.items()}
# Besides the level and the unique keys, a C-MOVE identifier may carry the
# Specific Character Set (PS3.4 C.4.2.1.4.1) when a value needs it.
_ALLOWED_EXTRA_TAGS = frozenset({_SPECIFIC_CHARACTER_SET})

_NO_STRICT_HINT = "pass strict=False (--no-strict) to send it as given"


def _infer_level(tags: Iterable[int], model: Model) -> Level | None:
    """Return the level of the most specific unique key among ``tags`` in ``model``."""
    present = set(tags)
    for level in reversed(_MODEL_LEVELS[model]):
        if _UNIQUE_TAGS[level] in present:
            return level
    return None


def _check_model(model: object) -> Model:
    """Return ``model`` if it is an information model, else raise :class:`QueryError`."""
    if model not in _MODELS:
        raise QueryError(
            f"unknown information model {model!r}: use 'study' (Study Root, -S), "
            "'patient' (Patient Root, -P) or 'composite' (Composite Instance Root, --composite)"
        )
    return model


def _copy(value: Value) -> Value:
    return value.copy() if isinstance(value, list) else value


def _items(value: Value) -> list[str | int | float]:
    """Return the values of an element as a list (empty for an empty element)."""
    if value is None:
        return []
    if isinstance(value, list):
        return list(value)
    return [value]


def _value_text(value: Value) -> str:
    """Return a value as DICOM text: multiple values joined by backslashes."""
    if value is None:
        return ""
    if isinstance(value, list):
        return "\\".join(str(item) for item in value)
    return str(value)
