"""Regions of frames handed to second-stage models (plates on vehicles, faces on people)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Region:
    """A part of a frame to search: a detection box, or the whole frame."""

    frame_bgr: np.ndarray
    box_xyxy: np.ndarray  # frame pixels

    @classmethod
    def whole_frame(cls, frame_bgr: np.ndarray) -> Region:
        height, width = frame_bgr.shape[:2]
        return cls(frame_bgr, np.array([0, 0, width, height], dtype=np.float32))


def crop_region(region: Region, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Return the region grown by `margin` of its size on each side and clipped to the frame, and its
    top-left corner in frame pixels (add it to map crop coordinates back)."""
    height, width = region.frame_bgr.shape[:2]
    x1, y1, x2, y2 = region.box_xyxy.astype(np.float32)
    margin_x, margin_y = (x2 - x1) * margin, (y2 - y1) * margin
    left, top = int(max(0, x1 - margin_x)), int(max(0, y1 - margin_y))
    right, bottom = int(min(width, x2 + margin_x)), int(min(height, y2 + margin_y))
    return region.frame_bgr[top:bottom, left:right], np.array([left, top], dtype=np.float32)
