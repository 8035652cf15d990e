"""Plates end to end: a video of plate photos over RTSP, a watchlist, and the feed a subscriber receives."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from tests.conftest import ASSETS, RtspServer, _gstreamer_rtsp_available
from tests.support.clip_run import run_clip
from tests.support.photo_video import make_photo_video

MISC = ASSETS / "images" / "plates" / "misc"
# Each photo is one vehicle passing the camera; the blue photo shows two cars with readable plates.
PHOTOS = ["hyperlpr_test_img_SuED51712_green.jpg", "wq_single_yellow.jpg", "wq_police.jpg", "wq_single_blue.jpg",
          "wq_single_green.jpg", "wq_double_yellow.jpg"]
EXPECTED_PLATES = {"苏ED51712", "皖K66666", "鄂F8888警", "浙B2V9L7", "辽DU4356", "沪AF71017", "京EA5331"}
WATCHED = "皖K66666"
ADDED_WHILE_RUNNING = "沪AF7101?"  # wildcard entry added after start; matches 沪AF71017


def watchlist(db, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge", "watchlist", "plates", *args, "--db", str(db),
                           "--actor", "test-investigator"], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def plate_run(tmp_path_factory):
    reason = _gstreamer_rtsp_available()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("plates")
    video = make_photo_video([MISC / name for name in PHOTOS], tmp / "plates.mp4")
    server = RtspServer({"gate": video}, user="viewer:gate-Secret-7")
    db = tmp / "watchlists.sqlite"
    added = watchlist(db, "add", WATCHED, "--reason", "case 118", "--list", "stolen")
    assert added.returncode == 0, added.stderr

    def add_entry_while_running() -> None:
        added_later = watchlist(db, "add", ADDED_WHILE_RUNNING, "--reason", "case 119", "--list", "fleeing")
        assert added_later.returncode == 0, added_later.stderr

    try:
        run = run_clip(tmp, server.url("gate"), "plates", db, 27, add_entry_while_running)
    finally:
        server.stop()
    return {"feed": run.feed, "stderr": run.stderr, "stdout": run.stdout, "db": db, "returncode": run.returncode}


def plates(feed, topic: str) -> list:
    return [m for m in feed.messages if m.topic == topic]


@pytest.mark.rtsp
def test_every_plate_read_once_per_track(plate_run):
    messages = plates(plate_run["feed"], "plate")
    texts = Counter(m.header["plate"]["text"] for m in messages)
    assert set(texts) == EXPECTED_PLATES, plate_run["stderr"][-3000:]
    tracks = [m.header["track_id"] for m in messages]
    assert len(tracks) == len(set(tracks)), "a track published its plate twice"


@pytest.mark.rtsp
def test_one_hit_for_watched_plate(plate_run):
    hits = plates(plate_run["feed"], "hit.plate")
    watched = [h for h in hits if h.header["plate"]["text"] == WATCHED]
    assert len(watched) == 1
    hit = watched[0].header
    assert hit["watchlist"]["pattern"] == WATCHED
    assert hit["watchlist"]["list_name"] == "stolen"
    assert hit["watchlist"]["reason"] == "case 118"
    assert hit["plate"]["colour"] == "yellow"
    assert hit["plate"]["type"] == "standard"
    assert hit["vehicle"]["class"] in ("car", "truck", "bus")
    assert len(watched[0].images) == 2
    assert watched[0].images[0][:2] == b"\xff\xd8"
    assert watched[0].images[1][:2] == b"\xff\xd8"


@pytest.mark.rtsp
def test_entry_added_while_running_hits(plate_run):
    hits = [h for h in plates(plate_run["feed"], "hit.plate") if h.header["watchlist"]["list_name"] == "fleeing"]
    assert [h.header["plate"]["text"] for h in hits] == ["沪AF71017"]
    assert "plate watchlist reloaded" in plate_run["stderr"]


@pytest.mark.rtsp
def test_unlisted_plates_give_no_hits(plate_run):
    hit_texts = {h.header["plate"]["text"] for h in plates(plate_run["feed"], "hit.plate")}
    assert hit_texts == {WATCHED, "沪AF71017"}


@pytest.mark.rtsp
def test_plate_types_and_double_row(plate_run):
    by_text = {m.header["plate"]["text"]: m.header["plate"] for m in plates(plate_run["feed"], "plate")}
    assert by_text["苏ED51712"]["type"] == "new_energy_small"
    assert by_text["苏ED51712"]["colour"] == "green"
    assert by_text["鄂F8888警"]["type"] == "police"
    assert by_text["京EA5331"]["double_row"] is True


@pytest.mark.rtsp
def test_watchlist_changes_audited(plate_run):
    result = subprocess.run([sys.executable, "-m", "edge", "watchlist", "audit", "--json", "--db", str(plate_run["db"])],
                            capture_output=True, text=True, timeout=60)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["action"] for row in rows] == ["plate.add", "plate.add"]
    assert {row["actor"] for row in rows} == {"test-investigator"}


@pytest.mark.rtsp
def test_health_counts_plates(plate_run):
    health = plate_run["feed"].final_health()
    camera = health["cameras"][0]
    assert camera["plates_read"] >= len(EXPECTED_PLATES)
    assert health["plates"]["pipelines"]["plates"]["hits_published"] == 2
    assert health["plates"]["watchlist_version"] == 2
    assert "gate-Secret-7" not in plate_run["stderr"]
