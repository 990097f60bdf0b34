"""The one table of data element tags that dicommove uses by number.

Two kinds of tags live here:

* the Query/Retrieve keys a move needs before anything else (``QR_KEYS``): their
  keyword, tag and VR, so that a CLI move given by ``-q`` selectors can build and
  check its identifier without importing pydicom (a test checks this table
  against :mod:`pydicom.datadict`);
* the command set elements of group 0000 that the DIMSE code reads and writes
  (PS3.7 E.1).

Everything else comes from pydicom's data dictionary, imported when needed.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "QR_KEYS",
    "QR_KEYS_BY_TAG",
    "QrKey",
]


class QrKey(NamedTuple):
    """A data element of the built-in table: its tag, keyword and dictionary VR."""

    tag: int
    keyword: str
    vr: str


# -- identifier elements ---------------------------------------------------------------
SPECIFIC_CHARACTER_SET = 0x00080005
SOP_CLASS_UID = 0x00080016
SOP_INSTANCE_UID = 0x00080018
QUERY_RETRIEVE_LEVEL = 0x00080052
FAILED_SOP_INSTANCE_UID_LIST = 0x00080058
PATIENT_ID = 0x00100020
STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E
NUMBER_OF_SERIES_RELATED_INSTANCES = 0x00201209
SOP_CLASSES_IN_STUDY = 0x00080062

#: The keys a C-MOVE identifier is made of, and the few a move reads back.
QR_KEYS: dict[str, QrKey] = {
    key.keyword: key
    for key in (
        QrKey(SPECIFIC_CHARACTER_SET, "SpecificCharacterSet", "CS"),
        QrKey(SOP_CLASS_UID, "SOPClassUID", "UI"),
        QrKey(SOP_INSTANCE_UID, "SOPInstanceUID", "UI"),
        QrKey(QUERY_RETRIEVE_LEVEL, "QueryRetrieveLevel", "CS"),
        QrKey(FAILED_SOP_INSTANCE_UID_LIST, "FailedSOPInstanceUIDList", "UI"),
        QrKey(PATIENT_ID, "PatientID", "LO"),
        QrKey(STUDY_INSTANCE_UID, "StudyInstanceUID", "UI"),
        QrKey(SERIES_INSTANCE_UID, "SeriesInstanceUID", "UI"),
        QrKey(NUMBER_OF_SERIES_RELATED_INSTANCES, "NumberOfSeriesRelatedInstances", "IS"),
        QrKey(SOP_CLASSES_IN_STUDY, "SOPClassesInStudy", "UI"),
    )
}
#: The same table by tag.
QR_KEYS_BY_TAG: dict[int, QrKey] = {key.tag: key for key in QR_KEYS.values()}

# -- command set elements (group 0000, PS3.7 E.1) ------------------------------------
COMMAND_GROUP_LENGTH = 0x0000
AFFECTED_SOP_CLASS_UID = 0x0002
COMMAND_FIELD = 0x0100
MESSAGE_ID = 0x0110
MESSAGE_ID_BEING_RESPONDED_TO = 0x0120
MOVE_DESTINATION = 0x0600
PRIORITY = 0x0700
COMMAND_DATA_SET_TYPE = 0x0800
STATUS = 0x0900
ERROR_COMMENT = 0x0902
AFFECTED_SOP_INSTANCE_UID = 0x1000
REMAINING_SUBOPERATIONS = 0x1020
COMPLETED_SUBOPERATIONS = 0x1021
FAILED_SUBOPERATIONS = 0x1022
WARNING_SUBOPERATIONS = 0x1023
MOVE_ORIGINATOR_AE_TITLE = 0x1030
MOVE_ORIGINATOR_MESSAGE_ID = 0x1031
