"""Records shared by the face stages."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Landmark order of every face detector family, as seen in the image (not from the person's view).
LANDMARK_NAMES = ("left_eye", "right_eye", "nose_tip", "left_mouth_corner", "right_mouth_corner")


@dataclass(frozen=True)
class FaceDetection:
    """One face in an image, in that image's pixels."""

    box_xyxy: np.ndarray  # (4,) float32
    landmarks_xy: np.ndarray  # (5, 2) float32, in LANDMARK_NAMES order
    score: float
