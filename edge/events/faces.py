"""Face events: at most one `hit.face` per person track and enrolled person.

Privacy: the embeddings of a track live in memory only while the track lives. A face that matches no
enrolled person produces no message, log line or file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edge.bus.schema import utc_iso
from edge.config.pipeline import FaceStage
from edge.core.regions import Region, crop_region
from edge.events.feed import FeedEvent
from edge.events.repeats import RecentKeys
from edge.events.snapshot import encode_jpegs
from edge.faces.analyzer import FaceResult
from edge.watchlist.faces import FaceGallery, FaceMatch

log = logging.getLogger(__name__)

TOPIC_FACE_HIT = "hit.face"
# Fraction of the face box added on each side of the face crop sent with a hit.
CROP_MARGIN = 0.3


@dataclass(frozen=True)
class FaceObservation:
    result: FaceResult
    frame_bgr: np.ndarray
    frame_time_utc: float
    person_box_xyxy: np.ndarray


@dataclass
class _TrackState:
    attempts: int = 0
    embedding_sum: np.ndarray | None = None  # sum of the first max_faces_per_track faces, for an averaged attempt
    hit_person_ids: set[int] = field(default_factory=set)


def _round(values) -> list:
    return np.round(np.asarray(values, dtype=np.float64), 1).tolist()


def face_crop(frame_bgr: np.ndarray, box_xyxy: np.ndarray) -> np.ndarray:
    crop, _ = crop_region(Region(frame_bgr, box_xyxy), CROP_MARGIN)
    return crop


def hit_body(camera_id: str, track_id: int, observation: FaceObservation, match: FaceMatch, model_id: str) -> dict:
    quality = observation.result.quality
    detection = observation.result.detection
    person = match.person
    return {
        "camera_id": camera_id,
        "track_id": track_id,
        "frame_time": utc_iso(observation.frame_time_utc),
        "person": {"id": person.id, "name": person.name, "list_name": person.list_name, "reason": person.reason},
        "similarity": round(match.similarity, 4),
        "margin": round(match.margin, 4),
        "model_id": model_id,
        "face": {
            "box_xyxy": _round(detection.box_xyxy),
            "landmarks_xy": _round(detection.landmarks_xy),
            "detector_score": round(float(detection.score), 4),
            "eye_distance_px": round(float(quality.face_px), 1),
            "sharpness": round(float(quality.sharpness), 1),
            "yaw_deg": round(float(quality.yaw_deg), 1),
            "pitch_deg": round(float(quality.pitch_deg), 1),
        },
        "person_box_xyxy": _round(observation.person_box_xyxy),
    }


class FaceEventBuilder:
    """Matches each track's good faces against the gallery.

    A track is checked on every frame until it matched or used max_faces_per_track faces, then on every
    recheck_every_frames frame, because a tracker may hand one track from one person to the next.
    """

    def __init__(self, stage: FaceStage, gallery: Callable[[], FaceGallery], jpeg_quality: int):
        self.stage = stage
        self.gallery = gallery
        self.jpeg_quality = jpeg_quality
        self._tracks: dict[tuple[str, int], _TrackState] = {}
        self._recent: dict[str, RecentKeys] = {}  # camera -> person ids matched, by frame time
        self.hits_published = 0
        self.repeats_suppressed = 0  # matches without a hit because the camera sent one moments ago

    def wants_faces(self, camera_id: str, track_id: int, frame_index: int) -> bool:
        state = self._tracks.get((camera_id, track_id))
        if state is None or (not state.hit_person_ids and state.attempts < self.stage.max_faces_per_track):
            return True
        return frame_index % self.stage.recheck_every_frames == 0

    def on_frame(self, camera_id: str, observations: dict[int, list[FaceObservation]],
                 ended_track_ids: list[int]) -> list[FeedEvent]:
        gallery = self.gallery()
        recent = self._recent.setdefault(camera_id, RecentKeys(self.stage.repeat_window_s))
        events: list[FeedEvent] = []
        for track_id, track_observations in observations.items():
            state = self._tracks.setdefault((camera_id, track_id), _TrackState())
            for observation in track_observations:
                if observation.result.embedding is None:
                    continue
                match = self._attempt(gallery, state, observation.result.embedding)
                if match is None:
                    continue
                # Every match counts as a sighting, so a person who stays in view keeps the window open.
                repeat = recent.seen_recently(match.person.id, observation.frame_time_utc)
                if match.person.id in state.hit_person_ids:
                    continue
                state.hit_person_ids.add(match.person.id)
                if repeat:
                    self.repeats_suppressed += 1
                    log.info("%s: face on track %d matches watchlist person %d, who had a hit on this camera less "
                             "than %g s ago; no new hit", camera_id, track_id, match.person.id,
                             self.stage.repeat_window_s)
                    continue
                events.append(self._hit(camera_id, track_id, observation, match, gallery.model_id))
        for track_id in ended_track_ids:
            # Forget the track's embeddings as soon as it ends.
            self._tracks.pop((camera_id, track_id), None)
        return events

    def _attempt(self, gallery: FaceGallery, state: _TrackState, embedding: np.ndarray) -> FaceMatch | None:
        state.attempts += 1
        match = gallery.match(embedding)
        if state.attempts > self.stage.max_faces_per_track or state.hit_person_ids:
            # Rechecks match single faces only: the track may show someone else by now.
            return match
        state.embedding_sum = embedding.copy() if state.embedding_sum is None else state.embedding_sum + embedding
        if match is None and state.attempts > 1:
            # The mean of several good faces is steadier than any one of them.
            mean = state.embedding_sum / np.linalg.norm(state.embedding_sum)
            match = gallery.match(mean)
        return match

    def _hit(self, camera_id: str, track_id: int, observation: FaceObservation, match: FaceMatch,
             model_id: str) -> FeedEvent:
        self.hits_published += 1
        log.info("%s: face on track %d matches watchlist person %d on list '%s' (similarity %.3f)", camera_id,
                 track_id, match.person.id, match.person.list_name, match.similarity)
        crop = face_crop(observation.frame_bgr, observation.result.detection.box_xyxy)
        images = encode_jpegs([observation.frame_bgr, crop], self.jpeg_quality)
        return FeedEvent(TOPIC_FACE_HIT, hit_body(camera_id, track_id, observation, match, model_id), images)

    def forget_camera(self, camera_id: str) -> None:
        for key in [key for key in self._tracks if key[0] == camera_id]:
            del self._tracks[key]
        self._recent.pop(camera_id, None)
