"""Feed message layout shared by the publisher, the subscriber and docs/feed.md."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone

from edge.runtime.detector import Detections

SCHEMA_VERSION = 1
TOPIC_DETECTIONS = "det"
TOPIC_HEALTH = "health"


def utc_iso(epoch_s: float) -> str:
    """Format epoch seconds as UTC ISO 8601 with milliseconds and a 'Z' suffix."""
    return datetime.fromtimestamp(epoch_s, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def detections_body(camera_id: str, frame_time_utc: float, frame_width: int, frame_height: int,
                    detections: Detections, track_ids: Sequence[int] | None = None) -> dict:
    """Build the topic-specific part of a 'det' header; the publisher adds schema, publisher and sequence."""
    return {
        "camera_id": camera_id,
        "frame_time": utc_iso(frame_time_utc),
        "frame_size": [frame_width, frame_height],
        "detections": [
            {
                "class": name,
                "score": round(float(score), 4),
                "box_xyxy": [round(float(v), 1) for v in box],
                "track_id": int(track_id) if track_id >= 0 else None,
            }
            for name, score, box, track_id in zip(detections.class_names(), detections.scores, detections.boxes_xyxy,
                                                  track_ids if track_ids is not None else [-1] * len(detections))
        ],
    }


def encode_header(header: dict) -> bytes:
    return json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode_header(data: bytes) -> dict:
    return json.loads(data.decode("utf-8"))
