"""A deterministic synthetic CT cohort, written as DICOM Part 10 files.

:func:`make_cohort` writes ``patients x studies x series x instances`` small CT
images of random noise (or, with ``pixels="phantom"``, of a simple drawn phantom).
The same arguments always give byte-identical files with the same UIDs, so tests
and notebooks can rely on them.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import re
import uuid
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ExplicitVRLittleEndian

from ..errors import InputError

__all__ = ["COHORT_COLUMNS", "cohort_uid", "make_cohort"]

LOGGER = logging.getLogger("dicommove.testing")

#: The columns of the DataFrame returned by :func:`make_cohort` (and of ``index.csv``).
COHORT_COLUMNS = (
    "PatientID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "path",
    "size",
)

#: The UUID namespace of the synthetic UIDs (a fixed, random UUID).
_NAMESPACE = uuid.UUID("5f0c1d2e-8a4b-4c6d-9e7f-0a1b2c3d4e5f")
_BASE_DATE = datetime.date(2020, 1, 6)
_IMPLEMENTATION_VERSION = "DICOMMOVE_DEMO"
_LIMITS = {"patients": 99_999, "studies": 999, "series": 999, "instances": 99_999}
_PREAMBLE = b"\x00" * 128 + b"DICM"
_PREFIX_RE = re.compile(r"[\x20-\x5b\x5d-\x7e]{0,50}")  # printable ASCII, no backslash
_PIXELS = ("noise", "phantom")
# Stored values of the phantom's parts (RescaleIntercept -1024: HU = value - 1024).
_AIR, _LUNG, _TISSUE, _LESION = 24, 224, 1064, 1424

#: Encoded elements: (tag, Explicit VR Little Endian bytes), to be sorted by tag.
_Encoded = list[tuple[int, bytes]]


def cohort_uid(seed: int, kind: str, *position: int) -> str:
    """Return the deterministic UID of one entity of a synthetic cohort.

    Parameters
    ----------
    seed : int
        The cohort seed.
    kind : str
        ``"study"``, ``"series"``, ``"sop"`` or ``"frame"`` (frame of reference).
    *position : int
        The 1-based positions (patient, study, series, instance), as deep as `kind` needs.

    Returns
    -------
    str
        ``2.25.<uuid5(namespace, "seed|kind|p|s|r|i").int>``, at most 44 characters.

    Examples
    --------
    >>> cohort_uid(1, "study", 1, 1) == cohort_uid(1, "study", 1, 1)
    True
    >>> cohort_uid(1, "study", 1, 1) == cohort_uid(2, "study", 1, 1)
    False
    """
    name = "|".join([str(seed), kind, *(str(p) for p in position)])
    return f"2.25.{uuid.uuid5(_NAMESPACE, name).int}"


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(f"{name} must be an int from {low} to {high}, got {value!r}")


def _encode(ds: Dataset) -> _Encoded:
    """Encode each element of `ds` (not its file meta) as Explicit VR Little Endian."""
    encoded: _Encoded = []
    for elem in ds:
        fp = DicomBytesIO()
        fp.is_little_endian = True
        fp.is_implicit_VR = False
        write_data_element(fp, elem)
        encoded.append((int(elem.tag), fp.getvalue()))
    return encoded


def _constant(rows: int, cols: int) -> tuple[_Encoded, _Encoded]:
    """Encode the (dataset, file meta) elements that every instance of the cohort shares."""
    meta = Dataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = _IMPLEMENTATION_VERSION

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.Modality = "CT"
    ds.Manufacturer = "dicommove"
    ds.InstitutionName = "Synthetic"
    ds.ReferringPhysicianName = ""
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = "1.0"
    ds.KVP = "120"
    ds.PatientPosition = "HFS"
    ds.AcquisitionNumber = 1
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.PixelSpacing = [1, 1]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = "1024"
    ds.WindowWidth = "4096"
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    return _encode(ds), _encode(meta)


def _phantom(rows: int, cols: int, position: tuple[int, int, int, int], instances: int) -> bytes:
    """Draw instance ``(p, s, r, i)`` of a series of `instances` as a chest-like phantom.

    An elliptic body with two lungs, and a bright lesion in one lung, on air. The body
    is largest in the middle slice of the series and shrinks towards both ends; its
    proportions depend on the patient, the lesion's size, side and place on the patient,
    study and series (through a CRC-32 of the positions). Returns the pixels as
    little-endian ``uint16`` bytes.
    """
    p, s, r, i = position
    body = zlib.crc32(f"{p}".encode())
    lesion = zlib.crc32(f"{p}|{s}|{r}".encode())
    z = (2 * i - 1) / instances - 1  # the slice's position in the series, in (-1, 1)
    scale = 0.4 + 0.6 * math.sqrt(1 - z * z)
    u = (np.arange(cols) + 0.5) * (2 / cols) - 1  # -1 (left) to 1 (right)
    v = ((np.arange(rows) + 0.5) * (2 / rows) - 1)[:, np.newaxis]  # -1 (top) to 1 (bottom)

    def inside(cu: float, cv: float, au: float, av: float) -> np.ndarray:
        return ((u - cu) / au) ** 2 + ((v - cv) / av) ** 2 <= 1

    image = np.full((rows, cols), _AIR, dtype="<u2")
    width, height = 0.82 + 0.04 * (body % 3), 0.66 + 0.04 * (body // 3 % 3)
    image[inside(0, 0, width * scale, height * scale)] = _TISSUE
    for side in (-1, 1):
        image[inside(side * 0.4 * scale, -0.05 * scale, 0.3 * scale, 0.5 * scale)] = _LUNG
    side = 1 if lesion % 2 else -1
    angle = 2 * math.pi * (lesion // 2 % 12) / 12
    cu = (side * 0.4 + 0.12 * math.cos(angle)) * scale
    cv = (-0.05 + 0.25 * math.sin(angle)) * scale
    radius = 0.05 * (1 + lesion // 24 % 4) * scale
    image[inside(cu, cv, radius, radius)] = _LESION
    return image.tobytes()


def _patient(seed: int, prefix: str, p: int) -> Dataset:
    """Patient-level attributes of patient `p`."""
    ds = Dataset()
    ds.PatientName = f"Synthetic^Patient{p:05d}"
    ds.PatientID = f"{prefix}{seed:02d}{p:05d}"
    ds.PatientBirthDate = f"{1940 + (seed * 7 + p * 13) % 60:04d}{1 + p % 12:02d}{1 + p % 28:02d}"
    ds.PatientSex = "MF"[p % 2]
    return ds


def _study(seed: int, p: int, s: int, study_uid: str) -> Dataset:
    """Study-level attributes of study `s` of patient `p` (and the series/content date)."""
    date = (_BASE_DATE + datetime.timedelta(days=(seed * 101 + p * 37 + s * 11) % 1500)).strftime(
        "%Y%m%d"
    )
    time = f"{8 + (p + s) % 10:02d}{(p * 7 + s * 3) % 60:02d}00"
    ds = Dataset()
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = time
    ds.AccessionNumber = f"A{seed:02d}{p:05d}{s:03d}"
    ds.StudyID = f"{s}"
    ds.StudyDescription = f"Synthetic CT study {s}"
    return ds


def _series(series_uid: str, frame_uid: str, r: int) -> Dataset:
    """Series-level attributes of series `r`."""
    ds = Dataset()
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = r
    ds.SeriesDescription = f"Synthetic CT series {r}"
    ds.FrameOfReferenceUID = frame_uid
    return ds


def _instance_bytes(shared: _Encoded, meta: _Encoded, sop_uid: str, i: int, pixels: bytes) -> bytes:
    """Return a complete Part 10 file: the `shared` elements plus the per-instance ones.

    Splicing pre-encoded elements keeps :func:`make_cohort` fast. The result is
    byte-identical to what ``Dataset.save_as(..., enforce_file_format=True)``
    writes for the same dataset (the tests check this).
    """
    own = Dataset()
    own.SOPInstanceUID = sop_uid
    own.InstanceNumber = i
    own.ImagePositionPatient = [0, 0, i - 1]
    own.SliceLocation = i - 1
    own.add(DataElement(0x7FE00010, "OW", pixels))
    own_meta = Dataset()
    own_meta.MediaStorageSOPInstanceUID = sop_uid

    meta_bytes = b"".join(b for _, b in sorted([*meta, *_encode(own_meta)]))
    group_length = Dataset()
    group_length.FileMetaInformationGroupLength = len(meta_bytes)
    body = sorted([*shared, *_encode(own)])
    return b"".join([_PREAMBLE, _encode(group_length)[0][1], meta_bytes, *(b for _, b in body)])


def make_cohort(
    out: str | os.PathLike[str],
    *,
    patients: int = 2,
    studies: int = 2,
    series: int = 2,
    instances: int = 3,
    rows: int = 64,
    cols: int = 64,
    seed: int = 1,
    prefix: str = "PAT",
    pixels: Literal["noise", "phantom"] = "noise",
) -> pd.DataFrame:
    """Write a deterministic synthetic CT cohort and return its index.

    Files go to ``out/<PatientID>/stNNN/seNNN/NNNNN.dcm`` as DICOM Part 10 with
    a zero preamble, Explicit VR Little Endian, CT Image Storage, 16 bits
    allocated and 12 stored, of random noise or a phantom (`pixels`). Positions
    (p, s, r, i) are 1-based. The same arguments give byte-identical files.

    Parameters
    ----------
    out : str or os.PathLike
        The output folder; created if needed. Files of the same names are
        overwritten, other files are left alone.
    patients : int
        Number of patients, 1 to 99999.
    studies : int
        Studies per patient, 1 to 999.
    series : int
        Series per study, 1 to 999.
    instances : int
        Instances per series, 1 to 99999.
    rows, cols : int
        Image size, 1 to 4096 each.
    seed : int
        0 to 999. It seeds the noise (``numpy.random.default_rng([seed, p, s, r, i])``
        per instance, so an instance does not depend on the cohort's size) and
        the UIDs, ``2.25.<uuid5(namespace, f"{seed}|kind|p|s|r|i").int>`` (see
        :func:`cohort_uid`). UIDs do not depend on `prefix`: give cohorts that
        must coexist on one PACS different seeds.
    prefix : str
        PatientID prefix, at most 50 characters; the PatientID is
        ``f"{prefix}{seed:02d}{p:05d}"`` and the PatientName
        ``f"Synthetic^Patient{p:05d}"``.
    pixels : {"noise", "phantom"}
        The pixel data. ``"noise"`` (default): uniform random values from 0 to 4095,
        seeded as above. ``"phantom"``: a simple chest-like phantom, drawn per
        instance, for pictures that tell series and slices apart: an elliptic body with
        two lungs and a bright lesion, on air (stored values 24, 1064, 224 and 1424:
        -1000, 40, -800 and 400 HU). The body is largest in the middle slice of each
        series and shrinks towards both ends; its proportions depend on the patient, the
        lesion's size, side and place on the patient, study and series. It does not
        depend on `seed`, is as deterministic as the noise and takes about as long.

    Returns
    -------
    pandas.DataFrame
        One row per instance, in file order, with the columns PatientID,
        StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, SOPClassUID, path
        (absolute, str) and size (bytes, int). The same table is written to
        ``out/index.csv``.

    Raises
    ------
    InputError
        If an argument is out of range.

    Examples
    --------
    >>> df = make_cohort(tmp_path, patients=1, studies=1, series=1, instances=2)  # doctest: +SKIP
    >>> len(df), df["size"].iloc[0]  # doctest: +SKIP
    (2, 9446)
    """
    for name, value in (
        ("patients", patients),
        ("studies", studies),
        ("series", series),
        ("instances", instances),
    ):
        _check_int(name, value, 1, _LIMITS[name])
    _check_int("rows", rows, 1, 4096)
    _check_int("cols", cols, 1, 4096)
    _check_int("seed", seed, 0, 999)
    if not isinstance(prefix, str) or not _PREFIX_RE.fullmatch(prefix):
        raise InputError(
            f"prefix must be at most 50 printable ASCII characters without a backslash, "
            f"got {prefix!r}"
        )
    if pixels not in _PIXELS:
        raise InputError(f"pixels must be 'noise' or 'phantom', got {pixels!r}")
    root = Path(out).resolve()
    root.mkdir(parents=True, exist_ok=True)

    constant, meta = _constant(rows, cols)
    records: list[tuple[str, str, str, str, str, str, int]] = []
    for p in range(1, patients + 1):
        patient = _patient(seed, prefix, p)
        patient_id = str(patient.PatientID)
        with_patient = [*constant, *_encode(patient)]
        for s in range(1, studies + 1):
            study_uid = cohort_uid(seed, "study", p, s)
            with_study = [*with_patient, *_encode(_study(seed, p, s, study_uid))]
            for r in range(1, series + 1):
                series_uid = cohort_uid(seed, "series", p, s, r)
                frame_uid = cohort_uid(seed, "frame", p, s, r)
                shared = [*with_study, *_encode(_series(series_uid, frame_uid, r))]
                folder = root / patient_id / f"st{s:03d}" / f"se{r:03d}"
                folder.mkdir(parents=True, exist_ok=True)
                for i in range(1, instances + 1):
                    if pixels == "noise":
                        noise = np.random.default_rng([seed, p, s, r, i]).integers(
                            0, 4096, size=(rows, cols), dtype=np.uint16
                        )
                        image = noise.astype("<u2", copy=False).tobytes()
                    else:
                        image = _phantom(rows, cols, (p, s, r, i), instances)
                    sop_uid = cohort_uid(seed, "sop", p, s, r, i)
                    data = _instance_bytes(shared, meta, sop_uid, i, image)
                    path = folder / f"{i:05d}.dcm"
                    path.write_bytes(data)
                    records.append(
                        (
                            patient_id,
                            study_uid,
                            series_uid,
                            sop_uid,
                            str(CTImageStorage),
                            str(path),
                            len(data),
                        )
                    )

    frame: pd.DataFrame = pd.DataFrame.from_records(records, columns=list(COHORT_COLUMNS))
    frame["size"] = frame["size"].astype("int64")
    frame.to_csv(root / "index.csv", index=False)
    LOGGER.info("wrote a synthetic cohort of %d instances to %s", len(frame), root)
    return frame
