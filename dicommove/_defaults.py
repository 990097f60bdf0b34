"""Default values shared by the library and the command line (no imports: cheap to load)."""

from __future__ import annotations

__all__ = ["DEFAULT_AE_TITLE", "DEFAULT_MAX_PDU", "DEFAULT_PORT", "DEFAULT_WORKERS"]

#: Our AE title and store port, as in dicom-movescu.
DEFAULT_AE_TITLE = "STORE-SCP"
DEFAULT_PORT = 11111
#: The largest P-DATA PDU we receive, announced on every association (bytes).
DEFAULT_MAX_PDU = 262144
#: Parallel associations to the PACS: measured faster than 2 on Orthanc (docs/performance.md),
#: and within what most PACS accept from one AE (fewer are used when the PACS refuses more).
DEFAULT_WORKERS = 4
