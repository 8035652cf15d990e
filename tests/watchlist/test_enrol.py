"""Enrolment photo check with the real face models: accepted photos, and each reason code for rejected ones."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from edge.faces.analyzer import FaceAnalyzer
from edge.faces.detector import FaceDetector
from edge.faces.embedder import FaceEmbedder
from edge.faces.quality import QualityGate
from edge.models.manifest import load_manifest, resolve_file
from edge.watchlist.enrol import (
    MAX_PHOTO_BYTES,
    PhotoRejected,
    check_and_embed_photo,
    image_size,
)
from edge.watchlist.store import WatchlistStore
from tests.conftest import ASSETS, BUS_IMAGE, MODEL_DIR

FACES = ASSETS / "images" / "faces"
OBAMA = FACES / "obama" / "obama_1.jpg"


@pytest.fixture(scope="module")
def models() -> tuple[FaceAnalyzer, FaceEmbedder]:
    manifest = load_manifest()
    detector_entry, embedder_entry = manifest.model("yunet_s_640"), manifest.model("mobilefacenet_128d")
    detector = FaceDetector(detector_entry, resolve_file(detector_entry, [MODEL_DIR]), ["cpu"])
    embedder = FaceEmbedder(embedder_entry, resolve_file(embedder_entry, [MODEL_DIR]), ["cpu"])
    return FaceAnalyzer(detector, embedder, QualityGate()), embedder


def check(data: bytes, models) -> PhotoRejected | None:
    analyzer, embedder = models
    try:
        check_and_embed_photo(data, analyzer, embedder)
    except PhotoRejected as rejected:
        return rejected
    return None


def encode(image_bgr: np.ndarray, extension: str = ".png") -> bytes:
    ok, encoded = cv2.imencode(extension, image_bgr)
    assert ok
    return encoded.tobytes()


def small_blurred_face() -> bytes:
    """Obama's photo shrunk so 11 px separate the eyes, blurred, on a grey canvas."""
    image = cv2.imread(str(OBAMA))
    small = cv2.GaussianBlur(cv2.resize(image, None, fx=0.1, fy=0.1, interpolation=cv2.INTER_AREA), (0, 0), 1.5)
    canvas = np.full((480, 480, 3), 128, dtype=np.uint8)
    height, width = small.shape[:2]
    canvas[100:100 + height, 100:100 + width] = small
    return encode(canvas)


def blurred_large_face() -> bytes:
    image = cv2.imread(str(OBAMA))
    return encode(cv2.GaussianBlur(image, (0, 0), 4), ".jpg")


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares `width` x `height` pixels but contains no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


@pytest.mark.parametrize("path", [OBAMA, FACES / "kit_harington" / "kit_harington_1.jpg"],
                         ids=lambda path: path.name)
