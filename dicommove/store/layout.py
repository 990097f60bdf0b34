"""File names of received instances: layouts of validated UIDs only.

A layout is ``"hierarchical"`` (``<Study>/<Series>/<SOPInstance>.dcm``), ``"flat"``
(``<SOPInstance>.dcm``, as dicom-movescu) or a template of UID fields. Only UIDs
that pass :func:`is_valid_uid` ever become part of a path, so a name can never
leave the output root (DCMTK's CVE-2022-2119 and -2120 were path traversal through
UIDs used as file names).
"""

from __future__ import annotations

import re

from ..errors import InputError

__all__ = ["FIELDS", "LAYOUTS", "Layout", "compile_layout", "is_valid_uid"]

#: Named layouts, as templates.
LAYOUTS = {
    "hierarchical": "{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm",
    "flat": "{SOPInstanceUID}.dcm",
}
FIELDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
_TEMPLATE_PART = re.compile(r"\{([A-Za-z]+)\}|([A-Za-z0-9._/-]+)|(.)", re.DOTALL)
_UID_CHARS = "0123456789."

#: A layout: "hierarchical", "flat", or a template of UID fields (see compile_layout).
Layout = str


def is_valid_uid(value: object) -> bool:
    """Return whether ``value`` is a UID that is safe to use in a file name.

    Digits and dots only, at most 64 characters, no empty component; so never
    ``.``, ``..``, a separator or a drive letter.
    """
    # String methods, not a regex: this runs several times per received instance.
    return (
        isinstance(value, str)
        and 0 < len(value) <= 64
        and not value.strip(_UID_CHARS)  # digits and dots only
        and value[0] != "."
        and value[-1] != "."
        and ".." not in value
    )


def compile_layout(layout: str) -> str:
    """Return the template of a layout, or raise :class:`InputError` if it is unsafe.

    A template may use only ``{StudyInstanceUID}``, ``{SeriesInstanceUID}``,
    ``{SOPInstanceUID}`` and ``{SOPClassUID}``, literal ``[A-Za-z0-9._-]`` and
    ``/``; it must contain ``{SOPInstanceUID}`` so that names are unique, and no
    path component may be empty, ``.`` or ``..``.
    """
    template = LAYOUTS.get(layout, layout)
    for match in _TEMPLATE_PART.finditer(template):
        name, _literal, bad = match.groups()
        if bad is not None:
            raise InputError(
                f"layout {layout!r}: character {bad!r} is not allowed; use UID fields "
                f"{', '.join('{' + f + '}' for f in FIELDS)}, letters, digits, '._-' and '/'"
            )
        if name is not None and name not in FIELDS:
            raise InputError(f"layout {layout!r}: unknown field {{{name}}}; use one of {FIELDS}")
    if "{SOPInstanceUID}" not in template:
        raise InputError(f"layout {layout!r} must contain {{SOPInstanceUID}} so names are unique")
    parts = template.split("/")
    if template.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise InputError(f"layout {layout!r}: no empty, '.' or '..' path components")
    return template
