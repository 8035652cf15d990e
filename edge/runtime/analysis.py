"""Per-camera state kept by a pipeline: the object tracker and the stage counters."""

from __future__ import annotations

from dataclasses import dataclass, field

from edge.config import CameraConfig
from edge.track.tracker import Tracker


@dataclass
class CameraAnalysis:
    camera: CameraConfig
    tracker: Tracker = field(default_factory=Tracker)  # built from the pipeline's [track] table by the daemon
    frames_inferred: int = 0
    # Tracks that keep the motion gate open. The scheduler thread counts them after each update, and the reader
    # thread reads this int, so the reader never walks the tracker's list while it changes.
    gate_tracks: int = 0
    messages_published: int = 0
    detections_published: int = 0
    plates_read: int = 0
    plates_invalid: int = 0
    tracks_without_plate: int = 0  # vehicle tracks searched for a plate that ended without one
    faces_seen: int = 0
    faces_rejected: int = 0  # below the quality gate, so never matched
    face_hits: int = 0
