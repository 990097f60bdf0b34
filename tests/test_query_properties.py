"""Property tests of the query input parsers: never an untyped exception (issue 11).

Selectors, ``selector=value`` assignments, query text files (any bytes, odd
encodings, BOMs, CRLF), dicts, lists, Series and DataFrames (NaN, mixed types,
padded UIDs, duplicate columns) either give their result or raise a
:class:`~dicommove.errors.QueryError` whose message names the offending line,
selector or column. Any other exception fails the test as it propagates. Pure:
no socket is opened.
"""

from __future__ import annotations

import codecs
import math
import re
import warnings
from collections.abc import Hashable
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydicom import datadict

from dicommove.errors import QueryError, QueryWarning
from dicommove.query import (
    UNIQUE_KEYS,
    Query,
    parse_assignment,
    parse_selector,
    read_query_file,
    to_requests,
)
from dicommove.query.find import find_requests

FAST = settings(max_examples=150, deadline=None)
SLOW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

STUDY_TAG = 0x0020000D
KEY_NAMES = [*UNIQUE_KEYS.values(), "QueryRetrieveLevel"]
# Keywords of every kind the parser meets: Q/R keys (built-in table), other
# attributes (pydicom), and ones refused as keys (sequence, binary, ambiguous VR).
KEYWORDS = [
    *KEY_NAMES,
    "SpecificCharacterSet",
    "AccessionNumber",
    "PatientName",
    "StudyDate",
    "StudyTime",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedInstances",
    "PatientWeight",
    "SeriesNumber",
    "Rows",
    "PixelData",
    "ReferencedSeriesSequence",
    "LUTData",
    "OverlayData",
]
_TAG_FORM = re.compile(
    r"^(?:\(\s*([0-9A-Fa-f]{4})\s*,\s*([0-9A-Fa-f]{4})\s*\)"
    r"|([0-9A-Fa-f]{4})\s*,\s*([0-9A-Fa-f]{4})|([0-9A-Fa-f]{4})([0-9A-Fa-f]{4}))$"
)

# --------------------------------------------------------------------------- strategies

uids = st.lists(st.integers(0, 10**8), min_size=1, max_size=6).map(
    lambda parts: ".".join(str(p) for p in parts)
)
# What str.strip() drops, in the middle of a line of a file too.
blanks = st.text(alphabet=" \t\x0b\x0c\u00a0\u2003\u3000", max_size=3)
padded_uids = st.tuples(blanks, uids, blanks).map("".join)


@st.composite
def tag_forms(draw: st.DrawFn, tags: st.SearchStrategy[int]) -> str:
    """A tag written as (gggg,eeee), gggg,eeee or ggggeeee, in any case, with blanks."""
    tag = draw(tags)
    group, element = f"{tag >> 16:04x}", f"{tag & 0xFFFF:04x}"
    group, element = (
        "".join(c.upper() if draw(st.booleans()) else c for c in part) for part in (group, element)
    )
    gap = st.sampled_from(["", " ", "  ", "\t"])
    form = draw(st.sampled_from(["paren", "comma", "plain"]))
    if form == "paren":
        return f"({draw(gap)}{group}{draw(gap)},{draw(gap)}{element}{draw(gap)})"
    if form == "comma":
        return f"{group}{draw(gap)},{draw(gap)}{element}"
    return group + element


@st.composite
def mangled_keywords(draw: st.DrawFn) -> str:
    """A keyword with a character changed, dropped or added, or its case changed."""
    word = draw(st.sampled_from(KEYWORDS))
    position = draw(st.integers(0, len(word)))
    how = draw(st.sampled_from(["drop", "add", "lower", "path"]))
    if how == "drop":
        return word[:position] + word[position + 1 :]
    if how == "add":
        return word[:position] + draw(st.characters()) + word[position:]
    if how == "lower":
        return word.lower()
    return f"{word}.{draw(st.sampled_from(KEYWORDS))}"