def test_photo_with_one_face_accepted(models, path):
    analyzer, embedder = models
    enrolled = check_and_embed_photo(path.read_bytes(), analyzer, embedder)
    assert enrolled.model_id == embedder.model_id
    assert enrolled.embedding.shape == (embedder.dimension,)
    assert abs(float(np.linalg.norm(enrolled.embedding)) - 1.0) < 1e-3
    assert enrolled.face.quality.passed
    stored = cv2.imdecode(np.frombuffer(enrolled.jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert stored.shape[:2] == (enrolled.height, enrolled.width)


def test_png_photo_accepted(models):
    """PNG photos are re-encoded as JPEG for storage."""
    analyzer, embedder = models
    enrolled = check_and_embed_photo(encode(cv2.imread(str(OBAMA))), analyzer, embedder)
    assert enrolled.jpeg.startswith(b"\xff\xd8")


REJECTED = [
    ("text file", lambda: "张三, case 2026-207\n".encode("utf-8"), "not_an_image", "not a JPEG or PNG"),
    ("empty file", lambda: b"", "not_an_image", "not a JPEG or PNG"),
    ("truncated jpeg", lambda: OBAMA.read_bytes()[: OBAMA.stat().st_size // 2], "not_an_image", "truncated"),
    ("50 MB file", lambda: b"\xff\xd8" + bytes(50 * 1024 * 1024), "too_large", "larger than the 10 MB limit"),
    ("decompression bomb", lambda: png_header(10_000, 10_000), "too_many_pixels", "10000x10000 pixels"),
    ("grey png", lambda: encode(np.full((480, 640, 3), 128, dtype=np.uint8)), "no_face", "no face found"),
    ("group photo", lambda: (FACES / "group_obama_biden.jpg").read_bytes(), "several_faces",
     "faces pass the quality gate"),
]


@pytest.mark.parametrize(("make_data", "reason_code", "detail"), [case[1:] for case in REJECTED],
                         ids=[case[0] for case in REJECTED])
def test_photo_rejected_with_reason(models, make_data, reason_code, detail):
    rejected = check(make_data(), models)
    assert rejected is not None
    assert rejected.reason_code == reason_code
    assert detail in rejected.detail
    assert rejected.checks == ()


QUALITY_CASES = [
    ("small blurred face", small_blurred_face, ("size", "sharpness"), ["face too small", "face too blurred"]),
    ("blurred large face", blurred_large_face, ("sharpness",), ["face too blurred"]),
    # bus.jpg shows one small face of a passer-by, 18 px between the eyes.
    ("small face in street photo", lambda: BUS_IMAGE.read_bytes(), ("size",), ["minimum 32"]),
]


@pytest.mark.parametrize(("make_data", "checks", "fragments"), [case[1:] for case in QUALITY_CASES],
                         ids=[case[0] for case in QUALITY_CASES])
def test_quality_failure_names_check(models, make_data, checks, fragments):
    rejected = check(make_data(), models)
    assert rejected is not None
    assert rejected.reason_code == "quality"
    assert rejected.checks == checks
    for fragment in fragments:
        assert fragment in rejected.detail


def test_size_checked_before_decoding(models):
    """A file one byte over the limit is rejected even though it would decode."""
    data = OBAMA.read_bytes()
    padded = data + bytes(MAX_PHOTO_BYTES + 1 - len(data))
    rejected = check(padded, models)
    assert rejected is not None
    assert rejected.reason_code == "too_large"


@pytest.mark.parametrize(("data", "expected"), [
    (png_header(640, 480), (640, 480)),
    (OBAMA.read_bytes(), (910, 1137)),
    (b"GIF89a" + bytes(20), None),
    (b"\xff\xd8\xff\xda\x00\x02", None),
], ids=["png", "jpeg", "gif", "jpeg without frame header"])
def test_image_size_from_header(data, expected):
    assert image_size(data) == expected


def test_mismatched_embedder_raises(models):
    analyzer, _ = models
    entry = load_manifest().model("mobilefacenet_128d").model_copy(update={"sha256": "f" * 64})
    other = FaceEmbedder(entry, resolve_file(load_manifest().model("mobilefacenet_128d"), [MODEL_DIR]), ["cpu"])
    with pytest.raises(ValueError, match="build the FaceAnalyzer with this embedder"):
        check_and_embed_photo(OBAMA.read_bytes(), analyzer, other)


def test_cli_enrols_through_shared_check(tmp_path, capsys):
    """`edge watchlist faces add` stores nothing when one photo is rejected, and prints that photo's reason."""
    from edge.cli import main
    from edge.watchlist.faces import FaceWatchlist
    from edge.watchlist.store import WatchlistStore

    db = tmp_path / "watchlists.sqlite"
    note = tmp_path / "note.txt"
    note.write_text("not a photo", encoding="utf-8")
    common = ["--db", str(db), "--actor", "tester"]

    code = main(["watchlist", "faces", "add", "Barack Obama", str(OBAMA), str(note), "--list", "wanted",
                 "--reason", "case 1", *common])
    assert code == 1
    assert f"nothing enrolled: {note}: not a JPEG or PNG image" in capsys.readouterr().err
    assert FaceWatchlist(WatchlistStore(db)).list_persons() == []

    code = main(["watchlist", "faces", "add", "Barack Obama", str(OBAMA), "--list", "wanted", "--reason", "case 1",
                 *common])
    assert code == 0
    persons = FaceWatchlist(WatchlistStore(db)).list_persons()
    assert [(person.name, person.photos) for person in persons] == [("Barack Obama", 1)]


def enrol(store_path, models, name: str, photo_name: str):
    from edge.watchlist.faces import FaceWatchlist
    from edge.watchlist.store import WatchlistStore

    _analyzer, embedder = models
    face = check_and_embed_photo((FACES / photo_name).read_bytes(), *models)
    return FaceWatchlist(WatchlistStore(store_path)).add_person(
        name, "wanted", "case 1", [(face.jpeg, face.embedding)], face.model_id, "test",
        match_threshold=embedder.entry.match_threshold)


def test_same_face_under_second_name_rejected(tmp_path, models):
    from edge.watchlist.faces import DuplicateFaceError, FaceWatchlist
    from edge.watchlist.store import WatchlistStore

    db = tmp_path / "watchlists.sqlite"
    first = enrol(db, models, "Barack Obama", "obama/obama_1.jpg")
    with pytest.raises(DuplicateFaceError) as caught:
        enrol(db, models, "Other name", "obama/obama_2.jpg")  # another photo of the same man
    assert caught.value.person_id == first.id
    assert "matches person 1 'Barack Obama'" in str(caught.value)
    # A different person is still enrolled.
    enrol(db, models, "Joe Biden", "biden/biden_1.jpg")
    assert [person.name for person in FaceWatchlist(WatchlistStore(db)).list_persons()] == ["Barack Obama", "Joe Biden"]


def enrol_photos(store_path, models, photo_names: list[str]):
    from edge.watchlist.faces import FaceWatchlist
    from edge.watchlist.store import WatchlistStore

    _analyzer, embedder = models
    faces = [check_and_embed_photo((FACES / name).read_bytes(), *models) for name in photo_names]
    return FaceWatchlist(WatchlistStore(store_path)).add_person(
        "Kit Harington", "wanted", "case 1", [(face.jpeg, face.embedding) for face in faces], faces[0].model_id,
        "test", match_threshold=embedder.entry.match_threshold)


def test_photos_of_two_people_rejected(tmp_path, models):
    from edge.watchlist.faces import DifferentFacesError, FaceWatchlist
    from edge.watchlist.store import WatchlistStore

    db = tmp_path / "watchlists.sqlite"
    with pytest.raises(DifferentFacesError) as caught:
        enrol_photos(db, models, ["kit_harington/kit_harington_1.jpg", "kit_harington/kit_harington_2.jpg",
                                  "rose_leslie/rose_leslie_1.jpg"])

    assert (caught.value.first_photo, caught.value.second_photo) in ((1, 3), (2, 3))
    assert caught.value.similarity < caught.value.threshold
    assert "show different people" in str(caught.value)
    assert FaceWatchlist(WatchlistStore(db)).list_persons() == []


def test_photos_of_one_person_enrolled(tmp_path, models):
    person = enrol_photos(tmp_path / "watchlists.sqlite", models, [
        "kit_harington/kit_harington_1.jpg", "kit_harington/kit_harington_2.jpg", "kit_harington/kit_harington_3.jpg"])

    assert person.photos == 3


@pytest.fixture
def no_model_loading(monkeypatch):
    """Fail the test if `faces add` loads the face models."""
    from edge.watchlist import face_cli

    def fail(_args):
        raise AssertionError("the face models were loaded before the input was checked")

    monkeypatch.setattr(face_cli, "_analyzer", fail)


def test_cli_repeated_photo_rejected(tmp_path, capsys, no_model_loading):
    """The same photo given twice, even under another file name, is rejected before the models load."""
    from edge.cli import main

    copy = tmp_path / "copy.jpg"
    copy.write_bytes(OBAMA.read_bytes())
    db = tmp_path / "watchlists.sqlite"
    code = main(["watchlist", "faces", "add", "Barack Obama", str(OBAMA), str(copy), "--list", "wanted",
                 "--reason", "case 1", "--db", str(db), "--actor", "tester"])
    assert code == 1
    assert f"nothing enrolled: {copy}: the same photo as {OBAMA}" in capsys.readouterr().err


@pytest.mark.parametrize(("name", "list_name", "reason", "expected"), [
    ("", "wanted", "case 1", "name is empty"),
    ("Barack Obama", " ", "case 1", "list name is empty"),
    ("Barack Obama", "wanted", "", "reason is empty"),
], ids=["name", "list", "reason"])
def test_cli_empty_text_rejected_before_models(tmp_path, capsys, no_model_loading, name, list_name, reason,
                                               expected):
    from edge.cli import main

    code = main(["watchlist", "faces", "add", name, str(OBAMA), "--list", list_name, "--reason", reason,
                 "--db", str(tmp_path / "watchlists.sqlite"), "--actor", "tester"])
    assert code == 1
    assert expected in capsys.readouterr().err


def test_cli_add_output_quiet(tmp_path, capsys):
    """At the default log level `faces add` prints its result line only, without the model-loading logs."""
    from edge.cli import main

    db = tmp_path / "watchlists.sqlite"
    WatchlistStore(db)
    code = main(["watchlist", "faces", "add", "Barack Obama", str(OBAMA), "--list", "wanted", "--reason", "case 1",
                 "--db", str(db), "--actor", "tester"])
    output = capsys.readouterr()
    assert code == 0, output.err
    assert output.err == ""
    assert output.out == f"enrolled person 1: Barack Obama on list 'wanted' from 1 photo(s) in {db}\n"
