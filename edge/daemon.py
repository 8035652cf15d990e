"""The analytics daemon: readers -> batch schedulers -> detector -> later stages -> publisher."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from edge import systemd
from edge.bus.outbox import default_outbox_path
from edge.bus.publisher import OutboxSettings, Publisher
from edge.bus.schema import TOPIC_HEALTH
from edge.config import CameraConfig
from edge.events.faces import FaceEventBuilder
from edge.events.plates import PlateEventBuilder
from edge.faces.analyzer import FaceAnalyzer
from edge.faces.detector import FaceDetector
from edge.faces.embedder import FaceEmbedder
from edge.faces.quality import QualityGate
from edge.ingest.motion_gate import MotionGate
from edge.ingest.reader import CameraReader, ReaderState
from edge.ingest.redact import redact_url
from edge.metrics import MetricsServer
from edge.plan import PipelinePlan, RunPlan
from edge.plates.detector import PlateDetector
from edge.plates.recognizer import PlateRecognizer
from edge.plates.stage import PlateStage
from edge.runtime.detector import Detector
from edge.runtime.analysis import CameraAnalysis
from edge.runtime.pipeline import PipelineRunner, SecondStage
from edge.runtime.face_runner import FaceStageRunner
from edge.runtime.layout import resolve_layout
from edge.runtime.plate_runner import PlateStageRunner
from edge.runtime.overload import CameraLoad, OverloadMonitor
from edge.runtime.scheduler import BatchScheduler
from edge.track.tracker import Tracker
from edge.watchlist.plates import PlateWatchlistReloader
from edge.watchlist.faces import FaceGalleryReloader, FaceWatchlist
from edge.watchlist.remote import WatchlistPuller, read_token_file
from edge.watchlist.store import WatchlistStore

log = logging.getLogger(__name__)

# Main-loop tick: how quickly a stop request or duration end is noticed.
TICK_S = 0.2
# Maximum wait for reader threads at shutdown, for all cameras together. A reader stuck in a connection
# attempt cannot be interrupted; it is a daemon thread and ends with the process.
READER_STOP_TIMEOUT_S = 3.0
# Frames waiting this long with no finished batch mean inference hangs; well under WatchdogSec=30 in the unit.
INFERENCE_STALL_S = 10.0


@dataclass
class CameraRuntime:
    camera: CameraConfig
    reader: CameraReader
    analysis: CameraAnalysis

    def counters(self) -> dict:
        analysis = self.analysis
        return {
            "camera_id": self.camera.id,
            "camera_name": self.camera.name,
            "state": self.reader.state.value,
            **self.reader.counters.snapshot(),
            "frames_dropped": self.reader.slot.dropped,
            "frames_inferred": analysis.frames_inferred,
            "messages_published": analysis.messages_published,
            "detections_published": analysis.detections_published,
            "plates_read": analysis.plates_read,
            "plates_invalid": analysis.plates_invalid,
            "tracks_without_plate": analysis.tracks_without_plate,
            "faces_seen": analysis.faces_seen,
            "faces_rejected": analysis.faces_rejected,
            "face_hits": analysis.face_hits,
        }


@dataclass
class Daemon:
    plan: RunPlan
    stop_event: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        site = self.plan.site
        self.publisher = Publisher(site.publisher.endpoint, site.box_id, site.publisher.queue_size,
                                   outbox=self._outbox_settings(), send_hwm=site.publisher.send_hwm)
        self.schedulers: dict[str, BatchScheduler] = {}
        self.detectors: dict[str, Detector] = {}
        self.runners: dict[str, PipelineRunner] = {}
        self.plate_events: dict[str, PlateEventBuilder] = {}
        self.cameras: dict[str, CameraRuntime] = {}
        self.watchlist_store: WatchlistStore | None = None
        self.watchlist: PlateWatchlistReloader | None = None
        self.face_galleries: list[FaceGalleryReloader] = []
        self.face_events: list[FaceEventBuilder] = []
        self.watchlist_puller: WatchlistPuller | None = None
        self.metrics: MetricsServer | None = None
        self.started_monotonic = time.monotonic()

    def _outbox_settings(self) -> OutboxSettings:
        config = self.plan.site.publisher
        path = (self.plan.site_path.parent / config.outbox_path) if config.outbox_path else default_outbox_path()
        return OutboxSettings(path, config.outbox_max_age_s, config.outbox_max_mb * 1024 * 1024,
                              config.replay_endpoint)

    def _plate_stage(self, pipeline: PipelinePlan) -> tuple[PlateStage, PlateEventBuilder]:
        site = self.plan.site
        stage_config = pipeline.config.plates
        if self.watchlist is None:
            self.watchlist = PlateWatchlistReloader(self._open_watchlist_store())
        detector = PlateDetector(pipeline.plate_detector.entry, pipeline.plate_detector.path, site.runtime.providers,
                                 stage_config.detector_score_threshold)
        recognizer = PlateRecognizer(pipeline.plate_recognizer.entry, pipeline.plate_recognizer.path,
                                     site.runtime.providers)
        double_row = pipeline.plate_double_row_recognizer
        double_row_recognizer = (PlateRecognizer(double_row.entry, double_row.path, site.runtime.providers)
                                 if double_row is not None else None)
        watchlist = self.watchlist
        events = PlateEventBuilder(stage_config, lambda text: watchlist.current().match(text),
                                   site.publisher.jpeg_quality)
        return PlateStage(detector, recognizer, double_row_recognizer), events

    def _open_watchlist_store(self) -> WatchlistStore:
        if self.watchlist_store is None:
            site = self.plan.site
            store_path = (self.plan.site_path.parent / site.watchlist_db) if site.watchlist_db else None
            self.watchlist_store = WatchlistStore(store_path)
        return self.watchlist_store

    def _start_watchlist_puller(self) -> None:
        source = self.plan.site.watchlist_source
        if source is None:
            return
        token = read_token_file(self.plan.site_path.parent / source.token_file)
        model_ids = sorted({gallery.model_id for gallery in self.face_galleries})
        if len(model_ids) > 1:
            # NOTE: the puller fetches one model's embeddings and replaces the face tables with them, so
            # galleries of the other models become empty. Use one embedder in every face pipeline.
            log.warning("face pipelines use %d embedders (%s); pulling embeddings of %s only",
                        len(model_ids), ", ".join(model_ids), model_ids[0])
        self.watchlist_puller = WatchlistPuller(source.url, token, self._open_watchlist_store(),
                                                model_ids[0] if model_ids else None, source.interval_s,
                                                source.timeout_s)
        self.watchlist_puller.start()

    def _face_stage(self, pipeline: PipelinePlan, analyses: dict[str, CameraAnalysis]) -> FaceStageRunner:
        site = self.plan.site
        config = pipeline.config.faces
        embedder = FaceEmbedder(pipeline.face_embedder.entry, pipeline.face_embedder.path, site.runtime.providers)
        threshold = config.match_threshold or pipeline.face_embedder.entry.match_threshold
        reloader = FaceGalleryReloader(FaceWatchlist(self._open_watchlist_store()), embedder.model_id, threshold,
                                       margin=config.match_margin)
        self.face_galleries.append(reloader)
        gate = QualityGate(min_face_px=config.min_face_px, min_score=config.detector_score_threshold,
                           min_sharpness=config.min_sharpness, max_yaw_deg=config.max_yaw_deg,
                           max_pitch_deg=config.max_pitch_deg)

        def analyzer(input_px: int) -> FaceAnalyzer:
            # A graph with a fixed input size (such as yunet_s_640) runs at that size whatever is configured.
            fixed_width, fixed_height = pipeline.face_detector.entry.input_size
            size = (fixed_width, fixed_height) if fixed_width and fixed_height else (input_px, input_px)
            detector = FaceDetector(pipeline.face_detector.entry, pipeline.face_detector.path,
                                    site.runtime.providers, config.detector_score_threshold, input_size=size)
            return FaceAnalyzer(detector, embedder, gate)

        has_face_cameras = any(analysis.camera.face_camera for analysis in analyses.values())
        events = FaceEventBuilder(config, reloader.current, site.publisher.jpeg_quality)
        self.face_events.append(events)
        return FaceStageRunner(config, analyzer(config.crop_input_px),
                               analyzer(config.frame_input_px) if has_face_cameras else None, events, analyses)

    def _build(self) -> None:
        site = self.plan.site
        analyses: dict[str, dict[str, CameraAnalysis]] = {name: {} for name in self.plan.pipelines}
        for camera in site.cameras:
            if camera.enabled:
                tracker = Tracker(self.plan.pipelines[camera.pipeline].config.track)
                analyses[camera.pipeline][camera.id] = CameraAnalysis(camera, tracker)

        for name, pipeline in self.plan.pipelines.items():
            layout = resolve_layout(site.runtime, pipeline.config.detect)
            stage = pipeline.config.detect.model_copy(update={"batch_size": layout.batch_size})
            # One session per worker, so the workers run inference at the same time.
            workers = [Detector(pipeline.model, pipeline.model_path, stage, site.runtime.providers,
                                layout.intra_op_threads) for _ in range(layout.inference_workers)]
            self.detectors[name] = workers[0]
            stages: list[SecondStage] = []
            if pipeline.config.plates is not None:
                plate_stage, plate_events = self._plate_stage(pipeline)
                self.plate_events[name] = plate_events
                stages.append(PlateStageRunner(pipeline.config.plates, plate_stage, plate_events, analyses[name]))
            if pipeline.config.faces is not None:
                stages.append(self._face_stage(pipeline, analyses[name]))
            runner = PipelineRunner(analyses[name], self._publish, site.publisher, stages)
            self.runners[name] = runner
            self.schedulers[name] = BatchScheduler(name, workers, stage.batch_size, stage.max_wait_ms,
                                                   runner.on_batch, self.stop_event)

        for camera in site.cameras:
            if not camera.enabled:
                continue
            slot = self.schedulers[camera.pipeline].add_slot(camera.id)
            analysis = analyses[camera.pipeline][camera.id]
            gate = MotionGate(camera, lambda analysis=analysis: analysis.gate_tracks) if camera.motion_gating else None
            reader = CameraReader(camera, self.plan.sources[camera.id], site.ingest, slot, self.stop_event, gate)
            self.cameras[camera.id] = CameraRuntime(camera, reader, analysis)

    def _publish(self, topic: str, body: dict, images: list[bytes]) -> bool:
        return self.publisher.publish(topic, body, images)

    def health_body(self) -> dict:
        body = {
            "uptime_s": round(time.monotonic() - self.started_monotonic, 1),
            "cameras": [runtime.counters() for runtime in self.cameras.values()],
            "pipelines": {name: s.counters.snapshot() for name, s in self.schedulers.items()},
            "publisher": self.publisher.counters(),
        }
        if self.plate_events:
            body["plates"] = {
                "pipelines": {name: {"plates_published": b.plates_published, "hits_published": b.hits_published,
                                     "repeats_suppressed": b.repeats_suppressed}
                              for name, b in self.plate_events.items()},
                "watchlist_version": self.watchlist.version if self.watchlist else None,
            }
        if self.watchlist_puller is not None:
            body["watchlist_source"] = self.watchlist_puller.status()
        if self.face_galleries:
            body["faces"] = {
                "hits_published": sum(events.hits_published for events in self.face_events),
                "repeats_suppressed": sum(events.repeats_suppressed for events in self.face_events),
                "gallery_persons": sum(len(gallery.current()) for gallery in self.face_galleries),
            }
        return body

    def _log_summary(self) -> None:
        site = self.plan.site
        log.info("starting box %s: %d camera(s), feed on %s", site.box_id, len(self.cameras),
                 site.publisher.endpoint)
        for name, pipeline in self.plan.pipelines.items():
            detector = self.detectors[name]
            log.info("pipeline %s: model %s (%s) on %s, batch %d, %d inference worker(s) x %s thread(s), "
                     "classes %s", name, pipeline.model.name, pipeline.model_path, detector.provider,
                     detector.max_batch, len(self.schedulers[name].workers),
                     detector.session.get_session_options().intra_op_num_threads or "auto",
                     ", ".join(pipeline.config.detect.classes))
            if pipeline.face_detector is not None:
                persons = sum(len(gallery.current()) for gallery in self.face_galleries)
                log.info("pipeline %s: faces with %s and %s, gallery of %d persons", name,
                         pipeline.face_detector.entry.name, pipeline.face_embedder.entry.name, persons)
                # A pulled watchlist fills the local store after the start, so it starts empty without fault.
                if persons == 0 and self.plan.site.watchlist_source is None:
                    log.warning("pipeline %s: the face gallery in %s is empty, so no hit.face will be sent; "
                                "enrol persons with `edge watchlist faces add`", name, self.watchlist_store.path)
            if pipeline.plate_detector is not None:
                entries = len(self.watchlist.current()) if self.watchlist else 0
                double_row = pipeline.plate_double_row_recognizer or pipeline.plate_recognizer
                log.info("pipeline %s: plates with %s and %s (double-row plates: %s), watchlist %s (%d entries)",
                         name, pipeline.plate_detector.entry.name, pipeline.plate_recognizer.entry.name,
                         double_row.entry.name, self.watchlist_store.path if self.watchlist_store else "-", entries)
                if entries == 0 and self.plan.site.watchlist_source is None:
                    log.warning("pipeline %s: the plate watchlist in %s is empty, so plates are read but no "
                                "hit.plate will be sent; add entries with `edge watchlist plates add` or "
                                "`edge watchlist plates import FILE.csv`", name, self.watchlist_store.path)
        for runtime in self.cameras.values():
            camera = runtime.camera
            log.info("%s: '%s' from %s, pipeline %s, max %.1f fps%s", camera.id, camera.name,
                     redact_url(runtime.reader.source), camera.pipeline, camera.max_fps,
                     ", plate camera" if camera.plate_camera else "")

    def _all_sources_done(self) -> bool:
        """True when no camera can deliver another frame: every one failed or reached the end of its file."""
        return all(runtime.reader.state in (ReaderState.FAILED, ReaderState.FINISHED)
                   for runtime in self.cameras.values())

    def run(self, duration_s: float | None = None) -> int:
        """Run until stop_event is set or `duration_s` passes, and return the exit code.

        The exit code is 1 when every camera failed, so a supervisor restarts or flags the box. The caller
        installs signal handlers.
        """
        self._build()
        if self.stop_event.is_set():
            # A SIGTERM or SIGINT during model loading ends the run here, before any socket or thread starts.
            log.info("stop requested while loading the models; exiting without starting")
            return 0
        self._start_watchlist_puller()
        self.started_monotonic = time.monotonic()
        self.publisher.start()
        metrics = self.plan.site.metrics
        self.metrics = MetricsServer(metrics.host, metrics.port, self.health_body) if metrics.enabled else None
        if self.metrics is not None:
            self.metrics.start()
        self._log_summary()
        for scheduler in self.schedulers.values():
            scheduler.start()
        for runtime in self.cameras.values():
            runtime.reader.start()
        systemd.notify("READY=1")

        deadline = None if duration_s is None else time.monotonic() + duration_s
        overload = OverloadMonitor(time.monotonic())
        health_interval_s = self.plan.site.publisher.health_interval_s
        next_health = time.monotonic() + health_interval_s
        exit_code = 0
        try:
            while not self.stop_event.wait(TICK_S):
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    log.info("duration of %g s reached; stopping", duration_s)
                    break
                if self._all_sources_done():
                    failed = [r.camera.id for r in self.cameras.values() if r.reader.state is ReaderState.FAILED]
                    if failed:
                        log.error("no camera can deliver frames (failed: %s); stopping", ", ".join(failed))
                        exit_code = 1
                    else:
                        log.info("every file source reached its end; stopping")
                    break
                if now >= next_health:
                    self.publisher.publish(TOPIC_HEALTH, self.health_body())
                    next_health = now + health_interval_s
                overload.check(now, self._camera_loads)
                if self.watchlist is not None:
                    self.watchlist.refresh_if_changed()
                for gallery in self.face_galleries:
                    gallery.refresh_if_changed()
                # The watchdog is fed only while inference keeps up, so systemd restarts a hung model.
                if all(s.is_processing(INFERENCE_STALL_S) for s in self.schedulers.values()):
                    systemd.notify("WATCHDOG=1")
        finally:
            self.stop()
        return exit_code

    def _camera_loads(self) -> list[CameraLoad]:
        # A file read with realtime = false comes faster than inference by design, so its drops are expected.
        return [CameraLoad(runtime.camera.pipeline, camera_id, runtime.analysis.frames_inferred,
                           runtime.reader.slot.dropped) for camera_id, runtime in self.cameras.items()
                if runtime.camera.realtime]

    def stop(self) -> None:
        systemd.notify("STOPPING=1")
        self.stop_event.set()
        deadline = time.monotonic() + READER_STOP_TIMEOUT_S
        for runtime in self.cameras.values():
            runtime.reader.join(max(0.0, deadline - time.monotonic()))
            if runtime.reader.is_alive():
                log.warning("%s: reader still %s after %.0f s; leaving it to end with the process",
                            runtime.camera.id, runtime.reader.state.value, READER_STOP_TIMEOUT_S)
        for scheduler in self.schedulers.values():
            # A scheduler finishes its current batch; inference of one batch takes well under this.
            scheduler.join(READER_STOP_TIMEOUT_S)
        # Tracks still open may hold plate reads that were never published.
        for runner in self.runners.values():
            runner.end_all_tracks()
        if self.watchlist_puller is not None:
            self.watchlist_puller.close()
        self.publisher.publish(TOPIC_HEALTH, self.health_body())
        self.publisher.close()
        if self.metrics is not None:
            self.metrics.stop()


def format_counters(daemon: Daemon) -> str:
    """Render per-camera counters as a fixed-width table for the end of `edge run`."""
    columns = ("camera_id", "state", "frames_decoded", "frames_skipped", "frames_gated", "frames_dropped",
               "frames_inferred", "reconnects", "detections_published", "plates_read", "last_frame_age_s")
    rows = []
    for runtime in daemon.cameras.values():
        counters = runtime.counters()
        rows.append(["-" if counters[name] is None else str(counters[name]) for name in columns])
    widths = [max(len(name), *(len(row[i]) for row in rows)) for i, name in enumerate(columns)]
    lines = ["  ".join(name.ljust(widths[i]) for i, name in enumerate(columns))]
    lines += ["  ".join(value.ljust(widths[i]) for i, value in enumerate(row)) for row in rows]
    return "\n".join(lines)
