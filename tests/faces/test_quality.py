"""The face quality gate on the test photos: sharp identity photos pass, while blurred, tiny and non-face crops fail."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from edge.faces.align import ARCFACE_TEMPLATE_112, align_face
from edge.faces.quality import (QualityError, QualityGate, QualityReport, check_quality, estimate_pose_deg,
                                eye_distance_px)
from edge.faces.types import FaceDetection
from tests.conftest import ASSETS
from tests.faces.test_align_embed import FACES, IDENTITY_PHOTOS, largest_face, yunet_detections

GATE = QualityGate()
PHOTO_IDS = [p.stem for p in IDENTITY_PHOTOS]


def gate_report(image_bgr: np.ndarray, detection: FaceDetection, gate: QualityGate = GATE) -> QualityReport:
    return check_quality(image_bgr, detection, align_face(image_bgr, detection.landmarks_xy), gate)


def gate_largest_face(image_bgr: np.ndarray) -> QualityReport:
    return gate_report(image_bgr, largest_face(image_bgr))


def template_detection(scale: float, offset: tuple[float, float] = (20.0, 20.0), score: float = 0.95,
                       landmarks: np.ndarray = ARCFACE_TEMPLATE_112) -> FaceDetection:
    points = (landmarks * scale + np.asarray(offset)).astype(np.float32)
    box = np.concatenate([points.min(axis=0) - 10, points.max(axis=0) + 10]).astype(np.float32)
    return FaceDetection(box_xyxy=box, landmarks_xy=points, score=score)


@pytest.fixture(scope="module")
def photos() -> dict:
    return {path: cv2.imread(str(path)) for path in IDENTITY_PHOTOS}


# --- pass and fail on real photos ----------------------------------------------------------------------------

@pytest.mark.parametrize("path", IDENTITY_PHOTOS, ids=PHOTO_IDS)
def test_identity_photo_passes_gate(photos, path):
    report = gate_largest_face(photos[path])
    assert report.reasons == ()
    assert report.passed


@pytest.mark.parametrize("path", IDENTITY_PHOTOS, ids=PHOTO_IDS)
def test_blurred_photo_fails_sharpness(photos, path):
    blurred = cv2.GaussianBlur(photos[path], (0, 0), 4)
    report = gate_largest_face(blurred)
    assert not report.passed
    assert any(reason.startswith("face too blurred") for reason in report.reasons), report.reasons


@pytest.mark.parametrize("path", IDENTITY_PHOTOS, ids=PHOTO_IDS)
def test_downscaled_photo_fails_size(photos, path):
    image = photos[path]
    factor = 24 / eye_distance_px(largest_face(image).landmarks_xy)  # eyes about 24 px apart, under the minimum 32
    small = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    report = gate_largest_face(small)
    assert not report.passed
    assert any(reason.startswith("face too small") for reason in report.reasons), report.reasons


def test_false_detection_in_group_fails():
    # YuNet reports a 9 px "face" at score 0.63 on a plain patch at the top right of this photo.
    image = cv2.imread(str(FACES / "group_obama_biden.jpg"))
    false_face = min(yunet_detections(image), key=lambda d: d.score)
    report = gate_report(image, false_face)
    assert false_face.box_xyxy[0] > 1800
    assert not report.passed
    assert any(reason.startswith("face too small") for reason in report.reasons)
    assert any(reason.startswith("face too blurred") for reason in report.reasons)


def test_low_score_candidates_fail():
    # A plate photo has no faces, so every candidate YuNet finds at a 0.05 score threshold is a non-face crop.
    image = cv2.imread(str(ASSETS / "images" / "plates" / "misc" / "wq_police.jpg"))
    candidates = yunet_detections(image, score_threshold=0.05)
    reports = [gate_report(image, candidate) for candidate in candidates]
    assert len(candidates) >= 3
    assert not any(report.passed for report in reports)
    assert all(any(r.startswith("detector score too low") for r in report.reasons) for report in reports)


def test_featureless_crop_fails_sharpness():
    image = np.full((300, 300, 3), 128, dtype=np.uint8)
    report = gate_report(image, template_detection(scale=2.0))
    assert not report.passed
    assert report.reasons == ("face too blurred: sharpness 0.0, minimum 200",)


# --- reasons --------------------------------------------------------------------------------------------------

def test_small_face_reason_text():
    scale = 23 / eye_distance_px(ARCFACE_TEMPLATE_112)
    image = cv2.imread(str(IDENTITY_PHOTOS[0]))
    report = gate_report(image, template_detection(scale))
    assert "face too small: 23 px between the eyes, minimum 32" in report.reasons


def test_low_score_reason_text(photos):
    image = photos[IDENTITY_PHOTOS[0]]
    detection = largest_face(image)
    low = FaceDetection(detection.box_xyxy, detection.landmarks_xy, score=0.41)
    assert gate_report(image, low).reasons == ("detector score too low: 0.41, minimum 0.7",)


def test_cut_off_face_reason(photos):
    image = photos[IDENTITY_PHOTOS[0]]
    detection = largest_face(image)
    # Shift the image so the face's left eye and left mouth corner fall off its left edge.
    shift = int(detection.landmarks_xy[0, 0]) + 5
    cropped = np.ascontiguousarray(image[:, shift:])
    moved = FaceDetection(detection.box_xyxy - [shift, 0, shift, 0], detection.landmarks_xy - [shift, 0],
                          detection.score)
    report = gate_report(cropped, moved)
    assert not report.passed
    assert f"face cut off by the image edge: 2 of 5 landmarks outside the {cropped.shape[1]}x{cropped.shape[0]} " \
           "image" in report.reasons


def test_every_reason_listed():
    image = np.full((300, 300, 3), 128, dtype=np.uint8)
    report = gate_report(image, template_detection(scale=0.5, score=0.1))
    assert len(report.reasons) == 3
    assert report.reasons[0].startswith("face too small")
    assert report.reasons[1].startswith("detector score too low")
    assert report.reasons[2].startswith("face too blurred")


def test_report_carries_measurements(photos):
    image = photos[IDENTITY_PHOTOS[0]]
    detection = largest_face(image)
    report = gate_report(image, detection)
    assert report.face_px == pytest.approx(eye_distance_px(detection.landmarks_xy))
    assert report.score == pytest.approx(detection.score)
    assert report.sharpness > GATE.min_sharpness
    assert (report.yaw_deg, report.pitch_deg) == pytest.approx(estimate_pose_deg(detection.landmarks_xy))


# --- pose -----------------------------------------------------------------------------------------------------

def rotate_points(points: np.ndarray, degrees: float, centre: tuple[float, float]) -> np.ndarray:
    angle = math.radians(degrees)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return (points - centre) @ rotation.T + centre


def test_template_pose_is_zero():
    yaw, pitch = estimate_pose_deg(ARCFACE_TEMPLATE_112)
    assert abs(yaw) < 0.5
    assert abs(pitch) < 0.5


@pytest.mark.parametrize("roll", [-40, -15, 15, 40])
def test_pose_ignores_roll(photos, roll):
    landmarks = largest_face(photos[IDENTITY_PHOTOS[-1]]).landmarks_xy.astype(np.float64)
    rolled = rotate_points(landmarks, roll, (500.0, 400.0))
    assert estimate_pose_deg(rolled) == pytest.approx(estimate_pose_deg(landmarks), abs=1e-6)


def test_mirrored_photo_flips_yaw():
    # kit_harington_3 is turned about 25 degrees towards the image right.
    image = cv2.imread(str(FACES / "kit_harington" / "kit_harington_3.jpg"))
    yaw, _ = estimate_pose_deg(largest_face(image).landmarks_xy)
    mirrored_yaw, _ = estimate_pose_deg(largest_face(np.ascontiguousarray(image[:, ::-1])).landmarks_xy)
    assert yaw > 15
    assert mirrored_yaw < -15
    assert abs(yaw + mirrored_yaw) < 5


def test_turned_face_fails_yaw():
    # One man in this group photo looks sideways, in near profile.
    image = cv2.imread(str(FACES / "group_insightface_t1.jpg"))
    turned = min(yunet_detections(image), key=lambda d: estimate_pose_deg(d.landmarks_xy)[0])
    report = gate_report(image, turned, QualityGate(min_face_px=0, min_sharpness=0))
    assert report.yaw_deg < -50
    assert any(reason.startswith("head turned too far sideways") for reason in report.reasons), report.reasons


@pytest.mark.parametrize(("nose_shift", "sign"), [(16.0, 1), (-16.0, -1)], ids=["down", "up"])
def test_tilted_face_fails_pitch(nose_shift, sign):
    landmarks = ARCFACE_TEMPLATE_112.copy()
    landmarks[2, 1] += nose_shift  # the nose tip moves along the face towards the mouth or the eyes
    yaw, pitch = estimate_pose_deg(landmarks)
    report = gate_report(np.full((300, 300, 3), 128, dtype=np.uint8),
                         template_detection(2.0, landmarks=landmarks), QualityGate(min_sharpness=0))
    assert abs(yaw) < 1
    assert sign * pitch > GATE.max_pitch_deg
    assert any(reason.startswith("head tilted too far") for reason in report.reasons), report.reasons


# --- inputs ---------------------------------------------------------------------------------------------------

def test_rejects_unaligned_crop(photos):
    image = photos[IDENTITY_PHOTOS[0]]
    with pytest.raises(QualityError, match=r"received shape \(100, 100, 3\)"):
        check_quality(image, largest_face(image), np.zeros((100, 100, 3), dtype=np.uint8), GATE)


def test_rejects_bad_landmarks(photos):
    image = photos[IDENTITY_PHOTOS[0]]
    detection = FaceDetection(np.zeros(4, dtype=np.float32), np.zeros((4, 2), dtype=np.float32), 0.9)
    with pytest.raises(QualityError, match=r"received \(4, 2\)"):
        check_quality(image, detection, np.zeros((112, 112, 3), dtype=np.uint8), GATE)
