"""The analytics daemon: readers -> batch schedulers -> detector -> publisher, with health and a clean stop."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import cv2

from edge import systemd
from edge.bus.publisher import Publisher
from edge.bus.schema import TOPIC_DETECTIONS, TOPIC_HEALTH, detections_body
from edge.config import CameraConfig
from edge.ingest.reader import CameraReader
from edge.ingest.redact import redact_url
from edge.ingest.slot import FramePacket
from edge.plan import RunPlan
from edge.runtime.detector import Detections, Detector
from edge.runtime.scheduler import BatchScheduler

log = logging.getLogger(__name__)

# Main-loop tick: how quickly a stop request or duration end is noticed.
TICK_S = 0.2


@dataclass
class CameraRuntime:
    camera: CameraConfig
    reader: CameraReader
    frames_inferred: int = 0
    messages_published: int = 0
    detections_published: int = 0

    def counters(self) -> dict:
        return {
            "camera_id": self.camera.id,
            "state": self.reader.state.value,
            **self.reader.counters.snapshot(),
            "frames_dropped": self.reader.slot.dropped,
            "frames_inferred": self.frames_inferred,
            "messages_published": self.messages_published,
            "detections_published": self.detections_published,
        }


@dataclass
class Daemon:
    plan: RunPlan
    stop_event: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        site = self.plan.site
        self.publisher = Publisher(site.publisher.endpoint, site.box_id, site.publisher.queue_size)
        self.schedulers: dict[str, BatchScheduler] = {}
        self.detectors: dict[str, Detector] = {}
        self.cameras: dict[str, CameraRuntime] = {}
        self.started_monotonic = time.monotonic()

    def _build(self) -> None:
        site = self.plan.site
        for name, pipeline in self.plan.pipelines.items():
            stage = pipeline.config.detect
            detector = Detector(pipeline.model, pipeline.model_path, stage, site.runtime.providers,
                                site.runtime.intra_op_threads)
            self.detectors[name] = detector
            self.schedulers[name] = BatchScheduler(name, detector, stage.batch_size, stage.max_wait_ms,
                                                   self._on_result, self.stop_event)
        for camera in site.cameras:
            if not camera.enabled:
                continue
            slot = self.schedulers[camera.pipeline].add_slot(camera.id)
            reader = CameraReader(camera, self.plan.sources[camera.id], site.ingest, slot, self.stop_event)
            self.cameras[camera.id] = CameraRuntime(camera, reader)

    def _on_result(self, packet: FramePacket, detections: Detections) -> None:
        runtime = self.cameras[packet.camera_id]
        runtime.frames_inferred += 1
        settings = self.plan.site.publisher
        if not len(detections) and not settings.send_empty_frames:
            return
        height, width = packet.frame_bgr.shape[:2]
        body = detections_body(packet.camera_id, packet.frame_time_utc, width, height, detections)
        jpeg = None
        if settings.send_snapshots:
            ok, encoded = cv2.imencode(".jpg", packet.frame_bgr, [cv2.IMWRITE_JPEG_QUALITY, settings.jpeg_quality])
            jpeg = encoded.tobytes() if ok else None
        if self.publisher.publish(TOPIC_DETECTIONS, body, jpeg):
            runtime.messages_published += 1
            runtime.detections_published += len(detections)

    def health_body(self) -> dict:
        return {
            "uptime_s": round(time.monotonic() - self.started_monotonic, 1),
            "cameras": [runtime.counters() for runtime in self.cameras.values()],
            "pipelines": {name: s.counters.snapshot() for name, s in self.schedulers.items()},
            "publisher": {"sent": self.publisher.sent, "dropped": self.publisher.dropped},
        }

    def _log_summary(self) -> None:
        site = self.plan.site
        log.info("starting box %s: %d cameras, feed on %s", site.box_id, len(self.cameras), site.publisher.endpoint)
        for name, pipeline in self.plan.pipelines.items():
            detector = self.detectors[name]
            log.info("pipeline %s: model %s (%s) on %s, batch %d, classes %s", name, pipeline.model.name,
                     pipeline.model_path, detector.provider, detector.max_batch, ", ".join(pipeline.config.detect.classes))
        for runtime in self.cameras.values():
            camera = runtime.camera
            log.info("%s: '%s' from %s, pipeline %s, max %.1f fps", camera.id, camera.name,
                     redact_url(runtime.reader.source), camera.pipeline, camera.max_fps)

    def run(self, duration_s: float | None = None) -> None:
        """Run until stop_event is set or `duration_s` passes; the caller installs signal handlers."""
        self._build()
        self.started_monotonic = time.monotonic()
        self.publisher.start()
        self._log_summary()
        for scheduler in self.schedulers.values():
            scheduler.start()
        for runtime in self.cameras.values():
            runtime.reader.start()
        systemd.notify("READY=1")

        deadline = None if duration_s is None else time.monotonic() + duration_s
        health_interval_s = self.plan.site.publisher.health_interval_s
        next_health = time.monotonic() + health_interval_s
        try:
            while not self.stop_event.wait(TICK_S):
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    log.info("duration of %.0f s reached; stopping", duration_s)
                    break
                if now >= next_health:
                    self.publisher.publish(TOPIC_HEALTH, self.health_body())
                    next_health = now + health_interval_s
                if all(s.is_alive() for s in self.schedulers.values()):
                    systemd.notify("WATCHDOG=1")
        finally:
            self.stop()

    def stop(self) -> None:
        systemd.notify("STOPPING=1")
        self.stop_event.set()
        join_timeout_s = self.plan.site.ingest.read_timeout_s + 2
        for runtime in self.cameras.values():
            if runtime.reader.is_alive():
                runtime.reader.join(join_timeout_s)
                if runtime.reader.is_alive():
                    log.warning("%s: reader did not stop within %.0f s", runtime.camera.id, join_timeout_s)
        for scheduler in self.schedulers.values():
            if scheduler.is_alive():
                scheduler.join(join_timeout_s)
        self.publisher.publish(TOPIC_HEALTH, self.health_body())
        self.publisher.close()


def format_counters(daemon: Daemon) -> str:
    """Render per-camera counters as a fixed-width table for the end of `edge run`."""
    columns = ("camera_id", "state", "frames_decoded", "frames_skipped", "frames_dropped", "frames_inferred",
               "reconnects", "detections_published", "last_frame_age_s")
    rows = [[str(runtime.counters()[name]) for name in columns] for runtime in daemon.cameras.values()]
    widths = [max(len(name), *(len(row[i]) for row in rows)) for i, name in enumerate(columns)]
    lines = ["  ".join(name.ljust(widths[i]) for i, name in enumerate(columns))]
    lines += ["  ".join(value.ljust(widths[i]) for i, value in enumerate(row)) for row in rows]
    return "\n".join(lines)
