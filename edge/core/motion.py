"""Cheap motion measure: the fraction of cells of a downscaled grey frame that differ from a running background.

A frame is averaged over square blocks of pixels into a grid of grey cells about `target_width` cells wide,
and each cell is compared with a background that follows the scene slowly (a running average). Block
averaging removes most sensor and compression noise before the comparison, so a per-cell threshold of a few
grey levels separates noise from real change. Cells whose centre lies in an ignore zone are not counted.

Both kernels are `nogil`, so camera readers measure their frames in parallel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

# BT.601 luma weights for the B, G and R channels.
LUMA_WEIGHTS_BGR = (0.114, 0.587, 0.299)
DEFAULT_TARGET_WIDTH = 160
# Weight of the newest frame in the running-average background. At 10 measured frames per second, 0.1 gives a
# time constant of about 1 s. A larger weight shortens the trail ("ghost") that a passing object leaves in the
# background, which keeps the gate open after the object has gone, but absorbs a slowly moving object sooner.
# Its track then keeps the gate open while it moves.
DEFAULT_BACKGROUND_ALPHA = 0.1
# Grey levels (0..255) by which a cell must differ from the background to count as changed. Block averages of
# 4x4 or more pixels keep sensor and compression noise well below this.
DEFAULT_CELL_THRESHOLD = 12.0

Polygon = Sequence[Sequence[float]]


@numba.njit(nogil=True, cache=True)
def downscale_grey(frame_bgr, block, out_grey):
    """Write the mean luma of each `block` x `block` pixel square of `frame_bgr` into `out_grey`.

    `out_grey` has shape (height // block, width // block). Pixels right of or below the last whole block are
    not read.
    """
    rows, cols = out_grey.shape
    area = block * block
    sums = np.zeros((cols, 3), dtype=np.int64)
    for cell_y in range(rows):
        sums[:, :] = 0
        # Row-major over the frame, so each pixel row is read once, in order.
        for y in range(cell_y * block, cell_y * block + block):
            row = frame_bgr[y]
            for cell_x in range(cols):
                blue = green = red = 0
                for x in range(cell_x * block, cell_x * block + block):
                    blue += row[x, 0]
                    green += row[x, 1]
                    red += row[x, 2]
                sums[cell_x, 0] += blue
                sums[cell_x, 1] += green
                sums[cell_x, 2] += red
        for cell_x in range(cols):
            luma = 0.114 * sums[cell_x, 0] + 0.587 * sums[cell_x, 1] + 0.299 * sums[cell_x, 2]
            out_grey[cell_y, cell_x] = luma / area


@numba.njit(nogil=True, cache=True)
def count_changed_cells(grey, background, mask, cell_threshold, alpha):
    """Count measured cells that differ from `background` by more than `cell_threshold`, then update it.

    `mask` is 1 for measured cells and 0 for ignored ones. Every cell of the background moves by `alpha` of the
    way towards `grey`, ignored cells included. Returns (changed cells, measured cells).
    """
    rows, cols = grey.shape
    changed = 0
    measured = 0
    for y in range(rows):
        for x in range(cols):
            difference = grey[y, x] - background[y, x]
            if mask[y, x]:
                measured += 1
                if abs(difference) > cell_threshold:
                    changed += 1
            background[y, x] = background[y, x] + alpha * difference
    return changed, measured


def block_size(width: int, height: int, target_width: int) -> int:
    """Return the side of the square pixel block that gives a grid about `target_width` cells wide."""
    return max(1, min(width // target_width, height))


def zone_mask(zones: Sequence[Polygon], rows: int, cols: int, block: int, width: int, height: int) -> np.ndarray:
    """Return a (rows, cols) uint8 mask: 0 for cells whose centre lies inside any zone, 1 for the others.

    Zones are polygons in coordinates normalised to the frame (0..1 on both axes). A point inside is found
    with the even-odd rule, so a self-crossing polygon leaves the areas it covers twice measured.
    """
    centres_x = (np.arange(cols) + 0.5) * block / width
    centres_y = (np.arange(rows) + 0.5) * block / height
    points_x, points_y = np.meshgrid(centres_x, centres_y)
    ignored = np.zeros((rows, cols), dtype=bool)
    for zone in zones:
        vertices = np.asarray(zone, dtype=np.float64)
        inside = np.zeros((rows, cols), dtype=bool)
        for (x1, y1), (x2, y2) in zip(vertices, np.roll(vertices, -1, axis=0)):
            # The edge crosses the horizontal line through the point, to the right of the point.
            spans = (y1 > points_y) != (y2 > points_y)
            with np.errstate(divide="ignore", invalid="ignore"):
                crossing_x = x1 + (points_y - y1) * (x2 - x1) / (y2 - y1)
            inside ^= spans & (points_x < crossing_x)
        ignored |= inside
    return (~ignored).astype(np.uint8)


class MotionDetector:
    """Motion measure of one camera, with the grid buffers and the background kept between frames.

    Not thread-safe: one reader thread owns it. A frame of another size than the previous one starts a new
    background, because the old one describes other pixels.
    """

    def __init__(self, ignore_zones: Sequence[Polygon] = (), target_width: int = DEFAULT_TARGET_WIDTH,
                 background_alpha: float = DEFAULT_BACKGROUND_ALPHA,
                 cell_threshold: float = DEFAULT_CELL_THRESHOLD):
        if target_width < 1:
            raise ValueError(f"target_width must be at least 1, got {target_width}")
        if not 0 < background_alpha <= 1:
            raise ValueError(f"background_alpha must be in (0, 1], got {background_alpha}")
        self.ignore_zones = [list(map(tuple, zone)) for zone in ignore_zones]
        self.target_width = target_width
        self.background_alpha = np.float32(background_alpha)
        self.cell_threshold = np.float32(cell_threshold)
        self.frame_size: tuple[int, int] | None = None
        self.block = 1
        self.grey = np.zeros((0, 0), dtype=np.float32)
        self.background = np.zeros((0, 0), dtype=np.float32)
        self.mask = np.zeros((0, 0), dtype=np.uint8)
        self.resets = 0

    def measure(self, frame_bgr: np.ndarray) -> float:
        """Return the fraction (0..1) of measured cells that changed, and update the background.

        The first frame, and the first after a change of frame size, returns 1.0: with no background to compare
        with, the scene is unknown and must be treated as changed. A grid whose every cell is ignored
        returns 0.0.
        """
        if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.dtype != np.uint8:
            raise ValueError(f"expected a HxWx3 uint8 BGR frame, got shape {frame_bgr.shape} dtype {frame_bgr.dtype}")
        height, width = frame_bgr.shape[:2]
        if (width, height) != self.frame_size:
            self._reset(width, height)
            downscale_grey(frame_bgr, self.block, self.background)
            return 1.0
        downscale_grey(frame_bgr, self.block, self.grey)
        changed, measured = count_changed_cells(self.grey, self.background, self.mask, self.cell_threshold,
                                                self.background_alpha)
        return changed / measured if measured else 0.0

    def _reset(self, width: int, height: int) -> None:
        self.frame_size = (width, height)
        self.block = block_size(width, height, self.target_width)
        rows, cols = height // self.block, width // self.block
        self.grey = np.zeros((rows, cols), dtype=np.float32)
        self.background = np.zeros((rows, cols), dtype=np.float32)
        self.mask = zone_mask(self.ignore_zones, rows, cols, self.block, width, height)
        self.resets += 1
