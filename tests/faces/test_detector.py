"""Face detectors on the real models and photos: counts, landmark geometry, agreement and coordinate mapping."""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.core.letterbox import plan_letterbox
from edge.faces.detector import FaceDetector, FaceDetectorError
from edge.faces.types import FaceDetection
from edge.models.manifest import load_manifest, resolve_file
from tests.conftest import ASSETS, MODEL_DIR

FACES = ASSETS / "images" / "faces"
PLATES = ASSETS / "images" / "plates"
BUS_IMAGE = ASSETS / "images" / "coco" / "bus.jpg"
IDENTITIES = ("alex_lacamoire", "biden", "kit_harington", "obama", "rose_leslie")
# One face each. obama_2 also shows half of a blurred face at its right edge, which no family reports at 0.6.
SINGLE_PHOTOS = sorted(
    [path for identity in IDENTITIES for path in (FACES / identity).glob("*.jpg")]
    + [FACES / "openface_singles" / "adams.jpg", FACES / "openface_singles" / "carell.jpg"]
)
# Faces counted by eye. Background people with no visible face are not counted: the woman cut by the right
# edge of group_obama_biden and the blurred heads at the right edge of group_kit_harington_rose_leslie.
GROUP_FACE_COUNTS = {
    "group_insightface_t1.jpg": 6,
    "group_kit_harington_rose_leslie.jpg": 2,
    "group_obama_biden.jpg": 3,
    "group_two_people.jpg": 2,
    "openface_singles/longoria-cooper.jpg": 2,
}
# Model name per family, with short test ids.
FAMILY_MODELS = {"yunet": "yunet_s_640", "scrfd": "scrfd_500m_bnkps", "retinaface": "retinaface_mbnet025"}
# (family, photo) pairs whose single-face count is wrong at the default threshold, with the measured cause.
KNOWN_EXTRA_FACES = {
    ("yunet", "biden_2.jpg"): "yunet_s_640 scores two patches of the background painting 0.71 and 0.62, "
                              "and cv2.FaceDetectorYN returns the same two",
}
# Maximum distance between two families' eye landmarks, as a fraction of the face's box width.
# Measured maxima: 0.080 on the single photos, 0.155 on the turned heads of group_insightface_t1.
EYE_TOLERANCE_SINGLE = 0.10
EYE_TOLERANCE_GROUP = 0.20
# Maximum mean signed landmark offset between two families over the single photos, in inter-ocular distances.
# Measured maximum: 0.036.
MAX_MEAN_OFFSET = 0.06
MATCH_IOU = 0.5
REFERENCE_TOLERANCE_PX = 2.0
PADDING_TOLERANCE_PX = 1.0


def load_detector(model_name: str, **options) -> FaceDetector:
    entry = load_manifest().model(model_name)
    return FaceDetector(entry, resolve_file(entry, [MODEL_DIR]), ["cpu"], **options)


@pytest.fixture(scope="module", params=list(FAMILY_MODELS), ids=list(FAMILY_MODELS))
def family(request) -> str:
    return request.param


@functools.cache
def detector_for(family_name: str) -> FaceDetector:
    """Load each family's detector once per test session, because every load runs two probe inferences."""
    return load_detector(FAMILY_MODELS[family_name])


def read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, f"cannot read {path}"
    return image


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return float(intersection / union)


def best_match(face: FaceDetection, candidates: list[FaceDetection]) -> FaceDetection | None:
    """Return the candidate with the highest box IoU above MATCH_IOU, or None."""
    scored = [(box_iou(face.box_xyxy, other.box_xyxy), other) for other in candidates]
    scored = [(iou, other) for iou, other in scored if iou > MATCH_IOU]
    return max(scored, key=lambda pair: pair[0])[1] if scored else None


def single_photo_cases() -> list:
    cases = []
    for family_name, path in itertools.product(FAMILY_MODELS, SINGLE_PHOTOS):
        marks = []
        reason = KNOWN_EXTRA_FACES.get((family_name, path.name))
        if reason:
            marks.append(pytest.mark.xfail(strict=True, reason=reason))
        cases.append(pytest.param(family_name, path, marks=marks, id=f"{family_name}-{path.stem}"))
    return cases


@pytest.mark.parametrize(("family_name", "path"), single_photo_cases())
def test_single_photo_one_face(family_name: str, path: Path):
    faces = detector_for(family_name).detect([read_image(path)])[0]

    assert len(faces) == 1, f"{path.name}: scores {[round(face.score, 2) for face in faces]}"


