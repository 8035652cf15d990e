"""Shared fixtures: paths to the real models and media, a GStreamer RTSP server, free ports."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("EDGE_TEST_ASSETS", PROJECT_ROOT.parent / "shared" / "assets"))
MODEL_DIR = ASSETS / "models"
VIDEO_DIR = ASSETS / "videos"
PEOPLE_CLIP = VIDEO_DIR / "one-by-one-person-detection.mp4"
CAR_CLIP = VIDEO_DIR / "car-detection.mp4"
BUS_IMAGE = ASSETS / "images" / "coco" / "bus.jpg"
ZIDANE_IMAGE = ASSETS / "images" / "coco" / "zidane.jpg"
SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SERVER_SCRIPT = Path(__file__).parent / "support" / "rtsp_server.py"

if not MODEL_DIR.is_dir():
    raise RuntimeError(
        f"test assets not found at {ASSETS}; put the shared assets beside the project or set EDGE_TEST_ASSETS"
    )

# Model and media lookup use the real test assets, in this process and in every daemon it starts.
# Tests that need other folders override these with monkeypatch.
os.environ["EDGE_MODEL_DIR"] = str(MODEL_DIR)
os.environ["EDGE_MEDIA_DIR"] = str(VIDEO_DIR)
# Watchlists and outboxes of daemons started without their own paths go to a throw-away folder, which is
# deleted when the test run ends, so repeated runs leave nothing behind in the temporary folder.
os.environ["EDGE_DATA_DIR"] = tempfile.mkdtemp(prefix="edge-test-data-")
atexit.register(shutil.rmtree, os.environ["EDGE_DATA_DIR"], ignore_errors=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition, timeout_s: float) -> bool:
    """Poll `condition` until it is true or `timeout_s` passes; return its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def edge_command() -> list[str]:
    """Run the CLI with the interpreter running the tests, so the installed package is the one under test."""
    return [sys.executable, "-m", "edge"]


def _gstreamer_rtsp_available() -> str | None:
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found"
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
         "from gi.repository import GstRtspServer"],
        capture_output=True, text=True,
    )
    if probe.returncode != 0:
        return "GStreamer RTSP server bindings missing: apt-get install python3-gi gir1.2-gst-rtsp-server-1.0"
    return None


class RtspServer:
    """A GStreamer RTSP server process serving the test clips on 127.0.0.1."""

    def __init__(self, mounts: dict[str, Path], user: str | None = None, port: int | None = None,
                 launches: dict[str, str] | None = None):
        """Serve `mounts` (H.264 MP4 files) and `launches` (gst-launch descriptions ending in pay0) on `port`."""
        self.port = port or free_port()
        self.user = user
        command = [SYSTEM_PYTHON, str(RTSP_SERVER_SCRIPT), str(self.port)]
        command += [f"{name}={path}" for name, path in mounts.items()]
        command += [f"--launch={name}={launch}" for name, launch in (launches or {}).items()]
        if user:
            command += ["--user", user]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.process.stdout.readline()
        if not line.startswith("READY"):
            self.stop()
            raise RuntimeError(f"RTSP server did not start: {line!r}")

    def url(self, mount: str, credentials: str | None = None) -> str:
        """Return the mount's URL with the server's credentials, or with `credentials` where given."""
        userinfo = credentials or self.user
        return f"rtsp://{userinfo}@127.0.0.1:{self.port}/{mount}" if userinfo else f"rtsp://127.0.0.1:{self.port}/{mount}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="session")
def rtsp_server():
    reason = _gstreamer_rtsp_available()
    if reason:
        pytest.skip(reason)
    server = RtspServer({"people": PEOPLE_CLIP, "cars": CAR_CLIP}, user="viewer:rtsp-Secret-42")
    yield server
    server.stop()
