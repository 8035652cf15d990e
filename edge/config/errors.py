"""Configuration errors that name the file, the field path, the value and what is allowed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from edge.ingest.redact import redact_url


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in one field of one config file."""

    file: Path
    field_path: str
    value: object
    message: str

    def __str__(self) -> str:
        location = f"{self.file}: {self.field_path}" if self.field_path else str(self.file)
        if self.value is _NO_VALUE:
            text = f"{location}: {self.message}"
        else:
            text = f"{location} = {self.value!r}: {self.message}"
        return redact_url(text)


class _NoValue:
    def __repr__(self) -> str:
        return "<no value>"


# Marks an issue that has no value to show, such as a missing field or a TOML syntax error.
_NO_VALUE = _NoValue()


class ConfigError(Exception):
    """Raised when a config file is invalid; `issues` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue]):
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))

    def print_report(self, path: object, file) -> None:
        """Print every issue, then how many there were in `path`, for the commands that check a file."""
        for issue in self.issues:
            print(issue, file=file)
        print(f"{len(self.issues)} error(s) in {path}", file=file)


def format_field_path(loc: tuple[object, ...]) -> str:
    """Format a pydantic location such as ('cameras', 1, 'max_fps') as 'cameras[1].max_fps'."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def issues_from_validation(file: Path, error: ValidationError) -> list[ConfigIssue]:
    issues = []
    for detail in error.errors(include_url=False):
        value = detail.get("input", _NO_VALUE)
        # A whole table or list is noise next to the message, and may hold camera credentials.
        if detail["type"] == "missing" or isinstance(value, (dict, list)):
            value = _NO_VALUE
        message = detail["msg"]
        # pydantic prefixes messages raised by our own validators with "Value error, ".
        message = message.removeprefix("Value error, ")
        issues.append(ConfigIssue(file, format_field_path(detail["loc"]), value, message))
    return issues


def issue(file: Path, field_path: str, message: str, value: object = _NO_VALUE) -> ConfigIssue:
    return ConfigIssue(file, field_path, value, message)
