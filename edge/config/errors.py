"""Configuration errors that name the file, the field path, the value and what is allowed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from edge.config.site import (CAMERA_ID_MAX_LENGTH, CAMERA_ID_PATTERN, FEED_ENDPOINT_PATTERN, PIPELINE_NAME_PATTERN,
                              REPLAY_ENDPOINT_PATTERN)
from edge.config.web import ZMQ_ENDPOINT_PATTERN
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


@dataclass(frozen=True)
class PatternRule:
    """A field's regular expression in words, because pydantic's error shows only the expression."""

    text: str
    # For names: the error suggests the value with each run of other characters turned into '-', cut to
    # this length. None where no such name is suggested.
    name_max_length: int | None = None


PATTERN_RULES = {
    CAMERA_ID_PATTERN: PatternRule(f"use only lower-case letters, digits, '-' and '_', starting with a letter or "
                                   f"digit, at most {CAMERA_ID_MAX_LENGTH} characters", CAMERA_ID_MAX_LENGTH),
    # No name is suggested, because it would have to be the name of an existing file.
    PIPELINE_NAME_PATTERN: PatternRule("use the name of a pipeline file without '.toml', which contains only "
                                       "lower-case letters, digits, '-' and '_'"),
    FEED_ENDPOINT_PATTERN: PatternRule("expected a ZeroMQ endpoint tcp://HOST:PORT, ipc://PATH or inproc://NAME, "
                                       "such as tcp://127.0.0.1:5556"),
    REPLAY_ENDPOINT_PATTERN: PatternRule("expected a ZeroMQ endpoint tcp://HOST:PORT, ipc://PATH or inproc://NAME, "
                                         "such as tcp://127.0.0.1:5557, or \"\" to turn replay off"),
    ZMQ_ENDPOINT_PATTERN: PatternRule("expected a ZeroMQ endpoint tcp://HOST:PORT or ipc://PATH, "
                                      "such as tcp://127.0.0.1:5556"),
}


def suggest_name(value: str, max_length: int) -> str | None:
    """Return `value` rewritten to lower-case letters, digits, '-' and '_', or None when nothing is left."""
    name = re.sub(r"[^a-z0-9_-]+", "-", value.lower()).strip("-_")
    name = name[:max_length].rstrip("-_")
    return name or None


def pattern_message(pattern: str, value: object) -> str | None:
    """Return the words for a pattern mismatch, with a fixed name to use where one can be derived."""
    rule = PATTERN_RULES.get(pattern)
    if rule is None:
        return None
    if rule.name_max_length is None or not isinstance(value, str):
        return rule.text
    suggestion = suggest_name(value, rule.name_max_length)
    return f"{rule.text}, such as '{suggestion}'" if suggestion else rule.text


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
        if detail["type"] == "string_pattern_mismatch":
            message = pattern_message(detail["ctx"]["pattern"], value) or message
        issues.append(ConfigIssue(file, format_field_path(detail["loc"]), value, message))
    return issues


def issue(file: Path, field_path: str, message: str, value: object = _NO_VALUE) -> ConfigIssue:
    return ConfigIssue(file, field_path, value, message)
