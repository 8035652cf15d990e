"""Run the daemon on one clip served over RTSP, recording the feed until the clip has played once."""

from __future__ import annotations

import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edge.bus.subscriber import FeedMessage, subscribe
from tests.conftest import edge_command, free_port, wait_until


class FeedRecorder:
    """Collects every feed message in a background thread."""

    def __init__(self, endpoint: str):
        self.messages: list[FeedMessage] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(endpoint,), daemon=True)
        self._thread.start()

    def _run(self, endpoint: str) -> None:
        stream = subscribe(endpoint, [], timeout_s=0.5)
        while not self._stop.is_set():
            for message in stream:
                self.messages.append(message)
                if self._stop.is_set():
                    break
            stream = subscribe(endpoint, [], timeout_s=0.5)

    def det(self, camera_id: str) -> list[FeedMessage]:
        return [m for m in self.messages if m.topic == "det" and m.header["camera_id"] == camera_id]

    def topic(self, topic: str) -> list[FeedMessage]:
        return [m for m in self.messages if m.topic == topic]

    def last_health(self) -> dict | None:
        """Return the newest periodic health message; the one sent at shutdown shows every camera stopped."""
        health = [m.header for m in self.messages if m.topic == "health"
                  and all(c["state"] != "stopped" for c in m.header["cameras"])]
        return health[-1] if health else None

    def final_health(self) -> dict | None:
        health = [m.header for m in self.messages if m.topic == "health"]
        return health[-1] if health else None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass
class ClipRun:
    feed: FeedRecorder
    stdout: str
    stderr: str
    returncode: int


def run_clip(tmp: Path, source_url: str, pipeline: str, watchlist_db: Path, clip_seconds: float,
             while_running: Callable[[], None] | None = None, camera_options: str = "") -> ClipRun:
    """Run one camera on `source_url` until the clip has played once, then stop the daemon with SIGTERM.

    `camera_options` is TOML added to the camera's table, such as 'face_camera = true\\n'.
    """
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    config = tmp / "site.toml"
    config.write_text(
        f'box_id = "test-box"\nwatchlist_db = "{watchlist_db}"\n\n[[cameras]]\nid = "cam"\nname = "测试"\n'
        f'source = "{source_url}"\npipeline = "{pipeline}"\nmax_fps = 10\n{camera_options}\n'
        # The server replays the clip to a reconnecting client; a long backoff keeps the replay out of the run.
        '[ingest]\nbackoff_initial_s = 60\nbackoff_max_s = 60\n\n'
        f'[publisher]\nendpoint = "{endpoint}"\nhealth_interval_s = 1\n'
        # Each run gets its own outbox and replay port, so runs never share sequence numbers or collide on 5557.
        f'outbox_path = "{tmp / "outbox.sqlite"}"\nreplay_endpoint = "tcp://127.0.0.1:{free_port()}"\n'
        f'\n[metrics]\nport = {free_port()}\n',
        encoding="utf-8")
    recorder = FeedRecorder(endpoint)
    process = subprocess.Popen([*edge_command(), "run", "--config", str(config)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: recorder.last_health() is not None, 60), "daemon did not start"
        if while_running is not None:
            while_running()
        # The clip ends with empty frames that end the last track; then the stream closes and the reader backs off.
        wait_until(lambda: recorder.last_health()["cameras"][0]["state"] == "backoff", clip_seconds + 60)
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
        recorder.close()
    return ClipRun(recorder, stdout, stderr, process.returncode)
