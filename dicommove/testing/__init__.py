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

The names are imported on first use, so that importing a submodule, e.g.
:mod:`dicommove.testing.peers` (Orthanc and DCMTK peers, standard library only),
does not import pydicom and pynetdicom.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cohort import COHORT_COLUMNS, cohort_uid, make_cohort
    from .pacs import DemoPACS, PacsFaults

__all__ = ["COHORT_COLUMNS", "DemoPACS", "PacsFaults", "cohort_uid", "make_cohort"]

_SUBMODULE = {
    "COHORT_COLUMNS": "cohort",
    "cohort_uid": "cohort",
    "make_cohort": "cohort",
    "DemoPACS": "pacs",
    "PacsFaults": "pacs",
}


def __getattr__(name: str) -> Any:
    """Import a public name from its submodule on first use (PEP 562)."""
    if name in ("cohort", "pacs"):  # imported eagerly before: keep them reachable as attributes
        return importlib.import_module(f".{name}", __name__)
    submodule = _SUBMODULE.get(name)
    if submodule is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{submodule}", __name__), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
