"""`edge web --config FILE` runs the web service; `edge web adduser` creates a login."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge.web.auth import ROLES


def add_web_parser(commands: argparse._SubParsersAction) -> None:
    web = commands.add_parser(
        "web", help="run the investigators' web service, or add a user to it",
        description="Run the web service: it stores the hits of the configured daemon feeds and serves the "
                    "live, search, watchlist and camera pages.",
    )
    web.add_argument("--config", type=Path, help="web service config TOML file (see config/web-demo.toml)")
    web_commands = web.add_subparsers(dest="web_command")
    adduser = web_commands.add_parser("adduser", help="create a user who can log in to the web page")
    adduser.add_argument("--config", dest="adduser_config", type=Path, required=True, help="web service config TOML file")
    adduser.add_argument("name", help="login name")
    adduser.add_argument("--role", choices=ROLES, required=True,
                         help="viewer: live and search; investigator: also acknowledge and export; "
                              "admin: also watchlists, users and the audit log")
    password = adduser.add_mutually_exclusive_group()
    password.add_argument("--generate-password", action="store_true",
                          help="generate a random password and print it once (default: prompt twice)")
    password.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    web.set_defaults(handler=cmd_web)


def cmd_web(args: argparse.Namespace) -> int:
    from edge.config import ConfigError
    from edge.config.loader import load_web

    if args.web_command == "adduser":
        from edge.web.cli_users import add_user_command

        password = sys.stdin.readline().rstrip("\r\n") if args.password_stdin else None
        return add_user_command(args.adduser_config, args.name, args.role, password, args.generate_password)

    if args.config is None:
        print("edge web: missing --config FILE; config/web-demo.toml is an example", file=sys.stderr)
        return 2
    try:
        config = load_web(args.config)
    except ConfigError as error:
        error.print_report(args.config, sys.stderr)
        return 2
    from edge.web.app import run_web

    return run_web(config, config.data_path(args.config.resolve().parent))