@pytest.mark.parametrize("path", SINGLE_PHOTOS, ids=[path.stem for path in SINGLE_PHOTOS])
def test_single_photo_landmark_geometry(family: str, path: Path):
    face = detector_for(family).detect([read_image(path)])[0][0]  # highest score first
    x1, y1, x2, y2 = face.box_xyxy
    left_eye, right_eye, nose, left_mouth, right_mouth = face.landmarks_xy

    assert face.box_xyxy.shape == (4,)
    assert face.landmarks_xy.shape == (5, 2)
    assert np.all(face.landmarks_xy[:, 0] >= x1), face
    assert np.all(face.landmarks_xy[:, 0] <= x2), face
    assert np.all(face.landmarks_xy[:, 1] >= y1), face
    assert np.all(face.landmarks_xy[:, 1] <= y2), face
    assert max(left_eye[1], right_eye[1]) < min(left_mouth[1], right_mouth[1]), face
    assert left_eye[0] < right_eye[0], face
    assert left_mouth[0] < right_mouth[0], face
    assert min(left_eye[1], right_eye[1]) < nose[1] < max(left_mouth[1], right_mouth[1]), face


@pytest.mark.parametrize("photo", list(GROUP_FACE_COUNTS), ids=[Path(name).stem for name in GROUP_FACE_COUNTS])
def test_group_photo_face_count(family: str, photo: str):
    faces = detector_for(family).detect([read_image(FACES / photo)])[0]

    assert len(faces) == GROUP_FACE_COUNTS[photo], [round(face.score, 2) for face in faces]


def eye_distances(photos: list[Path], first: str, second: str) -> list[tuple[str, float, float]]:
    """Return (photo, eye distance in px, box width) for each face both families found."""
    rows = []
    for path in photos:
        image = read_image(path)
        faces_first = detector_for(first).detect([image])[0]
        faces_second = detector_for(second).detect([image])[0]
        for face in faces_first:
            other = best_match(face, faces_second)
            if other is None:
                continue
            distance = float(np.linalg.norm(face.landmarks_xy[:2] - other.landmarks_xy[:2], axis=1).max())
            width = float((face.box_xyxy[2] - face.box_xyxy[0] + other.box_xyxy[2] - other.box_xyxy[0]) / 2)
            rows.append((path.name, distance, width))
    return rows


FAMILY_PAIRS = list(itertools.combinations(FAMILY_MODELS, 2))


@pytest.mark.parametrize(("first", "second"), FAMILY_PAIRS, ids=[f"{a}-{b}" for a, b in FAMILY_PAIRS])
def test_families_agree_on_single_photos(first: str, second: str):
    rows = eye_distances(SINGLE_PHOTOS, first, second)

    assert len(rows) == len(SINGLE_PHOTOS)
    for photo, distance, width in rows:
        assert distance <= EYE_TOLERANCE_SINGLE * width, f"{photo}: eyes {distance:.1f} px apart, box {width:.0f} px"


@pytest.mark.parametrize(("first", "second"), FAMILY_PAIRS, ids=[f"{a}-{b}" for a, b in FAMILY_PAIRS])
def test_families_agree_on_group_photos(first: str, second: str):
    rows = eye_distances([FACES / photo for photo in GROUP_FACE_COUNTS], first, second)

    assert len(rows) == sum(GROUP_FACE_COUNTS.values())
    for photo, distance, width in rows:
        assert distance <= EYE_TOLERANCE_GROUP * width, f"{photo}: eyes {distance:.1f} px apart, box {width:.0f} px"


@pytest.mark.parametrize(("first", "second"), FAMILY_PAIRS, ids=[f"{a}-{b}" for a, b in FAMILY_PAIRS])
def test_families_no_systematic_offset(first: str, second: str):
    offsets = []
    for path in SINGLE_PHOTOS:
        image = read_image(path)
        face = detector_for(first).detect([image])[0][0]
        other = detector_for(second).detect([image])[0][0]
        inter_ocular = np.linalg.norm(face.landmarks_xy[1] - face.landmarks_xy[0])
        offsets.append((face.landmarks_xy - other.landmarks_xy) / inter_ocular)

    mean_offsets = np.mean(offsets, axis=0)

    # A decode error such as a half-stride anchor shift moves every face the same way, unlike model noise.
    assert np.abs(mean_offsets).max() <= MAX_MEAN_OFFSET, mean_offsets.round(3).tolist()


