"""Letterbox packing and its inverse."""

from __future__ import annotations

import tracemalloc

import cv2
import numpy as np
import pytest

from edge.core.letterbox import (InputSpec, boxes_to_input, boxes_to_source, letterbox_into, plan_letterbox,
                                 resize_scratch)

SIZES = [(768, 432), (432, 768), (1920, 1080), (416, 416), (100, 37), (3000, 20)]


@pytest.mark.parametrize(("width", "height"), SIZES)
@pytest.mark.parametrize("alignment", ["top-left", "centre"])
def test_inverse_maps_back_exactly(width, height, alignment):
    letterbox = plan_letterbox(width, height, 416, 416, alignment)
    boxes = np.array([[0, 0, width, height], [width * 0.25, height * 0.5, width * 0.75, height * 0.9]],
                     dtype=np.float32)
    round_trip = boxes_to_source(boxes_to_input(boxes, letterbox), letterbox)
    np.testing.assert_allclose(round_trip, boxes, atol=1e-3)


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_resized_frame_fits_input(width, height):
    letterbox = plan_letterbox(width, height, 416, 320, "centre")
    assert letterbox.pad_x + letterbox.resized_width <= 416
    assert letterbox.pad_y + letterbox.resized_height <= 320
    assert letterbox.resized_width == 416 or letterbox.resized_height == 320


def test_boxes_are_clipped_to_frame():
    letterbox = plan_letterbox(800, 400, 416, 416, "top-left")
    boxes = np.array([[-20, -20, 500, 500]], dtype=np.float32)
    np.testing.assert_allclose(boxes_to_source(boxes, letterbox), [[0, 0, 800, 400]])


def reference_letterbox(frame_bgr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Plain NumPy version of the packing kernel."""
    height, width = frame_bgr.shape[:2]
    plan = plan_letterbox(width, height, spec.width, spec.height, spec.alignment)
    canvas = np.full((spec.height, spec.width, 3), spec.pad_value, dtype=np.float32)
    resized = cv2.resize(frame_bgr, (plan.resized_width, plan.resized_height), interpolation=cv2.INTER_LINEAR)
    canvas[plan.pad_y:plan.pad_y + plan.resized_height, plan.pad_x:plan.pad_x + plan.resized_width] = resized
    if spec.colour_order == "rgb":
        canvas = canvas[:, :, ::-1]
    canvas = (canvas - np.array(spec.mean, dtype=np.float32)) / np.array(spec.std, dtype=np.float32)
    return canvas.transpose(2, 0, 1)


@pytest.mark.parametrize(
    "spec",
    [
        InputSpec(416, 416, "bgr", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "top-left", 114),
        InputSpec(640, 640, "rgb", (0.0, 0.0, 0.0), (255.0, 255.0, 255.0), "centre", 114),
        InputSpec(320, 256, "rgb", (123.7, 116.3, 103.5), (58.4, 57.1, 57.4), "centre", 0),
    ],
    ids=["yolox", "yolov8", "imagenet-mean-std"],
)
def test_kernel_matches_numpy_reference(spec):
    rng = np.random.default_rng(7)
    frame = rng.integers(0, 256, size=(432, 768, 3), dtype=np.uint8)
    frame[:, :, 0] = 10  # distinct blue channel, so a channel swap shows
    out = np.zeros((3, spec.height, spec.width), dtype=np.float32)
    letterbox_into(frame, spec, out)
    np.testing.assert_allclose(out, reference_letterbox(frame, spec), rtol=1e-5, atol=1e-4)


def test_rejects_non_bgr_input():
    spec = InputSpec(416, 416, "bgr", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "top-left", 114)
    out = np.zeros((3, 416, 416), dtype=np.float32)
    with pytest.raises(ValueError, match="expected a HxWx3 uint8 BGR frame, got shape"):
        letterbox_into(np.zeros((10, 10), dtype=np.uint8), spec, out)


@pytest.mark.parametrize(("width", "height"), [(1920, 1080), (432, 768), (416, 416), (100, 37)])
def test_scratch_resize_matches_plain_resize(width, height):
    spec = InputSpec(416, 416, "bgr", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "top-left", 114)
    frame = np.random.default_rng(width).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    plain = np.zeros((3, 416, 416), dtype=np.float32)
    in_place = np.full((3, 416, 416), -1.0, dtype=np.float32)
    letterbox_into(frame, spec, plain)
    letterbox_into(frame, spec, in_place, resize_scratch(spec))
    np.testing.assert_array_equal(in_place, plain)
    np.testing.assert_allclose(in_place, reference_letterbox(frame, spec), rtol=1e-5, atol=1e-4)


def test_scratch_path_allocates_no_frame_sized_array():
    """With a scratch buffer, letterboxing a 1080p frame allocates no array, only small Python objects."""
    spec = InputSpec(416, 416, "rgb", (0.0, 0.0, 0.0), (255.0, 255.0, 255.0), "centre", 114)
    frame = np.random.default_rng(3).integers(0, 256, size=(1080, 1920, 3), dtype=np.uint8)
    out = np.zeros((3, 416, 416), dtype=np.float32)
    scratch = resize_scratch(spec)
    letterbox_into(frame, spec, out, scratch)  # compiles the kernel and fills the normalisation cache

    def peak_bytes(buffer) -> int:
        tracemalloc.start()
        letterbox_into(frame, spec, out, buffer)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    resized_bytes = 416 * 234 * 3
    assert peak_bytes(None) >= resized_bytes, "the check must see the resize allocation of the plain path"
    assert peak_bytes(scratch) < resized_bytes / 10
