"""The :class:`Query`: an immutable, fluent C-MOVE identifier.

Building, refining, reading and validating a query of Query/Retrieve keys
imports neither pydicom nor pandas; :meth:`Query.to_dataset` imports pydicom.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import QueryError, QueryWarning
from ._model import (
    _LEVEL_OF_TAG,
    _MODEL_NAMES,
    _NO_STRICT_HINT,
    _PATIENT_ID,
    _QR_LEVEL,
    _UNIQUE_TAGS,
    LEVELS,
    Level,
    Model,
    Value,
    _check_model,
    _copy,
    _infer_level,
    _items,
    _value_text,
)
from .files import read_query_dataset, read_query_file
from .identifier import _to_dataset
from .selectors import (
    _coerce,
    _resolve,
    _shown,
    _tag_info,
    _tag_text,
    parse_assignment,
    parse_selector,
)
from .validation import identifier_problems, missing_parent_keys

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["Query"]


@dataclass(frozen=True)
class Query:
    r"""Immutable, fluent C-MOVE identifier.

    Build one with :meth:`study`, :meth:`series`, :meth:`image`,
    :meth:`patient`, :meth:`from_keys` or :meth:`from_sources`, and refine it
    with :meth:`where`, :meth:`set`, :meth:`without` and :meth:`model`; each
    returns a new query.

    Parameters
    ----------
    elements : tuple of (int, Value)
        The identifier's elements. They are typed by VR, sorted by tag and
        deduplicated (the last one for a tag wins) on construction. Treat the
        lists in it as read-only.
    information_model : {'study', 'patient'}
        Study Root (the default) or Patient Root.

    Examples
    --------
    >>> q = Query.series("1.2.3", "1.2.3.4")
    >>> q.level, q.retrieve_uids()
    ('SERIES', ['1.2.3.4'])
    >>> str(q.where(SeriesInstanceUID=["1.2.3.4", "1.2.3.5"]))
    'SERIES StudyInstanceUID=1.2.3 SeriesInstanceUID=1.2.3.4\\1.2.3.5'
    """

    elements: tuple[tuple[int, Value], ...] = ()
    information_model: Model = "study"

    def __post_init__(self) -> None:
        _check_model(self.information_model)
        if not isinstance(self.elements, Iterable):
            raise QueryError(
                f"expected a tuple of (tag, value) pairs, got {_shown(self.elements)}: build a "
                "query from a dict of keys with Query.from_keys"
            )
        merged: dict[int, Value] = {}
        for pair in self.elements:
            try:
                selector, value = pair
            except (TypeError, ValueError):
                raise QueryError(f"expected (tag, value) pairs, got {_shown(pair)}") from None
            tag = _resolve(selector)
            merged[tag] = _coerce(tag, value)
        object.__setattr__(self, "elements", tuple(sorted(merged.items())))

    def __hash__(self) -> int:
        frozen = tuple(
            (tag, tuple(value) if isinstance(value, list) else value)
            for tag, value in self.elements
        )
        return hash((frozen, self.information_model))

    # ------------------------------------------------------------ construction

    @classmethod
    def study(cls, *study_uids: str) -> Query:
        """Make a STUDY-level query (Study Root) for one or more StudyInstanceUIDs."""
        elements: list[tuple[int, Value]] = [(_QR_LEVEL, "STUDY")]
        if study_uids:
            elements.append((_UNIQUE_TAGS["STUDY"], list(study_uids)))
        return cls(tuple(elements))

    @classmethod
    def series(cls, study_uid: str, *series_uids: str) -> Query:
        """Make a SERIES-level query (Study Root): one study, one or more series."""
        elements: list[tuple[int, Value]] = [
            (_QR_LEVEL, "SERIES"),
            (_UNIQUE_TAGS["STUDY"], study_uid),
        ]
        if series_uids:
            elements.append((_UNIQUE_TAGS["SERIES"], list(series_uids)))
        return cls(tuple(elements))

    @classmethod
    def image(cls, study_uid: str, series_uid: str, *sop_uids: str) -> Query:
        """Make an IMAGE-level query (Study Root): one study, one series, one or more instances."""
        elements: list[tuple[int, Value]] = [
            (_QR_LEVEL, "IMAGE"),
            (_UNIQUE_TAGS["STUDY"], study_uid),
            (_UNIQUE_TAGS["SERIES"], series_uid),
        ]
        if sop_uids:
            elements.append((_UNIQUE_TAGS["IMAGE"], list(sop_uids)))
        return cls(tuple(elements))

    @classmethod
    def patient(cls, *patient_ids: str) -> Query:
        """Make a PATIENT-level query (Patient Root).

        Validation accepts exactly one PatientID; build one query per patient.
        """
        elements: list[tuple[int, Value]] = [(_QR_LEVEL, "PATIENT")]
        if patient_ids:
            elements.append((_PATIENT_ID, list(patient_ids)))
        return cls(tuple(elements), "patient")

    @classmethod
    def from_keys(cls, keys: Mapping[str, Any], *, model: Model = "study") -> Query:
        """Build a query from a mapping of selectors to values.

        Parameters
        ----------
        keys : Mapping
            Keys are keywords or any selector form; values are strings (split
            on backslashes), numbers, lists of them, or ``None`` (empty).
        model : {'study', 'patient'}
            The information model.

        Returns
        -------
        Query
            When ``keys`` has no QueryRetrieveLevel, the level of the most
            specific unique key present is set (PatientID counts in the patient
            model only).

        Examples
        --------
        >>> str(Query.from_keys({"StudyInstanceUID": "1.2", "SeriesInstanceUID": "1.3"}))
        'SERIES StudyInstanceUID=1.2 SeriesInstanceUID=1.3'
        """
        _check_model(model)
        if not isinstance(keys, Mapping):
            raise QueryError(f"expected a mapping of keywords to values, got {_shown(keys)}")
        elements = [(_resolve(key), value) for key, value in keys.items()]
        tags = [tag for tag, _value in elements]
        if _QR_LEVEL not in tags:
            level = _infer_level(tags, model)
            if level is not None:
                elements.append((_QR_LEVEL, level))
        return cls(tuple(elements), model)

    @classmethod
    def from_sources(
        cls,
        *,
        dataset_file: str | os.PathLike[str] | None = None,
        query_file: str | os.PathLike[str] | None = None,
        selectors: Sequence[str] = (),
        model: Model = "study",
    ) -> Query:
        """Build a query as ``dicom-movescu`` does, from up to three sources.

        Each source extends and overrides the previous one, tag by tag: the
        DICOM query object file, then the query text file, then the ``-q``
        assignments. Nothing is inferred: a missing QueryRetrieveLevel is left
        for :meth:`validate` to report.

        Parameters
        ----------
        dataset_file : str or os.PathLike, optional
            A DICOM query object file (:func:`read_query_dataset`).
        query_file : str or os.PathLike, optional
            A query text file (:func:`read_query_file`).
        selectors : sequence of str
            ``selector=value`` assignments (:func:`parse_assignment`).
        model : {'study', 'patient'}
            The information model.

        Returns
        -------
        Query
        """
        _check_model(model)
        if isinstance(selectors, str):
            selectors = [selectors]
        elif not isinstance(selectors, Iterable):
            raise QueryError(f"selectors={_shown(selectors)}: pass a list of 'selector=value'")
        elements: list[tuple[int, Value]] = []
        if dataset_file is not None:
            elements.extend(read_query_dataset(dataset_file))
        if query_file is not None:
            elements.extend(read_query_file(query_file))
        elements.extend(parse_assignment(text) for text in selectors)
        return cls(tuple(elements), model)

    # ------------------------------------------------------------ refinement

    def _with(self, updates: Iterable[tuple[int, Any]]) -> Query:
        return dataclasses.replace(self, elements=(*self.elements, *updates))

    def where(self, **keys: Any) -> Query:
        """Return a copy with elements added or overridden, by keyword.

        Examples
        --------
        >>> str(Query.study("1.2").where(StudyInstanceUID="1.3"))
        'STUDY StudyInstanceUID=1.3'
        """
        return self._with((parse_selector(keyword), value) for keyword, value in keys.items())

    def set(self, selector: str | int, value: Any) -> Query:
        """Return a copy with one element, given by any selector form or tag, set."""
        return self._with([(_resolve(selector), value)])

    def without(self, *selectors: str | int) -> Query:
        """Return a copy without the given elements (absent ones are ignored)."""
        drop = {_resolve(selector) for selector in selectors}
        kept = tuple((tag, value) for tag, value in self.elements if tag not in drop)
        return dataclasses.replace(self, elements=kept)

    def model(self, model: Model) -> Query:
        """Return a copy in the ``'study'`` or ``'patient'`` information model."""
        return dataclasses.replace(self, information_model=_check_model(model))

    # ------------------------------------------------------------ reading

    def _value(self, tag: int) -> tuple[bool, Value]:
        for element_tag, value in self.elements:
            if element_tag == tag:
                return True, value
        return False, None

    @property
    def level(self) -> Level | None:
        """The QueryRetrieveLevel, or ``None`` when absent or not a level name."""
        _present, value = self._value(_QR_LEVEL)
        if isinstance(value, str) and value in LEVELS:
            return value
        return None

    @property
    def keys(self) -> dict[str, Value]:
        """The elements by keyword, without QueryRetrieveLevel (lists are copies)."""
        return {
            _tag_info(tag).keyword or _tag_text(tag): _copy(value)
            for tag, value in self.elements
            if tag != _QR_LEVEL
        }

    def get(self, keyword: str) -> Value:
        """Return the value of an element by keyword or selector; ``None`` if absent or empty."""
        _present, value = self._value(_resolve(keyword))
        return _copy(value)

    def retrieve_uids(self) -> list[str]:
        """Return the values of the unique key of the retrieve level, as a list.

        At the PATIENT level these are PatientIDs. Empty when the level or the
        key is missing.
        """
        level = self.level
        if level is None:
            return []
        _present, value = self._value(_UNIQUE_TAGS[level])
        return [str(item) for item in _items(value)]

    # ------------------------------------------------------------ validation

    def problems(self, *, relational: bool = False) -> list[str]:
        """List what makes this identifier invalid for a C-MOVE (PS3.4 C.4.2.2.1).

        Parameters
        ----------
        relational : bool
            Relational-retrieve: the unique keys above the retrieve level may be absent.

        Returns
        -------
        list of str
            One message per problem, each saying what to do; empty if valid.
        """
        return identifier_problems(self.elements, self.information_model, relational=relational)

    @property
    def relational(self) -> bool:
        """Whether a unique key above the retrieve level is left out (relational-retrieve)."""
        return bool(missing_parent_keys(self.elements, self.information_model))

    def _check(
        self, strict: bool, context: str, stacklevel: int, *, relational: bool = False
    ) -> None:
        found = self.problems(relational=relational)
        if not found:
            return
        if strict:
            root = _MODEL_NAMES[self.information_model]
            lines = "\n".join(f"  - {problem}" for problem in found)
            raise QueryError(
                f"{context}invalid C-MOVE identifier [{self}] in {root}:\n{lines}\n"
                f"Fix it, or {_NO_STRICT_HINT}."
            )
        for problem in found:
            warnings.warn(
                f"{context}sending [{self}] as given: {problem}",
                QueryWarning,
                stacklevel=stacklevel + 1,
            )

    def validate(self, strict: bool = True) -> Query:
        """Check the identifier; raise or warn about each problem.

        Parameters
        ----------
        strict : bool
            If true, raise on any problem; if false, issue one
            :class:`~dicommove.errors.QueryWarning` per problem.

        Returns
        -------
        Query
            ``self``, for chaining.

        Raises
        ------
        QueryError
            In strict mode, with every problem listed.
        """
        self._check(strict, "", stacklevel=2)
        return self

    # ------------------------------------------------------------ output

    def to_dataset(self) -> Dataset:
        """Return the identifier as a :class:`pydicom.dataset.Dataset`.

        Each element gets its dictionary VR (US or SS by the sign of the
        values), lists become multi-valued elements and ``None`` an empty
        element. Values are not checked again here: :meth:`validate` does that.
        """
        return _to_dataset(self)

    def __repr__(self) -> str:
        return f"<Query {self} ({_MODEL_NAMES[self.information_model]})>"

    def _repr_html_(self) -> str:
        """Return the identifier as an HTML table (tag, keyword, value) and its problems."""
        import html

        cells = "".join(
            f"<tr><td><code>{_tag_text(tag)}</code></td>"
            f"<td>{html.escape(_tag_info(tag).keyword or '')}</td>"
            f"<td style='text-align:left'><code>{html.escape(_value_text(value))}</code></td></tr>"
            for tag, value in sorted(self.elements)
        )
        found = self.problems()
        status = (
            "<span style='color:#2ca02c'>valid</span>"
            if not found
            else "<span style='color:#d62728'>invalid</span><ul>"
            + "".join(f"<li>{html.escape(p)}</li>" for p in found)
            + "</ul>"
        )
        return (
            f"<div class='dicommove-query'><b>Query</b> {html.escape(self.level or '?')}-level "
            f"C-MOVE identifier, {_MODEL_NAMES[self.information_model]} "
            f"({'relational, ' if self.relational else ''}{status})"
            f"<table><tr><th>tag</th><th>keyword</th><th>value</th></tr>{cells}</table></div>"
        )

    def __str__(self) -> str:
        values = dict(self.elements)
        head = _value_text(values[_QR_LEVEL]) if _QR_LEVEL in values else "<no level>"
        order = sorted(
            (tag for tag in values if tag != _QR_LEVEL),
            key=lambda tag: (
                (0, LEVELS.index(_LEVEL_OF_TAG[tag])) if tag in _LEVEL_OF_TAG else (1, tag)
            ),
        )
        parts = [head]
        for tag in order:
            name = _tag_info(tag).keyword or _tag_text(tag)
            parts.append(f"{name}={_value_text(values[tag])}")
        return " ".join(parts)
