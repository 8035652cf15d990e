"""Motion measure kernels against a plain NumPy reference, ignore zones and frame size changes."""

from __future__ import annotations

import numpy as np
import pytest

from edge.core.motion import (
    DEFAULT_BACKGROUND_ALPHA,
    DEFAULT_CELL_THRESHOLD,
    MotionDetector,
    block_size,
    count_changed_cells,
    downscale_grey,
    zone_mask,
)

# (width, height): common camera sizes, odd sizes whose right and bottom strips are not whole blocks, a frame
# narrower than the target grid, and a strip taller than wide.
SIZES = [(1920, 1080), (768, 432), (1917, 1083), (641, 359), (101, 37), (3000, 20), (7, 300)]


def reference_grey(frame_bgr: np.ndarray, block: int) -> np.ndarray:
    """Plain NumPy block-mean luma, with the same operation order and casts as the kernel."""
    rows, cols = frame_bgr.shape[0] // block, frame_bgr.shape[1] // block
    cropped = frame_bgr[:rows * block, :cols * block].astype(np.int64)
    sums = cropped.reshape(rows, block, cols, block, 3).sum(axis=(1, 3))
    luma = 0.114 * sums[..., 0] + 0.587 * sums[..., 1] + 0.299 * sums[..., 2]
    return (luma / (block * block)).astype(np.float32)


def reference_point_in_polygon(x: float, y: float, polygon) -> bool:
    """Even-odd rule, one point at a time."""
    inside = False
    count = len(polygon)
    for i in range(count):
        x1, y1 = polygon[i]
        x2, y2 = polygon[(i + 1) % count]
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def reference_mask(zones, rows: int, cols: int, block: int, width: int, height: int) -> np.ndarray:
    mask = np.ones((rows, cols), dtype=np.uint8)
    for row in range(rows):
        for col in range(cols):
            x, y = (col + 0.5) * block / width, (row + 0.5) * block / height
            if any(reference_point_in_polygon(x, y, zone) for zone in zones):
                mask[row, col] = 0
    return mask


