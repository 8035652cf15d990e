"""Time the Numba post-processing kernels against plain NumPy versions, at the sizes the pipeline uses.

Cases: the IoU matrix of the tracker (3x3 to 100x100 boxes) and the YOLOX decode of one 416x416 output
(3549 anchors, 80 classes). The NumPy versions are written here. The script checks that both sides give
the same result before timing, interleaves the sides, and prints the median of each with their ratio.
It asserts nothing about speed.

    python benchmarks/kernels.py [--repeats 7] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

from edge.core.decode import decode_yolox, yolox_grid
from edge.core.iou import iou_matrix


def numpy_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    top_left = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    intersection = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    area_a = (boxes_a[:, 2:] - boxes_a[:, :2]).clip(0).prod(axis=1)
    area_b = (boxes_b[:, 2:] - boxes_b[:, :2]).clip(0).prod(axis=1)
    return intersection / np.maximum(area_a[:, None] + area_b[None, :] - intersection, 1e-9)


def numpy_decode_yolox(raw, grid, strides, class_mask, score_threshold):
    centres = (raw[:, 0:2] + grid) * strides
    sizes = np.exp(raw[:, 2:4]) * strides
    masked = np.where(class_mask, raw[:, 4:5] * raw[:, 5:], 0.0)
    class_ids = masked.argmax(axis=1)
    scores = masked[np.arange(len(masked)), class_ids]
    keep = scores >= score_threshold
    half = sizes[keep] / 2
    boxes = np.concatenate([centres[keep] - half, centres[keep] + half], axis=1).astype(np.float32)
    return boxes, scores[keep].astype(np.float32), class_ids[keep]


def random_boxes(rng: np.random.Generator, count: int) -> np.ndarray:
    corner = rng.uniform(0, 700, (count, 2))
    return np.concatenate([corner, corner + rng.uniform(10, 120, (count, 2))], axis=1).astype(np.float32)


def time_call(function, arguments, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        function(*arguments)
    return (time.perf_counter() - started) / calls * 1e6


def compare(label: str, numpy_side, numba_side, arguments, calls: int, repeats: int) -> dict:
    samples: dict[str, list[float]] = {"numpy": [], "numba": []}
    sides = [("numpy", numpy_side), ("numba", numba_side)]
    for name, function in sides:
        time_call(function, arguments, calls)  # warm-up, and compilation on the Numba side
    for repeat in range(repeats):
        for name, function in sides if repeat % 2 == 0 else reversed(sides):
            samples[name].append(time_call(function, arguments, calls))
    numpy_us, numba_us = statistics.median(samples["numpy"]), statistics.median(samples["numba"])
    return {"case": label, "numpy_us": round(numpy_us, 2), "numba_us": round(numba_us, 2),
            "numpy_over_numba": round(numpy_us / numba_us, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per side (default 7)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for count in (3, 10, 30, 100):
        boxes_a, boxes_b = random_boxes(rng, count), random_boxes(rng, count)
        if not np.allclose(iou_matrix(boxes_a, boxes_b), numpy_iou(boxes_a, boxes_b), rtol=1e-5, atol=1e-6):
            print(f"IoU kernel and NumPy differ at {count}x{count} boxes", file=sys.stderr)
            return 1
        rows.append(compare(f"IoU {count}x{count} boxes", numpy_iou, iou_matrix, (boxes_a, boxes_b), 2000,
                            args.repeats))

    grid, strides = yolox_grid(416, 416)
    raw = rng.random((len(grid), 85), dtype=np.float32) ** 3
    mask = np.zeros(80, dtype=bool)
    mask[[0, 1, 2, 3, 5, 7]] = True  # the classes of the shipped pipelines
    expected = numpy_decode_yolox(raw, grid, strides, mask, 0.25)
    actual = decode_yolox(raw, grid, strides, mask, 0.25)
    if not np.allclose(actual.boxes_xyxy, expected[0], rtol=1e-5, atol=1e-3):
        print("YOLOX decode kernel and NumPy differ", file=sys.stderr)
        return 1
    rows.append(compare("YOLOX decode, 3549 anchors", numpy_decode_yolox, decode_yolox,
                        (raw, grid, strides, mask, 0.25), 200, args.repeats))

    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'case':28s} {'NumPy us':>9s} {'Numba us':>9s} {'NumPy/Numba':>12s}")
    for row in rows:
        print(f"{row['case']:28s} {row['numpy_us']:9.1f} {row['numba_us']:9.1f} {row['numpy_over_numba']:12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
