"""Cohort benchmark receiver: a straightforward pynetdicom loop, one C-MOVE per study.

    python benchmarks/pynetdicom_cohort.py HOST PORT --pacs-ae AE --cohort CSV --out DIR
        --port N [--ae-title AE]

What a user would write with pynetdicom alone: one AE that is both the Store SCP (an
``evt.EVT_C_STORE`` handler writing ``event.encoded_dataset()`` to ``DIR/<SOPInstanceUID>.dcm``)
and the Move SCU, one association to the PACS, and ``send_c_move`` for each StudyInstanceUID of
the CSV (column ``StudyInstanceUID``, read with the ``csv`` module), one after the other.

Exit status: 0 every C-MOVE ended with status Success (0x0000) and every C-STORE was written;
1 otherwise; 2 no association.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # generated at import
    StudyRootQueryRetrieveInformationModelMove,
)


def main(argv: list[str] | None = None) -> int:
    """Move every study of the cohort; return the exit status."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("host")
    ap.add_argument("pacs_port", type=int)
    ap.add_argument("--pacs-ae", required=True)
    ap.add_argument("--cohort", type=Path, required=True, help="CSV with a StudyInstanceUID column")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--port", type=int, required=True, help="our Store SCP port")
    ap.add_argument("--ae-title", default="PYNETDICOM")
    args = ap.parse_args(argv)

    with open(args.cohort, newline="") as f:
        studies = [row["StudyInstanceUID"] for row in csv.DictReader(f)]
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    store_errors: list[str] = []

    def on_store(event: Any) -> int:
        uid = str(event.request.AffectedSOPInstanceUID)
        try:
            (out / f"{uid}.dcm").write_bytes(event.encoded_dataset())
        except OSError as exc:
            store_errors.append(f"{uid}: {exc}")
            return 0xA700  # Out of resources
        return 0x0000

    ae = AE(ae_title=args.ae_title)
    ae.supported_contexts = StoragePresentationContexts
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    scp = ae.start_server(
        ("127.0.0.1", args.port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    assert scp is not None  # block=False returns the server
    failed: list[str] = []
    try:
        assoc = ae.associate(args.host, args.pacs_port, ae_title=args.pacs_ae)
        if not assoc.is_established:
            print("association with the PACS failed", file=sys.stderr)
            return 2
        try:
            for uid in studies:
                ident = Dataset()
                ident.QueryRetrieveLevel = "STUDY"
                ident.StudyInstanceUID = uid
                final = None
                for status, _ in assoc.send_c_move(
                    ident, args.ae_title, StudyRootQueryRetrieveInformationModelMove
                ):
                    final = None if status is None or "Status" not in status else status.Status
                if final != 0x0000:
                    failed.append(f"{uid}: final status {final!r}")
        finally:
            if assoc.is_established:
                assoc.release()
    finally:
        scp.shutdown()
    for line in [*failed, *store_errors]:
        print(line, file=sys.stderr)
    print(f"{len(studies)} C-MOVEs, {len(failed)} failed; {len(store_errors)} C-STORE errors")
    return 1 if failed or store_errors else 0


if __name__ == "__main__":
    sys.exit(main())
