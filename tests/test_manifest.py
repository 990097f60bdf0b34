from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from dicommove import manifest


def _rows() -> list[dict[str, object]]:
    now = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
    return [
        {
            "request": 0,
            "StudyInstanceUID": "1.2",
            "SOPInstanceUID": "1.2.3",
            "path": "/x/1.2.3.dcm",
            "size": 1234,
            "status": "received",
            "received_at": now,
            "move_status": 0,
        },
        {
            "request": 1,
            "StudyInstanceUID": "1.3",
            "status": "not_found",
            "reason": "the PACS matched no instance",
            "move_status": 0,
            "completed": 0,
            "failed": 0,
            "warning": 0,
        },
    ]


def test_schema_and_dtypes() -> None:
    df = manifest.build(_rows())
    assert list(df.columns) == list(manifest.COLUMNS)
    assert str(df["size"].dtype) == "Int64"
    assert isinstance(df["status"].dtype, pd.CategoricalDtype)
    assert list(df["status"].cat.categories) == list(manifest.STATUSES)
    assert str(df["received_at"].dtype) == "datetime64[ns, UTC]"
    assert str(df["SOPInstanceUID"].dtype) == "string"
    assert df["SOPInstanceUID"].isna().tolist() == [False, True]
    assert df["size"].isna().tolist() == [False, True]


def test_empty_manifest_has_the_schema() -> None:
    df = manifest.build([])
    assert list(df.columns) == list(manifest.COLUMNS)
    assert len(df) == 0


def test_unknown_column_is_an_error() -> None:
    with pytest.raises(KeyError, match="nonsense"):
        manifest.build([{"nonsense": 1}])


def test_unknown_status_is_rejected() -> None:
    with pytest.raises(ValueError, match="whatever"):
        manifest.build([{"status": "whatever"}])


def test_csv_round_trip(tmp_path: Path) -> None:
    df = manifest.build(_rows())
    path = manifest.write_csv(df, tmp_path / "sub" / "m.csv")
    back = manifest.read_csv(path)
    assert list(back.dtypes.astype(str)) == list(df.dtypes.astype(str))
    assert back["received_at"][0] == df["received_at"][0]
    assert back["status"].tolist() == ["received", "not_found"]
    assert back["size"].tolist()[0] == 1234
    assert not list(tmp_path.glob("sub/.*.part"))


def test_summarize_and_complete() -> None:
    df = manifest.build(_rows())
    text = manifest.summarize(df)
    assert text.startswith("1 instance received (1.2 kB) for 2 requests")
    assert "not_found: 1" in text
    assert not manifest.is_complete(df)
    assert manifest.is_complete(df.iloc[:1])


def test_write_rows_writes_what_pandas_writes(tmp_path: Path) -> None:
    """The CLI's CSV (no pandas) is byte-identical to write_csv of the typed frame."""
    rows: list[dict[str, Any]] = [
        {
            "request": 0,
            "PatientID": "PAT, with comma",
            "StudyInstanceUID": "1.2.3",
            "SOPInstanceUID": "1.2.3.4",
            "path": "/out/1.2.3/1.2.3.4.dcm",
            "size": 9464,
            "status": "received",
            "received_at": 1764603700.965886,
            "move_status": 0,
        },
        {
            "request": 'row "b"',
            "status": "missing",
            "reason": "no instance arrived; why",
            "completed": 3,
        },
        {"request": None, "status": "unrequested", "received_at": 1764603700.0000004, "size": None},
        {"request": ("a", 1), "status": "failed", "move_status": 0xC000, "failed": 2, "warning": 0},
    ]
    manifest.write_rows(rows, tmp_path / "rows.csv")
    manifest.write_csv(manifest.build(rows), tmp_path / "frame.csv")
    assert (tmp_path / "rows.csv").read_bytes() == (tmp_path / "frame.csv").read_bytes()
    back = manifest.read_csv(tmp_path / "rows.csv")
    assert list(back["status"]) == ["received", "missing", "unrequested", "failed"]
    manifest.write_rows(iter([]), tmp_path / "none.csv")  # any iterable; no rows: the header
    manifest.write_csv(manifest.build([]), tmp_path / "none-frame.csv")
    assert (tmp_path / "none.csv").read_bytes() == (tmp_path / "none-frame.csv").read_bytes()


def test_write_rows_refuses_an_unknown_column(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="nonsense"):
        manifest.write_rows([{"status": "received", "nonsense": 1}], tmp_path / "x.csv")


def test_summarize_rows_matches_summarize() -> None:
    rows: list[dict[str, Any]] = [
        {"request": 0, "status": "received", "size": 10},
        {"request": 0, "status": "received", "size": 1500},
        {"request": 1, "status": "missing"},
        {"request": None, "status": "unrequested", "size": 5},
    ]
    assert manifest.summarize_rows(rows) == manifest.summarize(manifest.build(rows))