def reference_yunet(model_path: Path, image: np.ndarray, score_threshold: float,
                    nms_iou_threshold: float) -> np.ndarray:
    """Run cv2.FaceDetectorYN on the same top-left letterbox and return its rows mapped to source pixels.

    Each row is x1, y1, x2, y2, then five landmark x, y pairs, then the score.
    """
    height, width = image.shape[:2]
    letterbox = plan_letterbox(width, height, 640, 640, "top-left")
    canvas = np.zeros((640, 640, 3), dtype=np.uint8)
    resized = cv2.resize(image, (letterbox.resized_width, letterbox.resized_height), interpolation=cv2.INTER_LINEAR)
    canvas[:letterbox.resized_height, :letterbox.resized_width] = resized
    reference = cv2.FaceDetectorYN.create(str(model_path), "", (640, 640), score_threshold, nms_iou_threshold, 5000)
    _, rows = reference.detect(canvas)
    if rows is None:
        return np.zeros((0, 15), dtype=np.float32)
    scale = np.array([letterbox.scale_x, letterbox.scale_y], dtype=np.float32)
    corners = np.concatenate([rows[:, 0:2], rows[:, 0:2] + rows[:, 2:4]], axis=1).reshape(-1, 2, 2) / scale
    corners = np.clip(corners, 0, [width, height]).reshape(-1, 4)
    landmarks = rows[:, 4:14].reshape(-1, 5, 2) / scale
    return np.concatenate([corners, landmarks.reshape(-1, 10), rows[:, 14:15]], axis=1)


ALL_FACE_PHOTOS = SINGLE_PHOTOS + [FACES / photo for photo in GROUP_FACE_COUNTS]


@pytest.mark.parametrize("model_name", ["yunet_s_640", "yunet_n_640"], ids=["s", "n"])
def test_yunet_matches_face_detector_yn(model_name: str):
    entry = load_manifest().model(model_name)
    model_path = resolve_file(entry, [MODEL_DIR])
    detector = load_detector(model_name)

    for path in ALL_FACE_PHOTOS:
        image = read_image(path)
        faces = detector.detect([image])[0]
        reference = reference_yunet(model_path, image, detector.score_threshold, detector.nms_iou_threshold)
        assert len(faces) == len(reference), path.name
        for row in reference:
            face = min(faces, key=lambda candidate: np.abs(candidate.box_xyxy - row[:4]).max())
            box_error = np.abs(face.box_xyxy - row[:4]).max()
            landmark_error = np.abs(face.landmarks_xy - row[4:14].reshape(5, 2)).max()
            assert box_error <= REFERENCE_TOLERANCE_PX, f"{path.name}: box off by {box_error:.2f} px"
            assert landmark_error <= REFERENCE_TOLERANCE_PX, f"{path.name}: landmarks off by {landmark_error:.2f} px"
            assert face.score == pytest.approx(row[14], abs=1e-3), path.name


def non_face_images() -> list:
    plates = sorted(PLATES.glob("*/*.jpg"))
    cases = [pytest.param(path, id=f"{path.parent.name}-{path.stem[:14]}") for path in plates]
    cases += [pytest.param("grey", id="grey"), pytest.param("black", id="black"),
              pytest.param("bus_top", id="bus-top")]
    return cases


def load_non_face_image(source: Path | str) -> np.ndarray:
    if source == "grey":
        return np.full((480, 640, 3), 128, dtype=np.uint8)
    if source == "black":
        return np.zeros((480, 640, 3), dtype=np.uint8)
    if source == "bus_top":
        # The bus and street above the people's heads, which start at row 416.
        return np.ascontiguousarray(read_image(BUS_IMAGE)[:400])
    return read_image(source)


@pytest.mark.parametrize("source", non_face_images())
def test_non_face_image_no_faces(family: str, source: Path | str):
    faces = detector_for(family).detect([load_non_face_image(source)])[0]

    assert faces == [], [(round(face.score, 2), face.box_xyxy.tolist()) for face in faces]


def pad_to_square(image: np.ndarray) -> np.ndarray:
    """Pad with black on the right or bottom, which keeps the letterbox scale of the longer side."""
    height, width = image.shape[:2]
    side = max(height, width)
    return cv2.copyMakeBorder(image, 0, side - height, 0, side - width, cv2.BORDER_CONSTANT, value=(0, 0, 0))


PADDED_PHOTOS = ["group_two_people.jpg", "group_kit_harington_rose_leslie.jpg", "kit_harington/kit_harington_1.jpg",
                 "obama/obama_2.jpg"]


