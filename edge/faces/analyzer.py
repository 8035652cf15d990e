"""Face analysis of regions: detect, align, gate on quality, and embed the faces that pass, in one batch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.core.regions import Region, crop_region
from edge.faces.align import align_face
from edge.faces.detector import FaceDetector
from edge.faces.embedder import FaceEmbedder
from edge.faces.quality import QualityGate, QualityReport, check_quality, eye_distance_px
from edge.faces.types import FaceDetection

# Person boxes are grown by this fraction on each side, so a head at the box edge is not cut.
REGION_MARGIN = 0.1


class EnrolmentError(Exception):
    """A photo cannot be enrolled; the message gives the reason and what photo to use instead."""


@dataclass(frozen=True)
class FaceResult:
    """One face found in one region. `embedding` exists only for faces that passed the gate."""

    region_index: int
    detection: FaceDetection  # frame pixels
    quality: QualityReport
    aligned_bgr: np.ndarray  # 112x112
    embedding: np.ndarray | None


def _to_frame(detection: FaceDetection, offset: np.ndarray) -> FaceDetection:
    box = detection.box_xyxy + np.concatenate([offset, offset])
    return FaceDetection(box.astype(np.float32), (detection.landmarks_xy + offset).astype(np.float32),
                         detection.score)


class FaceAnalyzer:
    """Runs the face stages on regions from any cameras; only the largest face of each region is kept."""

    def __init__(self, detector: FaceDetector, embedder: FaceEmbedder, gate: QualityGate):
        self.detector = detector
        self.embedder = embedder
        self.gate = gate

    def analyze(self, regions: list[Region], whole_frames: bool = False) -> list[FaceResult]:
        """Return one result per region with a face; whole frames keep every face instead of the largest."""
        crops, offsets = [], []
        for region in regions:
            crop, offset = crop_region(region, 0.0 if whole_frames else REGION_MARGIN)
            crops.append(crop)
            offsets.append(offset)
        results: list[FaceResult] = []
        for index, detections in enumerate(self.detector.detect(crops) if crops else []):
            if not detections:
                continue
            if not whole_frames:
                # In a person's box, the person's own face is the largest one.
                detections = [max(detections, key=lambda d: eye_distance_px(d.landmarks_xy))]
            frame = regions[index].frame_bgr
            for detection in detections:
                in_frame = _to_frame(detection, offsets[index])
                aligned = align_face(frame, in_frame.landmarks_xy)
                report = check_quality(frame, in_frame, aligned, self.gate)
                results.append(FaceResult(index, in_frame, report, aligned, None))
        passing = [i for i, result in enumerate(results) if result.quality.passed]
        if passing:
            embeddings = self.embedder.embed([results[i].aligned_bgr for i in passing])
            for row, i in enumerate(passing):
                result = results[i]
                results[i] = FaceResult(result.region_index, result.detection, result.quality, result.aligned_bgr,
                                        embeddings[row])
        return results

    def enrol(self, image_bgr: np.ndarray, label: str) -> FaceResult:
        """Return the single face of an enrolment photo, or raise EnrolmentError naming the problem."""
        results = self.analyze([Region.whole_frame(image_bgr)], whole_frames=True)
        if not results:
            raise EnrolmentError(f"{label}: no face found; use a photo in which the face is clearly visible")
        passing = [r for r in results if r.quality.passed]
        if not passing:
            best = max(results, key=lambda r: r.quality.face_px)
            raise EnrolmentError(f"{label}: the face fails the quality gate: {'; '.join(best.quality.reasons)}")
        if len(passing) > 1:
            raise EnrolmentError(f"{label}: {len(passing)} faces pass the quality gate; crop the photo to the "
                                 "one person to enrol")
        return passing[0]
