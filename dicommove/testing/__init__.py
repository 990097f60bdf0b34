"""Test helpers: an in-process demo PACS and a deterministic synthetic cohort.

>>> from dicommove.testing import DemoPACS, make_cohort
>>> df = make_cohort("demo-pacs", patients=2)  # doctest: +SKIP
>>> pacs = DemoPACS("demo-pacs", destinations={"STORE": ("127.0.0.1", 11113)})
>>> with pacs:  # doctest: +SKIP
...     print(pacs.node)
DEMOPACS@127.0.0.1:40123

:class:`DemoPACS` is a small Query/Retrieve SCP built on pynetdicom that serves
a folder of DICOM files (C-ECHO, C-FIND, C-MOVE, C-GET) and can inject faults
(:class:`PacsFaults`); :func:`make_cohort` writes reproducible synthetic CT data
for it. They exist for the test suite, for notebooks and for ``dicommove demo``.
The demo PACS is not a production PACS: it keeps its index in memory, does not
store what it receives, has no access control and never transcodes.
"""

from __future__ import annotations

from .cohort import COHORT_COLUMNS, cohort_uid, make_cohort
from .pacs import DemoPACS, PacsFaults

__all__ = ["COHORT_COLUMNS", "DemoPACS", "PacsFaults", "cohort_uid", "make_cohort"]
