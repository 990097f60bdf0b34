"""The run journal: lines that parse, read back the same as they were kept."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from dicommove import journal as journal_module
from dicommove.journal import Journal
from dicommove.rows import Arrival
from dicommove.store import Received


def received(sop: str, **kw: object) -> Received:
    fields: dict[str, object] = {
        "sop_instance_uid": sop,
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
        "transfer_syntax_uid": "1.2.840.10008.1.2.1",
        "status": "received",
        "study_instance_uid": "1.2.3",
        "series_instance_uid": "1.2.3.4",
        "patient_id": "PAT1",
        "size": 123,
        "received_at": 1764603700.25,
    }
    fields.update(kw)
    return Received(**fields)  # type: ignore[arg-type]


def arrival_of(rec: Received) -> Arrival:
    return Arrival(
        rec.sop_instance_uid,
        rec.sop_class_uid,
        rec.transfer_syntax_uid,
        rec.status,
        rec.reason,
        rec.study_instance_uid,
        rec.series_instance_uid,
        rec.patient_id,
        rec.path,
        rec.size,
        rec.received_at,
    )


ODD = [
    received("1.2.3.4.5", path="{root}/1.2.3/1.2.3.4/1.2.3.4.5.dcm"),
    received("1.2.3.4.6", patient_id='Pat "quoted" \\ back\\slash', path="{root}/x/1.2.3.4.6.dcm"),
    received("1.2.3.4.7", patient_id="患者 €", path="{root}/y/1.2.3.4.7.dcm"),
    received("../evil\n\x00", status="refused", reason='unsafe "UID"', path="", size=0),
    received("1.2.3.4.8", status="unrequested", reason="matches no request", path="{root}/z.dcm"),
]


def _write(
    root: Path, kept: bool, monkeypatch: pytest.MonkeyPatch
) -> tuple[Journal, list[Arrival]]:
    monkeypatch.setattr(journal_module, "KEPT", 10_000 if kept else 0)
    journal = Journal(root)
    journal.open()
    expected = []
    for i, template in enumerate(ODD):
        rec = received(
            template.sop_instance_uid,
            status=template.status,
            reason=template.reason,
            patient_id=template.patient_id,
            path=template.path.format(root=root),
            size=template.size,
        )
        key = None if rec.status == "unrequested" else f'["study",[{i}]]'
        arrival = arrival_of(rec)
        journal.instance(key, rec, arrival)
        expected.append(arrival)
    journal.close()
    return journal, expected


def test_every_line_is_json_and_names_its_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path, True, monkeypatch)
    lines = (tmp_path / ".dicommove" / "journal.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert records[0]["event"] == "run"
    instances = [r for r in records if r["event"] == "instance"]
    assert [r["sop"] for r in instances] == [r.sop_instance_uid for r in ODD]
    assert instances[1]["patient"] == 'Pat "quoted" \\ back\\slash'
    assert instances[2]["patient"] == "患者 €"
    assert instances[3]["reason"] == 'unsafe "UID"'
    assert instances[4]["key"] is None
    assert not Path(instances[0]["path"]).is_absolute()


def test_read_back_from_the_file_as_kept_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept_journal, kept = _write(tmp_path / "a", True, monkeypatch)
    file_journal, _ = _write(tmp_path / "b", False, monkeypatch)
    from_memory = [a for _, a in kept_journal.arrivals()]
    from_file = [a for _, a in file_journal.arrivals()]
    assert from_memory == kept
    # the same records, paths under each journal's own root
    rebased = [dataclasses.replace(a, path=a.path.replace("/a/", "/b/")) for a in kept]
    assert from_file == rebased
