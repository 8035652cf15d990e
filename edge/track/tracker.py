"""Multi-object tracker in the style of ByteTrack, one instance per camera.

Each frame is associated in three passes, all by IoU between a track's predicted box and a detection:

1. High-score detections against every confirmed track, including tracks lost in earlier frames.
2. Low-score detections against the confirmed tracks still unmatched that were matched in the frame before.
   A partly hidden car thus keeps its track, while a low score never revives a lost track or starts one.
3. The high-score detections still unmatched against tentative tracks (younger than `min_hits` matches).

High-score detections left over start tracks. A confirmed track that stays unmatched is kept for
`lost_buffer_s`, so an object hidden for a moment keeps its id when it reappears.

Motion model: each track filters its four box edges with a constant-velocity alpha-beta filter, in pixels
per second. Its gains fall from a fit through the first boxes to fixed floors, like a Kalman filter that
settles to its steady state. Predictions use the real time between frames, because cameras are sampled at
max_fps and frames are dropped under load or by motion gating. Constant velocity of the edges is the same
model as constant velocity of the box centre and size, because the two are linear transforms of each other
and the filter applies the same gains to every coordinate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge.config.pipeline import COCO_CLASSES, TrackStage
from edge.runtime.detector import Detections
from edge.track.matching import associate

# Detectors often flip one vehicle between car, truck and bus from frame to frame, so these classes may
# continue each other's tracks. Every other class only continues tracks of its own class.
INTERCHANGEABLE_CLASSES = ("car", "truck", "bus")

# Frame interval assumed by `Tracker.update` when the caller gives no frame time: one frame at the default
# max_fps of 10.
NOMINAL_FRAME_INTERVAL_S = 0.1
# Analysed frames that must miss a track before lost_buffer_s can end it; see Tracker.update.
MIN_MISSES_TO_END = 2

# Floors of the alpha-beta filter's gains: the share of a measured box's offset from the prediction that
# corrects the box, and (divided by the frame interval) the velocity. Lower floors average more jitter out
# but follow turns and braking later.
# NOTE: tuned on the synthetic sequences of tests/track/test_accuracy.py, where lower floors fragmented more
# tracks, not on annotated video.
MIN_POSITION_GAIN = 0.7
MIN_VELOCITY_GAIN = 0.3

# Track id of a tentative track, which has fewer than min_hits matches. Its detections carry this id too.
TENTATIVE_ID = -1


def filter_gains(measurements: int) -> tuple[float, float]:
    """Return the (position, velocity) gains for a track's n-th matched box.

    Up to the floors these are the gains of a least-squares line through all n boxes so far, so the second box
    sets the velocity to the whole displacement and later boxes average more and more of the jitter out. The
    floors then keep the filter responsive to turns and braking.
    """
    n = max(measurements, 2)
    return (max(2.0 * (2 * n - 1) / (n * (n + 1)), MIN_POSITION_GAIN),
            max(6.0 / (n * (n + 1)), MIN_VELOCITY_GAIN))


def default_class_groups() -> np.ndarray:
    """Return a class-id -> group-id table in which the interchangeable vehicle classes share one group."""
    groups = np.arange(len(COCO_CLASSES), dtype=np.int64)
    vehicle_group = COCO_CLASSES.index(INTERCHANGEABLE_CLASSES[0])
    for name in INTERCHANGEABLE_CLASSES:
        groups[COCO_CLASSES.index(name)] = vehicle_group
    return groups


def _zero_edges() -> np.ndarray:
    return np.zeros(4, dtype=np.float32)


@dataclass
class Track:
    """One tracked object: its filtered box, its velocity and how recently it was matched."""

    track_id: int  # TENTATIVE_ID until the track has min_hits matches
    class_id: int  # class of the latest matched detection
    box_xyxy: np.ndarray  # filtered box at last_seen_s, in frame pixels
    score: float
    hits: int = 1
    misses: int = 0  # analysed frames since the last match
    # Edge movement per analysed frame: velocity_xyxy_per_s times the frame interval at the last match. The
    # motion gate compares it with the box size.
    velocity_xyxy: np.ndarray = field(default_factory=_zero_edges)
    velocity_xyxy_per_s: np.ndarray = field(default_factory=_zero_edges)
    last_seen_s: float = 0.0
    # Time of the first analysed frame that missed the track; None while it is matched.
    lost_since_s: float | None = None

    @property
    def confirmed(self) -> bool:
        return self.track_id != TENTATIVE_ID

    def prediction_velocity(self) -> np.ndarray:
        """Return the edge velocity used for predictions, in pixels per second.

        A lost track keeps the velocity of its centre but not of its size, because extrapolating a size change
        over an occlusion makes the box blow up or vanish.
        """
        if self.misses == 0:
            return self.velocity_xyxy_per_s
        centre = 0.5 * (self.velocity_xyxy_per_s[:2] + self.velocity_xyxy_per_s[2:])
        return np.concatenate([centre, centre])

    def predicted_box(self, time_s: float) -> np.ndarray:
        """Return the box expected at `time_s`, moving on from the last match at constant velocity."""
        return self.box_xyxy + self.prediction_velocity() * max(time_s - self.last_seen_s, 0.0)


@dataclass(frozen=True)
class TrackUpdate:
    """Result of one frame: a track id per detection (-1 for none yet) and the confirmed tracks that ended."""

    track_ids: np.ndarray  # (K,) int64, aligned with the frame's detections
    ended: list[Track]


class Tracker:
    """Assigns track ids to one camera's detections, frame after frame.

    `config` contains the thresholds, and TrackStage in edge/config/pipeline.py says what raising or lowering
    each does. Tracks whose objects left are ended after lost_buffer_s and returned once in `TrackUpdate.ended`.
    """

    def __init__(self, config: TrackStage | None = None, class_groups: np.ndarray | None = None):
        self.config = TrackStage() if config is None else config
        self.class_groups = default_class_groups() if class_groups is None else class_groups
        # Every live track: tentative, matched in the last frame, or lost within lost_buffer_s.
        self.tracks: list[Track] = []
        self._next_id = 1
        self._clock_s: float | None = None
        self._frame_interval_s = NOMINAL_FRAME_INTERVAL_S

    def update(self, detections: Detections, frame_time_s: float | None = None) -> TrackUpdate:
        """Associate one frame's detections with the tracks, start and end tracks, and return the ids.

        `frame_time_s` is the frame's capture or decode time in seconds, on any clock that does not step back.
        Without it the frame is taken to follow the previous one by NOMINAL_FRAME_INTERVAL_S.
        """
        now_s = self._advance_clock(frame_time_s)
        config = self.config
        # Tracks lost for longer than lost_buffer_s end before association, so a hidden object that comes back
        # later gets a new id. A track missed in only one analysed frame is kept one more frame however late
        # that frame is. An overloaded box may analyse a frame every few seconds, and one miss there must not
        # split a track and send its plate or face hit twice.
        ended = [track for track in self.tracks
                 if track.lost_since_s is not None and now_s - track.lost_since_s > config.lost_buffer_s
                 and track.misses >= MIN_MISSES_TO_END]
        if ended:
            self.tracks = [track for track in self.tracks if track not in ended]
        boxes = np.asarray(detections.boxes_xyxy, dtype=np.float32).reshape(-1, 4)
        scores = detections.scores
        detection_groups = self.class_groups[detections.class_ids]
        track_ids = np.full(len(boxes), -1, dtype=np.int64)

        high = np.flatnonzero(scores >= config.high_score).tolist()
        low = np.flatnonzero((scores >= config.low_score) & (scores < config.high_score)).tolist()
        tracks = self.tracks
        predicted = np.array([track.predicted_box(now_s) for track in tracks], dtype=np.float32).reshape(-1, 4)
        track_groups = self.class_groups[np.array([track.class_id for track in tracks], dtype=np.int64)]
        confirmed = [index for index, track in enumerate(tracks) if track.confirmed]
        tentative = [index for index, track in enumerate(tracks) if not track.confirmed]

        first = associate(confirmed, predicted, track_groups, high, boxes, detection_groups, config.match_iou)
        matched_before = [index for index in first.unmatched_tracks if tracks[index].misses == 0]
        second = associate(matched_before, predicted, track_groups, low, boxes, detection_groups,
                           config.low_match_iou)
        third = associate(tentative, predicted, track_groups, first.unmatched_detections, boxes, detection_groups,
                          config.match_iou)

        for track_index, detection in first.pairs + second.pairs + third.pairs:
            track = tracks[track_index]
            self._continue(track, boxes[detection], float(scores[detection]), int(detections.class_ids[detection]),
                           now_s)
            track_ids[detection] = track.track_id

        matched = {track_index for track_index, _ in first.pairs + second.pairs + third.pairs}
        for index in confirmed:
            if index not in matched:
                self._mark_missed(tracks[index], now_s)
        # A tentative track that misses a frame is dropped without being reported, because it never had an id.
        live = [track for index, track in enumerate(tracks) if track.confirmed or index in matched]

        for detection in third.unmatched_detections:
            track = self._start(boxes[detection], float(scores[detection]), int(detections.class_ids[detection]),
                                now_s)
            live.append(track)
            track_ids[detection] = track.track_id

        self.tracks = live
        return TrackUpdate(track_ids=track_ids, ended=ended)

    def end_all(self) -> list[Track]:
        """End every live track, for a camera that stops, and return the confirmed ones."""
        ended = [track for track in self.tracks if track.confirmed]
        self.tracks = []
        return ended

    def _advance_clock(self, frame_time_s: float | None) -> float:
        previous_s = self._clock_s
        if previous_s is None:
            now_s = 0.0 if frame_time_s is None else float(frame_time_s)
        elif frame_time_s is None or frame_time_s <= previous_s:
            # Without a time, or after the clock stepped back, assume one nominal frame. A zero or negative
            # interval would turn a pixel of jitter into an unbounded velocity.
            now_s = previous_s + NOMINAL_FRAME_INTERVAL_S
        else:
            now_s = float(frame_time_s)
        if previous_s is not None:
            self._frame_interval_s = now_s - previous_s
        self._clock_s = now_s
        return now_s

    def _start(self, box: np.ndarray, score: float, class_id: int, now_s: float) -> Track:
        track = Track(TENTATIVE_ID, class_id, box.copy(), score, last_seen_s=now_s)
        if track.hits >= self.config.min_hits:
            self._confirm(track)
        return track

    def _confirm(self, track: Track) -> None:
        track.track_id = self._next_id
        self._next_id += 1

    def _continue(self, track: Track, box: np.ndarray, score: float, class_id: int, now_s: float) -> None:
        interval_s = now_s - track.last_seen_s
        position_gain, velocity_gain = filter_gains(track.hits + 1)
        velocity = track.prediction_velocity()
        predicted = track.box_xyxy + velocity * interval_s
        residual = box - predicted
        track.box_xyxy = (predicted + position_gain * residual).astype(np.float32)
        track.velocity_xyxy_per_s = (velocity + velocity_gain * residual / interval_s).astype(np.float32)
        track.velocity_xyxy = (track.velocity_xyxy_per_s * self._frame_interval_s).astype(np.float32)
        track.last_seen_s = now_s
        track.lost_since_s = None
        track.score = score
        track.class_id = class_id
        track.hits += 1
        track.misses = 0
        if not track.confirmed and track.hits >= self.config.min_hits:
            self._confirm(track)

    @staticmethod
    def _mark_missed(track: Track, now_s: float) -> None:
        track.misses += 1
        if track.lost_since_s is None:
            track.lost_since_s = now_s
