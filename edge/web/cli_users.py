"""`edge web adduser`: create a web user from the command line, for the first admin and for scripts."""

from __future__ import annotations

import getpass
import logging
import secrets
import sys
from pathlib import Path

from edge.config.errors import ConfigError
from edge.config.loader import load_web
from edge.web.audit import WebDatabaseError, database_path
from edge.web.auth import UserError, UserStore

log = logging.getLogger(__name__)

CLI_ACTOR = "cli"
# 15 random bytes give 20 URL-safe characters, above the 10-character minimum.
GENERATED_PASSWORD_BYTES = 15


class PasswordPromptError(Exception):
    """The password could not be read from the terminal."""


def prompt_password(name: str) -> str:
    """Read the password twice without echo; raise PasswordPromptError when the entries differ or input ends."""
    if not sys.stdin.isatty():
        # getpass would fall back to echoing the password, with a warning, so stop before it does.
        raise PasswordPromptError("standard input is not a terminal, so the password cannot be typed unseen; use "
                                  "--password-stdin to pipe it in, or --generate-password")
    try:
        first = getpass.getpass(f"Password for {name}: ")
        second = getpass.getpass(f"Repeat the password for {name}: ")
    except EOFError:
        raise PasswordPromptError(
            "no password entered (input ended); run the command in a terminal, or use --password-stdin "
            "or --generate-password"
        ) from None
    if first != second:
        raise PasswordPromptError("the two passwords differ; run the command again")
    return first


def add_user_command(config_path: Path, name: str, role: str, password: str | None,
                     generate_password: bool = False) -> int:
    """Add a web user to the database of the web config at `config_path`; return the exit code.

    With `password` None the password is read from a prompt twice, unless `generate_password` is
    set: then a random one is generated and printed once. The change is audited with actor "cli".
    Exit codes: 0 added, 1 invalid input or prompt failure, 2 config or database failure.
    """
    config_path = Path(config_path)
    try:
        config = load_web(config_path)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2

    generated = password is None and generate_password
    try:
        if generated:
            password = secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
        elif password is None:
            password = prompt_password(name)
    except PasswordPromptError as error:
        print(error, file=sys.stderr)
        return 1

    path = database_path(config.data_path(config_path.parent))
    try:
        user = UserStore(path).add_user(name, password, role, CLI_ACTOR)
    except UserError as error:
        print(error, file=sys.stderr)
        return 1
    except WebDatabaseError as error:
        print(error, file=sys.stderr)
        return 2

    print(f"added user {user.name} with role {user.role} to {path}")
    if generated:
        print(f"generated password, shown only this once: {password}")
    return 0
