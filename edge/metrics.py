"""Prometheus metrics endpoint: the daemon's health counters and inference histograms in the text
exposition format, over HTTP."""

from __future__ import annotations

import asyncio
import bisect
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from aiohttp import web

log = logging.getLogger(__name__)

CAMERA_COUNTERS = {
    "frames_decoded": "Frames decoded from the camera's source, damaged frames included.",
    "frames_skipped": "Decoded frames not offered to inference because they exceeded the camera's max_fps.",
    "frames_gated": "Frames within max_fps that the motion gate held back because the scene showed too little "
                    "motion. Always 0 with motion_gating = false.",
    "frames_dropped": "Frames replaced in the camera's slot by a newer frame before inference took them, because "
                      "inference was busy.",
    "frames_inferred": "Frames that went through inference.",
    "reconnects": "Reconnect attempts after a source error or after an RTSP stream ended.",
    "decode_errors": "Packets the decoder rejected, plus decoded frames discarded as damaged. A corrupt frame "
                     "also discards the frames up to the next clean key frame, because they may show grey or "
                     "smeared areas.",
    "detections_published": "Detections in the camera's det messages that the publisher queue accepted.",
    "plates_read": "Plates that the plate stage found and read on this camera, valid or not.",
    "plates_invalid": "Plate reads left out of the vote because they fit no plate format or the plate was "
                      "narrower than min_plate_width_px.",
    "tracks_without_plate": "Vehicle tracks that the plate stage searched and that ended without a plate message.",
    "faces_seen": "Faces that the face stage found on this camera, before the quality gate.",
    "faces_rejected": "Faces not embedded or matched because they failed the quality gate.",
    "face_hits": "hit.face messages of this camera handed to the publisher queue, including any it rejected.",
}
# Per-camera counters of a stage. The daemon reports them as 0 on cameras without the stage, and the `health`
# body does not name a camera's pipeline. So they are left out only when no pipeline has the stage, which the
# body shows by leaving out its top-level `plates` or `faces` object.
STAGE_CAMERA_COUNTERS = {
    "plates": ("plates_read", "plates_invalid", "tracks_without_plate"),
    "faces": ("faces_seen", "faces_rejected", "face_hits"),
}
PIPELINE_COUNTERS = {
    "batches": "Batches that went through inference. A batch whose inference failed is not counted.",
    "frames": "Frames in the batches counted by edge_pipeline_batches_total.",
    "errors": "Batches that failed in inference, or afterwards in tracking, the plate or face stage or JPEG "
              "encoding.",
}
PIPELINE_GAUGES = {
    "mean_batch_size": "Frames per batch, averaged since the daemon started. 0 before the first batch.",
    "mean_batch_ms": "Milliseconds per batch for letterbox, inference, decoding and NMS of the detector, averaged "
                     "since the daemon started. 0 before the first batch.",
}
PLATE_COUNTERS = {
    "plates_published": ("edge_plates_published_total",
                         "plate messages handed to the publisher queue, including any it rejected."),
    "hits_published": ("edge_plates_hits_published_total",
                       "hit.plate messages handed to the publisher queue, including any it rejected."),
    "repeats_suppressed": ("edge_plates_repeats_suppressed_total",
                           "Plates not sent because the same camera sent them within repeat_window_s."),
}
PUBLISHER_COUNTERS = {
    "sent": "Feed messages handed to ZeroMQ.",
    "dropped": "Feed messages dropped because the publisher queue was full or the send failed.",
    "hwm_overflows": "Sends that found a subscriber's queue at the send high-water mark; that subscriber lost "
                     "this and usually some later messages.",
    "outbox_errors": "Hits and plate messages that could not be stored in the outbox; they were still sent.",
}
PUBLISHER_GAUGES = {
    "sequence": "Sequence number of the last message sent.",
    "subscribers": "Subscriber sockets connected to the feed.",
    "outbox_messages": "Messages stored in the outbox for replay.",
}
# Inference calls on the boxes this daemon targets take from about 1 ms (a plate crop on a GPU) to about
# 2 s (a large batch on a slow CPU), so the buckets cover that range in 1-2-5 steps.
LATENCY_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
# Scrapes closer together than this reuse the previous frame rate, which would be too noisy.
MIN_RATE_WINDOW_S = 1.0


