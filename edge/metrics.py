"""Prometheus metrics endpoint: the daemon's health counters in the text exposition format, over HTTP."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Callable

from aiohttp import web

log = logging.getLogger(__name__)

CAMERA_COUNTERS = ("frames_decoded", "frames_skipped", "frames_dropped", "frames_inferred", "reconnects",
                   "detections_published", "plates_read", "plates_invalid", "faces_seen", "faces_rejected",
                   "face_hits")
PIPELINE_COUNTERS = ("batches", "frames", "errors")
PIPELINE_GAUGES = ("mean_batch_size", "mean_batch_ms")
PUBLISHER_COUNTERS = ("sent", "dropped", "outbox_errors")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(health: dict) -> str:
    """Render a `health` body as Prometheus text; counters get `_total`, durations use seconds."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {value:g}" for labels, value in samples)

    cameras = health.get("cameras", [])
    for counter in CAMERA_COUNTERS:
        samples = [(f'{{camera="{_label(c["camera_id"])}"}}', c[counter]) for c in cameras if counter in c]
        family(f"edge_camera_{counter}_total", "counter", f"Camera {counter.replace('_', ' ')}.", samples)
    family("edge_camera_last_frame_age_seconds", "gauge", "Seconds since the camera's last decoded frame.",
           [(f'{{camera="{_label(c["camera_id"])}"}}', c["last_frame_age_s"]) for c in cameras
            if c.get("last_frame_age_s") is not None])
    family("edge_camera_streaming", "gauge", "1 while the camera delivers frames, else 0.",
           [(f'{{camera="{_label(c["camera_id"])}"}}', float(c["state"] == "streaming")) for c in cameras])

    pipelines = health.get("pipelines", {})
    for counter in PIPELINE_COUNTERS:
        family(f"edge_pipeline_{counter}_total", "counter", f"Inference {counter} per pipeline.",
               [(f'{{pipeline="{_label(name)}"}}', p[counter]) for name, p in pipelines.items()])
    for gauge in PIPELINE_GAUGES:
        family(f"edge_pipeline_{gauge}", "gauge", f"Inference {gauge.replace('_', ' ')} since start.",
               [(f'{{pipeline="{_label(name)}"}}', p[gauge]) for name, p in pipelines.items()])

    publisher = health.get("publisher", {})
    for counter in PUBLISHER_COUNTERS:
        if counter in publisher:
            family(f"edge_publisher_{counter}_total", "counter", f"Feed messages {counter.replace('_', ' ')}.",
                   [("", publisher[counter])])
    family("edge_uptime_seconds", "gauge", "Seconds since the daemon started.", [("", health.get("uptime_s", 0))])
    return "\n".join(lines) + "\n"


class MetricsServer:
    """Serves GET /metrics from `collect()` on its own thread and event loop, so a slow scraper never
    touches the analysis threads."""

    def __init__(self, host: str, port: int, collect: Callable[[], dict]):
        self.host = host
        self.port = port
        self.collect = collect
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self.error: str | None = None

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(text=render_metrics(self.collect()), content_type="text/plain", charset="utf-8")

    def start(self) -> bool:
        """Start serving; return False (and log why) when the address cannot be bound."""
        self._thread = threading.Thread(target=self._serve, name="metrics", daemon=True)
        self._thread.start()
        self._started.wait()
        if self.error:
            log.error("metrics endpoint not started: %s; the daemon runs without it", self.error)
            return False
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)
        return True

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        try:
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.host, self.port)
            self._loop.run_until_complete(site.start())
        except OSError as error:
            self.error = f"cannot listen on {self.host}:{self.port}: {error.strerror}"
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
