"""Plate stage inside a pipeline: vehicle regions of a batch, read across cameras, voted per track."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, replace

import numpy as np

from edge.config.pipeline import COCO_CLASSES, PlateStage as PlateStageConfig
from edge.core.regions import Region
from edge.events.feed import FeedEvent
from edge.events.plates import PlateEventBuilder
from edge.ingest.slot import FramePacket
from edge.plates.stage import PlateResult, PlateStage
from edge.plates.vote import PlateObservation
from edge.runtime.analysis import CameraAnalysis
from edge.runtime.detector import Detections
from edge.track.tracker import Tracker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _RegionOwner:
    packet: FramePacket
    track_id: int  # -1 on plate cameras, whose plates are tracked after reading
    vehicle_class: str
    box_xyxy: np.ndarray


def plate_width_px(corners_xy: np.ndarray) -> float:
    """Return the mean length of the top and bottom edges of a plate's corners (top-left first, clockwise)."""
    top = np.linalg.norm(corners_xy[1] - corners_xy[0])
    bottom = np.linalg.norm(corners_xy[2] - corners_xy[3])
    return float(top + bottom) / 2


def reject_small_plate(result: PlateResult, min_width_px: int) -> PlateResult:
    """Return the result, marked invalid when the plate is narrower than `min_width_px`."""
    width = plate_width_px(result.corners_xy)
    if not result.valid or width >= min_width_px:
        return result
    reason = f"plate {width:.0f} px wide, below min_plate_width_px {min_width_px}: too small to read reliably"
    return replace(result, check=replace(result.check, valid=False, plate_type=None, reason=reason))


class PlateStageRunner:
    """Collects vehicle regions frame by frame, then reads them all in one call per batch."""

    def __init__(self, config: PlateStageConfig, stage: PlateStage, events: PlateEventBuilder,
                 cameras: dict[str, CameraAnalysis]):
        self.config = config
        self.stage = stage
        self.events = events
        self.cameras = cameras
        self.vehicle_class_ids = {COCO_CLASSES.index(name) for name in config.vehicle_classes}
        # Plate cameras track the plates themselves; other cameras use the vehicle tracks.
        self.plate_trackers: dict[str, Tracker] = defaultdict(Tracker)
        # Vehicle tracks searched for a plate, per camera, until they end.
        self.searched_tracks: dict[str, set[int]] = defaultdict(set)
        self._regions: list[Region] = []
        self._owners: list[_RegionOwner] = []

    def add_frame(self, packet: FramePacket, detections: Detections, track_ids: np.ndarray,
                  analysis: CameraAnalysis) -> None:
        if analysis.camera.plate_camera:
            region = Region.whole_frame(packet.frame_bgr)
            self._add(region, _RegionOwner(packet, -1, "", region.box_xyxy))
            return
        for index in range(len(detections)):
            track_id = int(track_ids[index])
            box = detections.boxes_xyxy[index]
            if (track_id < 0 or int(detections.class_ids[index]) not in self.vehicle_class_ids
                    or box[2] - box[0] < self.config.min_vehicle_width_px
                    or not self.events.should_read(packet.camera_id, track_id, packet.frame_index)):
                continue
            vehicle_class = COCO_CLASSES[int(detections.class_ids[index])]
            self.searched_tracks[packet.camera_id].add(track_id)
            self._add(Region(packet.frame_bgr, box), _RegionOwner(packet, track_id, vehicle_class, box))

    def _add(self, region: Region, owner: _RegionOwner) -> None:
        self._regions.append(region)
        self._owners.append(owner)

    def process(self, packets: list[FramePacket], ended: dict[str, list[int]]) -> list[FeedEvent]:
        regions, owners = self._regions, self._owners
        self._regions, self._owners = [], []
        results = self.stage.read(regions) if regions else []

        observations: dict[str, dict[int, list[PlateObservation]]] = defaultdict(lambda: defaultdict(list))
        plate_camera_results: dict[str, list[PlateResult]] = defaultdict(list)
        for result in results:
            result = reject_small_plate(result, self.config.min_plate_width_px)
            owner = owners[result.region_index]
            camera_id = owner.packet.camera_id
            analysis = self.cameras[camera_id]
            analysis.plates_read += 1
            if not result.valid:
                analysis.plates_invalid += 1
                log.debug("%s: invalid plate read %r: %s", camera_id, result.read.text, result.check.reason)
            if analysis.camera.plate_camera:
                plate_camera_results[camera_id].append(result)
                continue
            observations[camera_id][owner.track_id].append(PlateObservation(
                result, owner.packet.frame_bgr, owner.packet.frame_time_utc, owner.box_xyxy, owner.vehicle_class))

        events: list[FeedEvent] = []
        for packet in packets:
            camera_id = packet.camera_id
            ended_ids = ended.get(camera_id, [])
            if self.cameras[camera_id].camera.plate_camera:
                ended_ids = self._track_plates(packet, plate_camera_results[camera_id], observations[camera_id])
            events += self.events.on_frame(camera_id, observations.get(camera_id, {}), ended_ids)
            self._count_tracks_without_plate(camera_id, ended_ids)
        return events

    def _count_tracks_without_plate(self, camera_id: str, ended_ids: list[int]) -> None:
        """Count the searched vehicle tracks that ended with no plate, so misses show in health."""
        searched = self.searched_tracks[camera_id]
        with_plate = self.events.ended_with_plate(camera_id)
        for track_id in ended_ids:
            if track_id in searched:
                searched.discard(track_id)
                if track_id not in with_plate:
                    self.cameras[camera_id].tracks_without_plate += 1

    def _track_plates(self, packet: FramePacket, results: list[PlateResult],
                      observations: dict[int, list[PlateObservation]]) -> list[int]:
        """Track the plates of a plate camera; return the plate tracks that ended."""
        boxes = np.array([np.concatenate([r.corners_xy.min(axis=0), r.corners_xy.max(axis=0)]) for r in results],
                         dtype=np.float32).reshape(-1, 4)
        plates = Detections(boxes, np.array([r.detection_score for r in results], dtype=np.float32),
                            np.zeros(len(results), dtype=np.int64))
        update = self.plate_trackers[packet.camera_id].update(plates, packet.tracker_time_s)
        for result, track_id, box in zip(results, update.track_ids, boxes):
            if track_id >= 0:
                observations[int(track_id)].append(
                    PlateObservation(result, packet.frame_bgr, packet.frame_time_utc, box, "plate"))
        return [track.track_id for track in update.ended]

    def end_all(self, ended: dict[str, list[int]]) -> list[FeedEvent]:
        """Publish what live tracks have read, for a clean stop; `ended` lists each camera's vehicle tracks."""
        events: list[FeedEvent] = []
        for camera_id in self.cameras:
            track_ids = list(ended.get(camera_id, []))
            track_ids += [track.track_id for track in self.plate_trackers[camera_id].end_all()]
            events += self.events.on_frame(camera_id, {}, track_ids)
        return events
