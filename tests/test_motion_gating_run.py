"""`edge run` with motion gating on two file cameras: a static scene and a scene in which a person walks."""

from __future__ import annotations

import subprocess

import pytest

from edge.runtime.bench_motion import make_scene_clip
from tests.conftest import PEOPLE_CLIP, edge_command, free_port
from tests.support.clip_run import FeedRecorder

CLIP_SECONDS = 6.0


def camera_health(health: dict, camera_id: str) -> dict:
    return next(c for c in health["cameras"] if c["camera_id"] == camera_id)


@pytest.fixture(scope="module")
def gated_run(tmp_path_factory):
    """Run the daemon until both clips have played once in real time, recording the feed."""
    tmp = tmp_path_factory.mktemp("motion-gating")
    # An empty corridor held still for the whole clip (a passage of one frame).
    static_clip = tmp / "static.mp4"
    make_scene_clip(PEOPLE_CLIP, static_clip, CLIP_SECONDS, passage_from_s=2.0, passage_s=0.1)
    # A person walks from 2.4 s to the end (the people clip from 8 s, where the person is in view).
    walking_clip = tmp / "walking.mp4"
    make_scene_clip(PEOPLE_CLIP, walking_clip, CLIP_SECONDS, passage_from_s=8.0, passage_s=4.0)

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    cameras = ""
    for camera_id, clip in (("static", static_clip), ("walking", walking_clip)):
        cameras += (f'[[cameras]]\nid = "{camera_id}"\nname = "{camera_id}"\nsource = "{clip}"\nmax_fps = 10\n'
                    "motion_gating = true\nkeepalive_interval_s = 2\n\n")
    config = tmp / "site.toml"
    config.write_text(
        f'box_id = "test-box"\n\n{cameras}'
        f'[publisher]\nendpoint = "{endpoint}"\nhealth_interval_s = 1\noutbox_path = "{tmp / "outbox.sqlite"}"\n'
        f'replay_endpoint = "tcp://127.0.0.1:{free_port()}"\n\n[metrics]\nport = {free_port()}\n',
        encoding="utf-8")
    recorder = FeedRecorder(endpoint)
    # Both sources are files without loop, so the daemon stops by itself once both have played.
    process = subprocess.run([*edge_command(), "run", "--config", str(config), "--duration", "60"],
                             capture_output=True, text=True, timeout=90)
    recorder.close()
    return process, recorder


def test_daemon_stops_after_clips(gated_run):
    process, _ = gated_run
    assert process.returncode == 0, process.stderr[-2000:]
    assert "every file source reached its end" in process.stderr


def test_static_scene_is_mostly_gated(gated_run):
    _, recorder = gated_run
    final = camera_health(recorder.final_health(), "static")
    assert final["frames_decoded"] >= 55
    # The first frame, then a keep-alive frame every 2 s of the 6 s clip.
    assert 2 <= final["frames_inferred"] <= 6
    assert final["frames_inferred"] * 5 < final["frames_decoded"]
    assert final["frames_gated"] >= 45
    assert final["frames_decoded"] == final["frames_skipped"] + final["frames_gated"] + final["frames_dropped"] \
        + final["frames_inferred"]


def test_frames_gated_grows_while_running(gated_run):
    _, recorder = gated_run
    gated_counts = [camera_health(m.header, "static")["frames_gated"] for m in recorder.topic("health")]
    assert len(gated_counts) >= 3
    assert gated_counts == sorted(gated_counts)
    assert gated_counts[-1] > gated_counts[0]


def test_walking_person_is_detected(gated_run):
    _, recorder = gated_run
    with_person = [m for m in recorder.det("walking") if any(d["class"] == "person" for d in m.header["detections"])]
    final = camera_health(recorder.final_health(), "walking")
    static = camera_health(recorder.final_health(), "static")
    # The person is in view for the last 3.6 s at 10 fps; gating must let most of those frames through.
    assert len(with_person) >= 20
    assert final["frames_inferred"] > static["frames_inferred"] + 20
    assert recorder.det("static") == []

