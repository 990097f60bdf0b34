"""The demo PACS's index: the DICOM files under a folder, as instances and C-FIND records.

:meth:`Index.scan` reads the header of every ``*.dcm`` under a folder into an :class:`Entry`
per instance, and builds one C-FIND record per PATIENT, STUDY and SERIES (the attributes of
PS3.4 C.6 copied from the entity's first instance, plus the computed Number of ...Related...
counts, ModalitiesInStudy and SOPClassesInStudy); an IMAGE record is the instance header.
An index is immutable: a rescan builds a new one. :func:`load_instance` reads an instance to
send.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

LOGGER = logging.getLogger("dicommove.testing")

#: The Query/Retrieve levels, top down.
CHAIN = ("PATIENT", "STUDY", "SERIES", "IMAGE")


def keyword_tags(*keywords: str) -> frozenset[int]:
    """Return the tags of DICOM attribute keywords."""
    tags = set()
    for keyword in keywords:
        tag = tag_for_keyword(keyword)
        if tag is None:  # pragma: no cover - a typo in the tables below
            raise ValueError(f"unknown DICOM keyword {keyword!r}")
        tags.add(tag)
    return frozenset(tags)


#: The attributes a PATIENT, STUDY or SERIES record carries (copied from its first
#: instance), after PS3.4 C.6. An IMAGE record is the whole instance header.
LEVEL_KEYS = {
    "PATIENT": keyword_tags(
        "PatientName",
        "PatientID",
        "IssuerOfPatientID",
        "PatientBirthDate",
        "PatientBirthTime",
        "PatientSex",
        "OtherPatientIDs",
        "OtherPatientNames",
        "EthnicGroup",
        "PatientComments",
    ),
    "STUDY": keyword_tags(
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyID",
        "StudyDescription",
        "ReferringPhysicianName",
        "NameOfPhysiciansReadingStudy",
        "AdmittingDiagnosesDescription",
        "PatientAge",
        "PatientSize",
        "PatientWeight",
        "Occupation",
        "AdditionalPatientHistory",
    ),
    "SERIES": keyword_tags(
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "SeriesDate",
        "SeriesTime",
        "BodyPartExamined",
        "ProtocolName",
        "Laterality",
        "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime",
        "Manufacturer",
        "InstitutionName",
        "StationName",
        "FrameOfReferenceUID",
    ),
}
#: Attributes computed from the index, per level.
COMPUTED_KEYS = {
    "PATIENT": keyword_tags(
        "NumberOfPatientRelatedStudies",
        "NumberOfPatientRelatedSeries",
        "NumberOfPatientRelatedInstances",
    ),
    "STUDY": keyword_tags(
        "ModalitiesInStudy",
        "SOPClassesInStudy",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ),
    "SERIES": keyword_tags("NumberOfSeriesRelatedInstances"),
}


@dataclass(frozen=True)
class Entry:
    """One indexed instance."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    patient_id: str
    study_uid: str
    series_uid: str

    def key(self, level: str) -> str:
        """Return the unique key of this instance's entity at `level`."""
        if level == "PATIENT":
            return self.patient_id
        if level == "STUDY":
            return self.study_uid
        if level == "SERIES":
            return self.series_uid
        return self.sop_instance_uid


@dataclass(frozen=True)
class Index:
    """The instances under the root, and a C-FIND record per entity and level."""

    entries: tuple[Entry, ...] = ()
    records: Mapping[str, tuple[Dataset, ...]] = field(
        default_factory=lambda: {level: () for level in CHAIN}
    )

    @classmethod
    def scan(cls, root: Path) -> Index:
        """Read the headers of every ``*.dcm`` under `root`."""
        entries: list[Entry] = []
        headers: list[Dataset] = []
        seen: set[str] = set()
        for path in sorted(root.rglob("*.dcm")):
            try:
                ds = dcmread(path, stop_before_pixels=True)
                ts = str(ds.file_meta.TransferSyntaxUID)
                entry = Entry(
                    path=path.resolve(),
                    sop_class_uid=str(ds.SOPClassUID),
                    sop_instance_uid=str(ds.SOPInstanceUID),
                    transfer_syntax=ts,
                    patient_id=str(ds.get("PatientID", "") or ""),
                    study_uid=str(ds.StudyInstanceUID),
                    series_uid=str(ds.SeriesInstanceUID),
                )
            except Exception as exc:  # any unreadable file is skipped
                LOGGER.warning("DemoPACS skips %s: %s", path, exc)
                continue
            if entry.sop_instance_uid in seen:
                LOGGER.warning(
                    "DemoPACS skips %s: SOPInstanceUID %s is already indexed",
                    path,
                    entry.sop_instance_uid,
                )
                continue
            seen.add(entry.sop_instance_uid)
            entries.append(entry)
            headers.append(ds)
        return cls(tuple(entries), _build_records(entries, headers))


def _build_records(entries: list[Entry], headers: list[Dataset]) -> dict[str, tuple[Dataset, ...]]:
    """Group instances into PATIENT, STUDY and SERIES records, with computed attributes."""
    groups: dict[str, dict[str, list[int]]] = {level: {} for level in CHAIN[:3]}
    for n, entry in enumerate(entries):
        for level in CHAIN[:3]:
            groups[level].setdefault(entry.key(level), []).append(n)

    records: dict[str, tuple[Dataset, ...]] = {}
    for depth, level in enumerate(CHAIN[:3]):
        keys = frozenset().union(*(LEVEL_KEYS[lvl] for lvl in CHAIN[: depth + 1]))
        level_records = []
        for members in groups[level].values():
            first = headers[members[0]]
            record = Dataset()
            for elem in first:
                if elem.tag in keys:
                    record.add(elem)
            if "SpecificCharacterSet" in first:
                record.SpecificCharacterSet = first.SpecificCharacterSet
            record.InstanceAvailability = "ONLINE"
            member_entries = [entries[n] for n in members]
            series = {e.series_uid for e in member_entries}
            if level == "PATIENT":
                record.NumberOfPatientRelatedStudies = len({e.study_uid for e in member_entries})
                record.NumberOfPatientRelatedSeries = len(series)
                record.NumberOfPatientRelatedInstances = len(members)
            elif level == "STUDY":
                modalities = {str(headers[n].get("Modality", "") or "") for n in members}
                record.ModalitiesInStudy = sorted(m for m in modalities if m)
                record.SOPClassesInStudy = sorted({e.sop_class_uid for e in member_entries})
                record.NumberOfStudyRelatedSeries = len(series)
                record.NumberOfStudyRelatedInstances = len(members)
            else:
                record.NumberOfSeriesRelatedInstances = len(members)
            level_records.append(record)
        records[level] = tuple(level_records)
    for header in headers:
        header.InstanceAvailability = "ONLINE"
        for _ in header:  # convert every raw element now, not in concurrent handlers
            pass
    records["IMAGE"] = tuple(headers)
    return records


def load_instance(entry: Entry) -> Dataset:
    """Read an instance to send; on failure a stub that makes the C-STORE fail."""
    try:
        return dcmread(entry.path)
    except Exception as exc:  # the file changed since it was indexed
        LOGGER.warning("DemoPACS cannot read %s: %s", entry.path, exc)
        stub = Dataset()
        stub.SOPInstanceUID = entry.sop_instance_uid
        return stub
