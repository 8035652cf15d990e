"""`edge models list|verify|fetch`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge.models.fetch import fetch
from edge.models.manifest import AssetError, find_file, load_manifest, media_dirs, model_dirs, verify_file


def _search_dirs(is_media: bool) -> list[Path]:
    return media_dirs() if is_media else model_dirs()


def default_fetch_dir(is_media: bool) -> Path:
    """Return the first folder that the daemon searches: of EDGE_MODEL_DIR or EDGE_MEDIA_DIR when set, else ./models or ./media."""
    return _search_dirs(is_media)[0]


def run_models_command(args: argparse.Namespace) -> int:
    manifest = load_manifest()
    rows = [(entry, False) for entry in manifest.models.values()] + [(e, True) for e in manifest.media.values()]

    if args.models_command == "list":
        table = [("name", "kind", "file", "licence")]
        for entry, is_media in rows:
            found = find_file(entry.file, entry.task, _search_dirs(is_media))
            kind = "media" if is_media else getattr(entry, "family", "")
            table.append((entry.name, kind, str(found) if found else "not found", entry.licence))
        widths = [max(len(row[column]) for row in table) for column in range(3)]
        for row in table:
            # The licence column is last and left ragged, since some licences are long sentences.
            print("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3])
        return 0

    if args.models_command == "verify":
        failures = checked = missing = 0
        for entry, is_media in rows:
            search_dirs = _search_dirs(is_media)
            found = find_file(entry.file, entry.task, search_dirs)
            if found is None:
                missing += 1
                if args.all:
                    failures += 1
                looked_in = ", ".join(str(directory) for directory in search_dirs)
                fix = (f"run `edge models fetch {entry.name}`" if entry.url
                       else f"it has no download address ({entry.licence}); copy it into a model folder by hand")
                print(f"MISSING {entry.name}: {entry.file} not found in {looked_in} (or their {entry.task}/ "
                      f"sub-folders); {fix}")
                continue
            checked += 1
            try:
                verify_file(entry, found)
                print(f"OK      {entry.name}: {found}")
            except AssetError as error:
                failures += 1
                print(f"BAD     {error}")
        # Silence would read as success, so the count of files checked and not found is always printed.
        hint = "" if args.all or not missing else " (with --all, missing files fail the check)"
        print(f"{checked} of {len(rows)} file(s) found and checked, {missing} not found{hint}")
        return 1 if failures else 0

    names = args.names or [entry.name for entry, _ in rows if entry.url]
    failures = 0
    for name in names:
        try:
            entry = manifest.entry(name)
            is_media = name in manifest.media
            target = args.dir or default_fetch_dir(is_media)
            existing = find_file(entry.file, entry.task, [target])
            if existing is not None:
                verify_file(entry, existing)
                print(f"present {name}: {existing}")
                continue
            path = fetch(entry, target, progress=_print_progress(name))
            print(file=sys.stderr)  # end the progress line
            print(f"fetched {name}: {path}")
        except AssetError as error:
            failures += 1
            print(f"\nfailed  {error}", file=sys.stderr)
    return 1 if failures else 0


def _print_progress(name: str):
    def show(received: int, total: int | None) -> None:
        size = f"{received / 1e6:.1f}/{total / 1e6:.1f} MB" if total else f"{received / 1e6:.1f} MB"
        print(f"\r{name}: {size}", end="", file=sys.stderr, flush=True)

    return show
