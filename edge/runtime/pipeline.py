"""Pipeline runner: the stages after inference for each batch (tracking, `det` messages, plates across cameras)."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edge.bus.schema import TOPIC_DETECTIONS, detections_body
from edge.config import CameraConfig, PublisherConfig
from edge.config.pipeline import COCO_CLASSES, PipelineConfig
from edge.events.plates import FeedEvent, PlateEventBuilder
from edge.events.snapshot import encode_jpeg
from edge.ingest.slot import FramePacket
from edge.core.regions import Region
from edge.plates.stage import PlateResult, PlateStage
from edge.plates.vote import PlateObservation
from edge.runtime.detector import Detections
from edge.track.tracker import Tracker

log = logging.getLogger(__name__)

# Publishes one message: topic, header body, attached JPEG images.
PublishFunction = Callable[[str, dict, list[bytes]], bool]


@dataclass
class CameraAnalysis:
    """Per-camera state kept by the pipeline: trackers and counters."""

    camera: CameraConfig
    tracker: Tracker = field(default_factory=Tracker)
    plate_tracker: Tracker = field(default_factory=Tracker)  # plate cameras track plates, not vehicles
    frames_inferred: int = 0
    messages_published: int = 0
    detections_published: int = 0
    plates_read: int = 0
    plates_invalid: int = 0


@dataclass(frozen=True)
class _RegionOwner:
    packet: FramePacket
    track_id: int
    vehicle_class: str
    box_xyxy: np.ndarray


class PipelineRunner:
    """Runs the stages after detection for every batch of one pipeline."""

    def __init__(self, config: PipelineConfig, cameras: dict[str, CameraAnalysis], publish: PublishFunction,
                 publisher_config: PublisherConfig, plate_stage: PlateStage | None = None,
                 plate_events: PlateEventBuilder | None = None):
        self.config = config
        self.cameras = cameras
        self.publish = publish
        self.publisher_config = publisher_config
        self.plate_stage = plate_stage
        self.plate_events = plate_events
        self.vehicle_class_ids = set()
        if config.plates is not None:
            self.vehicle_class_ids = {COCO_CLASSES.index(name) for name in config.plates.vehicle_classes}

    def on_batch(self, packets: list[FramePacket], results: list[Detections]) -> None:
        regions: list[Region] = []
        owners: list[_RegionOwner] = []
        ended: dict[str, list[int]] = {}
        for packet, detections in zip(packets, results):
            analysis = self.cameras[packet.camera_id]
            analysis.frames_inferred += 1
            update = analysis.tracker.update(detections)
            ended[packet.camera_id] = [track.track_id for track in update.ended]
            self._publish_detections(packet, detections, update.track_ids, analysis)
            if self.plate_stage is None:
                continue
            if analysis.camera.plate_camera:
                regions.append(Region.whole_frame(packet.frame_bgr))
                owners.append(_RegionOwner(packet, -1, "", regions[-1].box_xyxy))
            else:
                self._add_vehicle_regions(packet, detections, update.track_ids, regions, owners)

        if self.plate_stage is None:
            return
        plate_results = self.plate_stage.read(regions) if regions else []
        self._handle_plates(packets, plate_results, owners, ended)

    def _publish_detections(self, packet: FramePacket, detections: Detections, track_ids: np.ndarray,
                            analysis: CameraAnalysis) -> None:
        settings = self.publisher_config
        if not len(detections) and not settings.send_empty_frames:
            return
        height, width = packet.frame_bgr.shape[:2]
        body = detections_body(packet.camera_id, packet.frame_time_utc, width, height, detections, track_ids)
        images = [encode_jpeg(packet.frame_bgr, settings.jpeg_quality)] if settings.send_snapshots else []
        if self.publish(TOPIC_DETECTIONS, body, images):
            analysis.messages_published += 1
            analysis.detections_published += len(detections)

    def _add_vehicle_regions(self, packet: FramePacket, detections: Detections, track_ids: np.ndarray,
                             regions: list[Region], owners: list[_RegionOwner]) -> None:
        stage = self.config.plates
        for index in range(len(detections)):
            track_id = int(track_ids[index])
            box = detections.boxes_xyxy[index]
            if (track_id < 0 or int(detections.class_ids[index]) not in self.vehicle_class_ids
                    or box[2] - box[0] < stage.min_vehicle_width_px
                    or self.plate_events.is_settled(packet.camera_id, track_id)):
                continue
            regions.append(Region(packet.frame_bgr, box))
            owners.append(_RegionOwner(packet, track_id, COCO_CLASSES[int(detections.class_ids[index])], box))

    def _handle_plates(self, packets: list[FramePacket], plate_results: list[PlateResult],
                       owners: list[_RegionOwner], ended: dict[str, list[int]]) -> None:
        by_camera: dict[str, dict[int, list[PlateObservation]]] = defaultdict(lambda: defaultdict(list))
        plate_camera_results: dict[str, list[PlateResult]] = defaultdict(list)
        for result in plate_results:
            owner = owners[result.region_index]
            analysis = self.cameras[owner.packet.camera_id]
            analysis.plates_read += 1
            if not result.valid:
                analysis.plates_invalid += 1
                log.debug("%s: invalid plate read %r: %s", owner.packet.camera_id, result.read.text,
                          result.check.reason)
            if analysis.camera.plate_camera:
                plate_camera_results[owner.packet.camera_id].append(result)
                continue
            by_camera[owner.packet.camera_id][owner.track_id].append(
                PlateObservation(result, owner.packet.frame_bgr, owner.packet.frame_time_utc, owner.box_xyxy,
                                 owner.vehicle_class))

        for packet in packets:
            analysis = self.cameras[packet.camera_id]
            ended_ids = ended.get(packet.camera_id, [])
            if analysis.camera.plate_camera:
                ended_ids = self._track_plates(packet, plate_camera_results[packet.camera_id], analysis,
                                               by_camera[packet.camera_id])
            events = self.plate_events.on_frame(packet.camera_id, by_camera.get(packet.camera_id, {}), ended_ids)
            self._publish_events(events)

    @staticmethod
    def _track_plates(packet: FramePacket, results: list[PlateResult], analysis: CameraAnalysis,
                      observations: dict[int, list[PlateObservation]]) -> list[int]:
        """On plate cameras the plate itself is the tracked object; return the plate tracks that ended."""
        boxes = np.array([r.corners_xy.min(axis=0).tolist() + r.corners_xy.max(axis=0).tolist() for r in results],
                         dtype=np.float32).reshape(-1, 4)
        plates = Detections(boxes, np.array([r.detection_score for r in results], dtype=np.float32),
                            np.zeros(len(results), dtype=np.int64))
        update = analysis.plate_tracker.update(plates)
        for result, track_id, box in zip(results, update.track_ids, boxes):
            if track_id >= 0:
                observations[int(track_id)].append(
                    PlateObservation(result, packet.frame_bgr, packet.frame_time_utc, box, "plate"))
        return [track.track_id for track in update.ended]

    def _publish_events(self, events: list[FeedEvent]) -> None:
        for event in events:
            self.publish(event.topic, event.body, event.images)

    def end_all_tracks(self) -> None:
        """Publish what the live tracks have read, for a clean stop."""
        if self.plate_events is None:
            return
        for camera_id, analysis in self.cameras.items():
            ended = [t.track_id for t in analysis.tracker.end_all()] + [t.track_id for t in
                                                                         analysis.plate_tracker.end_all()]
            self._publish_events(self.plate_events.on_frame(camera_id, {}, ended))
