"""The documentation site: the CLI page against argparse, the navigation, the links.

- ``docs/cli.md`` names every subcommand and every option string the parser knows, and its
  fenced ``$ dicommove ... --help`` blocks are the parser's help at 80 columns. After changing
  an option, ``python tests/test_docs.py`` rewrites those blocks (then describe the option in
  the page's tables).
- ``mkdocs.yml``'s nav lists every page under ``docs/`` (and nothing that is not there).
- No page links outside ``docs/``: a relative link resolved from its page stays inside, so
  the site built by ``mkdocs build --strict`` has every target.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dicommove._cliparse import _build_parsers

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CLI_PAGE = DOCS / "cli.md"
MKDOCS_YML = ROOT / "mkdocs.yml"

#: A help block: a ```text fence whose first line is the command that printed it.
HELP_BLOCK = re.compile(
    r"^```text\n\$ dicommove(?P<command>(?: [a-z]+)?) --help\n(?P<help>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)
#: The width the help blocks are formatted at (argparse reads COLUMNS).
COLUMNS = "80"


@contextmanager
def _help_environment() -> Iterator[None]:
    """Format help as ``COLUMNS=80 dicommove ... --help`` does in a pipe: 80 columns, no color."""
    saved = {name: os.environ.get(name) for name in ("COLUMNS", "NO_COLOR", "FORCE_COLOR")}
    os.environ["COLUMNS"] = COLUMNS
    os.environ["NO_COLOR"] = "1"
    os.environ.pop("FORCE_COLOR", None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def parsers() -> dict[str, argparse.ArgumentParser]:
    """Return the parsers by command line: ``""`` for ``dicommove``, ``"move"`` etc."""
    top, commands = _build_parsers()
    return {"": top, **commands}


def current_help() -> dict[str, str]:
    """Return each parser's ``--help`` text at 80 columns, by command."""
    with _help_environment():
        return {command: parser.format_help() for command, parser in parsers().items()}


def page_help_blocks(text: str) -> dict[str, str]:
    """Return the help blocks of a page by command (``""`` for ``dicommove --help``)."""
    return {m["command"].strip(): m["help"] for m in HELP_BLOCK.finditer(text)}


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Return every option string of a parser (``-q``, ``--query``, ...)."""
    return {option for action in parser._actions for option in action.option_strings}


def _mentioned(text: str, token: str) -> bool:
    """Whether ``token`` occurs in ``text`` as a whole option (not inside ``--tls-ca-file``)."""
    return re.search(rf"(?<![\w-]){re.escape(token)}(?![\w-])", text) is not None


def _option_scope(text: str, command: str) -> str:
    """Return the part of the CLI page about one command, help block excluded.

    The page has one ``## `dicommove <command>``` section per command; an option must be
    described there or in a general part (the introduction, exit codes, parity), not only
    in the help block that argparse printed.
    """
    sections = re.split(r"^## ", text, flags=re.MULTILINE)
    own = [s for s in sections if s.startswith(f"`dicommove {command}`")] if command else []
    general = [s for s in sections if not s.startswith("`dicommove ")]
    return HELP_BLOCK.sub("", "\n".join(own + general))


# -- the CLI page ------------------------------------------------------------------------------


def test_cli_page_names_every_command_and_option() -> None:
    text = CLI_PAGE.read_text(encoding="utf-8")
    missing: list[str] = []
    for command, parser in parsers().items():
        if command and not _mentioned(text, f"dicommove {command}"):
            missing.append(f"the command 'dicommove {command}'")
        if command and f"## `dicommove {command}`" not in text:
            missing.append(f"a section '## `dicommove {command}`'")
        scope = _option_scope(text, command)
        for option in sorted(option_strings(parser)):
            if option in ("-h", "--help"):
                continue  # argparse's own; shown in every help block
            if not _mentioned(scope, option):
                missing.append(f"{option} of {('dicommove ' + command).strip()!r}")
    assert not missing, "docs/cli.md does not describe: " + "; ".join(missing)


@pytest.mark.skipif(
    sys.version_info >= (3, 13),
    reason="argparse 3.13 formats options differently (-q, --query SEL=VAL); "
    "the help blocks follow Python 3.10-3.12, as CI runs them",
)
def test_cli_help_blocks_match_the_parser() -> None:
    blocks = page_help_blocks(CLI_PAGE.read_text(encoding="utf-8"))
    wanted = current_help()
    assert sorted(blocks) == sorted(wanted), (
        "docs/cli.md should hold one help block per command: "
        f"has {sorted(blocks)}, the parser has {sorted(wanted)}"
    )
    stale = [command or "(top level)" for command in wanted if blocks[command] != wanted[command]]
    assert not stale, (
        f"the help blocks of {stale} in docs/cli.md differ from `dicommove ... --help` at "
        f"COLUMNS={COLUMNS}: run `python tests/test_docs.py` to regenerate them"
    )


def test_help_matches_the_command_line() -> None:
    """The in-process help is what the installed command prints at COLUMNS=80."""
    env = {**os.environ, "COLUMNS": COLUMNS, "NO_COLOR": "1"}
    env.pop("FORCE_COLOR", None)
    for command in ("", "move"):
        argv = [sys.executable, "-m", "dicommove", *([command] if command else []), "--help"]
        out = subprocess.run(argv, capture_output=True, text=True, env=env, check=True).stdout
        # `python -m dicommove` is `dicommove`: argparse names the program itself (prog=)
        assert out == current_help()[command]


def regenerate(text: str) -> str:
    """Return the CLI page with its help blocks replaced by the parser's current help."""
    wanted = current_help()

    def block(match: re.Match[str]) -> str:
        command = match["command"]
        return f"```text\n$ dicommove{command} --help\n{wanted[command.strip()]}```"

    return HELP_BLOCK.sub(block, text)


