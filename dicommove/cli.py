"""The ``dicommove`` command line, in parity with DICOM-rs ``dicom-movescu``.

``dicommove move ADDR [QUERY.dcm] [-S|-P] [--query-file F] [-q SEL=VAL ...]``
moves what the query identifies, writes the manifest as CSV and prints a
one-line summary. ``dicommove find ADDR -q AccessionNumber=A123`` prints the
C-FIND matches as CSV. ``dicommove echo ADDR`` checks connectivity, and
``dicommove demo`` runs a real C-MOVE from the embedded demo PACS. Options and
positionals may come in any order, as with ``dicom-movescu``
(``dicommove move ADDR --study QUERY.dcm``).

Exit codes
----------
0  every request arrived complete
2  bad input (usage, address, query): nothing was sent
3  partial: some instances arrived, others failed or are missing
4  failed or refused by the PACS (including an unknown move destination)
5  network or association error (connect, reject, abort, timeout)
6  local setup error (output directory, store port)
7  the run's deadline passed (--deadline); what arrived is kept, run again with --resume
130  interrupted or cancelled (Ctrl-C)
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._cliparse import (
    EXIT_DEADLINE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_LOCAL,
    EXIT_NETWORK,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    MANIFEST_NAME,
    PDU_MAX,
    PDU_MIN,
    parse_args,
)

if TYPE_CHECKING:
    import pandas as pd

    from .errors import DicomMoveError
    from .query import Model

__all__ = [
    "EXIT_DEADLINE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_LOCAL",
    "EXIT_NETWORK",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_USAGE",
    "MANIFEST_NAME",
    "main",
    "run",
]


#: For tests and callers that parse without running.
_parse_args = parse_args


@contextlib.contextmanager
def _logging_to_stderr(verbose: int) -> Iterator[None]:
    """Show the dicommove (and with -vv pynetdicom) log on stderr while a command runs.

    The loggers are put back afterwards, so that ``main()`` called in-process (tests,
    notebooks) leaves no handler behind.
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(name)s: %(message)s"))
    saved = []
    for name in ("dicommove", "pynetdicom"):
        log = logging.getLogger(name)
        saved.append((log, log.level, log.propagate))
        log.addHandler(handler)
        log.propagate = False
        # Our errors explain what pynetdicom logs; show its chatter only with -vv.
        log.setLevel(level if name == "dicommove" or verbose >= 2 else logging.CRITICAL)
    try:
        yield
    finally:
        for log, old_level, old_propagate in saved:
            log.removeHandler(handler)
            log.setLevel(old_level)
            log.propagate = old_propagate


def _pacs_address(args: argparse.Namespace) -> Any:
    from .node import Node

    node = Node.parse(args.addr)
    if args.called_ae_title:
        node = Node(args.called_ae_title, node.host, node.port)
    return node


def _tls(args: argparse.Namespace, *, store: bool = False) -> dict[str, Any]:
    """Return the ``tls``/``store_tls`` session options that the --tls-* flags ask for."""
    if not (args.tls_ca or args.tls_cert or args.tls_key or args.tls_anonymous):
        return {}
    from . import tls
    from .errors import InputError

    mine = {} if args.tls_anonymous else {"cert": args.tls_cert, "key": args.tls_key}
    options: dict[str, Any] = {"tls": tls.client_context(args.tls_ca, **mine)}
    if store:
        if not (args.tls_cert and args.tls_key):
            raise InputError(
                "the store SCP needs a certificate to speak TLS: give --tls-cert and --tls-key "
                "(or --method get, which receives on our own association)"
            )
        options["store_tls"] = tls.server_context(
            args.tls_cert, args.tls_key, args.tls_ca, require_client_cert=not args.tls_anonymous
        )
    return options


def _max_pdu(value: int) -> int:
    """Return ``--max-pdu-length`` as given, or raise :class:`InputError` if out of range."""
    from .errors import InputError

    if value != 0 and not PDU_MIN <= value <= PDU_MAX:
        raise InputError(f"--max-pdu-length {value}: use {PDU_MIN}..{PDU_MAX}, or 0 for unlimited")
    return value


