"""The command line's parsers: ``move``, ``echo`` and ``demo``, in parity with dicom-movescu.

Kept apart from :mod:`dicommove.cli` (which runs the commands) so each stays short.
Options and positionals may come in any order, as the dicom-movescu README writes
them (``dicom-movescu PACS@host:port --study query.dcm``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from ._defaults import DEFAULT_AE_TITLE, DEFAULT_MAX_PDU, DEFAULT_PORT, DEFAULT_WORKERS

__all__ = ["MANIFEST_NAME", "PDU_MAX", "PDU_MIN", "parse_args"]

#: Exit codes (see the ``dicommove.cli`` module docstring).
EXIT_OK = 0
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_FAILED = 4
EXIT_NETWORK = 5
EXIT_LOCAL = 6
EXIT_DEADLINE = 7
EXIT_INTERRUPTED = 130

#: Where ``dicommove move`` writes its manifest, under the output directory.
MANIFEST_NAME = "dicommove-manifest.csv"

#: ``--max-pdu-length``: dicom-movescu takes 4096..131072; we also take larger values, up
#: to the largest a PS3.8 Maximum Length item can hold, and 0 for "no maximum".
PDU_MIN = 4096
PDU_MAX = 0xFFFFFFFF


_EPILOG = """\
exit codes: 0 complete; 2 bad input; 3 partial (some instances failed or are missing);
4 failed or refused by the PACS; 5 network/association error; 6 local setup error
(output directory, store port); 7 the run's deadline passed (--deadline): what arrived
is kept, run again with --resume; 130 interrupted or cancelled.
"""


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="verbose mode (-vv: debug)"
    )
    parser.add_argument(
        "--calling-ae-title",
        default=DEFAULT_AE_TITLE,
        metavar="AE",
        help=f"our AE title, also the store SCP's (default: {DEFAULT_AE_TITLE})",
    )
    parser.add_argument(
        "--called-ae-title",
        metavar="AE",
        help="the PACS's AE title (default: from ADDR, else ANY-SCP)",
    )
    parser.add_argument(
        "--max-pdu-length",
        type=int,
        default=DEFAULT_MAX_PDU,
        metavar="N",
        help=f"the maximum PDU length we receive, {PDU_MIN}..{PDU_MAX} or 0 for "
        f"unlimited (default: {DEFAULT_MAX_PDU})",
    )
    tls = parser.add_argument_group(
        "DICOM TLS",
        "any of these turns TLS on, for our associations to the PACS and (move)\n"
        "for the store SCP; files are PEM",
    )
    tls.add_argument(
        "--tls-ca",
        metavar="FILE",
        help="CA certificate(s) that sign the PACS's certificates (default: the system's)",
    )
    tls.add_argument(
        "--tls-cert", metavar="FILE", help="our certificate: the client's and the store SCP's"
    )
    tls.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert")
    tls.add_argument(
        "--tls-anonymous",
        action="store_true",
        help="anonymous TLS: present no client certificate, and let the store SCP accept "
        "a PACS without one (the allow-lists still apply)",
    )


def _query_options(parser: argparse.ArgumentParser) -> None:
    model = parser.add_mutually_exclusive_group()
    model.add_argument(
        "-S",
        "--study",
        dest="model",
        action="store_const",
        const="study",
        help="Study Root Query/Retrieve Information Model (default)",
    )
    model.add_argument(
        "-P",
        "--patient",
        dest="model",
        action="store_const",
        const="patient",
        help="Patient Root Query/Retrieve Information Model",
    )
    model.add_argument(
        "--composite",
        dest="model",
        action="store_const",
        const="composite",
        help="Composite Instance Root (C-MOVE and C-GET of SOPInstanceUIDs alone, where the "
        "PACS supports it)",
    )
    parser.add_argument("--query-file", metavar="F", help="a text file of selector=value lines")
    parser.add_argument(
        "-q",
        "--query",
        dest="queries",
        action="append",
        default=[],
        metavar="SEL=VAL",
        help="a query element; repeatable",
    )


def _find_parser(sub: Any) -> argparse.ArgumentParser:
    fd: argparse.ArgumentParser = sub.add_parser(
        "find",
        help="C-FIND patients, studies, series or instances; prints CSV",
        description="Send C-FINDs and print one CSV row per match. A -q with a value is a "
        "matching key (AccessionNumber=A123, StudyDate=20240101-20241231, PatientName=SMITH*); "
        "one without (-q PatientSex) asks for that key back, besides the level's usual ones.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fd.add_argument("addr", metavar="ADDR", help="the PACS as AE@host:port (or host:port)")
    fd.add_argument("file", metavar="QUERY.dcm", nargs="?", help="a DICOM query object file")
    _query_options(fd)
    fd.add_argument(
        "--level",
        type=str.upper,
        choices=("PATIENT", "STUDY", "SERIES", "IMAGE"),
        help="the QueryRetrieveLevel (default: the query's, else STUDY)",
    )
    fd.add_argument(
        "--cohort",
        metavar="CSV",
        help="a CSV of matching keys, one C-FIND per row (columns named by keyword; an empty "
        "cell matches anything)",
    )
    fd.add_argument(
        "--csv", metavar="OUT", help="write the matches to OUT instead of standard output"
    )
    fd.add_argument(
        "--max-results",
        type=int,
        metavar="N",
        help="the most matches the PACS returns per C-FIND: a STUDY-level query answered with "
        "N (or cut short with Cancel, as Orthanc's LimitFindResults does) is asked again by "
        "StudyDate, then StudyTime, until each part returns fewer",
    )
    fd.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        metavar="N",
        help=f"parallel C-FIND associations for --cohort (default: {DEFAULT_WORKERS})",
    )
    fd.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="give up on a C-FIND after S seconds without a response (default: 600)",
    )
    _common(fd)
    return fd


def _build_parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """Return the ``dicommove`` parser and its subcommand parsers by name."""
    parser = argparse.ArgumentParser(
        prog="dicommove",
        description="Pull imaging studies out of a PACS with DICOM C-MOVE.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from ._version import __version__

    parser.add_argument("--version", action="version", version=f"dicommove {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    mv = sub.add_parser(
        "move",
        help="C-MOVE studies, series or instances (dicom-movescu compatible)",
        description="Send a C-MOVE and receive the instances in the embedded store SCP.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mv.add_argument("addr", metavar="ADDR", help="the PACS as AE@host:port (or host:port)")
    mv.add_argument("file", metavar="QUERY.dcm", nargs="?", help="a DICOM query object file")
    _query_options(mv)
    mv.add_argument(
        "--move-destination",
        metavar="AE",
        help="the C-MOVE destination (default: the calling AE title, received here)",
    )
    mv.add_argument(
        "-p",
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"the store SCP port (default: {DEFAULT_PORT})",
    )
    mv.add_argument(
        "-o",
        "--out-dir",
        default=".",
        metavar="DIR",
        help="output directory for received files (default: .)",
    )
    mv.add_argument(
        "--manifest",
        metavar="PATH",
        help=f"where to write the CSV manifest (default: DIR/{MANIFEST_NAME})",
    )
    mv.add_argument(
        "--no-strict",
        dest="strict",
        action="store_false",
        help="send the identifier as given even if it is not a valid C-MOVE identifier",
    )
    layout = mv.add_mutually_exclusive_group()
    layout.add_argument(
        "--flat",
        dest="layout",
        action="store_const",
        const="flat",
        default="hierarchical",
        help="write <SOPInstanceUID>.dcm directly in DIR (as dicom-movescu does)",
    )
    layout.add_argument(
        "--layout",
        dest="layout",
        metavar="TEMPLATE",
        help="file layout: hierarchical (default), flat, or a template such as "
        "'{StudyInstanceUID}/{SOPInstanceUID}.dcm' (UID fields only)",
    )
    mv.add_argument(
        "--allow-ae",
        dest="allowed_aes",
        action="append",
        default=[],
        metavar="AE",
        help="another calling AE title the store SCP accepts (repeatable; the PACS's own "
        "is always accepted). With ADDR as host:port, only these are; ANY accepts any",
    )
    mv.add_argument(
        "--allow-host",
        dest="allowed_hosts",
        action="append",
        metavar="IP",
        help="accept store associations only from this IP address (repeatable)",
    )
    mv.add_argument(
        "--max-associations",
        type=int,
        default=16,
        metavar="N",
        help="store associations at once; more are rejected as busy (default: 16)",
    )
    mv.add_argument(
        "--refuse-unrequested",
        dest="unrequested",
        action="store_const",
        const="refuse",
        default="keep",
        help="refuse instances that match no request (default: keep and flag them)",
    )
    mv.add_argument(
        "--accept-unknown-sop-classes",
        action="store_true",
        help="also accept private or unknown SOP classes",
    )
    mv.add_argument(
        "--bind",
        metavar="HOST",
        help="address the store SCP listens on (default: loopback for a loopback "
        "PACS, else all interfaces)",
    )
    mv.add_argument(
        "--cohort",
        metavar="CSV",
        help="a CSV of unique keys, one request per row: columns named by keyword "
        "(PatientID, StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID; other columns are "
        "ignored); the level is that of the most specific key column, whose cells must all "
        "be filled. With --resolve, other keys too (AccessionNumber...)",
    )
    mv.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        metavar="N",
        help=f"parallel C-MOVE associations (default: {DEFAULT_WORKERS})",
    )
    mv.add_argument(
        "--split",
        choices=("auto", "always", "never"),
        default="auto",
        help="share a study out over idle workers, series by series (auto: when they would "
        "idle and the study is large; never: for a PACS that limits associations)",
    )
    mv.add_argument(
        "--durability",
        choices=("request", "instance", "none"),
        default="request",
        help="when files reach the disk: once per request, in one pass (default), each "
        "before its C-STORE is answered, or left to the OS",
    )
    mv.add_argument(
        "--batch",
        type=int,
        default=1,
        metavar="N",
        help="group up to N rows of the same parent into one C-MOVE (default: 1)",
    )
    mv.add_argument(
        "--method",
        choices=("move", "get", "auto"),
        default="move",
        help="move: C-MOVE to our store SCP (the PACS must know our AE title and port; the "
        "default); get: C-GET, the instances come back on our own association (no port, no "
        "registration on the PACS); auto: C-MOVE, then C-GET if the PACS cannot send to us",
    )
    mv.add_argument(
        "--tag",
        dest="tags",
        action="append",
        metavar="KEYWORD",
        help="add a header element to the manifest as a column (e.g. --tag Modality --tag "
        "InstanceNumber), read from each instance as it is received; repeatable",
    )
    mv.add_argument(
        "--verify",
        action="store_true",
        help="list each request's instances with C-FIND first; each one that does not arrive "
        "is a missing row naming it, and is asked for again",
    )
    mv.add_argument(
        "--relational",
        action="store_true",
        help="ask the PACS for relational-retrieve (SOP Class Extended Negotiation): an "
        "IMAGE-level query may then list SOPInstanceUIDs alone, without their study and series",
    )
    mv.add_argument(
        "--resolve",
        action="store_true",
        help="find the UIDs of a query or --cohort rows that carry other keys (AccessionNumber, "
        "PatientID with StudyDate...) with C-FIND first, then move what they match; a row "
        "that matches nothing is a not_found row",
    )
    mv.add_argument(
        "--resume",
        action="store_true",
        help="skip requests an earlier run into DIR completed (its journal says so and the "
        "files are there); fetch the rest",
    )
    mv.add_argument(
        "--retries",
        type=int,
        default=3,
        metavar="N",
        help="retries of a request after a transient failure, with backoff (default: 3)",
    )
    mv.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="cancel a C-MOVE after S seconds without any response or instance (default: 600)",
    )
    mv.add_argument(
        "--deadline",
        type=float,
        metavar="S",
        help=f"cancel the whole run after S seconds and exit {EXIT_DEADLINE} (default: no limit)",
    )
    mv.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    _common(mv)

    fd = _find_parser(sub)

    ec = sub.add_parser(
        "echo",
        help="C-ECHO the PACS to check connectivity",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ec.add_argument("addr", metavar="ADDR", help="the PACS as AE@host:port (or host:port)")
    _common(ec)

    demo = sub.add_parser(
        "demo",
        help="move a synthetic cohort from the embedded demo PACS",
        description="Generate a small synthetic cohort, serve it from the embedded demo PACS "
        "on loopback, C-MOVE it into DIR with the store SCP, and print the manifest summary.",
    )
    demo.add_argument(
        "-o",
        "--out-dir",
        default="dicommove-demo",
        metavar="DIR",
        help="where the cohort and the received files go (default: dicommove-demo)",
    )
    demo.add_argument("--patients", type=int, default=2)
    demo.add_argument("--studies", type=int, default=2, help="studies per patient")
    demo.add_argument("--series", type=int, default=2, help="series per study")
    demo.add_argument("--instances", type=int, default=5, help="instances per series")
    demo.add_argument("--no-progress", dest="progress", action="store_false")
    demo.add_argument("-v", "--verbose", action="count", default=0)
    return parser, {"move": mv, "find": fd, "echo": ec, "demo": demo}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse a command line whose options and positionals may come in any order.

    ``dicom-movescu ADDR --study QUERY.dcm`` is a valid command line (clap takes
    positionals anywhere), but argparse's ``parse_args`` binds ``ADDR`` and the optional
    ``QUERY.dcm`` together at the first positional and then refuses ``QUERY.dcm`` as
    unrecognized. Each subcommand is therefore parsed with ``parse_intermixed_args``,
    which does not support subparsers themselves: the top-level parser handles only what
    names no subcommand (``--help``, ``--version``, errors).

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments, without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    argparse.Namespace
        The options, with ``command`` naming the subcommand.
    """
    parser, commands = _build_parsers()
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] in commands:
        args = commands[arguments[0]].parse_intermixed_args(arguments[1:])
        args.command = arguments[0]
        return args
    return parser.parse_args(arguments)
