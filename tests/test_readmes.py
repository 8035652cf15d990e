"""The Chinese README against the English one: every file and page that one links, the other links too."""

from __future__ import annotations

import re

from tests.conftest import PROJECT_ROOT

LINK = re.compile(r"\]\(([^)#]+)(?:#[^)]*)?\)")


def linked_files(name: str) -> set[str]:
    """Return the link targets of a README without their #anchors, skipping links within the page."""
    return set(LINK.findall((PROJECT_ROOT / name).read_text(encoding="utf-8")))


def chinese_version(target: str) -> str:
    """Return the Chinese version of a linked document where one exists, such as docs/feed.zh-CN.md, else `target`."""
    translated = target.replace(".md", ".zh-CN.md")
    return translated if (PROJECT_ROOT / translated).exists() else target


def test_chinese_readme_links_same_files():
    english = {chinese_version(target) for target in linked_files("README.md") - {"README.zh-CN.md"}}
    chinese = linked_files("README.zh-CN.md") - {"README.md"}
    assert sorted(english - chinese) == [], "linked only in README.md"
    assert sorted(chinese - english) == [], "linked only in README.zh-CN.md"
