"""Warp a plate from its four corners to an upright image, joining the rows of a double-row plate."""

from __future__ import annotations

import cv2
import numpy as np

# Rows of a double-row plate, as fractions of the rectified height. The top row (province and authority
# letter) takes the upper 5/12; the bottom row starts at 1/3, so the two crops overlap slightly and
# neither loses the edge of its characters.
TOP_ROW_END = 5 / 12
BOTTOM_ROW_START = 1 / 3


def warp_plate(image_bgr: np.ndarray, corners_xy: np.ndarray) -> np.ndarray:
    """Warp the quadrilateral (top-left, top-right, bottom-right, bottom-left) to a rectangle of its own size."""
    corners = corners_xy.astype(np.float32)
    width = int(round(max(np.linalg.norm(corners[0] - corners[1]), np.linalg.norm(corners[3] - corners[2]))))
    height = int(round(max(np.linalg.norm(corners[0] - corners[3]), np.linalg.norm(corners[1] - corners[2]))))
    width, height = max(width, 8), max(height, 4)
    target = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], dtype=np.float32)
    transform = cv2.getPerspectiveTransform(corners, target)
    return cv2.warpPerspective(image_bgr, transform, (width, height), flags=cv2.INTER_LINEAR)


def join_double_row(plate_bgr: np.ndarray) -> np.ndarray:
    """Place the top row left of the bottom row, so a single-line recogniser reads top then bottom."""
    height = plate_bgr.shape[0]
    top = plate_bgr[: int(TOP_ROW_END * height)]
    bottom = plate_bgr[int(BOTTOM_ROW_START * height):]
    top = cv2.resize(top, (bottom.shape[1], bottom.shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.hstack([top, bottom])


def rectify_plate(image_bgr: np.ndarray, corners_xy: np.ndarray, double_row: bool) -> np.ndarray:
    """Return the upright plate image that the recogniser reads."""
    plate = warp_plate(image_bgr, corners_xy)
    return join_double_row(plate) if double_row else plate
