"""The header columns of a manifest (``tags=``): which elements, checked before a move.

``move(..., tags=["Modality", "SeriesDescription", "InstanceNumber"])`` reads those
elements from the header that the store already has in memory for each instance
(:func:`dicommove._header.read_tags`), never with a full decode; a header longer than
the first 64 KiB is read on from the temp file with the same bounded walk (a deflated
one is not: only what its first 64 KiB inflate to). Without ``tags`` the receive path
is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import InputError

__all__ = ["header_tags"]

#: VRs whose values are no column: sequences, binary data, tags.
_NOT_COLUMNS = frozenset(
    {"SQ", "OB", "OD", "OF", "OL", "OV", "OW", "UN", "AT", "OB or OW", "US or OW", "US or SS"}
)
#: Columns the manifest always has: asking for them again is refused.
_ALREADY = frozenset(
    {"PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"}
)


def header_tags(names: Iterable[str] | None) -> dict[int, tuple[str, str]]:
    """Return tag -> (keyword, VR) of the header columns asked for; check each.

    Raises
    ------
    InputError
        For something that is not a list of keywords, an unknown keyword, a private
        tag (it has no keyword to name its column), a sequence, pixel data, or a
        column the manifest already has.
    """
    if names is None:
        return {}
    if isinstance(names, (str, bytes)):
        raise InputError(f"tags={names!r}: pass a list of keywords, e.g. [{names!r}]")
    from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

    from ..errors import QueryError
    from ..query import parse_selector

    found: dict[int, tuple[str, str]] = {}
    for name in names:
        text = str(name).strip()
        hex_digits = text.strip("()").replace(",", "").replace(" ", "")
        tag = tag_for_keyword(text) if text.isidentifier() else None
        if tag is None and len(hex_digits) == 8:
            try:
                tag = int(hex_digits, 16)
            except ValueError:
                tag = None
        if tag is None:
            try:  # its message says what is wrong, with close keywords
                tag = parse_selector(text)
            except QueryError as exc:
                raise InputError(f"tags: {exc}") from None
        keyword = keyword_for_tag(tag)
        if not keyword:
            raise InputError(
                f"tags: {name!r} has no keyword to name its column (a private or unknown tag)"
            )
        vr = str(dictionary_VR(tag))
        if vr in _NOT_COLUMNS or tag >> 16 in (0x7FE0, 0x0002, 0x0000):
            raise InputError(
                f"tags: {keyword} ({vr}) cannot be a manifest column: ask for top-level "
                "elements with text or number values, such as Modality or InstanceNumber "
                "(not sequences, pixel data, binary values or file meta)"
            )
        if keyword in _ALREADY:
            raise InputError(f"tags: {keyword} is already a manifest column")
        found[tag] = (keyword, vr)
    return found
