"""Plate stage: find plates inside regions of frames, read them in one batch, and check the grammar."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.core.regions import Region, crop_region
from edge.plates.detector import PlateDetector
from edge.plates.grammar import PlateCheck, check_plate
from edge.plates.recognizer import PlateRead, PlateRecognizer
from edge.plates.rectify import rectify_plate

# Vehicle boxes are grown by this fraction on each side, so a plate at the bumper's edge is not cut.
REGION_MARGIN = 0.05


@dataclass(frozen=True)
class PlateResult:
    """One plate read in one frame."""

    region_index: int  # which Region it was found in
    corners_xy: np.ndarray  # (4, 2) in frame pixels
    detection_score: float
    double_row: bool
    read: PlateRead
    check: PlateCheck
    plate_bgr: np.ndarray  # rectified plate image (rows joined for double-row plates)

    @property
    def text(self) -> str:
        return self.check.text

    @property
    def valid(self) -> bool:
        return self.check.valid


class PlateStage:
    """Detector, rectifier, recogniser and grammar check for a list of regions from any cameras."""

    def __init__(self, detector: PlateDetector, recognizer: PlateRecognizer):
        self.detector = detector
        self.recognizer = recognizer

    def read(self, regions: list[Region]) -> list[PlateResult]:
        crops, offsets = [], []
        for region in regions:
            crop, offset = crop_region(region, REGION_MARGIN)
            crops.append(crop)
            offsets.append(offset)
        found = []  # (region index, detection in frame pixels, rectified plate)
        for index, (crop, detections) in enumerate(zip(crops, self.detector.detect(crops) if crops else [])):
            for detection in detections:
                corners = detection.corners_xy + offsets[index]
                found.append((index, detection, corners, rectify_plate(crop, detection.corners_xy,
                                                                         detection.double_row)))
        if not found:
            return []
        reads = self.recognizer.read([plate for *_, plate in found])
        results = []
        for (index, detection, corners, plate), read in zip(found, reads):
            check = check_plate(read.text, read.char_probs, read.colour)
            results.append(PlateResult(index, corners, detection.score, detection.double_row, read, check, plate))
        return results

    def read_upright(self, plates_bgr: list[np.ndarray]) -> list[PlateResult]:
        """Read images that already are upright single-row plates, such as tight crops; no detection runs."""
        results = []
        for index, (plate, read) in enumerate(zip(plates_bgr, self.recognizer.read(plates_bgr))):
            height, width = plate.shape[:2]
            corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
            check = check_plate(read.text, read.char_probs, read.colour)
            results.append(PlateResult(index, corners, 1.0, False, read, check, plate))
        return results