class ReferenceMotion:
    """Plain NumPy version of MotionDetector."""

    def __init__(self, zones, target_width: int = 160):
        self.zones = zones
        self.target_width = target_width
        self.size = None
        self.alpha = np.float32(DEFAULT_BACKGROUND_ALPHA)
        self.threshold = np.float32(DEFAULT_CELL_THRESHOLD)

    def measure(self, frame_bgr: np.ndarray) -> float:
        height, width = frame_bgr.shape[:2]
        if (width, height) != self.size:
            self.size = (width, height)
            self.block = max(1, min(width // self.target_width, height))
            self.background = reference_grey(frame_bgr, self.block)
            rows, cols = self.background.shape
            self.mask = reference_mask(self.zones, rows, cols, self.block, width, height).astype(bool)
            return 1.0
        grey = reference_grey(frame_bgr, self.block)
        difference = grey - self.background
        changed = int(np.count_nonzero((np.abs(difference) > self.threshold) & self.mask))
        measured = int(np.count_nonzero(self.mask))
        self.background = self.background + self.alpha * difference
        return changed / measured if measured else 0.0


def moving_frames(width: int, height: int, count: int, seed: int) -> list[np.ndarray]:
    """Return noisy frames of a fixed textured scene with a bright square that moves across it."""
    rng = np.random.default_rng(seed)
    scene = rng.integers(40, 200, size=(height, width, 3), dtype=np.int16)
    side = max(2, min(width, height) // 4)
    frames = []
    for index in range(count):
        frame = scene + rng.integers(-4, 5, size=scene.shape, dtype=np.int16)
        left = (index * max(1, width // count)) % max(1, width - side)
        top = (index * max(1, height // count)) % max(1, height - side)
        frame[top:top + side, left:left + side] = 250
        frames.append(frame.clip(0, 255).astype(np.uint8))
    return frames


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_downscale_matches_reference(width, height):
    frame = np.random.default_rng(width * height).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    block = block_size(width, height, 160)
    out = np.full((height // block, width // block), -1.0, dtype=np.float32)
    downscale_grey(frame, block, out)
    np.testing.assert_array_equal(out, reference_grey(frame, block))


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_grid_is_about_target_width(width, height):
    block = block_size(width, height, 160)
    cols, rows = width // block, height // block
    assert rows >= 1
    assert cols >= min(width, 160)
    assert width < 160 or cols < 2 * 160


def test_count_matches_reference_with_mask():
    rng = np.random.default_rng(3)
    grey = rng.uniform(0, 255, size=(45, 81)).astype(np.float32)
    background = rng.uniform(0, 255, size=(45, 81)).astype(np.float32)
    mask = (rng.uniform(size=(45, 81)) > 0.3).astype(np.uint8)
    expected_difference = grey - background
    expected_changed = int(np.count_nonzero((np.abs(expected_difference) > np.float32(12)) & mask.astype(bool)))
    expected_background = background + np.float32(0.05) * expected_difference

    changed, measured = count_changed_cells(grey, background, mask, np.float32(12), np.float32(0.05))

    assert measured == int(mask.sum())
    assert changed == expected_changed
    np.testing.assert_array_equal(background, expected_background)


ZONE_CASES = {
    "none": [],
    "top-right clock": [[[0.7, 0.0], [1.0, 0.0], [1.0, 0.12], [0.7, 0.12]]],
    "triangle and trees": [[[0.0, 0.5], [0.4, 1.0], [0.0, 1.0]], [[0.45, 0.2], [0.6, 0.1], [0.65, 0.6], [0.5, 0.55]]],
    "whole frame": [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]],
}


@pytest.mark.parametrize(("width", "height"), [(768, 432), (641, 359), (101, 37)])
@pytest.mark.parametrize("zones", ZONE_CASES.values(), ids=ZONE_CASES.keys())
def test_detector_matches_reference(width, height, zones):
    detector = MotionDetector(zones)
    reference = ReferenceMotion(zones)
    for index, frame in enumerate(moving_frames(width, height, 12, seed=width)):
        measured = detector.measure(frame)
        expected = reference.measure(frame)
        assert measured == pytest.approx(expected, abs=1e-12), f"frame {index}"
    np.testing.assert_array_equal(detector.background, reference.background)
    np.testing.assert_array_equal(detector.mask.astype(bool), reference.mask)


@pytest.mark.parametrize(("width", "height"), [(768, 432), (1917, 1083), (101, 37)])
def test_mask_matches_reference(width, height):
    zones = ZONE_CASES["triangle and trees"]
    block = block_size(width, height, 160)
    rows, cols = height // block, width // block
    mask = zone_mask(zones, rows, cols, block, width, height)
    np.testing.assert_array_equal(mask, reference_mask(zones, rows, cols, block, width, height))
    assert 0 < mask.sum() < rows * cols


def test_static_noisy_scene_measures_no_motion():
    frames = moving_frames(768, 432, 20, seed=1)
    still = [frames[0]] * 20
    rng = np.random.default_rng(5)
    detector = MotionDetector()
    values = []
    for frame in still:
        noisy = (frame.astype(np.int16) + rng.normal(0, 3, size=frame.shape)).clip(0, 255).astype(np.uint8)
        values.append(detector.measure(noisy))
    assert values[0] == 1.0
    assert max(values[1:]) == 0.0


def test_moving_square_measures_motion():
    detector = MotionDetector()
    values = [detector.measure(frame) for frame in moving_frames(768, 432, 10, seed=2)]
    # The square covers 108x108 of 768x432 pixels, so both its old and new place differ: about 7% of cells.
    assert min(values[1:]) > 0.02


def test_ignore_zone_hides_motion_inside_it():
    frames = moving_frames(768, 432, 10, seed=4)
    whole_frame = ZONE_CASES["whole frame"]
    detector = MotionDetector(whole_frame)
    values = [detector.measure(frame) for frame in frames]
    assert values[1:] == [0.0] * 9


def test_size_change_resets_background():
    detector = MotionDetector()
    first = moving_frames(768, 432, 2, seed=6)
    second = moving_frames(640, 360, 2, seed=6)
    assert detector.measure(first[0]) == 1.0
    assert detector.measure(first[0]) == 0.0
    assert detector.measure(second[0]) == 1.0
    assert detector.background.shape == (360 // detector.block, 640 // detector.block)
    assert detector.measure(second[0]) == 0.0
    assert detector.resets == 2


def test_rejects_non_bgr_frame():
    with pytest.raises(ValueError, match="expected a HxWx3 uint8 BGR frame, got shape"):
        MotionDetector().measure(np.zeros((10, 10), dtype=np.uint8))