@pytest.mark.parametrize("photo", PADDED_PHOTOS, ids=[Path(name).stem for name in PADDED_PHOTOS])
def test_padded_photo_same_faces(family: str, photo: str):
    image = read_image(FACES / photo)
    detector = detector_for(family)
    plain, padded = detector.detect([image, pad_to_square(image)])

    assert len(padded) == len(plain)
    for face in plain:
        match = best_match(face, padded)
        assert match is not None, face
        assert np.abs(match.box_xyxy - face.box_xyxy).max() <= PADDING_TOLERANCE_PX
        assert np.abs(match.landmarks_xy - face.landmarks_xy).max() <= PADDING_TOLERANCE_PX


def test_batch_matches_single_images(family: str):
    images = [read_image(FACES / photo) for photo in GROUP_FACE_COUNTS]
    detector = detector_for(family)

    batched = detector.detect(images)
    singles = [detector.detect([image])[0] for image in images]

    assert [len(faces) for faces in batched] == [len(faces) for faces in singles]
    for batch_faces, single_faces in zip(batched, singles):
        for batch_face, single_face in zip(batch_faces, single_faces):
            np.testing.assert_allclose(batch_face.box_xyxy, single_face.box_xyxy, atol=1e-3)
            np.testing.assert_allclose(batch_face.landmarks_xy, single_face.landmarks_xy, atol=1e-3)


def test_fixed_yunet_runs_one_image_at_a_time():
    # The graph accepts a batch of two but folds it into the rows of every output.
    assert detector_for("yunet").batched is False


def test_dynamic_yunet_matches_fixed():
    image = read_image(FACES / "group_insightface_t1.jpg")
    dynamic = load_detector("yunet_n_dynamic")
    fixed = load_detector("yunet_n_640")

    dynamic_faces = dynamic.detect([image, image])[0]
    fixed_faces = fixed.detect([image])[0]

    assert dynamic.batched is True
    assert len(dynamic_faces) == len(fixed_faces) == 6
    for a, b in zip(dynamic_faces, fixed_faces):
        np.testing.assert_allclose(a.box_xyxy, b.box_xyxy, atol=1e-3)
        np.testing.assert_allclose(a.landmarks_xy, b.landmarks_xy, atol=1e-3)


@pytest.mark.parametrize("model_name", ["yunet_n_dynamic", "scrfd_500m_bnkps", "retinaface_mbnet025"])
def test_non_square_input_matches_square(model_name: str):
    # A landscape photo letterboxes to 640x376, which fits 640x384 and 640x640 alike.
    image = read_image(FACES / "group_two_people.jpg")
    square = load_detector(model_name).detect([image])[0]
    wide = load_detector(model_name, input_size=(640, 384)).detect([image])[0]

    assert len(wide) == len(square) == 2
    for face in square:
        match = best_match(face, wide)
        assert match is not None, face
        assert np.abs(match.box_xyxy - face.box_xyxy).max() <= PADDING_TOLERANCE_PX
        assert np.abs(match.landmarks_xy - face.landmarks_xy).max() <= PADDING_TOLERANCE_PX


def test_empty_list_returns_empty(family: str):
    assert detector_for(family).detect([]) == []


def test_unsupported_family_rejected():
    entry = load_manifest().model("mobilefacenet_128d")

    with pytest.raises(FaceDetectorError, match="mobilefacenet_128d.*family 'arcface'"):
        FaceDetector(entry, resolve_file(entry, [MODEL_DIR]), ["cpu"])


def test_fixed_graph_wrong_input_size_rejected():
    with pytest.raises(FaceDetectorError, match=r"yunet_s_640.*fixed input of 640x640.*320x320"):
        load_detector("yunet_s_640", input_size=(320, 320))


def test_input_size_not_multiple_of_32_rejected():
    with pytest.raises(FaceDetectorError, match=r"scrfd_500m_bnkps.*multiples of 32.*600x600"):
        load_detector("scrfd_500m_bnkps", input_size=(600, 600))


@pytest.mark.parametrize("image", [
    pytest.param(np.zeros((480, 640), dtype=np.uint8), id="greyscale"),
    pytest.param(np.zeros((480, 640, 3), dtype=np.float32), id="float"),
    pytest.param(np.zeros((0, 640, 3), dtype=np.uint8), id="empty"),
])
def test_invalid_image_rejected(family: str, image: np.ndarray):
    with pytest.raises(FaceDetectorError, match="image 1 must be a non-empty HxWx3 uint8"):
        detector_for(family).detect([np.zeros((64, 64, 3), dtype=np.uint8), image])