selector_texts = st.one_of(
    st.text(max_size=24),
    st.sampled_from(KEYWORDS),
    mangled_keywords(),
    tag_forms(st.integers(0, 0xFFFFFFFF)),
    tag_forms(st.sampled_from([0x0020000D, 0x00100010, 0x60000010, 0x7FE00010, 0xFFFEE000])),
    st.from_regex(r"\(?[0-9A-Fa-g]{3,5}\s?,?[0-9A-Fa-f]{3,5}\)?", fullmatch=True),
    st.tuples(blanks, st.sampled_from(KEYWORDS), blanks).map("".join),
)
value_texts = st.one_of(
    st.text(max_size=24),
    st.lists(st.one_of(padded_uids, st.text(max_size=6)), max_size=3).map("\\".join),
    st.integers().map(str),
    st.integers(4000, 5000).map(lambda n: "9" * n),  # beyond int()'s digit limit
    st.floats().map(str),
    st.sampled_from(["", " ", "1e999", "-0", "+5", ".5", "1.", "STUDY", "series", "*", "?"]),
)

# DataFrame cells and dict values: every kind of thing a user's table holds.
cells = st.one_of(
    uids,
    padded_uids,
    st.lists(padded_uids, min_size=1, max_size=3),
    st.lists(padded_uids, max_size=3).map("\\".join),
    st.sampled_from(["STUDY", "series", " IMAGE ", "PATIENT", "nope", "", "   ", "*"]),
    st.text(max_size=10),
    st.none(),
    st.just(float("nan")),
    st.just(pd.NA),
    st.just(pd.NaT),
    st.just(np.nan),
    st.integers(-5, 10**21),
    st.just(10**5000),
    st.floats(),
    st.booleans(),
    st.integers(0, 99).map(np.int64),
    st.binary(max_size=4),
    st.lists(st.one_of(uids, st.none(), st.floats(), st.integers()), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
    st.sampled_from([Decimal("1.5"), pd.Timestamp("2024-01-02"), 1 + 2j, np.array(["1.2"])]),
)
column_names: st.SearchStrategy[Hashable] = st.one_of(
    st.sampled_from([*KEY_NAMES, "AccessionNumber", "StudyDate", "case", "Unnamed: 0"]),
    st.sampled_from([" StudyInstanceUID", "SeriesInstanceUID ", "studyinstanceuid"]),
    st.integers(0, 3),
    st.just(STUDY_TAG),
    st.sampled_from([pd.NA, None, float("nan")]),
    st.text(max_size=6),
)
models = st.sampled_from(["study", "patient", "composite"])


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    """A DataFrame of random columns (duplicates allowed), cells, dtypes and index."""
    columns = draw(st.lists(column_names, max_size=4))
    rows = draw(st.integers(0, 4))
    data = np.empty((rows, len(columns)), dtype=object)
    for i in range(rows):
        for j in range(len(columns)):
            data[i, j] = draw(cells)
    index = draw(
        st.one_of(
            st.just(list(range(rows))),
            st.lists(
                st.one_of(st.text(max_size=3), st.integers(), st.just(pd.NA)),
                min_size=rows,
                max_size=rows,
            ),
        )
    )
    frame: pd.DataFrame = pd.DataFrame(data, columns=columns, index=index)
    if draw(st.booleans()):
        frame = frame.infer_objects()  # int, float-with-NaN and bool columns
    return frame


# --------------------------------------------------------------------------- helpers


def _canonical(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _names_selector(message: str, text: str) -> bool:
    """Whether an error message names the selector: its text, or the tag it wrote."""
    stripped = text.strip()
    if not stripped:
        return "empty selector" in message
    if repr(stripped) in message or repr(text) in message:
        return True
    match = _TAG_FORM.match(stripped)
    if match is not None:
        digits = "".join(g for g in match.groups() if g).upper()
        return f"({digits[:4]},{digits[4:]})" in message
    tag = datadict.tag_for_keyword(stripped)  # a keyword refused as a key: named with its tag
    return tag is not None and f"{stripped} {_canonical(tag)}" in message


def _names_key(message: str, key: object) -> bool:
    """Whether an error message names a dict key or column: its text, keyword or tag."""
    if isinstance(key, str):
        return _names_selector(message, key) or (bool(key.strip()) and key.strip() in message)
    if repr(key) in message:
        return True
    if isinstance(key, int) and 0 <= key <= 0xFFFFFFFF:
        tag = key
    else:
        return False
    return _canonical(tag) in message


def _requests(what: Any, **options: Any) -> list[Any] | QueryError:
    """``to_requests``: its requests, or the QueryError (anything else propagates)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", QueryWarning)
            return to_requests(what, **options)
    except QueryError as exc:
        return exc


# --------------------------------------------------------------------------- selectors


@FAST
@given(selector_texts)
@example("")
@example("(0009,0010)")
@example("PixelData")
@example("StudyInstanceUID.PatientID")
@example("\ud800")
def test_parse_selector_gives_a_tag_or_a_query_error_naming_it(text: str) -> None:
    try:
        tag = parse_selector(text)
    except QueryError as exc:
        assert _names_selector(str(exc), text), (text, str(exc))
    else:
        assert 0 <= tag <= 0xFFFFFFFF
        assert parse_selector(_canonical(tag)) == tag


@FAST
@given(st.data())
def test_every_selector_form_of_a_key_gives_its_tag(data: st.DataObject) -> None:
    keyword = data.draw(st.sampled_from([*KEY_NAMES, "AccessionNumber", "PatientName"]))
    tag = parse_selector(keyword)
    assert parse_selector(data.draw(tag_forms(st.just(tag)))) == tag
    assert parse_selector(data.draw(blanks) + keyword + data.draw(blanks)) == tag


@FAST
@given(selector_texts, st.one_of(st.none(), value_texts))
@example("NumberOfStudyRelatedInstances", "9" * 5000)
@example("PatientWeight", "1e999")
def test_parse_assignment_gives_a_typed_value_or_a_query_error_naming_the_text(
    selector: str, value: str | None
) -> None:
    text = selector if value is None else f"{selector}={value}"
    try:
        tag, typed = parse_assignment(text)
    except QueryError as exc:
        assert repr(text) in str(exc)
    else:
        assert 0 <= tag <= 0xFFFFFFFF
        items = typed if isinstance(typed, list) else [] if typed is None else [typed]
        assert all(isinstance(item, (str, int, float)) for item in items)
        assert all(math.isfinite(item) for item in items if isinstance(item, float))


@FAST
@given(st.one_of(st.integers(), st.integers(4000, 5000).map(lambda n: 10**n)))
def test_integer_values_in_range_are_kept_others_refused_by_name(number: int) -> None:
    text = "9" * 4400 if number > 10**4000 else str(number)  # str() refuses more digits
    try:
        _tag, value = parse_assignment(f"NumberOfStudyRelatedInstances={text}")
    except QueryError as exc:
        assert not 0 <= number <= 2**31 - 1
        assert "NumberOfStudyRelatedInstances" in str(exc)
    else:
        assert value == number
    result = _requests({"StudyInstanceUID": number})
    if isinstance(result, QueryError):
        assert "StudyInstanceUID" in str(result)
    else:
        assert result[0].query.get("StudyInstanceUID") == str(number)


# --------------------------------------------------------------------------- padded UIDs


@FAST
@given(st.lists(st.tuples(blanks, uids, blanks), min_size=1, max_size=3))
def test_padded_uids_are_stripped_alike_by_every_input(padded: list[tuple[str, str, str]]) -> None:
    plain = [uid for _before, uid, _after in padded]
    texts = ["".join(parts) for parts in padded]
    expected = plain[0] if len(plain) == 1 else plain
    assert parse_assignment("StudyInstanceUID=" + "\\".join(texts)) == (STUDY_TAG, expected)
    wanted = [Query.study(uid) for uid in plain]
    frame = pd.DataFrame({"StudyInstanceUID": texts}, index=[f"r{i}" for i in range(len(texts))])
    assert [r.query for r in to_requests(frame)] == wanted
    assert [r.index for r in to_requests(frame)] == list(frame.index)
    assert [r.query for r in to_requests(pd.Series(texts))] == wanted
    assert [r.query for r in to_requests(texts)] == wanted
    assert [r.query for r in to_requests([{"StudyInstanceUID": t} for t in texts])] == wanted
    (multi,) = to_requests({"StudyInstanceUID": texts})
    assert multi.query == Query.study(*plain)


# --------------------------------------------------------------------------- query files


def valid_lines(pads: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Assignments that parse, padded with ``pads``."""
    keys = st.sampled_from(["StudyInstanceUID", "0020000E", "(0008,0018)"])
    return st.one_of(
        st.sampled_from(["QueryRetrieveLevel=STUDY", "QueryRetrieveLevel = series", "(0008,0052)"]),
        st.tuples(pads, keys, pads, st.just("="), pads, uids, pads).map("".join),
        st.tuples(pads, st.sampled_from(["PatientID", "PatientName", "AccessionNumber"])).map(
            "".join
        ),
    )


ascii_blanks = st.text(alphabet=" \t\x0b\x0c", max_size=3)
VALID_LINES = valid_lines(blanks)
BAD_LINES = st.sampled_from(
    [
        "NoSuchKeyword=1",
        "(0009,0010)=private",
        "PixelData=1",
        "StudyInstanceUID.PatientID=1",
        "NumberOfStudyRelatedInstances=abc",
        "SeriesNumber=" + "9" * 4400,
        "=1.2.3",
        "Rows=-1",
    ]
)
# Latin-1 letters from U+00C0 on encode to bytes that never form valid UTF-8 here.
LATIN1_TEXT = st.text(alphabet="AZaz09 -^ÀÉàéíñöüÿ", min_size=1, max_size=8)
ANY_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n\\"),
    min_size=1,
    max_size=8,
)


def _write(directory: Path, data: bytes) -> str:
    path = directory / "query.txt"
    path.write_bytes(data)
    return str(path)


@pytest.fixture(scope="module")
def qdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("query-files")


def _line_number(message: str, name: str) -> int:
    match = re.match(re.escape(name) + r":(\d+): ", message)
    assert match, message
    return int(match.group(1))


@SLOW
@given(
    st.binary(max_size=120)
    | st.lists(
        st.one_of(
            VALID_LINES, BAD_LINES, st.sampled_from(["", "# c", "  #x"]), st.text(max_size=8)
        ).map(lambda s: s.encode("utf-8", "surrogatepass")),
        max_size=5,
    ).map(b"\n".join)
)
def test_any_query_file_gives_assignments_or_an_error_naming_its_line(
    qdir: Path, data: bytes
) -> None:
    name = _write(qdir, data)
    try:
        result = read_query_file(name)
    except QueryError as exc:
        message = str(exc)
        number = _line_number(message, name)
        lines = re.split(rb"\r\n|\r|\n", data.removeprefix(codecs.BOM_UTF8))
        assert 1 <= number <= len(lines)
        if "UTF-16 text" in message:
            assert number == 1 and data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
        elif "not UTF-8 text" in message:  # that line is the first that does not decode
            with pytest.raises(UnicodeDecodeError):
                lines[number - 1].decode("utf-8")
            for earlier in lines[: number - 1]:
                earlier.decode("utf-8")
        else:  # that line is the first that does not parse
            text = lines[number - 1].decode("utf-8").strip()
            assert text and not text.startswith("#")
            with pytest.raises(QueryError):
                parse_assignment(text)
            for earlier in lines[: number - 1]:
                text = earlier.decode("utf-8").strip()
                if text and not text.startswith("#"):
                    parse_assignment(text)
    else:
        assert all(isinstance(tag, int) for tag, _value in result)


@st.composite
def query_files(draw: st.DrawFn) -> tuple[list[tuple[str, str]], str]:
    """Lines of a query file (kind, text) and the encoding to write it in."""
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16"]))
    latin = encoding in ("latin-1", "cp1252")
    values, pads = (LATIN1_TEXT, ascii_blanks) if latin else (ANY_TEXT, blanks)
    padded = valid_lines(pads)
    valid = st.one_of(padded, values.map(lambda v: "PatientName=" + v.strip("# ")))
    kinds = st.sampled_from(["valid", "valid", "blank", "comment", "bad"])
    lines: list[tuple[str, str]] = [("valid", draw(padded))]
    for kind in draw(st.lists(kinds, max_size=5)):
        text = {
            "valid": lambda: draw(valid),
            "blank": lambda: draw(pads.map(lambda p: p or " ")),  # "" after "\r": one "\r\n"
            "comment": lambda: "# " + draw(values),
            "bad": lambda: draw(BAD_LINES),
        }[kind]()
        lines.insert(draw(st.integers(0, len(lines))), (kind, text))
    return lines, encoding


@SLOW
@given(query_files(), st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=6, max_size=6))
def test_query_files_read_alike_whatever_their_line_ends_bom_and_encoding(
    qdir: Path, file: tuple[list[tuple[str, str]], str], ends: list[str]
) -> None:
    lines, encoding = file
    text = "".join(line + ends[i % len(ends)] for i, (_kind, line) in enumerate(lines))
    name = _write(qdir, text.encode(encoding))
    # The whole file is decoded before a line is parsed: a non-UTF-8 line comes first.
    bad = [i for i, (_k, line) in enumerate(lines, start=1) if not line.isascii()]
    if encoding not in ("latin-1", "cp1252") or not bad:
        bad = [i for i, (kind, _line) in enumerate(lines, start=1) if kind == "bad"]
    try:
        result = read_query_file(name)
    except QueryError as exc:
        if encoding == "utf-16":
            assert str(exc).startswith(f"{name}:1: ") and "UTF-16" in str(exc)
            return
        assert bad and _line_number(str(exc), name) == min(bad), str(exc)
    else:
        assert not bad and encoding != "utf-16"
        expected = [parse_assignment(line.strip()) for kind, line in lines if kind == "valid"]
        assert result == expected


