"""Message catalogues: every string a page shows comes from edge/web/locales/<language>/*.toml.

Each file contains flat `key = "text"` pairs, optionally under [section] tables (the key is then
`section.key`). Texts use str.format fields, such as "{count} hits". Files are split by page area so
that areas can be changed independently; keys must be unique across the files of one language.
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path

from edge.config.web import LANGUAGES

log = logging.getLogger(__name__)

LOCALE_DIR = Path(__file__).parent / "locales"
LANGUAGE_COOKIE = "lang"


class CatalogueError(Exception):
    """A catalogue file is unreadable, or the languages do not have the same keys."""


def _flatten(table: dict, prefix: str, into: dict[str, str], path: Path) -> None:
    for key, value in table.items():
        full_key = f"{prefix}{key}"
        if isinstance(value, dict):
            _flatten(value, f"{full_key}.", into, path)
        elif isinstance(value, str):
            if full_key in into:
                raise CatalogueError(f"{path}: key {full_key!r} is defined twice in this language")
            into[full_key] = value
        else:
            raise CatalogueError(f"{path}: key {full_key!r} is {type(value).__name__}; texts must be strings")


def load_language(directory: Path) -> dict[str, str]:
    messages: dict[str, str] = {}
    for path in sorted(directory.glob("*.toml")):
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise CatalogueError(f"{path}: cannot read the catalogue: {error}") from None
        _flatten(table, "", messages, path)
    return messages


@dataclass(frozen=True)
class Catalogues:
    messages: dict[str, dict[str, str]]  # language -> key -> text

    @classmethod
    def load(cls, directory: Path = LOCALE_DIR) -> Catalogues:
        messages = {language: load_language(directory / language) for language in LANGUAGES}
        reference = set(messages[LANGUAGES[0]])
        for language in LANGUAGES[1:]:
            keys = set(messages[language])
            if keys != reference:
                missing = sorted(reference - keys)[:10]
                extra = sorted(keys - reference)[:10]
                raise CatalogueError(f"catalogue {language!r} differs from {LANGUAGES[0]!r}: missing {missing}, "
                                     f"extra {extra}; every key needs a text in every language")
        return cls(messages)

    def translator(self, language: str) -> Translator:
        return Translator(language, self.messages[language])


@dataclass(frozen=True)
class Translator:
    language: str
    messages: dict[str, str]

    def __call__(self, key: str, **fields: object) -> str:
        text = self.messages.get(key)
        if text is None:
            # A missing key is a bug; showing the key keeps the page usable and makes the bug visible.
            log.error("missing catalogue key %r for language %s", key, self.language)
            return key
        return text.format(**fields) if fields else text
