"""The Chinese feed format page against the English reference: the checkable parts of both must agree.

The checks cover structure and literal content (headings, tables, examples, code identifiers and in-page
links), not the translation itself.
"""

from __future__ import annotations

import json
import re
from collections import Counter

from tests.conftest import PROJECT_ROOT

ENGLISH = PROJECT_ROOT / "docs" / "feed.md"
CHINESE = PROJECT_ROOT / "docs" / "feed.zh-CN.md"

HEADING = re.compile(r"^(#{1,6}) (.+)$")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
BACKTICKED = re.compile(r"`([^`\n]+)`")
PAGE_LINK = re.compile(r"\]\(#([^)]+)\)")


def read(path) -> str:
    return path.read_text(encoding="utf-8")


def prose_lines(text: str) -> list[str]:
    """Return the lines of a page outside fenced code blocks."""
    return FENCE.sub("", text).splitlines()


def headings(text: str) -> list[tuple[int, str]]:
    """Return (level, title) for every Markdown heading outside code blocks."""
    found = []
    for line in prose_lines(text):
        match = HEADING.match(line)
        if match:
            found.append((len(match.group(1)), match.group(2).strip()))
    return found


def github_anchor(title: str) -> str:
    """Return the anchor that GitHub gives a heading: lower case, punctuation removed, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def fenced_blocks(text: str, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(text) if lang == language]


def indented_blocks(text: str) -> list[str]:
    """Return the indented code blocks (commands, requests, `edge subscribe` output) outside fenced blocks.

    A block starts with a line indented by 4 spaces after a blank line and runs while lines stay indented.
    """
    blocks: list[list[str]] = []
    in_block = False
    previous = ""
    for line in prose_lines(text):
        indented = line.startswith("    ")
        if indented and (in_block or not previous.strip()):
            if not in_block:
                blocks.append([])
            blocks[-1].append(line[4:])
        in_block = indented and (in_block or not previous.strip())
        previous = line
    return ["\n".join(block) for block in blocks]


def tables(text: str) -> list[list[list[str]]]:
    """Return the body rows of each Markdown table as lists of cells, without the header row."""
    found: list[list[list[str]]] = []
    current: list[list[str]] | None = None
    for line in prose_lines(text):
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if current is None:
                current = []
                found.append(current)
            elif not all(set(cell) <= {"-", ":"} for cell in cells):
                current.append(cells)
        else:
            current = None
    return found


def strip_python_comments(code: str) -> str:
    """Remove `#` comments, which a translation may translate, and the spaces before them."""
    return "\n".join(re.sub(r"\s*#.*$", "", line) for line in code.splitlines())


def test_feed_docs_same_heading_levels():
    english = [level for level, _ in headings(read(ENGLISH))]
    chinese = [level for level, _ in headings(read(CHINESE))]
    assert Counter(chinese) == Counter(english)
    assert chinese == english, "headings are in a different order of levels"


def test_feed_docs_page_links_resolve():
    for path in (ENGLISH, CHINESE):
        text = read(path)
        anchors = {github_anchor(title) for _, title in headings(text)}
        missing = sorted(set(PAGE_LINK.findall(text)) - anchors)
        assert missing == [], f"{path.name} links to headings it does not have"


def test_feed_docs_page_links_same_sections():
    """Both pages link to the same sections, the same number of times, counted by heading position."""
    positions = []
    for path in (ENGLISH, CHINESE):
        text = read(path)
        index = {github_anchor(title): number for number, (_, title) in enumerate(headings(text))}
        positions.append(Counter(index.get(anchor) for anchor in PAGE_LINK.findall(text)))
    assert positions[1] == positions[0]


def test_feed_docs_same_json_examples():
    english = [json.loads(block) for block in fenced_blocks(read(ENGLISH), "json")]
    chinese = [json.loads(block) for block in fenced_blocks(read(CHINESE), "json")]
    assert len(chinese) == len(english)
    for number, (expected, actual) in enumerate(zip(english, chinese), start=1):
        assert actual == expected, f"JSON example {number} differs"


def test_feed_docs_same_code_examples():
    english = [strip_python_comments(block) for block in fenced_blocks(read(ENGLISH), "python")]
    chinese = [strip_python_comments(block) for block in fenced_blocks(read(CHINESE), "python")]
    assert chinese == english


def test_feed_docs_same_indented_blocks():
    english = indented_blocks(read(ENGLISH))
    chinese = indented_blocks(read(CHINESE))
    assert len(chinese) == len(english)
    for number, (expected, actual) in enumerate(zip(english, chinese), start=1):
        assert actual == expected, f"indented block {number} differs"


def test_feed_docs_same_table_rows():
    english = tables(read(ENGLISH))
    chinese = tables(read(CHINESE))
    assert [len(rows) for rows in chinese] == [len(rows) for rows in english], "rows per table differ"
    for number, (english_rows, chinese_rows) in enumerate(zip(english, chinese), start=1):
        english_names = [row[0] for row in english_rows if row[0].startswith("`")]
        chinese_names = [row[0] for row in chinese_rows if row[0].startswith("`")]
        assert chinese_names == english_names, f"table {number} has different field names"


def test_feed_docs_table_identifiers_present():
    """Every backticked name in the English tables, in any column, also appears in the Chinese page."""
    english = {name for rows in tables(read(ENGLISH)) for row in rows for cell in row
               for name in BACKTICKED.findall(cell)}
    chinese = set(BACKTICKED.findall(read(CHINESE)))
    assert sorted(english - chinese) == []


def test_feed_docs_prose_identifiers_present():
    """Every backticked name in the English prose (config keys, fields, commands) appears in the Chinese page."""
    english = set(BACKTICKED.findall("\n".join(prose_lines(read(ENGLISH)))))
    chinese = set(BACKTICKED.findall("\n".join(prose_lines(read(CHINESE)))))
    assert sorted(english - chinese) == []
