"""`edge run` end to end: RTSP and file cameras, a dead camera and a broken file, read by a real subscriber."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import PEOPLE_CLIP, PROJECT_ROOT, edge_command, free_port, wait_until
from tests.support.clip_run import FeedRecorder

RTSP_PASSWORD = "rtsp-Secret-42"


def site_toml(endpoint: str, cameras: list[dict], extra: str = "") -> str:
    lines = ['box_id = "test-box"', ""]
    for camera in cameras:
        lines.append("[[cameras]]")
        lines += [f"{key} = {value!r}".replace("'", '"') if isinstance(value, str) else
                  f"{key} = {str(value).lower()}" for key, value in camera.items()]
        lines.append("")
    lines += ["[ingest]", "open_timeout_s = 3", "read_timeout_s = 3", "backoff_initial_s = 0.5",
              "backoff_max_s = 2", "", "[publisher]", f'endpoint = "{endpoint}"', "health_interval_s = 1",
              f'replay_endpoint = "tcp://127.0.0.1:{free_port()}"', extra, "", "[metrics]", f"port = {free_port()}"]
    return "\n".join(lines) + "\n"


def camera_health(health: dict, camera_id: str) -> dict:
    return next(c for c in health["cameras"] if c["camera_id"] == camera_id)


@pytest.fixture(scope="module")
def daemon_run(rtsp_server, tmp_path_factory):
    """Run one daemon with four cameras until each has shown what it should, then stop it with SIGTERM."""
    tmp = tmp_path_factory.mktemp("daemon")
    not_video = tmp / "broken-camera.mp4"
    not_video.write_bytes(b"\x00\x01 definitely not a video " * 200)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    cameras = [
        {"id": "rtsp-people", "name": "RTSP 行人", "source": rtsp_server.url("people")},
        {"id": "file-people", "name": "file", "source": str(PEOPLE_CLIP), "loop": True},
        {"id": "dead-camera", "name": "nobody serves this", "source": f"rtsp://admin:hunter2@127.0.0.1:{free_port()}/x"},
        {"id": "broken-file", "name": "not a video", "source": str(not_video)},
    ]
    config = tmp / "site.toml"
    config.write_text(site_toml(endpoint, cameras, "send_snapshots = true\nsend_empty_frames = true"), encoding="utf-8")

    recorder = FeedRecorder(endpoint)
    process = subprocess.Popen([*edge_command(), "run", "--config", str(config)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)

    def shown_enough() -> bool:
        health = recorder.last_health()
        people = [m for m in recorder.det("rtsp-people") if any(d["class"] == "person" for d in m.header["detections"])]
        return (
            health is not None
            and camera_health(health, "dead-camera")["reconnects"] >= 2
            and len(people) >= 3
            and len(recorder.det("file-people")) >= 3
        )

    wait_until(shown_enough, 90)
    process.send_signal(signal.SIGTERM)
    try:
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    recorder.close()
    return {"returncode": process.returncode, "stdout": stdout, "stderr": stderr, "feed": recorder}


@pytest.mark.rtsp
def test_rtsp_camera_publishes_people(daemon_run):
    feed: FeedRecorder = daemon_run["feed"]
    with_people = [m for m in feed.det("rtsp-people") if any(d["class"] == "person" for d in m.header["detections"])]
    assert len(with_people) >= 3, daemon_run["stderr"][-3000:]
    person = next(d for d in with_people[-1].header["detections"] if d["class"] == "person")
    x1, y1, x2, y2 = person["box_xyxy"]
    assert 0 <= x1 < x2 <= 768
    assert 0 <= y1 < y2 <= 432
    assert person["score"] >= 0.25


@pytest.mark.rtsp
def test_file_camera_publishes(daemon_run):
    assert len(daemon_run["feed"].det("file-people")) >= 3


@pytest.mark.rtsp
def test_headers_carry_sequence_and_snapshot(daemon_run):
    messages = daemon_run["feed"].messages
    sequences = [m.header["sequence"] for m in messages]
    assert sequences == sorted(sequences)
    assert len(set(sequences)) == len(sequences)
    det = daemon_run["feed"].det("rtsp-people")[-1]
    assert det.header["publisher_id"] == "test-box"
    assert det.header["frame_time"].endswith("Z")
    snapshot = cv2.imdecode(np.frombuffer(det.jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert snapshot.shape == (432, 768, 3)


@pytest.mark.rtsp
def test_dead_camera_does_not_block_others(daemon_run):
    health = daemon_run["feed"].last_health()
    dead = camera_health(health, "dead-camera")
    assert dead["reconnects"] >= 2
    assert dead["frames_decoded"] == 0
    assert dead["state"] in ("connecting", "backoff")
    assert camera_health(health, "rtsp-people")["frames_inferred"] > 0
    assert camera_health(health, "file-people")["frames_inferred"] > 0


@pytest.mark.rtsp
def test_broken_file_reported_and_isolated(daemon_run):
    health = daemon_run["feed"].last_health()
    assert camera_health(health, "broken-file")["state"] == "failed"
    assert "broken-file: cannot read" in daemon_run["stderr"]
    assert "fix the camera's source and restart" in daemon_run["stderr"]


@pytest.mark.rtsp
def test_sigterm_stops_cleanly_with_counters(daemon_run):
    assert daemon_run["returncode"] == 0, daemon_run["stderr"][-3000:]
    assert "received SIGTERM; stopping" in daemon_run["stderr"]
    table = daemon_run["stdout"].splitlines()
    assert table[0].split()[:3] == ["camera_id", "state", "frames_decoded"]
    assert sorted(line.split()[0] for line in table[1:]) == ["broken-file", "dead-camera", "file-people",
                                                            "rtsp-people"]
    final = daemon_run["feed"].final_health()
    assert {c["state"] for c in final["cameras"]} <= {"stopped", "failed"}


@pytest.mark.rtsp
def test_startup_summary_logged(daemon_run):
    stderr = daemon_run["stderr"]
    assert "starting box test-box: 4 camera(s), feed on tcp://127.0.0.1:" in stderr
    assert "pipeline detect: model yolox_nano_416" in stderr
    assert "CPUExecutionProvider" in stderr
    assert "rtsp-people: 'RTSP 行人' from rtsp://***@127.0.0.1:" in stderr


@pytest.mark.rtsp
def test_credentials_never_logged(daemon_run):
    output = daemon_run["stderr"] + daemon_run["stdout"]
    assert RTSP_PASSWORD not in output
    assert "hunter2" not in output
    health_text = str([m.header for m in daemon_run["feed"].messages if m.topic == "health"])
    assert "hunter2" not in health_text


def test_duration_run_on_file(tmp_path):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    config = tmp_path / "site.toml"
    config.write_text(site_toml(endpoint, [{"id": "replay", "name": "r", "source": str(PEOPLE_CLIP),
                                            "realtime": False, "loop": True}]), encoding="utf-8")
    recorder = FeedRecorder(endpoint)
    result = subprocess.run([*edge_command(), "run", "--config", str(config), "--duration", "15"],
                            capture_output=True, text=True, timeout=120)
    recorder.close()
    assert result.returncode == 0, result.stderr[-3000:]
    assert "duration of 15 s reached; stopping" in result.stderr
    people = [m for m in recorder.det("replay") if any(d["class"] == "person" for d in m.header["detections"])]
    assert people, result.stderr[-3000:]


def test_missing_model_file_stops_startup(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_MODEL_DIR", str(tmp_path))
    result = subprocess.run([*edge_command(), "run", "--config", str(PROJECT_ROOT / "config" / "demo.toml"),
                             "--duration", "5"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "yolox_nano_416.onnx for 'yolox_nano_416' not found in" in result.stderr
    assert "expected sha256 d39bee73564e338080378b0ad567fbb40e818b55bbfaf971de82a0267ed16b8a" in result.stderr
    assert "edge models fetch yolox_nano_416" in result.stderr


def test_stop_during_model_loading_starts_nothing(tmp_path, monkeypatch, caplog):
    """A SIGTERM that arrives while the models load ends the run before any socket is bound."""
    import logging

    import zmq

    from edge.daemon import Daemon
    from edge.plan import build_plan

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    config = tmp_path / "site.toml"
    config.write_text(site_toml(endpoint, [{"id": "c", "name": "c", "source": str(PEOPLE_CLIP)}]), encoding="utf-8")
    daemon = Daemon(build_plan(config))
    load_models = Daemon._build

    def load_then_receive_sigterm(self):
        load_models(self)
        self.stop_event.set()  # what the SIGTERM handler of `edge run` does

    monkeypatch.setattr(Daemon, "_build", load_then_receive_sigterm)
    caplog.set_level(logging.INFO)
    assert daemon.run(duration_s=30) == 0

    assert "stop requested while loading the models" in caplog.text
    assert "starting box" not in caplog.text
    assert all(runtime.reader.ident is None for runtime in daemon.cameras.values())
    probe = zmq.Context.instance().socket(zmq.PUB)
    try:
        probe.bind(endpoint)  # raises ZMQError when the daemon left the feed socket bound
    finally:
        probe.close(linger=0)


def test_source_override_replaces_clip(tmp_path):
    result = subprocess.run([*edge_command(), "run", "--config", str(PROJECT_ROOT / "config" / "demo.toml"),
                             "--source", "walkway=/nonexistent/clip.mp4", "--duration", "1"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--source walkway = '/nonexistent/clip.mp4': file not found" in result.stderr
    assert "in the config or in the --source values" in result.stderr
    assert "check-config" not in result.stderr


def test_source_override_unknown_camera(tmp_path):
    result = subprocess.run([*edge_command(), "run", "--config", str(PROJECT_ROOT / "config" / "demo.toml"),
                             "--source", "lobby=/tmp/x.mp4"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown camera ids ['lobby']" in result.stderr


def test_busy_endpoint_stops_startup(tmp_path):
    import zmq

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    holder = zmq.Context.instance().socket(zmq.PUB)
    holder.bind(endpoint)
    try:
        config = tmp_path / "site.toml"
        config.write_text(site_toml(endpoint, [{"id": "c", "name": "c", "source": str(PEOPLE_CLIP)}]),
                          encoding="utf-8")
        result = subprocess.run([*edge_command(), "run", "--config", str(config), "--duration", "5"],
                                capture_output=True, text=True, timeout=60)
    finally:
        holder.close(linger=0)
    assert result.returncode == 2
    assert f"not started: cannot bind the feed socket to {endpoint}" in result.stderr


def test_demo_config_path_resolves_clips():
    config = Path(PROJECT_ROOT / "config" / "demo.toml").read_text(encoding="utf-8")
    assert 'source = "car-detection.mp4"' in config


def test_all_cameras_failed_exits_1(tmp_path):
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video\n" * 50)
    config = tmp_path / "site.toml"
    config.write_text(site_toml(f"tcp://127.0.0.1:{free_port()}", [{"id": "a", "name": "a", "source": str(not_video)},
                                                                    {"id": "b", "name": "b", "source": str(not_video)}]),
                      encoding="utf-8")
    result = subprocess.run([*edge_command(), "run", "--config", str(config), "--duration", "60"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "no camera can deliver frames (failed: a, b); stopping" in result.stderr


def test_finished_files_stop_the_run(tmp_path):
    short_clip = tmp_path / "short.mp4"
    make_short_clip(short_clip, frames=20)
    config = tmp_path / "site.toml"
    config.write_text(site_toml(f"tcp://127.0.0.1:{free_port()}", [{"id": "a", "name": "a", "source": str(short_clip),
                                                                     "realtime": False}]), encoding="utf-8")
    result = subprocess.run([*edge_command(), "run", "--config", str(config), "--duration", "60"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "every file source reached its end; stopping" in result.stderr
    # The last log line closes the run, so a log reader sees that it ended and how.
    assert re.search(r"stopped after \d+ s with exit code 0\n$", result.stderr), result.stderr[-500:]


def make_short_clip(path: Path, frames: int) -> None:
    """Write the first `frames` frames of the people clip to `path`, re-encoded."""
    import av

    with av.open(str(PEOPLE_CLIP)) as source, av.open(str(path), mode="w") as target:
        stream = target.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 768, 432, "yuv420p"
        for index, frame in enumerate(source.decode(video=0)):
            if index == frames:
                break
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="bgr24"), format="bgr24")):
                target.mux(packet)
        for packet in stream.encode():
            target.mux(packet)


@pytest.mark.parametrize("value", ["0", "-5", "nan", "soon"])
def test_invalid_duration_rejected(value):
    result = subprocess.run([*edge_command(), "run", "--config", "x.toml", "--duration", value],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "--duration" in result.stderr


def test_subscribe_bad_endpoint_explains():
    result = subprocess.run([*edge_command(), "subscribe", "--endpoint", "foo", "--timeout", "1"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "cannot subscribe to foo" in result.stderr
    assert "Traceback" not in result.stderr


def test_subscribe_help_matches_behaviour():
    """The help states the --endpoint default and that --timeout exits 1 when fewer than --count arrived."""
    import os

    result = subprocess.run([*edge_command(), "subscribe", "--help"], capture_output=True, text=True, timeout=30,
                            env={**os.environ, "COLUMNS": "400"})
    assert result.returncode == 0
    assert "feed to connect to (default: tcp://127.0.0.1:5556)" in result.stdout
    assert "with --count N, if fewer than N arrived" in result.stdout
    assert "if none arrived at all" not in result.stdout