def _cmd_move(args: argparse.Namespace) -> int:
    from . import _api
    from .errors import DicomMoveError
    from .options import RetryPolicy, StoreOptions, Timeouts
    from .query import Query

    model: Model = args.model or "study"
    what = _what(args, model, "give QUERY.dcm, --query-file F, -q SEL=VAL or --cohort CSV")
    no_level = isinstance(what, Query) and all(tag != 0x00080052 for tag, _ in what.elements)
    if no_level and not args.resolve:
        # no QueryRetrieveLevel given: infer it from the most specific unique key
        what = Query.from_keys(what.keys, model=model)
    out = Path(args.out_dir)
    manifest_path = Path(args.manifest) if args.manifest else out / MANIFEST_NAME
    store = StoreOptions(
        bind=args.bind,
        max_pdu=_max_pdu(args.max_pdu_length),
        allowed_aes=args.allowed_aes,
        allowed_hosts=args.allowed_hosts,
        unrequested=args.unrequested,
        accept_unknown_sop_classes=args.accept_unknown_sop_classes,
        durability=args.durability,
        max_associations=args.max_associations,
    )
    ours = args.move_destination in (None, args.calling_ae_title)
    tls = _tls(args, store=args.method != "get" and ours)
    split: Any = {"auto": "auto", "always": True, "never": False}[args.split]
    try:
        rows = _api.move_rows(
            _pacs_address(args),
            what,
            out=out,
            ae_title=args.calling_ae_title,
            port=args.port,
            move_destination=args.move_destination,
            model=model,
            strict=args.strict,
            progress="tqdm" if args.progress else False,
            layout=args.layout,
            deadline=args.deadline,
            workers=args.workers,
            split=split,
            resume=args.resume,
            resolve=args.resolve,
            batch=args.batch,
            tags=args.tags,
            method=args.method,
            verify=args.verify,
            relational=args.relational,
            timeouts=Timeouts(dimse=args.timeout, inactivity=args.timeout),
            retry=RetryPolicy(retries=args.retries),
            store=store,
            **tls,
        )
    except DicomMoveError as exc:
        if exc.rows is not None:  # whatever arrived is on disk: say so
            try:
                _report(exc.rows, manifest_path)
            except OSError as write_error:  # e.g. the output directory itself is unusable
                print(
                    f"dicommove: cannot write the manifest to {manifest_path}: {write_error}",
                    file=sys.stderr,
                )
        raise
    _report(rows, manifest_path)
    return EXIT_OK


def _what(args: argparse.Namespace, model: Model, hint: str) -> Any:
    """Return what a command asks about: the --cohort CSV, or the query of its sources."""
    from .errors import InputError
    from .query import Query

    if args.cohort:
        if args.file or args.query_file or args.queries:
            raise InputError("give either --cohort CSV or a query (QUERY.dcm, --query-file, -q)")
        return _read_cohort(Path(args.cohort))
    if not (args.file or args.query_file or args.queries):
        raise InputError(f"query not specified: {hint}")
    return Query.from_sources(
        dataset_file=args.file, query_file=args.query_file, selectors=args.queries, model=model
    )


def _read_cohort(path: Path) -> pd.DataFrame:
    """Read a cohort CSV: every column as text, empty cells empty (not NaN)."""
    import pandas as pd

    from .errors import InputError

    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise InputError(f"--cohort {path}: no such file") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"--cohort {path}: cannot read it as CSV ({exc})") from None
    if df.empty:
        raise InputError(f"--cohort {path}: no rows; give a header line and one row per request")
    return df


