"""Synthetic multi-object sequences with known identities, and the identity metrics scored on them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge.config.pipeline import COCO_CLASSES
from edge.runtime.detector import Detections

CAR, TRUCK, BUS, PERSON = (COCO_CLASSES.index(name) for name in ("car", "truck", "bus", "person"))
FRAME_WIDTH, FRAME_HEIGHT = 1280, 720


@dataclass(frozen=True)
class SyntheticFrame:
    """One analysed frame: its time, its detections and the true object behind each detection."""

    time_s: float
    detections: Detections
    object_ids: np.ndarray  # (K,) int64, the object of each detection, -1 for a false detection


@dataclass(frozen=True)
class SequenceSettings:
    """Settings of `make_sequence`. The defaults describe a busy street at 10 fps on a loaded box."""

    objects: int = 10
    frames: int = 300
    frame_interval_s: float = 0.1
    drop_probability: float = 0.15  # an analysed frame follows 2 to 4 intervals after the last one
    miss_probability: float = 0.08  # the detector misses a visible object in one frame
    occlusion_probability: float = 0.01  # per object and frame, the start of a 3 to 8 frame occlusion
    low_score_probability: float = 0.15  # a detection scores 0.25 to 0.5 (partly hidden, blurred)
    class_flip_probability: float = 0.1  # a vehicle is reported as another vehicle class
    box_noise: float = 0.03  # standard deviation of each edge, as a fraction of the box size
    max_speed_px_s: float = 120.0
    velocity_drift_px_s: float = 20.0  # standard deviation of the random change of velocity over one second
    clutter_per_frame: float = 0.5  # low-score false detections per frame (Poisson mean)
    false_high_per_frame: float = 0.05  # high-score false detections per frame (Poisson mean)


def make_sequence(seed: int, settings: SequenceSettings = SequenceSettings()) -> list[SyntheticFrame]:
    """Return frames of `settings.objects` objects in view at a time, each drifting from a straight line.

    An object that leaves the frame is replaced by a new one (a new true identity) entering from a border.
    """
    rng = np.random.default_rng(seed)
    count = settings.objects
    is_vehicle = np.arange(count) % 2 == 0
    identities = np.arange(count)
    next_identity = count
    sizes = _sizes(rng, is_vehicle)
    positions = rng.uniform([0, 0], [FRAME_WIDTH, FRAME_HEIGHT], (count, 2)) - sizes / 2
    velocities = rng.uniform(-settings.max_speed_px_s, settings.max_speed_px_s, (count, 2))
    occluded_frames = np.zeros(count, dtype=np.int64)

    frames = []
    time_s = 0.0
    for index in range(settings.frames):
        if index:
            intervals = 1 if rng.random() >= settings.drop_probability else int(rng.integers(2, 5))
            step_s = intervals * settings.frame_interval_s
            time_s += step_s
            positions = positions + velocities * step_s
            velocities = velocities + rng.normal(0.0, settings.velocity_drift_px_s * np.sqrt(step_s), (count, 2))
            for obj in np.flatnonzero(_outside(positions, sizes)):
                identities[obj] = next_identity
                next_identity += 1
                occluded_frames[obj] = 0
                sizes[obj] = _sizes(rng, is_vehicle[obj:obj + 1])[0]
                positions[obj], velocities[obj] = _entry(rng, sizes[obj], settings.max_speed_px_s)
        occluded_frames = np.maximum(occluded_frames - 1, 0)
        starts = (rng.random(count) < settings.occlusion_probability) & (occluded_frames == 0)
        occluded_frames[starts] = rng.integers(3, 9, int(starts.sum()))
        visible = (occluded_frames == 0) & (rng.random(count) >= settings.miss_probability)

        rows, object_ids = [], []
        for obj in np.flatnonzero(visible):
            box = np.concatenate([positions[obj], positions[obj] + sizes[obj]])
            box = box + rng.normal(0.0, settings.box_noise, 4) * np.tile(sizes[obj], 2)
            low = rng.random() < settings.low_score_probability
            score = rng.uniform(0.25, 0.5) if low else rng.uniform(0.6, 0.95)
            rows.append((*box, score, _vehicle_class(rng, settings) if is_vehicle[obj] else PERSON))
            object_ids.append(identities[obj])
        for _ in range(rng.poisson(settings.clutter_per_frame)):
            rows.append((*_random_box(rng), rng.uniform(0.25, 0.45), CAR if rng.random() < 0.5 else PERSON))
            object_ids.append(-1)
        for _ in range(rng.poisson(settings.false_high_per_frame)):
            rows.append((*_random_box(rng), rng.uniform(0.5, 0.7), CAR if rng.random() < 0.5 else PERSON))
            object_ids.append(-1)
        frames.append(SyntheticFrame(time_s, to_detections(rows), np.array(object_ids, dtype=np.int64)))
    return frames


def _sizes(rng: np.random.Generator, is_vehicle: np.ndarray) -> np.ndarray:
    count = len(is_vehicle)
    return np.where(is_vehicle[:, None], rng.uniform([90, 50], [160, 90], (count, 2)),
                    rng.uniform([30, 80], [50, 130], (count, 2)))


def _outside(positions: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Return which objects have left the frame completely."""
    right_bottom = positions + sizes
    return ((right_bottom[:, 0] < 0) | (right_bottom[:, 1] < 0) | (positions[:, 0] > FRAME_WIDTH)
            | (positions[:, 1] > FRAME_HEIGHT))