# --------------------------------------------------------------------------- DataFrames


@SLOW
@given(frames(), models)
def test_any_dataframe_gives_one_request_per_row_or_an_error_naming_a_column(
    frame: pd.DataFrame, model: str
) -> None:
    names = [str(c).strip() for c in frame.columns if str(c).strip()]
    names += [repr(c) for c in frame.columns]
    for strict in (True, False):
        result = _requests(frame, model=model, strict=strict)
        if isinstance(result, QueryError):
            message = str(result)
            assert (
                "has no rows" in message
                or "columns are: none" in message
                or any(name in message for name in names)
            ), message
            if message.startswith("row "):
                assert any(message.startswith(f"row {label!r}: ") for label in frame.index)
        else:
            assert [r.index for r in result] == list(frame.index)
            assert all(isinstance(r.query, Query) for r in result)


@SLOW
@given(frames(), st.sampled_from(["study", "patient"]))
def test_any_dataframe_gives_find_requests_or_a_query_error(
    frame: pd.DataFrame, model: str
) -> None:
    try:
        requests = find_requests(frame, model=model)  # type: ignore[arg-type]
    except QueryError:
        return
    assert [r.label for r in requests] == list(frame.index)


@SLOW
@given(st.lists(cells, max_size=4), st.one_of(st.none(), column_names), models)
def test_any_series_gives_requests_or_a_query_error(
    values: list[Any], name: Hashable, model: str
) -> None:
    series = pd.Series(values, name=name, dtype=object)
    result = _requests(series, model=model)
    if not isinstance(result, QueryError):
        assert [r.index for r in result] == list(series.index)


