"""Face stage inside a pipeline: person regions of a batch, analysed across cameras, matched per track."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from edge.config.pipeline import COCO_CLASSES, FaceStage as FaceStageConfig
from edge.core.regions import Region
from edge.events.faces import FaceEventBuilder, FaceObservation
from edge.events.feed import FeedEvent
from edge.faces.analyzer import FaceAnalyzer, FaceResult
from edge.ingest.slot import FramePacket
from edge.runtime.analysis import CameraAnalysis
from edge.runtime.detector import Detections
from edge.track.tracker import Tracker

PERSON_CLASS_ID = COCO_CLASSES.index("person")


@dataclass(frozen=True)
class _RegionOwner:
    packet: FramePacket
    track_id: int  # -1 on face cameras, whose faces are tracked after detection
    box_xyxy: np.ndarray


class FaceStageRunner:
    """Collects person regions (or whole frames of face cameras) and analyses them once per batch."""

    def __init__(self, config: FaceStageConfig, crop_analyzer: FaceAnalyzer, frame_analyzer: FaceAnalyzer | None,
                 events: FaceEventBuilder, cameras: dict[str, CameraAnalysis]):
        self.config = config
        self.crop_analyzer = crop_analyzer
        self.frame_analyzer = frame_analyzer
        self.events = events
        self.cameras = cameras
        self.face_trackers: dict[str, Tracker] = defaultdict(Tracker)
        self._crops: list[tuple[Region, _RegionOwner]] = []
        self._frames: list[tuple[Region, _RegionOwner]] = []

    def add_frame(self, packet: FramePacket, detections: Detections, track_ids: np.ndarray,
                  analysis: CameraAnalysis) -> None:
        if analysis.camera.face_camera:
            region = Region.whole_frame(packet.frame_bgr)
            self._frames.append((region, _RegionOwner(packet, -1, region.box_xyxy)))
            return
        for index in range(len(detections)):
            track_id = int(track_ids[index])
            box = detections.boxes_xyxy[index]
            if (track_id < 0 or int(detections.class_ids[index]) != PERSON_CLASS_ID
                    or box[3] - box[1] < self.config.min_person_height_px
                    or not self.events.wants_faces(packet.camera_id, track_id, packet.frame_index)):
                continue
            self._crops.append((Region(packet.frame_bgr, box), _RegionOwner(packet, track_id, box)))

    def process(self, packets: list[FramePacket], ended: dict[str, list[int]]) -> list[FeedEvent]:
        crops, frames = self._crops, self._frames
        self._crops, self._frames = [], []
        observations: dict[str, dict[int, list[FaceObservation]]] = defaultdict(lambda: defaultdict(list))
        for result, owner in self._analyze(self.crop_analyzer, crops, whole_frames=False):
            self._count(owner, result)
            observations[owner.packet.camera_id][owner.track_id].append(
                FaceObservation(result, owner.packet.frame_bgr, owner.packet.frame_time_utc, owner.box_xyxy))
        frame_results: dict[str, list[tuple[FaceResult, _RegionOwner]]] = defaultdict(list)
        if self.frame_analyzer is not None:
            for result, owner in self._analyze(self.frame_analyzer, frames, whole_frames=True):
                self._count(owner, result)
                frame_results[owner.packet.camera_id].append((result, owner))

        events: list[FeedEvent] = []
        for packet in packets:
            camera_id = packet.camera_id
            ended_ids = ended.get(camera_id, [])
            if self.cameras[camera_id].camera.face_camera:
                ended_ids = self._track_faces(packet, frame_results[camera_id], observations[camera_id])
            camera_events = self.events.on_frame(camera_id, observations.get(camera_id, {}), ended_ids)
            self.cameras[camera_id].face_hits += len(camera_events)
            events += camera_events
        return events

    @staticmethod
    def _analyze(analyzer: FaceAnalyzer, items: list[tuple[Region, _RegionOwner]], whole_frames: bool):
        if not items:
            return []
        results = analyzer.analyze([region for region, _ in items], whole_frames=whole_frames)
        return [(result, items[result.region_index][1]) for result in results]

    def _count(self, owner: _RegionOwner, result: FaceResult) -> None:
        analysis = self.cameras[owner.packet.camera_id]
        analysis.faces_seen += 1
        analysis.faces_rejected += not result.quality.passed

    def _track_faces(self, packet: FramePacket, results: list[tuple[FaceResult, _RegionOwner]],
                     observations: dict[int, list[FaceObservation]]) -> list[int]:
        """Track the faces of a face camera; return the face tracks that ended."""
        boxes = np.array([r.detection.box_xyxy for r, _ in results], dtype=np.float32).reshape(-1, 4)
        faces = Detections(boxes, np.array([r.detection.score for r, _ in results], dtype=np.float32),
                           np.full(len(results), PERSON_CLASS_ID, dtype=np.int64))
        # The frame time lets a track survive the same wall-clock gap at any analysis rate.
        update = self.face_trackers[packet.camera_id].update(faces, packet.tracker_time_s)
        for (result, owner), track_id in zip(results, update.track_ids):
            if track_id >= 0:
                observations[int(track_id)].append(FaceObservation(
                    result, owner.packet.frame_bgr, owner.packet.frame_time_utc, result.detection.box_xyxy))
        return [track.track_id for track in update.ended]

    def end_all(self, ended: dict[str, list[int]]) -> list[FeedEvent]:
        # Nothing is published at a stop: a track that has not matched yet gives no hit, and state is dropped.
        for camera_id in self.cameras:
            self.face_trackers[camera_id].end_all()
            self.events.forget_camera(camera_id)
        return []
