"""`edge watchlist faces add|list|remove|reembed`: enrol persons from photos and manage their embeddings."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from edge.faces.analyzer import EnrolmentError, FaceAnalyzer
from edge.faces.detector import FaceDetector, FaceDetectorError
from edge.faces.embedder import FaceEmbedder, FaceEmbedderError
from edge.faces.quality import QualityGate
from edge.models.manifest import AssetError, load_manifest, model_dirs, resolve_file
from edge.watchlist.faces import FaceWatchlist
from edge.watchlist.store import WatchlistStore

DEFAULT_DETECTOR = "yunet_s_640"
DEFAULT_EMBEDDER = "mobilefacenet_128d"
# Enrolment photos larger than this are rejected before decoding; a passport-style photo is far smaller.
MAX_PHOTO_BYTES = 20 * 1024 * 1024
# Stored photos are re-encoded at this JPEG quality, so the database stores one format whatever was uploaded.
STORED_JPEG_QUALITY = 95


def add_face_commands(watchlist_commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    models = argparse.ArgumentParser(add_help=False)
    models.add_argument("--detector", default=DEFAULT_DETECTOR, help=f"face detector model (default {DEFAULT_DETECTOR})")
    models.add_argument("--embedder", default=DEFAULT_EMBEDDER,
                        help=f"face embedding model; must match the daemon's (default {DEFAULT_EMBEDDER})")

    faces = watchlist_commands.add_parser("faces", help="enrol, list or remove persons of the face watchlist")
    faces_commands = faces.add_subparsers(dest="faces_command", required=True)
    add = faces_commands.add_parser(
        "add", parents=[common, models], help="enrol a person from one or more photos",
        description="Enrol a person. Every photo must show exactly one face that passes the quality gate; "
                    "otherwise nothing is stored and the reason is printed.",
    )
    add.add_argument("name", help="the person's name as investigators know it")
    add.add_argument("photos", nargs="+", type=Path, metavar="PHOTO", help="JPEG or PNG photos of the person")
    add.add_argument("--list", dest="list_name", required=True, metavar="NAME", help="list such as wanted or missing")
    add.add_argument("--reason", required=True, help="why the person is enrolled, such as a case number")
    listing = faces_commands.add_parser("list", parents=[common], help="list enrolled persons")
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


def _read_photo(path: Path) -> tuple[bytes, np.ndarray]:
    try:
        size = path.stat().st_size
        if size > MAX_PHOTO_BYTES:
            raise EnrolmentError(f"{path}: {size / 1e6:.1f} MB is larger than the {MAX_PHOTO_BYTES / 1e6:.0f} MB "
                                 "limit; use a smaller photo")
        data = path.read_bytes()
    except OSError as error:
        raise EnrolmentError(f"{path}: cannot read the file: {error.strerror}") from None
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise EnrolmentError(f"{path}: not a JPEG or PNG image")
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, STORED_JPEG_QUALITY])
    return encoded.tobytes(), image


def _add(args: argparse.Namespace, watchlist: FaceWatchlist) -> int:
    analyzer, embedder = _analyzer(args)
    photos = []
    for path in args.photos:
        jpeg, image = _read_photo(path)
        face = analyzer.enrol(image, str(path))
        photos.append((jpeg, face.embedding))
    person = watchlist.add_person(args.name, args.list_name, args.reason, photos, embedder.model_id, args.actor)
    print(f"enrolled person {person.id}: {person.name} on list '{person.list_name}' from {person.photos} photo(s)")
    return 0


def _reembed(args: argparse.Namespace, watchlist: FaceWatchlist) -> int:
    analyzer, embedder = _analyzer(args)
    embeddings, failures = {}, 0
    for photo in watchlist.photos():
        image = cv2.imdecode(np.frombuffer(photo.jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
        try:
            embeddings[photo.id] = analyzer.enrol(image, f"photo {photo.id} of person {photo.person_id}").embedding
        except EnrolmentError as error:
            failures += 1
            print(f"skipped: {error}", file=sys.stderr)
    watchlist.store_embeddings(embedder.model_id, embeddings, args.actor)
    print(f"embedded {len(embeddings)} photo(s) with {embedder.model_id}; {failures} skipped")
    return 1 if failures else 0


def run_face_command(args: argparse.Namespace, store: WatchlistStore) -> int:
    """Run a parsed `watchlist faces` command; EnrolmentError and AssetError become exit code 1."""
    watchlist = FaceWatchlist(store)
    try:
        if args.faces_command == "add":
            return _add(args, watchlist)
        if args.faces_command == "reembed":
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