@SLOW
@given(
    st.lists(st.tuples(padded_uids, padded_uids), min_size=1, max_size=4),
    st.lists(st.text(max_size=4), min_size=4, max_size=4, unique=True),
)
def test_valid_dataframes_round_trip(pairs: list[tuple[str, str]], labels: list[str]) -> None:
    labels = labels[: len(pairs)]
    frame = pd.DataFrame(pairs, columns=["StudyInstanceUID", "SeriesInstanceUID"], index=labels)
    frame["case"] = [float("nan")] * len(pairs)  # other columns are ignored, NaN or not
    requests = to_requests(frame)
    assert [r.index for r in requests] == labels
    assert [r.query for r in requests] == [Query.series(s.strip(), t.strip()) for s, t in pairs]


# --------------------------------------------------------------------------- dicts and lists

dict_keys: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(KEYWORDS),
    mangled_keywords(),
    tag_forms(st.sampled_from([0x0020000D, 0x0020000E, 0x00080052, 0x00090010])),
    st.text(max_size=6),
    st.integers(-1, 2**33),
    st.none(),
    st.floats(),
)


@FAST
@given(st.dictionaries(dict_keys, cells, max_size=4), models)
def test_any_dict_gives_a_request_or_an_error_naming_a_key(
    keys: dict[Any, Any], model: str
) -> None:
    result = _requests(keys, model=model)
    if isinstance(result, QueryError):
        message = str(result)
        assert any(_names_key(message, key) for key in [*keys, *KEY_NAMES]), message
    else:
        (request,) = result
        assert request.index == 0


