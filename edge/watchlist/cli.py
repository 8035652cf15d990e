"""`edge watchlist plates add|remove|list|import` and `edge watchlist audit`.

Exit codes: 0 on success, 1 for invalid input (a bad value, an unknown entry, CSV rows rejected),
2 when the database cannot be opened, read or written.
"""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from dataclasses import asdict
from pathlib import Path

from edge.watchlist.plates import MAX_EDITS_LIMIT, InvalidEntryError, PlateEntry
from edge.watchlist.store import AuditRecord, WatchlistStore, WatchlistStoreError, default_database_path

# Removed entries named in one row of the `audit` table; `audit --json` prints all of them.
AUDIT_SUMMARY_ENTRIES = 5


def add_watchlist_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `watchlist` command to `subparsers`, with `run_watchlist_command` as its handler."""
    # Read-only commands take `database`; commands that change the watchlist take `common`, which adds --actor.
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument("--db", type=Path, default=None, metavar="PATH",
                          help="watchlist database (default: $EDGE_DATA_DIR/watchlists.sqlite, "
                               "else ./data/watchlists.sqlite)")
    common = argparse.ArgumentParser(add_help=False, parents=[database])
    common.add_argument("--actor", default=None, metavar="NAME",
                        help="person recorded in the audit log for changes (default: the OS user name)")

    watchlist = subparsers.add_parser("watchlist", help="manage the plate and face watchlists and read their audit log")
    watchlist_commands = watchlist.add_subparsers(dest="watchlist_command", required=True, metavar="COMMAND")

    plates = watchlist_commands.add_parser("plates", help="add, remove, list or import watched plates")
    plates_commands = plates.add_subparsers(dest="plates_command", required=True, metavar="COMMAND")

    add = plates_commands.add_parser(
        "add", parents=[common], help="watch a plate pattern",
        description="Watch a plate pattern. '*' matches any run of characters, '?' exactly one; "
                    "spaces, '·' and '-' are removed and full-width characters converted.",
    )
    add.add_argument("pattern", help="plate or pattern, such as 苏B12345 or 苏B*123")
    add.add_argument("--reason", required=True, help="why the plate is watched, such as a case number")
    add.add_argument("--list", dest="list_name", required=True, metavar="NAME",
                     help="list the entry belongs to, such as stolen-vehicles")
    add.add_argument("--max-edits", type=int, default=0, metavar="N",
                     help=f"OCR character errors to tolerate, 0 to {MAX_EDITS_LIMIT} (default 0)")

    remove = plates_commands.add_parser(
        "remove", parents=[common], help="stop watching an entry",
        description="Stop watching an entry given by its id, every entry with a pattern, or a whole list with "
                    "--list. The removed entries are recorded in the audit log.",
    )
    remove.add_argument("target", metavar="ID|PATTERN", nargs="?",
                        help="entry id from `list`, or a pattern to remove from every list (or from --list only); "
                             "digits only are read as an id")
    remove.add_argument("--list", dest="list_name", metavar="NAME",
                        help="remove only from this list; without ID|PATTERN, remove every entry of the list")

    listing = plates_commands.add_parser("list", parents=[database], help="list the watched plates")
    listing.add_argument("--json", action="store_true", help="print a JSON array instead of a table")

    import_ = plates_commands.add_parser(
        "import", parents=[common], help="add the rows of a CSV file",
        description="Add the rows of a UTF-8 CSV file with the header pattern,reason,list_name,max_edits. "
                    "Valid rows are loaded even when others are rejected; rejected rows are listed "
                    "with their line numbers and the exit code is then 1.",
    )
    import_.add_argument("file", type=Path, metavar="FILE.csv", help="CSV file to import")

    audit = watchlist_commands.add_parser("audit", parents=[database], help="print the latest watchlist changes")
    audit.add_argument("--limit", type=int, default=50, metavar="N", help="rows to print, newest first (default 50)")
    audit.add_argument("--json", action="store_true", help="print one JSON object per row with the full detail")

    from edge.watchlist.face_cli import add_face_commands

    add_face_commands(watchlist_commands, database, common)
    watchlist.set_defaults(handler=run_watchlist_command)
    return watchlist


def run_watchlist_command(args: argparse.Namespace) -> int:
    """Run a parsed `watchlist` command and return its exit code. Errors go to stderr."""
    read_only = (args.watchlist_command == "audit" or getattr(args, "plates_command", None) == "list"
                 or getattr(args, "faces_command", None) == "list")
    path = Path(args.db) if args.db is not None else default_database_path()
    if read_only and not path.exists():
        # Listing must not create an empty database at a mistyped path and report "no entries".
        print(f"watchlist database {path} not found; pass --db with the site config's watchlist_db, or set "
              "EDGE_DATA_DIR", file=sys.stderr)
        return 2
    created = not path.exists()
    code = _run_on_database(args, path)
    if created and path.exists():
        if code == 0:
            _print_created_notice(path)
        else:
            # A rejected change leaves no empty database behind for the next command to pick up.
            for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                leftover.unlink(missing_ok=True)
    return code


def _run_on_database(args: argparse.Namespace, path: Path) -> int:
    try:
        store = WatchlistStore(path)
        if args.watchlist_command == "audit":
            return _print_audit(store.audit_log(args.limit), args.json)
        if args.watchlist_command == "faces":
            from edge.watchlist.face_cli import run_face_command

            return run_face_command(args, store)
        if args.plates_command == "add":
            entry = store.add_plate(args.pattern, args.reason, args.list_name, args.max_edits, actor=args.actor)
            print(f"added entry {entry.id}: {entry.pattern} (max_edits {entry.max_edits}) "
                  f"on list '{entry.list_name}' in {store.path.resolve()}")
            return 0
        if args.plates_command == "remove":
            return _remove(store, args.target, args.actor, args.list_name)
        if args.plates_command == "list":
            return _print_entries(store, args.json)
        return _import(store, args.file, args.actor)
    except InvalidEntryError as error:
        print(error, file=sys.stderr)
        return 1
    except WatchlistStoreError as error:
        print(error, file=sys.stderr)
        return 2


def _print_created_notice(path: Path) -> None:
    # A command run from the wrong folder would otherwise change a database that no daemon reads.
    print(f"notice: created a new watchlist database at {path.resolve()}; the daemon reads the watchlist_db "
          "of its site config, relative to the config file's folder, so pass --db PATH to change that database",
          file=sys.stderr)


def _remove(store: WatchlistStore, target: str | None, actor: str | None, list_name: str | None) -> int:
    if target is None:
        if list_name is None:
            print("give an entry id or pattern to remove, or --list NAME to remove a whole list", file=sys.stderr)
            return 1
        removed = store.remove_list(list_name, actor=actor)
        description = f"list '{list_name}'"
    else:
        # Digits only are read as an id. A pattern of digits only is valid but can be removed only by its id.
        key: int | str = int(target) if target.isascii() and target.isdigit() else target
        removed = store.remove_plate(key, actor=actor, list_name=list_name)
        description = f"id {key}" if isinstance(key, int) else f"pattern '{target}'"
        if list_name is not None:
            description += f" on list '{list_name}'"
    if removed == 0:
        print(f"no watchlist entry with {description} in {store.path}; `edge watchlist plates list` shows the entries",
              file=sys.stderr)
        return 1
    print(f"removed {removed} entr{'y' if removed == 1 else 'ies'}")
    return 0


def _import(store: WatchlistStore, path: Path, actor: str | None) -> int:
    report = store.import_plates_csv(path, actor=actor)
    for row in report.rejected:
        print(f"{path}:{row.line}: {row.message}", file=sys.stderr)
    print(f"loaded {len(report.loaded)} entries from {path} into {store.path.resolve()}, "
          f"rejected {len(report.rejected)} rows")
    return 1 if report.rejected else 0


def _print_entries(store: WatchlistStore, as_json: bool) -> int:
    entries = store.list_plates()
    if as_json:
        print(json.dumps([asdict(entry) for entry in entries], ensure_ascii=False, indent=2))
        return 0
    if not entries:
        print(f"no watchlist entries in {store.path}")
        return 0
    header = ("ID", "PATTERN", "MAX_EDITS", "LIST", "REASON", "CREATED_AT", "CREATED_BY")
    _print_table([header, *(_entry_row(entry) for entry in entries)])
    return 0


def _entry_row(entry: PlateEntry) -> tuple[str, ...]:
    return (str(entry.id), entry.pattern, str(entry.max_edits), entry.list_name, entry.reason, entry.created_at,
            entry.created_by)


def _print_audit(records: list[AuditRecord], as_json: bool) -> int:
    if as_json:
        for record in records:
            print(json.dumps(asdict(record), ensure_ascii=False))
        return 0
    rows = [("ID", "AT", "ACTOR", "ACTION", "DETAIL")]
    rows += [(str(r.id), r.at, r.actor, r.action, _summarise_detail(r)) for r in records]
    _print_table(rows)
    return 0


def _summarise_detail(record: AuditRecord) -> str:
    """Shorten an audit row's detail to one line. `audit --json` prints all of it."""
    detail = record.detail
    if record.action == "plate.add":
        return (f"entry {detail['id']} {detail['pattern']} max_edits {detail['max_edits']} "
                f"on '{detail['list_name']}': {detail['reason']}")
    if record.action == "plate.remove":
        # Removing a whole list can remove hundreds of thousands of entries, so only the first few are named.
        entries = detail["removed"]
        removed = ", ".join(f"entry {e['id']} {e['pattern']} on '{e['list_name']}'"
                            for e in entries[:AUDIT_SUMMARY_ENTRIES])
        if len(entries) > AUDIT_SUMMARY_ENTRIES:
            removed += f" and {len(entries) - AUDIT_SUMMARY_ENTRIES} more"
        return f"removed {removed}"
    if record.action == "face.add":
        return (f"person {detail['person_id']} {detail['name']} on '{detail['list_name']}' from "
                f"{len(detail['photo_sha256'])} photo(s): {detail['reason']}")
    if record.action == "face.remove":
        return f"removed person {detail['person_id']} {detail['name']} from '{detail['list_name']}'"
    if record.action == "face.reembed":
        return f"{detail['photos']} photo(s) embedded with {detail['model_id']}"
    return (f"{detail['file']} (sha256 {detail['sha256'][:12]}): {detail['loaded']} loaded, "
            f"{len(detail['rejected_lines'])} rejected")


def _display_width(text: str) -> int:
    # Chinese characters take two terminal columns.
    return sum(2 if unicodedata.east_asian_width(character) in ("W", "F") else 1 for character in text)


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(_display_width(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        cells = [cell + " " * (width - _display_width(cell)) for cell, width in zip(row[:-1], widths)]
        print("  ".join([*cells, row[-1]]))


def main(argv: list[str] | None = None) -> int:
    """Run `watchlist ...` on its own, before or without the `edge` command."""
    parser = argparse.ArgumentParser(prog="edge", description="Manage the plate watchlist.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_watchlist_parser(commands)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