# -- navigation --------------------------------------------------------------------------------


def nav_pages() -> list[str]:
    """Return the pages of mkdocs.yml's nav, in order (paths relative to docs/).

    A plain reading of the ``nav:`` block (``- Title: page.md`` lines), so that the test
    needs no YAML parser (mkdocs is in the ``docs`` extra, not in ``test``).
    """
    lines = MKDOCS_YML.read_text(encoding="utf-8").splitlines()
    start = lines.index("nav:")
    pages = []
    for line in lines[start + 1 :]:
        if line and not line.startswith((" ", "#")):
            break  # the next top-level key
        m = re.match(r"^\s*- (?:[^:]+:\s*)?(\S+\.(?:md|ipynb))\s*$", line)
        if m:
            pages.append(m[1])
    return pages


def doc_pages() -> set[str]:
    """Return every page under docs/ (Markdown anywhere, notebooks at the top)."""
    md = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    notebooks = {p.name for p in DOCS.glob("*.ipynb")}  # symlinks into notebooks/ count
    return md | notebooks


def test_nav_lists_every_page() -> None:
    nav = nav_pages()
    assert nav, "mkdocs.yml has no nav"
    assert len(nav) == len(set(nav)), f"pages listed twice in the nav: {nav}"
    unlisted = sorted(doc_pages() - set(nav))
    assert not unlisted, f"pages under docs/ missing from mkdocs.yml's nav: {unlisted}"
    absent = [page for page in nav if not (DOCS / page).exists()]
    assert not absent, f"nav pages that do not exist under docs/ (or dangling symlinks): {absent}"
    assert nav[0] == "index.md", "the home page comes first"


# -- links -------------------------------------------------------------------------------------

#: ``[text](target)`` and ``![alt](target)``, with an optional title.
INLINE_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
#: ``[id]: target`` reference definitions.
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
#: ``href="..."`` / ``src="..."`` in raw HTML.
HTML_LINK = re.compile(r"\b(?:href|src)=\"([^\"]+)\"")
FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.DOTALL)


def links(markdown: str) -> list[str]:
    """Return the link targets of a Markdown text, code blocks and code spans excluded."""
    prose = CODE_SPAN.sub("", FENCE.sub("", markdown))
    found = [
        m[1] for pattern in (INLINE_LINK, REFERENCE, HTML_LINK) for m in pattern.finditer(prose)
    ]
    return found


def page_markdown(page: Path) -> str:
    """Return a page's Markdown: the file, or a notebook's Markdown cells."""
    if page.suffix == ".ipynb":
        cells = json.loads(page.read_text(encoding="utf-8"))["cells"]
        return "\n\n".join(
            "".join(cell["source"]) for cell in cells if cell["cell_type"] == "markdown"
        )
    return page.read_text(encoding="utf-8")


def outside_links(markdown: str, page_dir: Path) -> list[str]:
    """Return the links of a page in ``page_dir`` that leave docs/ (http(s) links are fine)."""
    bad = []
    for target in links(markdown):
        if re.match(r"^(https?:|mailto:)", target) or target.startswith("#"):
            continue
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("/"):
            bad.append(target)  # file:, an absolute path: not inside the site
            continue
        path = target.split("#", 1)[0].split("?", 1)[0]
        # the site renders a docs/ page, symlinked notebooks included, from its place in docs/
        resolved = Path(os.path.normpath(page_dir / path))
        if not resolved.is_relative_to(DOCS):
            bad.append(target)
    return bad


def test_links_stay_inside_docs() -> None:
    pages = sorted({*DOCS.rglob("*.md"), *(p for p in DOCS.glob("*.ipynb") if p.exists())})
    assert pages
    bad = {
        page.relative_to(DOCS).as_posix(): found
        for page in pages
        if (found := outside_links(page_markdown(page), page.parent))
    }
    assert not bad, f"links that leave docs/ (the site would not have them): {bad}"


def test_link_check_catches_outside_links() -> None:
    """The link check itself: what leaves docs/ is caught, the rest is not."""
    text = (
        "[ok](cli.md#exit-codes) [ok](api/index.md) [ok](https://example.org/x) [ok](#here)\n"
        "![ok](img/flow.png) [ok](../docs/index.md)\n"
        "[bad](../README.md) [bad](../benchmarks/bench.py) [bad](/etc/passwd) [bad](file:///x)\n"
        "`[not a link](../x.md)`\n```text\n[not a link](../y.md)\n```\n"
        '[ref]: ../notebooks/quickstart.ipynb\n<a href="../scripts/install-peers.sh">x</a>\n'
    )
    assert outside_links(text, DOCS) == [
        "../README.md",
        "../benchmarks/bench.py",
        "/etc/passwd",
        "file:///x",
        "../notebooks/quickstart.ipynb",
        "../scripts/install-peers.sh",
    ]
    assert outside_links("[up](../index.md) [up](../../README.md)", DOCS / "api") == [
        "../../README.md"
    ]


if __name__ == "__main__":  # regenerate the help blocks of docs/cli.md
    old = CLI_PAGE.read_text(encoding="utf-8")
    new = regenerate(old)
    if new != old:
        CLI_PAGE.write_text(new, encoding="utf-8")
        print(f"{CLI_PAGE.relative_to(ROOT)}: help blocks regenerated")
    else:
        print(f"{CLI_PAGE.relative_to(ROOT)}: help blocks up to date")
