"""Plate stage: find plates inside regions of frames, read them in one batch, and check the grammar."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from edge.core.regions import Region, crop_region
from edge.plates.colour import estimate_plate_colour
from edge.plates.detector import PlateDetector
from edge.plates.grammar import EMBASSY_PREFIX, PROVINCES, PlateCheck, check_plate
from edge.plates.recognizer import PlateRead, PlateRecognizer
from edge.plates.rectify import grow_corners, rectify_plate

# Vehicle boxes are grown by this fraction on each side, so a plate at the bumper's edge is not cut.
REGION_MARGIN = 0.05
# Detected corners sometimes cut into the first or last character. So a read that is invalid, or
# valid with a character below RETRY_MIN_CHAR_PROB, is replaced by the read of a crop grown by
# RETRY_GROW on each side where that read is better. Growing every crop instead loses characters
# on plates whose corners were right.
RETRY_MIN_CHAR_PROB = 0.9
# Growths of the detected quadrilateral, as fractions of the plate's width and height on each side.
# The recogniser reads some rare provinces with full confidence as a common one (蒙 as 京), and then
# the character usually changes when the crop moves by a few pixels. So each plate is also read
# from the PROVINCE_CHECK_GROWS crops, and at least one of them must read the same province.
# NOTE: the growths were measured with the plate_yolov5_corners detectors on rendered plates, whose
# corners fall up to 14 px (6% of the width) inside the plate. They cost two extra recogniser
# inputs per plate.
RETRY_GROW = (0.02, 0.04)
PROVINCE_CHECK_GROWS = (RETRY_GROW, (0.04, 0.08))


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

    def __init__(self, detector: PlateDetector, recognizer: PlateRecognizer,
                 double_row_recognizer: PlateRecognizer | None = None):
        self.detector = detector
        self.recognizer = recognizer
        # Double-row plates go to this recogniser when it is set. The two shipped recognisers differ most on
        # them: on rendered double-row plates wq_plate_rec_color confidently misreads letters (K as W, Q as V).
        self.double_row_recognizer = double_row_recognizer or recognizer

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
        plates = [plate for *_, plate in found]
        double_rows = [detection.double_row for _, detection, *_ in found]
        checked = [check_read(read, plate) for read, plate in zip(self._recognize(plates, double_rows), plates)]

        # Every plate is read again from grown crops, all in one batch. The first grown read replaces
        # a first read that is invalid or hesitant, and all of them check that the province is stable.
        grown, grown_double_rows = [], []
        for index, detection, *_ in found:
            for width_fraction, height_fraction in PROVINCE_CHECK_GROWS:
                corners = grow_corners(detection.corners_xy, width_fraction, height_fraction)
                grown.append(rectify_plate(crops[index], corners, detection.double_row))
                grown_double_rows.append(detection.double_row)
        grown_reads = self._recognize(grown, grown_double_rows)
        per_plate = len(PROVINCE_CHECK_GROWS)
        for i in range(len(found)):
            reads = [check_read(read, plate) for read, plate in
                     zip(grown_reads[i * per_plate:(i + 1) * per_plate], grown[i * per_plate:(i + 1) * per_plate])]
            candidates = [checked[i]] + reads
            retry = reads[PROVINCE_CHECK_GROWS.index(RETRY_GROW)]
            chosen = checked[i]
            if needs_retry(*checked[i]) and better_read(*retry, *checked[i]):
                chosen = retry
                plates[i] = grown[i * per_plate + PROVINCE_CHECK_GROWS.index(RETRY_GROW)]
            others = [candidate[1].text for candidate in candidates if candidate is not chosen]
            checked[i] = (chosen[0], check_province_stable(chosen[1], others))

        results = []
        for (index, detection, corners, _), (read, check), plate in zip(found, checked, plates):
            results.append(PlateResult(index, corners, detection.score, detection.double_row, read, check, plate))
        return results

    def _recognize(self, plates_bgr: list[np.ndarray], double_rows: list[bool]) -> list[PlateRead]:
        """Read each plate with the recogniser for its layout, one batch per recogniser, in input order."""
        if self.double_row_recognizer is self.recognizer:
            return self.recognizer.read(plates_bgr)
        reads: list[PlateRead | None] = [None] * len(plates_bgr)
        for recognizer, layout_is_double_row in ((self.recognizer, False), (self.double_row_recognizer, True)):
            indices = [i for i, double_row in enumerate(double_rows) if double_row is layout_is_double_row]
            if indices:
                for i, read in zip(indices, recognizer.read([plates_bgr[i] for i in indices])):
                    reads[i] = read
        return reads

    def read_upright(self, plates_bgr: list[np.ndarray]) -> list[PlateResult]:
        """Read images that already are upright single-row plates, such as tight crops; no detection runs."""
        results = []
        for index, (plate, read) in enumerate(zip(plates_bgr, self.recognizer.read(plates_bgr))):
            height, width = plate.shape[:2]
            corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
            read, check = check_read(read, plate)
            results.append(PlateResult(index, corners, 1.0, False, read, check, plate))
        return results


def check_read(read: PlateRead, plate_bgr: np.ndarray) -> tuple[PlateRead, PlateCheck]:
    """Check a read against the plate grammar, taking the colour from the pixels where the recogniser gives none
    or where its colour head is wrong.

    The pixels' colour is used for a valid read without a colour, and for a read that only the colour head's
    colour makes invalid, in both cases only where it fits the plate type that the text implies. A read whose
    text fits no plate, or whose pixels also contradict its type, stays as it is.
    """
    check = check_plate(read.text, read.char_probs, read.colour)
    if read.colour is None:
        if not check.valid:
            return read, check
    elif check.valid or not check_plate(read.text, read.char_probs, None).valid:
        return read, check
    estimate = estimate_plate_colour(plate_bgr)
    if estimate is None or estimate.colour == read.colour:
        return read, check
    pixel_check = check_plate(read.text, read.char_probs, estimate.colour)
    if not pixel_check.valid:
        return read, check
    return replace(read, colour=estimate.colour, colour_score=estimate.share, colour_from_pixels=True), pixel_check


def check_province_stable(check: PlateCheck, other_texts: list[str]) -> PlateCheck:
    """Invalidate a valid read whose province no read of the other crops confirms.

    Reads of the other crops that start with no province, because a character was lost there,
    neither confirm nor contradict. A read stays valid when no other read has a province.
    """
    provinces = [text[0] for text in other_texts if text and text[0] in PROVINCES + EMBASSY_PREFIX]
    if not check.valid or not provinces or check.text[0] in provinces:
        return check
    reason = (f"province '{check.text[0]}' at position 1 is not stable: slightly larger crops read "
              f"{', '.join(repr(province) for province in provinces)}")
    return replace(check, valid=False, plate_type=None, reason=reason)


def needs_retry(read: PlateRead, check: PlateCheck) -> bool:
    return not check.valid or min(read.char_probs, default=0.0) < RETRY_MIN_CHAR_PROB


def better_read(read: PlateRead, check: PlateCheck, first_read: PlateRead, first_check: PlateCheck) -> bool:
    """Return whether the second read replaces the first.

    A valid read replaces an invalid one. A valid first read is replaced only by a read with no
    character below RETRY_MIN_CHAR_PROB and a higher confidence. On a clean crop the grown one can
    trade a hesitant right character for a more confident wrong one, such as Q read as P.
    """
    if not check.valid:
        return False
    if not first_check.valid:
        return True
    return min(read.char_probs, default=0.0) >= RETRY_MIN_CHAR_PROB and read.confidence > first_read.confidence
