"""C-MOVE identifiers: selectors, query files, validation and request lists.

This package turns what a user writes into the identifier of a C-MOVE request,
and checks that identifier before anything is sent. It opens no socket.

Selectors follow DICOM-rs ``dicom-movescu``: a standard tag as ``(gggg,eeee)``,
``gggg,eeee`` or ``ggggeeee`` (hexadecimal, any case), or a keyword such as
``StudyInstanceUID``. The tags and VRs of the Query/Retrieve keys come from a
small built-in table (:data:`dicommove._tags.QR_KEYS`), all others from
:mod:`pydicom.datadict`, which is imported only then. An assignment is
``selector=value``; an empty value (or no ``=`` at all) asks for an empty
element, a backslash separates multiple values, and everything after the
first ``=`` is the value. Surrounding spaces of the selector and of each
value are dropped (they are padding in DICOM).

A query is built from up to three sources, each extending and overriding the
previous one tag by tag, as in ``dicom-movescu``:

1. a DICOM query object file (:func:`read_query_dataset`),
2. a query text file (:func:`read_query_file`),
3. the ``-q`` assignments (:func:`parse_assignment`).

Validation follows PS3.4 C.4.2.2.1 (baseline behaviour of the C-MOVE SCU): the
identifier holds the Query/Retrieve Level and the unique keys of the levels
from the top of the information model down to that level, nothing else
(Specific Character Set is also accepted, PS3.4 C.4.2.1.4.1).

==========  ====================  ==================  ========================
Level       Unique key            Study Root          Patient Root
==========  ====================  ==================  ========================
PATIENT     PatientID             (no such level)     PatientID
STUDY       StudyInstanceUID      StudyInstanceUID    + PatientID
SERIES      SeriesInstanceUID     + StudyInstanceUID  + PatientID, Study
IMAGE       SOPInstanceUID        + Study, Series     + PatientID, Study, Series
==========  ====================  ==================  ========================

The flow, one module each:

* :mod:`~dicommove.query.selectors` turns selectors and assignments into tags
  and values typed by VR, and :mod:`~dicommove.query.files` reads the files;
* :mod:`~dicommove.query.core` holds the :class:`Query` built from them;
* :mod:`~dicommove.query.validation` checks it (:meth:`Query.validate`);
* :mod:`~dicommove.query.plan` turns user input into validated requests
  (:func:`to_requests`) and the C-MOVEs to send (:func:`plan`);
* :mod:`~dicommove.query.identifier` encodes the identifier for the wire
  (:func:`encode_identifier`).

None of this imports pydicom or pandas for the Query/Retrieve keys: pydicom is
imported for another attribute, a did-you-mean suggestion, a DICOM query file,
:meth:`Query.to_dataset` or an identifier that :func:`encode_identifier` leaves
to pydicom (a character set, non-ASCII text), pandas for a pandas input.

Examples
--------
>>> q = Query.study("1.2.840.113619.2.1")
>>> str(q)
'STUDY StudyInstanceUID=1.2.840.113619.2.1'
>>> q.problems()
[]
>>> selectors = ["QueryRetrieveLevel=SERIES", "0020000D=1.2", "(0020,000E)=1.3"]
>>> q = Query.from_sources(selectors=selectors)
>>> str(q)
'SERIES StudyInstanceUID=1.2 SeriesInstanceUID=1.3'
"""

from __future__ import annotations

from ._model import LEVELS, UNIQUE_KEYS, Level, Model, Value
from .core import Query
from .files import read_query_dataset, read_query_file
from .identifier import encode_identifier
from .plan import Planned, Request, plan, to_requests
from .selectors import parse_assignment, parse_selector

__all__ = [
    "LEVELS",
    "UNIQUE_KEYS",
    "Level",
    "Model",
    "Planned",
    "Query",
    "Request",
    "Value",
    "encode_identifier",
    "parse_assignment",
    "parse_selector",
    "plan",
    "read_query_dataset",
    "read_query_file",
    "to_requests",
]
