"""Warp a plate from its four corners to an upright image, joining the rows of a double-row plate."""

from __future__ import annotations

import cv2
import numpy as np

# Rows of a double-row plate, as fractions of the rectified height. The top row (province and authority
# letter) takes the upper 5/12; the bottom row starts at 1/3, so the two crops overlap slightly and
# neither loses the edge of its characters.
TOP_ROW_END = 5 / 12
BOTTOM_ROW_START = 1 / 3
# Expected centre of the gap between the rows with well-placed corners, the middle of the overlap.
EXPECTED_ROW_GAP = (TOP_ROW_END + BOTTOM_ROW_START) / 2
# The gap between the rows is searched for in this band of the rectified height.
ROW_GAP_SEARCH = (0.2, 0.55)
# A row of pixels belongs to the gap when at most this share of it is ink.
ROW_GAP_MAX_INK = 0.03
# Inner share of the width that the gap search looks at, which leaves out the bolts and the frame.
ROW_GAP_WIDTH = 0.8


def grow_corners(corners_xy: np.ndarray, width_fraction: float, height_fraction: float) -> np.ndarray:
    """Move each corner outwards along the plate's own axes, by fractions of its mean width and height.

    The quadrilateral is top-left, top-right, bottom-right, bottom-left. Growing along the plate's
    axes, not the image axes, keeps a turned plate's shape.
    """
    corners = corners_xy.astype(np.float32)
    across = ((corners[1] - corners[0]) + (corners[2] - corners[3])) / 2
    down = ((corners[3] - corners[0]) + (corners[2] - corners[1])) / 2
    dx, dy = across * width_fraction, down * height_fraction
    return np.stack([corners[0] - dx - dy, corners[1] + dx - dy, corners[2] + dx + dy, corners[3] - dx + dy])


def warp_plate(image_bgr: np.ndarray, corners_xy: np.ndarray) -> np.ndarray:
    """Warp the quadrilateral (top-left, top-right, bottom-right, bottom-left) to a rectangle of its own size."""
    corners = corners_xy.astype(np.float32)
    width = int(round(max(np.linalg.norm(corners[0] - corners[1]), np.linalg.norm(corners[3] - corners[2]))))
    height = int(round(max(np.linalg.norm(corners[0] - corners[3]), np.linalg.norm(corners[1] - corners[2]))))
    width, height = max(width, 8), max(height, 4)
    target = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], dtype=np.float32)
    transform = cv2.getPerspectiveTransform(corners, target)
    return cv2.warpPerspective(image_bgr, transform, (width, height), flags=cv2.INTER_LINEAR)


def find_row_gap(plate_bgr: np.ndarray) -> float | None:
    """Return the centre of the blank band between the rows of a double-row plate, as a fraction of its height.

    Ink is the minority class of an Otsu threshold, so dark characters on yellow and light ones on
    black both count. The longest run of rows with at most ROW_GAP_MAX_INK ink inside ROW_GAP_SEARCH is the gap. Returns
    None when no row there is blank, for example on a blurred plate.
    """
    gray = cv2.cvtColor(plate_bgr, cv2.COLOR_BGR2GRAY)
    height, width = gray.shape
    margin = int(width * (1 - ROW_GAP_WIDTH) / 2)
    inner = gray[:, margin:width - margin]
    if inner.size == 0:
        return None
    _, binary = cv2.threshold(inner, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ink = binary if binary.mean() < 0.5 else 1 - binary
    blank = ink.mean(axis=1) <= ROW_GAP_MAX_INK

    first, last = int(ROW_GAP_SEARCH[0] * height), int(ROW_GAP_SEARCH[1] * height)
    best_start, best_length, start = 0, 0, None
    for row in range(first, last + 1):
        if row < last and blank[row]:
            start = row if start is None else start
            continue
        if start is not None and row - start > best_length:
            best_start, best_length = start, row - start
        start = None
    if best_length == 0:
        return None
    return (best_start + best_length / 2) / height


def join_double_row(plate_bgr: np.ndarray) -> np.ndarray:
    """Place the top row left of the bottom row, so a single-line recogniser reads top then bottom.

    The row crops move with the blank band between the rows where one is found, because detected
    corners can sit a tenth of the height too low or too high, and fixed crops then cut a row.
    """
    height = plate_bgr.shape[0]
    gap = find_row_gap(plate_bgr)
    shift = gap - EXPECTED_ROW_GAP if gap is not None else 0.0
    top = plate_bgr[: int((TOP_ROW_END + shift) * height)]
    bottom = plate_bgr[int((BOTTOM_ROW_START + shift) * height):]
    top = cv2.resize(top, (bottom.shape[1], bottom.shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.hstack([top, bottom])


def rectify_plate(image_bgr: np.ndarray, corners_xy: np.ndarray, double_row: bool) -> np.ndarray:
    """Return the upright plate image that the recogniser reads."""
    plate = warp_plate(image_bgr, corners_xy)
    return join_double_row(plate) if double_row else plate