@FAST
@given(
    st.lists(
        st.one_of(
            padded_uids,
            st.dictionaries(dict_keys, cells, max_size=2),
            cells,
            st.builds(Query.study, uids),
        ),
        max_size=4,
    ),
    models,
)
def test_any_list_gives_one_request_per_item_or_an_error_naming_the_item(
    items: list[Any], model: str
) -> None:
    result = _requests(items, model=model)
    if isinstance(result, QueryError):
        assert not items or re.match(r"item \d+: ", str(result)), str(result)
    else:
        assert [r.index for r in result] == list(range(len(items)))


@FAST
@given(st.one_of(cells, st.sets(st.integers(), max_size=2), st.just(np.array([["1.2"]]))))
def test_anything_else_gives_requests_or_a_query_error(what: Any) -> None:
    result = _requests(what)
    assert isinstance(result, QueryError) or len(result) >= 1


# --------------------------------------------------------------------------- examples


def _file(directory: Path, data: bytes) -> list[tuple[int, Any]]:
    return read_query_file(_write(directory, data))


QUERY = "QueryRetrieveLevel=STUDY\nStudyInstanceUID=1.2.3\n# é comment\n"


def test_bom_crlf_and_cr_read_as_plain_utf8(qdir: Path) -> None:
    plain = _file(qdir, QUERY.encode())
    assert plain == [(0x00080052, "STUDY"), (STUDY_TAG, "1.2.3")]
    assert _file(qdir, QUERY.encode("utf-8-sig")) == plain
    assert _file(qdir, QUERY.replace("\n", "\r\n").encode("utf-8-sig")) == plain
    assert _file(qdir, QUERY.replace("\n", "\r").encode()) == plain


