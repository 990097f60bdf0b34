"""Every attack of dicommove.testing.hostile against three store SCPs: the table of issue 11.

    python benchmarks/attacks.py [--receivers dicommove,dcmtk,pynetdicom] [--out FILE.md]

Each receiver runs in a child process on 127.0.0.1 (dicommove's StoreSCP; DCMTK
``storescp`` 3.6.7; pynetdicom 3.0.4's ``AE.start_server`` with a C-STORE handler). Each
attack goes over a new connection; the table gives the bytes sent, the answer (abort,
reject, close, or none within 5 s), the time from the first forged byte to the answer,
and the receiver's resident memory (RSS) and peak (VmHWM) growth across the attack.
Loopback only; nothing is kept but the table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

from dicommove.testing.hostile import ATTACKS, AttackError, Outcome, run_attack
from dicommove.testing.peers import free_port, wait_for

AE = "STORE-SCP"


def _serve_dicommove(port: int, root: str) -> None:
    from dicommove.scp import InstanceStore, StoreSCP

    store = InstanceStore(root)
    store.prepare()
    store.begin()
    scp = StoreSCP(store, ae_title=AE, host="127.0.0.1", port=port, on_instance=lambda r: None)
    scp.start()
    sys.stdin.read()  # until the parent closes our stdin
    scp.stop()


def _serve_pynetdicom(port: int, root: str) -> None:
    import pynetdicom
    from pynetdicom import AllStoragePresentationContexts, evt
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    def on_store(event: evt.Event) -> int:
        return 0x0000

    ae = pynetdicom.AE(ae_title=AE)
    ae.supported_contexts = AllStoragePresentationContexts
    ae.add_supported_context(Verification)
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = 30
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    sys.stdin.read()
    if server is not None:
        server.shutdown()


def _memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def _start(kind: str, port: int, root: str) -> subprocess.Popen[bytes]:
    if kind == "dcmtk":
        storescp = shutil.which("storescp", path="/usr/bin") or "storescp"
        argv = [storescp, "--aetitle", AE, "--ignore", str(port)]
        env = {**os.environ, "TCP_NODELAY": "1"}
        return subprocess.Popen(argv, stdin=subprocess.PIPE, env=env, cwd=root)
    argv = [sys.executable, __file__, "--serve", kind, str(port), root]
    return subprocess.Popen(argv, stdin=subprocess.PIPE)


def _listening(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def run(kinds: list[str]) -> list[tuple[str, str, Outcome | str, int, int]]:
    """Run every attack against each receiver; (receiver, attack, outcome, RSS, HWM) rows."""
    rows: list[tuple[str, str, Outcome | str, int, int]] = []
    for kind in kinds:
        with tempfile.TemporaryDirectory(prefix=f"attacks-{kind}-") as root:
            port = free_port()
            proc = _start(kind, port, root)
            try:
                wait_for(partial(_listening, port), 30, what=f"{kind} listening")
                for attack in ATTACKS:
                    rss0, hwm0 = _memory(proc.pid)
                    try:
                        outcome: Outcome | str = run_attack(
                            "127.0.0.1", port, attack, called_ae=AE, timeout=5.0
                        )
                    except (AttackError, OSError) as exc:
                        outcome = f"set-up failed: {exc}"
                    rss1, hwm1 = _memory(proc.pid)
                    rows.append((kind, attack.name, outcome, rss1 - rss0, hwm1 - hwm0))
            finally:
                if proc.stdin is not None:
                    proc.stdin.close()
                proc.terminate()
                proc.wait(10)
    return rows


def table(rows: list[tuple[str, str, Outcome | str, int, int]]) -> str:
    """Return the rows as a Markdown table."""
    lines = [
        "| receiver | attack | bytes sent | answer | time to answer | RSS growth | peak growth |",
        "|---|---|---:|---|---:|---:|---:|",
    ]
    for kind, name, outcome, rss, hwm in rows:
        if isinstance(outcome, Outcome):
            cells = f"{outcome.sent:,} | {outcome.answer} | {outcome.seconds * 1000:.0f} ms"
        else:
            cells = f"- | {outcome} | -"
        lines.append(f"| {kind} | {name} | {cells} | {rss:,} KiB | {hwm:,} KiB |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the attacks and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receivers", default="dicommove,dcmtk,pynetdicom")
    parser.add_argument("--out", help="also write the table to this Markdown file")
    parser.add_argument(
        "--serve", nargs=3, metavar=("KIND", "PORT", "ROOT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.serve:
        kind, port, root = args.serve
        {"dicommove": _serve_dicommove, "pynetdicom": _serve_pynetdicom}[kind](int(port), root)
        return 0
    text = table(run(args.receivers.split(",")))
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