def _report(rows: Sequence[Mapping[str, Any]], manifest_path: Path) -> None:
    from .manifest import PROBLEM_STATUSES, summarize_rows, write_rows

    write_rows(rows, manifest_path)
    print(f"{summarize_rows(rows)}; manifest: {manifest_path}")
    problems = [row for row in rows if row.get("status") in PROBLEM_STATUSES]
    for row in problems[:20]:
        keys = [row.get(k) for k in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")]
        keys.append(row.get("PatientID"))
        what = next((k for k in keys if isinstance(k, str) and k), f"request {row.get('request')}")
        print(f"  {row.get('status')}: {what}: {row.get('reason')}", file=sys.stderr)
    if len(problems) > 20:
        print(f"  ... and {len(problems) - 20} more (see the manifest)", file=sys.stderr)


def _cmd_find(args: argparse.Namespace) -> int:
    from . import _api
    from .errors import FindError
    from .options import StoreOptions, Timeouts

    model: Model = args.model or "study"
    what = _what(
        args,
        model,
        "give -q SEL=VAL (e.g. -q AccessionNumber=A123), QUERY.dcm, --query-file F or --cohort CSV",
    )
    try:
        df = _api.find(
            _pacs_address(args),
            what,
            level=args.level,
            max_results=args.max_results,
            ae_title=args.calling_ae_title,
            model=model,
            workers=args.workers,
            timeouts=Timeouts(dimse=args.timeout),
            store=StoreOptions(max_pdu=_max_pdu(args.max_pdu_length)),
            **_tls(args),
        )
    except FindError as exc:
        if exc.found is not None and len(exc.found):  # what did arrive is not lost
            _write_found(exc.found, args.csv)
        raise
    _write_found(df, args.csv)
    return EXIT_OK


def _write_found(df: pd.DataFrame, path: str | None) -> None:
    if path is None:
        df.to_csv(sys.stdout, index=False)
    else:
        df.to_csv(path, index=False)
    print(f"{len(df)} matches" + (f"; written to {path}" if path else ""), file=sys.stderr)


def _cmd_echo(args: argparse.Namespace) -> int:
    from ._api import echo

    node = _pacs_address(args)
    from .options import StoreOptions

    store = StoreOptions(max_pdu=_max_pdu(args.max_pdu_length))
    echo(node, ae_title=args.calling_ae_title, store=store, **_tls(args))
    print(f"C-ECHO {node}: success")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    import socket

    from ._api import move
    from .manifest import summarize, write_csv
    from .testing import DemoPACS, make_cohort

    out = Path(args.out_dir)
    cohort = make_cohort(
        out / "source",
        patients=args.patients,
        studies=args.studies,
        series=args.series,
        instances=args.instances,
    )
    with socket.socket() as probe:  # a free loopback port for our store SCP
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    with DemoPACS(out / "source") as pacs:
        node = pacs.node
        pacs.add_destination("STORE-SCP", "127.0.0.1", port)
        studies = sorted(cohort["StudyInstanceUID"].unique())
        df = move(
            node,
            list(studies),
            out=out / "received",
            port=port,
            progress="tqdm" if args.progress else False,
        )
    path = write_csv(df, out / "received" / MANIFEST_NAME)
    print(f"demo: moved {len(studies)} studies from the demo PACS {node}")
    print(
        df[["request", "StudyInstanceUID", "SOPInstanceUID", "size", "status"]].head(8).to_string()
    )
    print(f"{summarize(df)}; manifest: {path}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments, without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        See the module docstring for the codes.
    """
    args = parse_args(argv)
    from .errors import DicomMoveError

    commands = {"move": _cmd_move, "find": _cmd_find, "echo": _cmd_echo, "demo": _cmd_demo}
    try:
        with _logging_to_stderr(args.verbose):
            return commands[args.command](args)
    except KeyboardInterrupt:  # also MoveInterrupted, a MoveCancelled
        print("dicommove: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except DicomMoveError as exc:
        print(f"dicommove: error: {exc}", file=sys.stderr)
        return _exit_code(exc)


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line as the ``dicommove`` script does; return the exit code.

    :func:`main` (same ``argv``), then :func:`gc.freeze`: the process is about to end, and the
    interpreter's final garbage collection of everything it built would add ~15 ms
    to every command (measured; files are closed and flushed by then).
    """
    code = main(argv)
    gc.freeze()
    return code


def _exit_code(exc: DicomMoveError) -> int:
    """Return the exit code of an error (see the module docstring)."""
    from .errors import (
        InputError,
        LocalSetupError,
        MoveCancelled,
        MoveIncomplete,
        MoveTimeout,
        NetworkError,
    )

    if isinstance(exc, InputError):
        return EXIT_USAGE
    if isinstance(exc, LocalSetupError):
        return EXIT_LOCAL
    if isinstance(exc, NetworkError):
        return EXIT_NETWORK
    if isinstance(exc, MoveTimeout):
        return EXIT_DEADLINE
    if isinstance(exc, MoveCancelled):
        return EXIT_INTERRUPTED
    if isinstance(exc, MoveIncomplete) and exc.rows is not None:
        # partial: some instance is here (or moved); a duplicate request row is no instance
        for row in exc.rows:
            status = row.get("status")
            if status == "moved" or (
                status in ("received", "duplicate") and row.get("SOPInstanceUID")
            ):
                return EXIT_PARTIAL
    return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