def test_utf16_query_files_are_refused_at_line_1(qdir: Path) -> None:
    for encoding in ("utf-16", "utf-16-be", "utf-32"):
        data = QUERY.encode(encoding)
        if encoding == "utf-16-be":
            data = codecs.BOM_UTF16_BE + data
        with pytest.raises(
            QueryError, match=r"query\.txt:1: the file is not UTF-8 but UTF-16 text"
        ):
            _file(qdir, data)
    with pytest.raises(QueryError, match=r"query\.txt:1: .*NUL bytes: is the file UTF-16"):
        _file(qdir, QUERY.replace("é", "e").encode("utf-16-le"))
    with pytest.raises(QueryError, match=r"query\.txt:3: not UTF-8 .*NUL bytes: is it UTF-16"):
        _file(qdir, QUERY.encode("utf-16-le"))


def test_a_latin1_query_file_is_refused_at_its_first_non_utf8_line(qdir: Path) -> None:
    data = "QueryRetrieveLevel=STUDY\r\nPatientName=Müller\r\n".encode("latin-1")
    with pytest.raises(QueryError, match=r"query\.txt:2: not UTF-8 text \(byte 0xFC"):
        _file(qdir, data)
    with pytest.raises(QueryError, match=r"query\.txt:3: not UTF-8 text"):
        _file(qdir, b"# a\r# b\n\xffStudyInstanceUID=1.2\n")


def test_a_bad_line_is_named_by_number_and_text(qdir: Path) -> None:
    with pytest.raises(QueryError, match=r"query\.txt:3: in 'Foo=1': unknown attribute"):
        _file(qdir, b"QueryRetrieveLevel=STUDY\r\n\r\nFoo=1\r\n")


def test_a_path_that_is_not_one_is_refused() -> None:
    with pytest.raises(QueryError, match="embedded null byte"):
        read_query_file("query\x00.txt")
    with pytest.raises(QueryError, match="expected the path of a query file, got 3"):
        read_query_file(3)  # type: ignore[arg-type]
    with pytest.raises(QueryError, match=r"expected the path of a query file, got 3\.5"):
        Query.from_sources(query_file=3.5)  # type: ignore[arg-type]


def test_huge_numbers_are_refused_by_name() -> None:
    with pytest.raises(QueryError, match=r"StudyInstanceUID.*too long to print"):
        to_requests({"StudyInstanceUID": 10**5000})
    with pytest.raises(QueryError, match=r"NumberOfStudyRelatedInstances.*an integer from"):
        parse_assignment("NumberOfStudyRelatedInstances=" + "1" * 5000)
    with pytest.raises(QueryError, match=r"PatientWeight.*fewer digits"):
        Query.from_keys({"PatientWeight": 10**400})


def test_nan_cells() -> None:
    frame = pd.DataFrame({"StudyInstanceUID": ["1.2", np.nan]}, index=["a", "b"])
    with pytest.raises(QueryError, match=r"row 'b': StudyInstanceUID is empty \(null, NaN"):
        to_requests(frame)
    frame = pd.DataFrame(
        {"StudyInstanceUID": ["1.2", "1.3"], "SeriesInstanceUID": ["1.2.1", np.nan]},
        index=["a", "b"],
    )
    frame["QueryRetrieveLevel"] = ["SERIES", None]  # row b: the frame's level (SERIES)
    with pytest.raises(QueryError, match=r"row 'b': SeriesInstanceUID is empty"):
        to_requests(frame)
    frame.loc["b", "QueryRetrieveLevel"] = "study"
    assert [r.query for r in to_requests(frame)] == [
        Query.series("1.2", "1.2.1"),
        Query.study("1.3"),
    ]


