"""Pipeline runner: the stages after inference for each batch (tracking, `det` messages, second stages)."""

from __future__ import annotations

import logging
from typing import Callable, Protocol

import numpy as np

from edge.bus.schema import TOPIC_DETECTIONS, detections_body
from edge.config import PublisherConfig
from edge.events.feed import FeedEvent
from edge.events.snapshot import encode_jpegs
from edge.ingest.motion_gate import count_gate_tracks
from edge.ingest.slot import FramePacket
from edge.runtime.analysis import CameraAnalysis
from edge.runtime.detector import Detections

log = logging.getLogger(__name__)

# Publishes one message: topic, header body, attached JPEG images.
PublishFunction = Callable[[str, dict, list[bytes]], bool]


class SecondStage(Protocol):
    """A stage that runs on regions of the detected objects, batched across the cameras of one batch."""

    def add_frame(self, packet: FramePacket, detections: Detections, track_ids: np.ndarray,
                  analysis: CameraAnalysis) -> None: ...

    def process(self, packets: list[FramePacket], ended: dict[str, list[int]]) -> list[FeedEvent]: ...

    def end_all(self, ended: dict[str, list[int]]) -> list[FeedEvent]: ...


class PipelineRunner:
    """Tracks each frame's detections, publishes them, and feeds the second stages of one pipeline."""

    def __init__(self, cameras: dict[str, CameraAnalysis], publish: PublishFunction,
                 publisher_config: PublisherConfig, stages: list[SecondStage]):
        self.cameras = cameras
        self.publish = publish
        self.publisher_config = publisher_config
        self.stages = stages

    def on_batch(self, packets: list[FramePacket], results: list[Detections]) -> None:
        ended: dict[str, list[int]] = {}
        for packet, detections in zip(packets, results):
            analysis = self.cameras[packet.camera_id]
            analysis.frames_inferred += 1
            # The decode time, so the tracker predicts over the real gap when frames were skipped or dropped.
            # NOTE: a file read with realtime = false decodes faster than its video runs. There the tracker gets
            # shorter intervals than the video's, and lost_buffer_s spans more of the video.
            update = analysis.tracker.update(detections, packet.tracker_time_s)
            analysis.gate_tracks = count_gate_tracks(analysis.tracker.tracks)
            ended[packet.camera_id] = [track.track_id for track in update.ended]
            self._publish_detections(packet, detections, update.track_ids, analysis)
            for stage in self.stages:
                stage.add_frame(packet, detections, update.track_ids, analysis)
        for stage in self.stages:
            self._publish_events(stage.process(packets, ended))

    def _publish_detections(self, packet: FramePacket, detections: Detections, track_ids: np.ndarray,
                            analysis: CameraAnalysis) -> None:
        settings = self.publisher_config
        if not len(detections) and not settings.send_empty_frames:
            return
        height, width = packet.frame_bgr.shape[:2]
        body = detections_body(packet.camera_id, packet.frame_time_utc, width, height, detections, track_ids)
        images = encode_jpegs([packet.frame_bgr], settings.jpeg_quality) if settings.send_snapshots else []
        if self.publish(TOPIC_DETECTIONS, body, images):
            analysis.messages_published += 1
            analysis.detections_published += len(detections)

    def _publish_events(self, events: list[FeedEvent]) -> None:
        for event in events:
            self.publish(event.topic, event.body, event.images)

    def end_all_tracks(self) -> None:
        """End every live track and publish what the second stages still hold, for a clean stop."""
        ended = {camera_id: [t.track_id for t in analysis.tracker.end_all()]
                 for camera_id, analysis in self.cameras.items()}
        for stage in self.stages:
            self._publish_events(stage.end_all(ended))
