"""`edge watchlist faces add|list|remove|reembed`: enrol persons from photos and manage their embeddings."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge.faces.analyzer import EnrolmentError, FaceAnalyzer
from edge.faces.detector import FaceDetector, FaceDetectorError
from edge.faces.embedder import FaceEmbedder, FaceEmbedderError
from edge.faces.quality import QualityGate
from edge.models.manifest import AssetError, load_manifest, model_dirs, resolve_file
from edge.watchlist.enrol import MAX_PHOTO_BYTES, EnrolledFace, PhotoRejected, check_and_embed_photo
from edge.watchlist.faces import FaceWatchlist
from edge.watchlist.store import WatchlistStore, resolve_actor, validate_text

DEFAULT_DETECTOR = "yunet_s_640"
DEFAULT_EMBEDDER = "mobilefacenet_128d"


def add_face_commands(watchlist_commands: argparse._SubParsersAction, database: argparse.ArgumentParser,
                      common: argparse.ArgumentParser) -> None:
    """Add `faces add|list|remove|reembed`: `database` has --db for every command, `common` adds --actor."""
    models = argparse.ArgumentParser(add_help=False)
    models.add_argument("--detector", default=DEFAULT_DETECTOR, help=f"face detector model (default {DEFAULT_DETECTOR})")
    models.add_argument("--embedder", default=DEFAULT_EMBEDDER,
                        help=f"face embedding model; must match the daemon's (default {DEFAULT_EMBEDDER})")

    faces = watchlist_commands.add_parser("faces", help="enrol, list or remove persons of the face watchlist")
    faces_commands = faces.add_subparsers(dest="faces_command", required=True, metavar="COMMAND")
    add = faces_commands.add_parser(
        "add", parents=[common, models], help="enrol a person from one or more photos",
        description="Enrol a person. Every photo must show exactly one face that passes the quality gate; "
                    "otherwise nothing is stored and the reason is printed.",
    )
    add.add_argument("name", help="the person's name as investigators know it")
    add.add_argument("photos", nargs="+", type=Path, metavar="PHOTO", help="JPEG or PNG photos of the person")
    add.add_argument("--list", dest="list_name", required=True, metavar="NAME", help="list such as wanted or missing")
    add.add_argument("--reason", required=True, help="why the person is enrolled, such as a case number")
    listing = faces_commands.add_parser("list", parents=[database], help="list enrolled persons")
    listing.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    remove = faces_commands.add_parser("remove", parents=[common], help="remove a person and their photos")
    remove.add_argument("person_id", type=int, metavar="ID", help="person id from `list`")
    faces_commands.add_parser("reembed", parents=[common, models],
                              help="embed every stored photo with --embedder, after a model change")


def _analyzer(args: argparse.Namespace) -> tuple[FaceAnalyzer, FaceEmbedder]:
    manifest = load_manifest()
    detector_entry, embedder_entry = manifest.model(args.detector), manifest.model(args.embedder)
    detector = FaceDetector(detector_entry, resolve_file(detector_entry, model_dirs()), ["cpu"])
    embedder = FaceEmbedder(embedder_entry, resolve_file(embedder_entry, model_dirs()), ["cpu"])
    return FaceAnalyzer(detector, embedder, QualityGate()), embedder


def _read_photo(path: Path) -> bytes:
    try:
        # The size is checked before reading, so a huge file is never loaded into memory.
        size = path.stat().st_size
        if size > MAX_PHOTO_BYTES:
            raise EnrolmentError(f"{path}: {size / 1e6:.1f} MB is larger than the {MAX_PHOTO_BYTES / 1e6:.0f} MB "
                                 "limit; use a smaller photo")
        return path.read_bytes()
    except OSError as error:
        raise EnrolmentError(f"{path}: cannot read the file: {error.strerror}") from None


def _read_distinct_photos(paths: list[Path]) -> list[tuple[Path, bytes]]:
    """Read every photo, or raise EnrolmentError when a file is unreadable, too large or given twice."""
    photos, first_path = [], {}
    for path in paths:
        data = _read_photo(path)
        digest = hashlib.sha256(data).hexdigest()
        if digest in first_path:
            # The same photo twice would store one face twice and count it as two photos.
            raise EnrolmentError(f"{path}: the same photo as {first_path[digest]} (sha256 {digest[:12]}); give "
                                 "each photo once")
        first_path[digest] = path
        photos.append((path, data))
    return photos


def _enrol_photo(path: Path, data: bytes, analyzer: FaceAnalyzer, embedder: FaceEmbedder) -> EnrolledFace:
    try:
        return check_and_embed_photo(data, analyzer, embedder)
    except PhotoRejected as error:
        raise EnrolmentError(f"{path}: {error.detail}") from None


@contextmanager
def _quiet_model_loading() -> Iterator[None]:
    """Hide the INFO and WARNING lines of ONNX Runtime session set-up unless the log level is DEBUG.

    The daemon logs those lines at start-up. For this command they are noise around its one-line result.
    """
    logger = logging.getLogger("edge.runtime.session")
    if logger.isEnabledFor(logging.DEBUG):
        yield
        return
    previous_level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous_level)


def _add(args: argparse.Namespace, watchlist: FaceWatchlist) -> int:
    # Everything that can be checked without the models is checked first, because loading them takes seconds.
    validate_text("name", args.name, "give the person's name")
    validate_text("list name", args.list_name, "give a list such as wanted or missing")
    validate_text("reason", args.reason, "give a case number or why the person is enrolled")
    resolve_actor(args.actor)
    files = _read_distinct_photos(args.photos)

    analyzer, embedder = _analyzer(args)
    photos = []
    for path, data in files:
        enrolled = _enrol_photo(path, data, analyzer, embedder)
        photos.append((enrolled.jpeg, enrolled.embedding))
    person = watchlist.add_person(args.name, args.list_name, args.reason, photos, embedder.model_id, args.actor,
                                  match_threshold=embedder.entry.match_threshold)
    print(f"enrolled person {person.id}: {person.name} on list '{person.list_name}' from {person.photos} photo(s) "
          f"in {watchlist.store.path.resolve()}")
    return 0


def _reembed(args: argparse.Namespace, watchlist: FaceWatchlist) -> int:
    analyzer, embedder = _analyzer(args)
    embeddings, failures = {}, 0
    for photo in watchlist.photos():
        label = f"photo {photo.id} of person {photo.person_id}"
        if not photo.jpeg:
            # A daemon's copy pulled from the web service contains embeddings only, never the photos.
            failures += 1
            print(f"skipped: {label}: the photo is not stored here; re-embed on the web service that owns the "
                  "watchlist", file=sys.stderr)
            continue
        try:
            embeddings[photo.id] = check_and_embed_photo(photo.jpeg, analyzer, embedder).embedding
        except PhotoRejected as error:
            failures += 1
            print(f"skipped: {label}: {error.detail}", file=sys.stderr)
    watchlist.store_embeddings(embedder.model_id, embeddings, args.actor)
    print(f"embedded {len(embeddings)} photo(s) with {embedder.model_id}; {failures} skipped")
    return 1 if failures else 0


def run_face_command(args: argparse.Namespace, store: WatchlistStore) -> int:
    """Run a parsed `watchlist faces` command; EnrolmentError and AssetError become exit code 1."""
    watchlist = FaceWatchlist(store)
    try:
        if args.faces_command == "add":
            with _quiet_model_loading():
                return _add(args, watchlist)
        if args.faces_command == "reembed":
            with _quiet_model_loading():
                return _reembed(args, watchlist)
    except (EnrolmentError, AssetError, FaceDetectorError, FaceEmbedderError) as error:
        print(f"nothing enrolled: {error}" if args.faces_command == "add" else str(error), file=sys.stderr)
        return 1
    if args.faces_command == "remove":
        if not watchlist.remove_person(args.person_id, args.actor):
            print(f"no person with id {args.person_id}; `edge watchlist faces list` shows the ids", file=sys.stderr)
            return 1
        print(f"removed person {args.person_id}")
        return 0
    persons = watchlist.list_persons()
    if args.json:
        print(json.dumps([person.__dict__ for person in persons], ensure_ascii=False, indent=2))
        return 0
    for person in persons:
        print(f"{person.id:>4}  {person.name}  list={person.list_name}  photos={person.photos}  "
              f"reason={person.reason}  {person.created_at} by {person.created_by}")
    return 0