def test_duplicate_columns_are_refused_by_name_when_read() -> None:
    frame = pd.DataFrame([["1.2", "1.3"]], columns=["StudyInstanceUID", "StudyInstanceUID"])
    with pytest.raises(QueryError, match="2 columns named 'StudyInstanceUID': keep one"):
        to_requests(frame)
    with pytest.raises(QueryError, match=r"two columns for StudyInstanceUID .* keep one"):
        find_requests(frame)
    same = pd.DataFrame([["1.2", "1.3"]], columns=["StudyInstanceUID", "(0020,000d)"])
    with pytest.raises(QueryError, match=r"StudyInstanceUID \('StudyInstanceUID' and '\(0020"):
        find_requests(same)
    ignored = pd.DataFrame([["1.2", "x", "y"]], columns=["StudyInstanceUID", "case", "case"])
    assert [r.query for r in to_requests(ignored)] == [Query.study("1.2")]


def test_padded_key_column_names_are_refused_by_name() -> None:
    frame = pd.DataFrame({"StudyInstanceUID": ["1.2"], " SeriesInstanceUID": ["1.2.3"]})
    with pytest.raises(QueryError, match=r"column ' SeriesInstanceUID' has blanks.*rename it"):
        to_requests(frame)
    # PatientID is no key of Study Root: ignored there, padded or not.
    frame = pd.DataFrame({"StudyInstanceUID": ["1.2"], "PatientID ": ["p"]})
    assert [r.query for r in to_requests(frame)] == [Query.study("1.2")]


def test_mixed_int_and_str_columns() -> None:
    frame = pd.DataFrame({"StudyInstanceUID": [12, "1.2", 1.0, 1.5, np.int64(7)]})
    assert [r.query.get("StudyInstanceUID") for r in to_requests(frame)] == [
        "12",
        "1.2",
        "1",
        "1.5",
        "7",
    ]
    with pytest.raises(QueryError, match=r"(?s)row 1: .*StudyInstanceUID '-3' is not a valid UID"):
        to_requests(pd.DataFrame({"StudyInstanceUID": [12, -3]}))
    with pytest.raises(QueryError, match=r"row 0: invalid value for StudyInstanceUID.*boolean"):
        to_requests(pd.DataFrame({"StudyInstanceUID": [True]}))


def test_missing_column_and_series_names() -> None:
    for name in (pd.NA, None, float("nan")):
        frame = pd.DataFrame([["1.2", "x"]], columns=["StudyInstanceUID", name])
        assert [r.query for r in to_requests(frame)] == [Query.study("1.2")]
    with pytest.raises(QueryError, match=r"its name must be one of .*; got <NA>"):
        to_requests(pd.Series(["1.2"], name=pd.NA))


def test_empty_inputs_and_none() -> None:
    with pytest.raises(QueryError, match=r"no unique-key column.*columns are: none"):
        to_requests(pd.DataFrame())
    with pytest.raises(QueryError, match="the DataFrame has no rows"):
        to_requests(pd.DataFrame({"StudyInstanceUID": []}))
    with pytest.raises(QueryError, match="of a NoneType"):
        to_requests(None)
    with pytest.raises(QueryError, match="item 0: cannot make a C-MOVE request of None"):
        to_requests([None])
    with pytest.raises(QueryError, match="no requests: the list is empty"):
        to_requests([])
    with pytest.raises(QueryError, match=r"QueryRetrieveLevel is missing"):
        to_requests({})


def test_misused_arguments_are_refused() -> None:
    with pytest.raises(QueryError, match=r"return_keys=5: pass a list of keywords"):
        find_requests({"AccessionNumber": "A"}, return_keys=5)  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="selectors=None: pass a list"):
        Query.from_sources(selectors=None)  # type: ignore[arg-type]
    with pytest.raises(QueryError, match=r"expected a tuple of \(tag, value\) pairs, got 3"):
        Query(3)  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="tag an integer too long to print is out of range"):
        to_requests({"StudyInstanceUID": "1.2", 10**5000: "x"})
    with pytest.raises(QueryError, match="item 0: cannot make a C-MOVE request of an integer too"):
        to_requests([10**5000])
