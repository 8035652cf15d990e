"""Faces end to end: a video of face photos over RTSP, two enrolled persons, and the hits a subscriber gets."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from tests.conftest import ASSETS, RtspServer, _gstreamer_rtsp_available
from tests.support.clip_run import run_clip
from tests.support.photo_video import make_photo_video

FACES = ASSETS / "images" / "faces"
# Each photo is one person passing the camera; the last shows Kit Harington beside an unenrolled person.
PHOTOS = ["obama/obama_3.jpg", "biden/biden_1.jpg", "kit_harington/kit_harington_2.jpg", "openface_singles/adams.jpg",
          "rose_leslie/rose_leslie_1.jpg", "obama/obama_4.jpg", "group_kit_harington_rose_leslie.jpg"]
ENROLLED = {"Barack Obama": ["obama/obama_1.jpg", "obama/obama_2.jpg"],
            "Kit Harington": ["kit_harington/kit_harington_1.jpg", "kit_harington/kit_harington_3.jpg"]}
# Photos 1 and 6 show Obama, photos 3 and 7 show Kit Harington: four person tracks, four hits.
EXPECTED_HITS = Counter({"Barack Obama": 2, "Kit Harington": 2})
VIDEO_SECONDS = len(PHOTOS) * 4.5


def run_edge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True, timeout=120)


def run_faces(tmp, camera_options: str = "") -> dict:
    """Enrol the two persons, serve the photo video over RTSP and run the daemon on it once."""
    reason = _gstreamer_rtsp_available()
    if reason:
        pytest.skip(reason)
    video = make_photo_video([FACES / name for name in PHOTOS], tmp / "faces.mp4")
    db = tmp / "watchlists.sqlite"
    for name, photos in ENROLLED.items():
        added = run_edge("watchlist", "faces", "add", name, *[str(FACES / p) for p in photos], "--list", "wanted",
                         "--reason", f"case of {name}", "--db", str(db), "--actor", "test-investigator")
        assert added.returncode == 0, added.stderr
    server = RtspServer({"hall": video}, user="viewer:hall-Secret-3")
    try:
        run = run_clip(tmp, server.url("hall"), "faces", db, VIDEO_SECONDS, camera_options=camera_options)
    finally:
        server.stop()
    return {"feed": run.feed, "stderr": run.stderr, "stdout": run.stdout, "db": db, "returncode": run.returncode}


@pytest.fixture(scope="module")
def face_run(tmp_path_factory):
    return run_faces(tmp_path_factory.mktemp("faces"))


@pytest.fixture(scope="module")
def face_camera_run(tmp_path_factory):
    """The same video on a face camera, which searches whole frames and tracks the faces themselves."""
    return run_faces(tmp_path_factory.mktemp("face-camera"), "face_camera = true\n")


def face_hits(feed) -> list:
    return [m for m in feed.messages if m.topic == "hit.face"]


@pytest.mark.rtsp
def test_one_hit_per_enrolled_person_track(face_run):
    hits = face_hits(face_run["feed"])
    assert Counter(h.header["person"]["name"] for h in hits) == EXPECTED_HITS, face_run["stderr"][-3000:]
    keys = [(h.header["track_id"], h.header["person"]["id"]) for h in hits]
    assert len(keys) == len(set(keys))


@pytest.mark.rtsp
def test_face_camera_one_hit_per_face_track(face_camera_run):
    hits = face_hits(face_camera_run["feed"])
    hit_summary = [(h.header["person"]["name"], h.header["track_id"], h.header["frame_time"]) for h in hits]
    assert Counter(h.header["person"]["name"] for h in hits) == EXPECTED_HITS, hit_summary
    keys = [(h.header["track_id"], h.header["person"]["id"]) for h in hits]
    assert len(keys) == len(set(keys))
    assert all(h.header["track_id"] >= 0 for h in hits)


@pytest.mark.rtsp
def test_hit_carries_person_and_images(face_run):
    hit = face_hits(face_run["feed"])[0]
    assert hit.header["person"]["list_name"] == "wanted"
    assert hit.header["similarity"] >= 0.40
    assert hit.header["model_id"].startswith("mobilefacenet_128d:")
    assert len(hit.images) == 2
    assert all(image[:2] == b"\xff\xd8" for image in hit.images)


@pytest.mark.rtsp
def test_no_face_data_for_others(face_run):
    """Faces that match no enrolled person leave no trace: no message, and no embedding in the feed."""
    topics = {m.topic for m in face_run["feed"].messages}
    assert topics <= {"det", "health", "hit.face"}
    for message in face_run["feed"].messages:
        assert "embedding" not in json.dumps(message.header)


@pytest.mark.rtsp
def test_health_counts_faces(face_run):
    health = face_run["feed"].final_health()
    camera = health["cameras"][0]
    assert camera["faces_seen"] >= len(PHOTOS)
    assert camera["face_hits"] == sum(EXPECTED_HITS.values())
    assert health["faces"]["gallery_persons"] == 2
    assert "hall-Secret-3" not in face_run["stderr"]


@pytest.mark.rtsp
def test_enrolment_audited(face_run):
    result = run_edge("watchlist", "audit", "--json", "--db", str(face_run["db"]))
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["action"] for row in rows] == ["face.add", "face.add"]
    assert all("embedding" not in json.dumps(row) for row in rows)


def test_audit_table_lists_face_changes(face_run):
    result = run_edge("watchlist", "audit", "--db", str(face_run["db"]))
    assert result.returncode == 0, result.stderr
    assert "person 1 Barack Obama on 'wanted' from 2 photo(s)" in result.stdout


@pytest.mark.parametrize(("file_bytes", "expected"), [(b"", "not a JPEG or PNG image"),
                                                     (b"plain text, not a photo", "not a JPEG or PNG image")],
                         ids=["empty", "text"])
def test_bad_enrolment_photo_explained(tmp_path, file_bytes, expected):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(file_bytes)
    result = run_edge("watchlist", "faces", "add", "someone", str(photo), "--list", "wanted", "--reason", "r",
                      "--db", str(tmp_path / "wl.sqlite"), "--actor", "tester")
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_reembed_with_wrong_family_explained(tmp_path):
    result = run_edge("watchlist", "faces", "reembed", "--embedder", "yunet_s_640", "--db", str(tmp_path / "wl.sqlite"),
                      "--actor", "tester")
    assert result.returncode == 1
    assert "supports only arcface" in result.stderr
    assert "Traceback" not in result.stderr
