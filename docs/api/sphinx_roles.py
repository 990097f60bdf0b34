"""MkDocs hook: render the Sphinx roles of dicommove's docstrings on the API pages.

The docstrings are numpy style, but cross-reference with Sphinx roles
(:class:`~dicommove.Session`, :func:`make_reporter`, :mod:`dicommove.manifest`) that
mkdocstrings leaves as text: ``:class:<code>~dicommove.Session</code>``. This hook turns
each into code, the way Sphinx shows it (``~`` keeps the last name only), linked to its
entry in the API reference when the name is fully qualified and documented there (an
optional cross-reference: a name the site does not document stays plain code, without a
warning). It also drops the second colon of reST's literal-block marker (``text::``).

It only rewrites the HTML of the API reference pages (``api/``); nothing else is touched.
"""

from __future__ import annotations

import html
import re
from typing import Any

_ROLE = re.compile(
    r":(?:class|func|meth|attr|data|mod|exc|obj|const):<code>(?P<tilde>~?)(?P<target>[^<]+)</code>"
)
_LITERAL_MARKER = re.compile(r"(?<=\w)::</p>")


def _role(match: re.Match[str]) -> str:
    target = html.unescape(match["target"]).lstrip(".")
    title = target.rsplit(".", 1)[-1] if match["tilde"] else target
    code = f"<code>{html.escape(title)}</code>"
    if target.startswith("dicommove."):
        return f'<autoref identifier="{html.escape(target)}" optional>{code}</autoref>'
    return code


def on_page_content(html_text: str, page: Any, **kwargs: Any) -> str:
    """Rewrite the roles and literal-block markers of an API reference page."""
    if not page.file.src_uri.startswith("api/"):
        return html_text
    html_text = _ROLE.sub(_role, html_text)
    return _LITERAL_MARKER.sub(":</p>", html_text)