def _entry(rng: np.random.Generator, size: np.ndarray, max_speed_px_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Return the top-left corner and velocity of an object entering across a random border."""
    speed = rng.uniform(0.25 * max_speed_px_s, max_speed_px_s)
    along = rng.uniform(-0.5, 0.5) * speed
    side = int(rng.integers(4))
    if side == 0:  # from the left
        return np.array([-size[0] + 1, rng.uniform(0, FRAME_HEIGHT - size[1])]), np.array([speed, along])
    if side == 1:  # from the right
        return np.array([FRAME_WIDTH - 1, rng.uniform(0, FRAME_HEIGHT - size[1])]), np.array([-speed, along])
    if side == 2:  # from the top
        return np.array([rng.uniform(0, FRAME_WIDTH - size[0]), -size[1] + 1]), np.array([along, speed])
    return np.array([rng.uniform(0, FRAME_WIDTH - size[0]), FRAME_HEIGHT - 1]), np.array([along, -speed])


def _vehicle_class(rng: np.random.Generator, settings: SequenceSettings) -> int:
    if rng.random() >= settings.class_flip_probability:
        return CAR
    return TRUCK if rng.random() < 0.5 else BUS


def _random_box(rng: np.random.Generator) -> np.ndarray:
    corner = rng.uniform([0, 0], [FRAME_WIDTH - 100, FRAME_HEIGHT - 100])
    return np.concatenate([corner, corner + rng.uniform(20, 100, 2)])


def to_detections(rows) -> Detections:
    """Build Detections from rows of (x1, y1, x2, y2, score, class id)."""
    array = np.array(rows, dtype=np.float64).reshape(-1, 6)
    return Detections(array[:, :4].astype(np.float32), array[:, 4].astype(np.float32), array[:, 5].astype(np.int64))


@dataclass(frozen=True)
class IdentityMetrics:
    """Identity errors of a tracker on a sequence with known objects.

    id_switches: an object's detection carries a track id that first followed another object (or clutter).
    fragmentations: an object's detection carries another track id that first followed this same object,
        so the object's track was broken.
    unassigned: detections of real objects at or above the high score that got no track id.
    false_tracks: track ids first given to a false detection.
    """

    id_switches: int
    fragmentations: int
    unassigned: int
    false_tracks: int


def score_identities(frames: list[SyntheticFrame], track: Callable[[SyntheticFrame], np.ndarray],
                     high_score: float = 0.5) -> IdentityMetrics:
    """Run `track` on every frame (it returns the track id of each detection) and count identity errors."""
    owner: dict[int, int] = {}  # track id -> the object (or -1 for clutter) that it first followed
    last_id: dict[int, int] = {}
    counts: dict[str, int] = defaultdict(int)
    for frame in frames:
        track_ids = track(frame)
        for track_id, obj, score in zip(track_ids.tolist(), frame.object_ids.tolist(),
                                        frame.detections.scores.tolist()):
            if track_id < 0:
                counts["unassigned"] += obj >= 0 and score >= high_score
                continue
            if track_id not in owner:
                owner[track_id] = obj
                counts["false_tracks"] += obj < 0
            if obj < 0:
                continue
            previous = last_id.get(obj)
            if previous is not None and previous != track_id:
                counts["fragmentations" if owner[track_id] == obj else "id_switches"] += 1
            last_id[obj] = track_id
    return IdentityMetrics(counts["id_switches"], counts["fragmentations"], counts["unassigned"],
                           counts["false_tracks"])