class Histogram:
    """A Prometheus histogram: counts per upper bound, the sum and the count of observed values."""

    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self._counts = [0] * (len(buckets) + 1)  # the last slot is the +Inf bucket
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        # bisect_left puts a value equal to a bound into that bound's bucket, as `le` requires.
        self._counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[int]:
        """Return the count of values at or below each bound, then the total for +Inf."""
        totals, running = [], 0
        for count in self._counts:
            running += count
            totals.append(running)
        return totals


@dataclass
class _ModelHistograms:
    latency_s: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS_S))
    batch_size: Histogram = field(default_factory=lambda: Histogram(BATCH_SIZE_BUCKETS))


class InferenceStats:
    """Latency and batch-size histograms of every inference call, per model; safe to use from any thread."""

    def __init__(self):
        self._models: dict[str, _ModelHistograms] = {}
        self._lock = threading.Lock()

    def record(self, model: str, seconds: float, batch_size: int) -> None:
        with self._lock:
            histograms = self._models.get(model)
            if histograms is None:
                histograms = self._models[model] = _ModelHistograms()
            histograms.latency_s.observe(seconds)
            histograms.batch_size.observe(batch_size)

    def render(self) -> list[str]:
        lines = ["# HELP edge_inference_seconds Duration of one ONNX Runtime inference call, per model file.",
                 "# TYPE edge_inference_seconds histogram"]
        with self._lock:
            models = sorted(self._models.items())
            for model, histograms in models:
                lines += _histogram_lines("edge_inference_seconds", f'model="{_label(model)}"', histograms.latency_s)
            lines += ["# HELP edge_inference_batch_size Frames or crops in one inference call, per model file.",
                      "# TYPE edge_inference_batch_size histogram"]
            for model, histograms in models:
                lines += _histogram_lines("edge_inference_batch_size", f'model="{_label(model)}"',
                                          histograms.batch_size)
        return lines


# One per process: every session created by edge.runtime.session.load_model records into it.
INFERENCE_STATS = InferenceStats()


def _histogram_lines(name: str, labels: str, histogram: Histogram) -> list[str]:
    cumulative = histogram.cumulative()
    lines = [f'{name}_bucket{{{labels},le="{bound:g}"}} {count}' for bound, count in zip(histogram.buckets,
                                                                                          cumulative)]
    lines.append(f'{name}_bucket{{{labels},le="+Inf"}} {cumulative[-1]}')
    lines.append(f"{name}_sum{{{labels}}} {histogram.sum:g}")
    lines.append(f"{name}_count{{{labels}}} {histogram.count}")
    return lines


class FrameRateMeter:
    """Decoded frames per second of each camera, over the time since the previous scrape."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._previous: dict[str, tuple[float, int]] = {}
        self._rates: dict[str, float] = {}

    def update(self, health: dict) -> dict[str, float]:
        """Return the frame rate per camera id: 0 for a camera that is not streaming, and no rate for a
        streaming camera until a scrape at least MIN_RATE_WINDOW_S after its first one."""
        now = self._clock()
        rates: dict[str, float] = {}
        for camera in health.get("cameras", []):
            camera_id, frames = camera["camera_id"], camera.get("frames_decoded", 0)
            previous = self._previous.get(camera_id)
            # The first scrape has no window. An average over the uptime would include any time the camera
            # was down, so it is not used.
            if previous is None:
                self._previous[camera_id] = (now, frames)
            elif now - previous[0] >= MIN_RATE_WINDOW_S:
                self._rates[camera_id] = max(0, frames - previous[1]) / (now - previous[0])
                self._previous[camera_id] = (now, frames)

            # A window can end after the camera went down, and it would still show the frames from before.
            if camera.get("state") != "streaming":
                rates[camera_id] = 0.0
            elif camera_id in self._rates:
                rates[camera_id] = self._rates[camera_id]
        return rates


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(health: dict, inference: InferenceStats | None = None,
                   camera_fps: dict[str, float] | None = None) -> str:
    """Render a `health` body, and the inference histograms when given, as Prometheus text. Counters get
    `_total`, and durations use seconds except in edge_pipeline_mean_batch_ms."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {value:g}" for labels, value in samples)

    cameras = health.get("cameras", [])
    absent_stage_counters = {counter for stage, counters in STAGE_CAMERA_COUNTERS.items() if stage not in health
                             for counter in counters}
    for counter, help_text in CAMERA_COUNTERS.items():
        if counter in absent_stage_counters:
            continue
        samples = [(f'{{camera="{_label(c["camera_id"])}"}}', c[counter]) for c in cameras if counter in c]
        family(f"edge_camera_{counter}_total", "counter", help_text, samples)
    family("edge_camera_last_frame_age_seconds", "gauge", "Seconds since the camera's last decoded frame.",
           [(f'{{camera="{_label(c["camera_id"])}"}}', c["last_frame_age_s"]) for c in cameras
            if c.get("last_frame_age_s") is not None])
    family("edge_camera_streaming", "gauge", "1 while the camera is in the streaming state (decoding "
           "frames), else 0.",
           [(f'{{camera="{_label(c["camera_id"])}"}}', float(c["state"] == "streaming")) for c in cameras])
    if camera_fps is not None:
        family("edge_camera_frames_per_second", "gauge", "Frames decoded per second since the last scrape "
               f"of this endpoint at least {MIN_RATE_WINDOW_S:g} s earlier. 0 while the camera is not streaming. "
               "No sample for a streaming camera until its second scrape.",
               [(f'{{camera="{_label(camera_id)}"}}', round(rate, 3)) for camera_id, rate in camera_fps.items()])

    pipelines = health.get("pipelines", {})
    for counter, help_text in PIPELINE_COUNTERS.items():
        family(f"edge_pipeline_{counter}_total", "counter", help_text,
               [(f'{{pipeline="{_label(name)}"}}', p[counter]) for name, p in pipelines.items()])
    for gauge, help_text in PIPELINE_GAUGES.items():
        family(f"edge_pipeline_{gauge}", "gauge", help_text,
               [(f'{{pipeline="{_label(name)}"}}', p[gauge]) for name, p in pipelines.items()])

    plates = health.get("plates") or {}
    for counter, (name, help_text) in PLATE_COUNTERS.items():
        family(name, "counter", help_text,
               [(f'{{pipeline="{_label(pipeline)}"}}', counts[counter])
                for pipeline, counts in plates.get("pipelines", {}).items() if counter in counts])
    if plates.get("watchlist_version") is not None:
        family("edge_plates_watchlist_version", "gauge", "Change counter of the watchlist that plates are matched "
               "against.", [("", plates["watchlist_version"])])
    faces = health.get("faces") or {}
    if "hits_published" in faces:
        family("edge_faces_hits_published_total", "counter", "hit.face messages of all face pipelines handed to "
               "the publisher queue, including any it rejected.",
               [("", faces["hits_published"])])
    if "repeats_suppressed" in faces:
        family("edge_faces_repeats_suppressed_total", "counter", "Face matches without a hit because the camera "
               "sent a hit for the person within repeat_window_s.", [("", faces["repeats_suppressed"])])
    if "gallery_persons" in faces:
        family("edge_faces_gallery_persons", "gauge", "Enrolled persons that faces are matched against.",
               [("", faces["gallery_persons"])])

    publisher = health.get("publisher", {})
    for counter, help_text in PUBLISHER_COUNTERS.items():
        if counter in publisher:
            family(f"edge_publisher_{counter}_total", "counter", help_text, [("", publisher[counter])])
    for gauge, help_text in PUBLISHER_GAUGES.items():
        if publisher.get(gauge) is not None:
            family(f"edge_publisher_{gauge}", "gauge", help_text, [("", publisher[gauge])])
    if inference is not None:
        lines.extend(inference.render())
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
        self._frame_rates = FrameRateMeter()
        self.error: str | None = None

    async def _metrics(self, _request: web.Request) -> web.Response:
        health = self.collect()
        text = render_metrics(health, INFERENCE_STATS, self._frame_rates.update(health))
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

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
